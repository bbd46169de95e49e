//! Device-state migration: the v2 state machine, the v1 protocol, the stream format,
//! save/restore/migrate, compatibility and conformance.
