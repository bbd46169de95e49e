//! Unit tests of the benchmark's pure parts: simulator specs, modes, sweeps, rows, and the
//! report's presentations.

use super::devices::sim_seed;
use super::machine::{Kernel, Machine};
use super::report::{make_row, RowInput};
use super::rss::RssScope;
use super::*;
use crate::migration::engine::RING;

#[test]
fn sim_params_defaults_and_overrides() {
    assert_eq!(sim_params("", 1024, &[]), "state=1K,seed=1");
    assert_eq!(sim_params("", 1000, &[]), "state=1000,seed=1");
    assert_eq!(
        sim_params("state=1G,chunk=64K", 1024, &[("verify-seed", "1".into())]),
        "state=1G,chunk=64K,seed=1,verify-seed=1"
    );
    assert_eq!(
        sim_params("seed=7,verify-seed=3", 5, &[("verify-seed", "7".into())]),
        "seed=7,verify-seed=7,state=5"
    );
    assert_eq!(sim_seed("state=5,seed=0x10"), 16);
    assert_eq!(sim_seed("state=5"), 1);
}

#[test]
fn modes_parse() {
    assert_eq!("Live".parse::<Mode>().unwrap(), Mode::Live);
    assert!("fast".parse::<Mode>().is_err());
}

#[test]
fn sweep_is_powers_of_two() {
    let s = sweep_buffers(false);
    assert_eq!(s.first(), Some(&4096));
    assert_eq!(s.last(), Some(&(64 << 20)));
    assert!(s.iter().all(|b| b.is_power_of_two()));
    assert_eq!(
        sweep_buffers(true),
        vec![4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20]
    );
}

#[test]
fn rows_compute_ratio_and_rss_margin() {
    let r = make_row(RowInput {
        mode: "save",
        device: "sim",
        protocol: "v2".into(),
        buffer: 1 << 20,
        buffers_bytes: 4 << 20,
        bytes: 1 << 30,
        stream_bytes: None,
        seconds: vec![0.5, 0.25, 1.0],
        downtime: Some(vec![0.1, 0.3, 0.2]),
        peak: Some(10 << 20),
        scope: RssScope::Mode,
        cpu: Some(0.7),
        verified: true,
        memcpy: Some(2.0 * (1u64 << 30) as f64),
        sink: None,
    });
    assert_eq!(r.seconds, 0.5);
    assert_eq!((r.seconds_min, r.seconds_max, r.repeats), (0.25, 1.0, 3));
    assert_eq!(r.throughput_bytes_per_s, (2u64 << 30) as f64);
    assert_eq!(r.ratio_to_memcpy, Some(1.0));
    assert_eq!(r.downtime_s, Some(0.2));
    assert_eq!(r.rss_over_buffers_bytes, Some(6 << 20));
    assert_eq!(r.cpu_seconds, Some(0.7));
}

#[test]
fn svg_of_a_sweep_has_modes_and_memcpy() {
    let row = |mode: &str, b: u64, t: f64| {
        let mut r = make_row(RowInput {
            mode,
            device: "sim",
            protocol: "v2".into(),
            buffer: b,
            buffers_bytes: b,
            bytes: 100,
            stream_bytes: None,
            seconds: vec![1.0],
            downtime: None,
            peak: None,
            scope: RssScope::Process,
            cpu: None,
            verified: false,
            memcpy: None,
            sink: None,
        });
        r.throughput_bytes_per_s = t;
        r
    };
    let rep = BenchReport {
        schema_version: SCHEMA_VERSION,
        harness_version: "0".into(),
        machine: Machine::default(),
        kernel: Kernel::default(),
        settings: Settings {
            devices: vec!["sim".into()],
            state_bytes: 100,
            buffers: vec![4096, 8192],
            buffer_bytes: 4096,
            modes: vec![Mode::Save],
            repeat: 1,
            arc_repeat: 1,
            precopy_rounds: 0,
            quick: true,
            engine_ring: RING,
        },
        reference: Reference {
            memcpy_bytes_per_s: Some(3e9),
            memcpy_buffer_bytes: 4096,
            memcpy_region_bytes: 1 << 20,
            memcpy: vec![
                MemcpyPoint {
                    buffer_bytes: 4096,
                    bytes_per_s: 3e9,
                },
                MemcpyPoint {
                    buffer_bytes: 8192,
                    bytes_per_s: 3e9,
                },
            ],
        },
        results: vec![
            row("save", 4096, 1e9),
            row("save", 8192, 2e9),
            row("qemu-style-save", 1 << 20, 1e9),
        ],
        arcs: vec![],
        arcs_device: None,
        parallel: None,
        targets: vec![],
        notes: vec![],
        total_seconds: 1.0,
    };
    let svg = rep.to_svg();
    assert!(svg.contains(r#"data-name="save""#));
    assert!(svg.contains(r#"data-name="memcpy (1 thread)""#));
    // Single-point modes are not lines on a sweep chart.
    assert!(!svg.contains("qemu-style-save"));
    let table = rep.to_table();
    assert!(table.contains("qemu-style-save"));
    // JSON round trip keeps the documented field names.
    let j = serde_json::to_value(&rep).unwrap();
    assert!(j["reference"]["memcpy_bytes_per_s"].is_number());
    assert_eq!(j["results"][0]["mode"], "save");
    assert!(j["results"][0]["throughput_bytes_per_s"].is_number());
}
