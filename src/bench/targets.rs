//! The project's targets, checked against a run's figures.

use super::config::BenchConfig;
use super::report::{ParallelReport, ResultRow, Target};
use super::rss::RssScope;
use super::stats::round4;

/// The project's targets, checked where this run has the figures (main buffer rows).
pub(super) fn targets(
    results: &[ResultRow],
    parallel: Option<&ParallelReport>,
    cfg: &BenchConfig,
) -> Vec<Target> {
    let mut t = Vec::new();
    let mut at_least = |name: &str, measured: Option<f64>, required: f64| {
        if let Some(m) = measured {
            t.push(Target {
                name: name.into(),
                measured: round4(m),
                required,
                comparison: "at_least".into(),
                met: m >= required,
            });
        }
    };
    let at = |mode: &str| {
        results
            .iter()
            .find(|r| r.mode == mode && r.buffer_bytes == cfg.buffer)
            .or_else(|| {
                results.iter().filter(|r| r.mode == mode).max_by(|a, b| {
                    a.throughput_bytes_per_s
                        .total_cmp(&b.throughput_bytes_per_s)
                })
            })
    };
    at_least(
        "save / memcpy",
        at("save").and_then(|r| r.ratio_to_memcpy),
        0.9,
    );
    at_least(
        "restore / memcpy",
        at("restore").and_then(|r| r.ratio_to_memcpy),
        0.9,
    );
    at_least(
        "live / memcpy",
        at("live").and_then(|r| r.ratio_to_memcpy),
        0.8,
    );
    if let Some(p) = parallel {
        if p.devices == 2 {
            at_least("2 devices in parallel / one device", Some(p.scaling), 1.7);
        }
    }
    let worst_rss = results
        .iter()
        .filter(|r| matches!(r.mode.as_str(), "save" | "restore" | "live"))
        .filter(|r| r.rss_scope == RssScope::Mode)
        .filter_map(|r| r.rss_over_buffers_bytes)
        .max();
    if let Some(w) = worst_rss {
        t.push(Target {
            name: "peak RSS above the configured buffers (MiB)".into(),
            measured: round4(w as f64 / (1 << 20) as f64),
            required: 64.0,
            comparison: "at_most".into(),
            met: w <= 64 << 20,
        });
    }
    t
}
