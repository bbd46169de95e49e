//! Save/restore throughput and downtime benchmarks.
