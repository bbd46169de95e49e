//! Unit tests of the benchmark's pure parts: simulator specs, modes, sweeps, rows, and the
//! report's presentations.

use super::devices::sim_seed;
use super::machine::{Kernel, Machine};
use super::report::{self, make_row, RowInput};
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

fn row(op: &str, path: DataPath, kind: Kind, b: u64, secs: f64) -> ResultRow {
    row_timed(op, path, kind, b, &[secs])
}

/// A row timed at each of `secs`.
fn row_timed(op: &str, path: DataPath, kind: Kind, b: u64, secs: &[f64]) -> ResultRow {
    make_row(RowInput {
        op,
        path,
        kind,
        device: "sim",
        protocol: "v2",
        what: "test".into(),
        buffer: b,
        buffers_bytes: RING as u64 * b,
        bytes: 1 << 30,
        stream_bytes: None,
        seconds: secs.to_vec(),
        positions: Vec::new(),
        downtime: None,
        peak: Some((1 << 30) + (10 << 20)),
        scope: RssScope::Mode,
        device_memory: 1 << 30,
        cpu: None,
        verified: false,
    })
}

#[test]
fn a_late_whole_state_row_joins_its_block_and_its_ratios() {
    use DataPath::*;
    let m = 1 << 20;
    let block = |op: &str, path: DataPath, b: u64| {
        vec![
            row(op, path, Kind::Reference, b, 1.0),
            row(op, path, Kind::Raw, b, 2.0),
            row(op, path, Kind::QemuStyle, b, 4.0),
            row(op, path, Kind::Harness, b, 2.0),
        ]
    };
    // Two buffer sizes of save -> file (the main one second), then restore <- file.
    let mut results: Vec<ResultRow> = [
        block("save", File, 64 << 10),
        block("save", File, m),
        block("restore", File, m),
    ]
    .concat();
    for b in results.chunks_mut(4) {
        report::assign_ratios(b);
    }
    let whole = |op| row(op, File, Kind::WholeState, 1 << 30, 8.0);
    modes::insert_late(&mut results, m, vec![whole("save"), whole("restore")]);
    let kinds = |rows: &[ResultRow]| rows.iter().map(|r| r.kind).collect::<Vec<_>>();
    let full = [
        Kind::Reference,
        Kind::Raw,
        Kind::QemuStyle,
        Kind::WholeState,
        Kind::Harness,
    ];
    assert_eq!(results.len(), 14);
    assert_eq!(kinds(&results[..4]), kinds(&block("save", File, 64 << 10)));
    assert_eq!(
        results[3].buffer_bytes,
        64 << 10,
        "the other buffer's block is untouched"
    );
    assert_eq!(kinds(&results[4..9]), full);
    assert_eq!(results[4..9].iter().filter(|r| r.op == "save").count(), 5);
    assert_eq!(kinds(&results[9..]), full);
    assert_eq!(results[9..].iter().filter(|r| r.op == "restore").count(), 5);
    // The whole-state row's ratio is to its block's reference, and the harness's ratios
    // include it (4 times its rate: 2 s against 8 s).
    for b in [&results[4..9], &results[9..]] {
        assert_eq!(b[3].ratio_to.as_deref(), Some("reference"));
        assert_eq!(b[3].ratio, Some(0.125));
        let to_whole = b[4].ratios.iter().find(|r| r.to == "whole-state");
        assert_eq!(to_whole.map(|r| r.ratio), Some(4.0));
    }
    // With no block to join, the row is added at the end.
    modes::insert_late(&mut results, m, vec![whole("live")]);
    assert_eq!(results.len(), 15);
    assert_eq!(results[14].op, "live");
}

#[test]
fn rows_compute_throughput_and_memory() {
    let r = make_row(RowInput {
        op: "save",
        path: DataPath::File,
        kind: Kind::Harness,
        device: "sim",
        protocol: "v2",
        what: "w".into(),
        buffer: 1 << 20,
        buffers_bytes: 4 << 20,
        bytes: 1 << 30,
        stream_bytes: None,
        seconds: vec![0.5, 0.25, 1.0],
        positions: vec![1, 6, 9],
        downtime: Some(vec![0.1, 0.3, 0.2]),
        peak: Some((1 << 30) + (10 << 20)),
        scope: RssScope::Mode,
        device_memory: 1 << 30,
        cpu: Some(0.7),
        verified: true,
    });
    assert_eq!(r.seconds, 0.5);
    assert_eq!((r.seconds_min, r.seconds_max, r.repeats), (0.25, 1.0, 3));
    // Every transfer is listed in the order it ran, with its place in the block.
    let listed: Vec<(f64, usize)> = r.samples.iter().map(|s| (s.seconds, s.position)).collect();
    assert_eq!(listed, [(0.5, 1), (0.25, 6), (1.0, 9)]);
    assert_eq!(r.throughput_bytes_per_s, (2u64 << 30) as f64);
    assert_eq!(r.downtime_s, Some(0.2));
    // The simulated device memory is taken out before the buffers.
    assert_eq!(r.data_path_rss_bytes, Some(10 << 20));
    assert_eq!(r.rss_over_buffers_bytes, Some(6 << 20));
    assert_eq!(r.cpu_seconds, Some(0.7));
    assert_eq!((r.ratio, r.ratio_to.as_deref()), (None, None));
}

#[test]
fn every_ratio_names_its_reference() {
    let mut block = vec![
        row("save", DataPath::Pipe, Kind::Reference, 1 << 20, 0.25),
        row("save", DataPath::Pipe, Kind::Raw, 1 << 20, 0.5),
        row("save", DataPath::Pipe, Kind::QemuStyle, 1 << 20, 1.0),
        row("save", DataPath::Pipe, Kind::Harness, 1 << 20, 0.5),
    ];
    report::assign_ratios(&mut block);
    let h = &block[3];
    assert_eq!((h.ratio, h.ratio_to.as_deref()), (Some(1.0), Some("raw")));
    let tos: Vec<(&str, f64)> = h.ratios.iter().map(|r| (r.to.as_str(), r.ratio)).collect();
    assert_eq!(tos, [("raw", 1.0), ("qemu-style", 2.0), ("reference", 0.5)]);
    // The other loops against the path's reference; the reference against nothing.
    assert_eq!(
        (block[1].ratio, block[1].ratio_to.as_deref()),
        (Some(0.5), Some("reference"))
    );
    assert!(block[0].ratios.is_empty() && block[0].ratio.is_none());
    // Without a reference (a path that copies nothing), no ratio against one.
    let mut block = vec![
        row("save", DataPath::Memory, Kind::Raw, 1 << 20, 0.5),
        row("save", DataPath::Memory, Kind::Harness, 1 << 20, 0.5),
    ];
    report::assign_ratios(&mut block);
    assert!(block[0].ratio.is_none());
    assert_eq!(block[1].ratios.len(), 1);
    // Targets: harness / raw and / qemu-style per path, the RSS margin of the harness rows.
    let mut block = vec![
        row("save", DataPath::Pipe, Kind::Raw, 1 << 20, 0.5),
        row("save", DataPath::Pipe, Kind::QemuStyle, 1 << 20, 0.4),
        row("save", DataPath::Pipe, Kind::Harness, 1 << 20, 0.5),
    ];
    report::assign_ratios(&mut block);
    let t = targets::targets(&block, None);
    let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "save -> pipe: harness / raw",
            "save -> pipe: harness / qemu-style",
            "harness peak RSS above its buffers (MiB)"
        ]
    );
    assert_eq!(
        t.iter().map(|t| t.met).collect::<Vec<_>>(),
        [true, false, true]
    );
}

/// A row of `kind` in a `save -> file` block, timed at `secs`.
fn timed(kind: Kind, secs: &[f64]) -> ResultRow {
    row_timed("save", DataPath::File, kind, 1 << 20, secs)
}

#[test]
fn a_block_is_undecided_exactly_when_one_of_its_targets_would_not_be_settled() {
    // (harness, raw, QEMU-style) seconds; every loop moves 1 GiB.
    let cases: [(&[f64], &[f64], &[f64]); 7] = [
        // Met against both at both ends.
        (&[1.0, 1.0, 1.01], &[1.0, 1.0, 1.0], &[2.0, 2.0, 2.0]),
        // Met against raw at the median, not at the harness's slowest.
        (&[1.0, 1.0, 1.2], &[1.0, 1.0, 1.0], &[2.0, 2.0, 2.0]),
        // Missed against raw, but its fastest transfer reaches 0.95.
        (&[1.1, 1.1, 1.0], &[1.0, 1.0, 1.0], &[2.0, 2.0, 2.0]),
        // Missed against raw at both ends: settled.
        (&[2.0, 2.0, 2.02], &[1.0, 1.0, 1.01], &[4.0, 4.0, 4.0]),
        // Raw settled, QEMU-style open: the QEMU-style loop's fast transfer beats the
        // harness's slowest.
        (&[1.0, 1.0, 1.1], &[2.0, 2.0, 2.0], &[1.2, 1.0, 1.2]),
        // Five transfers, open against raw.
        (
            &[1.0, 1.0, 1.0, 0.9, 1.3],
            &[1.0, 1.0, 1.0, 1.0, 1.0],
            &[2.0; 5],
        ),
        // One transfer each: no spread, nothing to decide.
        (&[1.0], &[0.5], &[0.5]),
    ];
    let mut open_seen = 0;
    for (h, raw, q) in cases {
        let mut block = vec![
            timed(Kind::Raw, raw),
            timed(Kind::QemuStyle, q),
            timed(Kind::Harness, h),
        ];
        report::assign_ratios(&mut block);
        let open = targets::targets(&block, None)
            .iter()
            .any(|t| t.settled == Some(false));
        open_seen += usize::from(open);
        let kinds = [Kind::Raw, Kind::QemuStyle, Kind::Harness];
        let samples: Vec<Vec<(f64, u64)>> = [raw, q, h]
            .iter()
            .map(|s| s.iter().map(|&t| (t, 1 << 30)).collect())
            .collect();
        let samples: Vec<&[(f64, u64)]> = samples.iter().map(Vec::as_slice).collect();
        assert_eq!(
            targets::undecided("save", &kinds, &samples),
            open,
            "{h:?} {raw:?} {q:?}"
        );
        // Other modes' rows have no such targets.
        assert!(!targets::undecided("parallel-save", &kinds, &samples));
    }
    assert_eq!(open_seen, 4, "the cases cover open and settled verdicts");
}

#[test]
fn a_target_says_whether_the_repetitions_spread_could_turn_it() {
    let check = |harness: &[f64], raw: &[f64]| {
        let mut block = vec![timed(Kind::Raw, raw), timed(Kind::Harness, harness)];
        report::assign_ratios(&mut block);
        let t = targets::targets(&block, None);
        let t = t
            .into_iter()
            .find(|t| t.name == "save -> file: harness / raw");
        t.map(|t| (t.met, t.measured, t.spread, t.settled))
    };
    // Same medians, spreads across 0.95: met, but not settled. The low end is the harness's
    // slowest (1.1 s) against the raw loop's fastest (0.95 s), the high end the other way.
    assert_eq!(
        check(&[0.9, 1.0, 1.1], &[0.95, 1.0, 1.05]),
        Some((true, 1.0, Some([0.8636, 1.167]), Some(false)))
    );
    // Twice as fast at every repetition: met at both ends.
    assert_eq!(
        check(&[0.5, 0.5, 0.51], &[1.0, 1.0, 1.01]),
        Some((true, 2.0, Some([1.961, 2.02]), Some(true)))
    );
    // Half as fast at every repetition: missed at both ends, settled.
    assert_eq!(
        check(&[2.0, 2.0, 2.02], &[1.0, 1.0, 1.01]),
        Some((false, 0.5, Some([0.495, 0.505]), Some(true)))
    );
    // Missed, but the spread reaches 0.95: not settled.
    let (met, _, _, settled) = check(&[1.0, 1.1, 1.2], &[0.9, 1.0, 1.1]).unwrap();
    assert_eq!((met, settled), (false, Some(false)));
    // One repetition shows no spread.
    assert_eq!(check(&[1.0], &[1.0]), Some((true, 1.0, None, None)));
    // The reference is the one of the harness's own block, whatever its buffer: QEMU's
    // restore writes 32 KiB; in a sweep each buffer size has a block of its own.
    let block = |b: u64, raw: &[f64]| {
        let mut rows = vec![
            row_timed("restore", DataPath::Tcp, Kind::Raw, b, raw),
            row_timed(
                "restore",
                DataPath::Tcp,
                Kind::QemuStyle,
                32 << 10,
                &[2.0, 2.2],
            ),
            row_timed("restore", DataPath::Tcp, Kind::Harness, b, &[1.0, 1.1]),
        ];
        report::assign_ratios(&mut rows);
        rows
    };
    let mut sweep = block(4 << 10, &[4.0, 4.8]);
    sweep.extend(block(1 << 20, &[1.0, 1.1]));
    let spreads: Vec<_> = targets::targets(&sweep, None)
        .into_iter()
        .filter(|t| t.name.starts_with("restore"))
        .map(|t| (t.name, t.spread))
        .collect();
    assert_eq!(
        spreads,
        [
            ("restore <- tcp: harness / raw".into(), Some([3.636, 4.799])),
            (
                "restore <- tcp: harness / qemu-style".into(),
                Some([1.818, 2.2])
            ),
            ("restore <- tcp: harness / raw".into(), Some([0.9091, 1.1])),
            (
                "restore <- tcp: harness / qemu-style".into(),
                Some([1.818, 2.2])
            ),
        ]
    );
    // The table says which verdicts the spread could turn, and only those.
    let mut block = vec![
        timed(Kind::Raw, &[0.95, 1.0, 1.05]),
        timed(Kind::Harness, &[0.9, 1.0, 1.1]),
    ];
    report::assign_ratios(&mut block);
    let targets = targets::targets(&block, None);
    let mut report = report_of(block);
    report.targets = targets;
    let table = report.to_table();
    let line = |name: &str| table.lines().find(|l| l.contains(name)).map(str::to_string);
    assert!(
        line("save -> file: harness / raw").is_some_and(|l| l
            .trim_end()
            .ends_with("1 (>= 0.95)  met (within the repetitions' spread, 0.8636 to 1.167)")),
        "{table}"
    );
    assert!(line("peak RSS").is_some_and(|l| !l.contains("spread")));
}

fn report_of(results: Vec<ResultRow>) -> BenchReport {
    BenchReport {
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
            paths: vec![DataPath::Memory],
            dir: "/tmp".into(),
            repeat: 1,
            max_repeat: 1,
            warmup: 0,
            arc_repeat: 1,
            precopy_rounds: 0,
            quick: true,
            engine_ring: RING,
            engine_overlap: true,
            engine_max_poll_us: 5000,
            engine_direct_io: true,
            zero_page_fraction: Some(0.5),
            backing: Some("memory".into()),
        },
        results,
        arcs: vec![],
        arcs_device: None,
        parallel: None,
        overlap: None,
        downtime: Some(DowntimeReport {
            state_bytes: 1 << 20,
            max_rounds: 3,
            threshold_bytes: 4096,
            points: vec![DowntimePoint {
                link_bytes_per_s: 1e9,
                dirty_bytes_per_s: 5e8,
                dirty_over_link: 0.5,
                rounds: 3,
                converged: false,
                remaining_bytes: 1 << 17,
                drain_bytes_per_s: Some(1e9),
                predicted_s: Some(1.3e-4),
                engine_predicted_s: Some(1.2e-4),
                measured_s: 1.5e-4,
                model_s: Some(1.3e-4),
                stopcopy_bytes: 1 << 17,
            }],
        }),
        targets: vec![],
        notes: vec!["a note".into()],
        total_seconds: 1.0,
    }
}

#[test]
fn svg_table_and_json_of_a_sweep() {
    let rep = report_of(vec![
        row("save", DataPath::Memory, Kind::Reference, 4096, 0.1),
        row("save", DataPath::Memory, Kind::Raw, 4096, 0.2),
        row("save", DataPath::Memory, Kind::Harness, 4096, 0.2),
        row("save", DataPath::Memory, Kind::Reference, 8192, 0.1),
        row("save", DataPath::Memory, Kind::Raw, 8192, 0.2),
        row("save", DataPath::Memory, Kind::QemuStyle, 1 << 20, 0.3),
        row("save", DataPath::Memory, Kind::Harness, 8192, 0.2),
    ]);
    let svg = rep.to_svg();
    assert!(
        svg.contains(r#"data-name="save -&gt; memory harness""#),
        "{svg}"
    );
    assert!(svg.contains(r#"data-name="save -&gt; memory reference""#));
    // Single-point rows are not lines on a sweep chart.
    assert!(!svg.contains("qemu-style"));
    let table = rep.to_table();
    assert!(table.contains("qemu-style"));
    assert_eq!(table.matches("save -> memory,").count(), 2, "{table}");
    assert!(table.contains("note: a note"));
    assert!(table.contains("downtime sweep"));
    let d = rep.to_downtime_svg();
    assert!(d.contains("measured, link") && d.contains("predicted, link"));
    // JSON keeps the documented field names.
    let j = serde_json::to_value(&rep).unwrap();
    assert_eq!(j["schema_version"], 2);
    let r = &j["results"][2];
    assert_eq!(
        (r["op"].as_str(), r["path"].as_str(), r["kind"].as_str()),
        (Some("save"), Some("memory"), Some("harness"))
    );
    for f in [
        "throughput_bytes_per_s",
        "peak_rss_bytes",
        "ratio",
        "ratio_to",
        "ratios",
        "device_memory_bytes",
        "rss_over_buffers_bytes",
    ] {
        assert!(r.get(f).is_some(), "missing {f}");
    }
    assert!(j["machine"]["cpu_features"].is_array());
    assert!(j["downtime"]["points"][0]["predicted_s"].is_number());
    let back: BenchReport = serde_json::from_value(j).unwrap();
    assert_eq!(back, rep);
}

#[test]
fn paths_and_kinds_parse_and_print() {
    for p in DataPath::ALL {
        assert_eq!(p.as_str().parse::<DataPath>().unwrap(), p);
        assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
    }
    for k in Kind::ALL {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
    assert!("disk".parse::<DataPath>().is_err());
    assert_eq!("downtime".parse::<Mode>().unwrap(), Mode::Downtime);
}

#[test]
fn quick_run_on_the_simulator_has_every_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = BenchConfig::new(true);
    cfg.state = 256 << 10;
    cfg.buffers = vec![64 << 10];
    cfg.buffer = 64 << 10;
    cfg.dir = Some(dir.path().to_path_buf());
    cfg.parallel_devices = vec![2];
    cfg.arc_repeat = 1;
    cfg.overlap_rates = (1 << 30, 1 << 30);
    cfg.sweep_links = vec![1 << 30];
    cfg.sweep_dirty = vec![0.0, 1.0];
    let (steps, total) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let labels = std::cell::RefCell::new(Vec::new());
    let rep = run(&cfg, &|s| {
        assert_eq!(s.done, steps.get(), "{}", s.label);
        steps.set(steps.get() + 1);
        total.set(s.total);
        labels.borrow_mut().push(s.label.to_string());
    })
    .unwrap();
    assert_eq!(
        steps.get(),
        total.get(),
        "the steps planned are the steps run"
    );
    // The whole-state loops ran after everything else (save, restore and live blocks)...
    let labels = labels.into_inner();
    let late = |l: &String| l.ends_with(", whole-state");
    let first = labels.iter().position(late).expect("a whole-state step");
    assert!(labels[first..].iter().all(late), "{labels:?}");
    assert_eq!(labels.len() - first, 6 + 4 + 2, "{labels:?}");
    // ... and each row joined its block, right before the harness.
    for w in rep.results.windows(2) {
        if w[1].kind == Kind::Harness && matches!(w[1].op.as_str(), "save" | "restore" | "live") {
            assert_eq!(
                w[0].kind,
                Kind::WholeState,
                "{} {}",
                w[1].op,
                w[1].path.as_str()
            );
            assert_eq!((&w[0].op, w[0].path), (&w[1].op, w[1].path));
        }
    }
    let has = |op: &str, path: &str, kind: Kind| {
        rep.results
            .iter()
            .any(|r| r.op == op && r.path.as_str() == path && r.kind == kind)
    };
    let direct = !rep.notes.iter().any(|n| n.contains("O_DIRECT"));
    for path in ["memory", "file", "file-fsync", "file-direct", "pipe", "tcp"] {
        if path == "file-direct" && !direct {
            continue;
        }
        for kind in Kind::ALL {
            assert!(
                has("save", path, kind),
                "save {path} {kind:?}\n{}",
                rep.to_table()
            );
            if !matches!(path, "memory" | "file-fsync") {
                assert!(has("restore", path, kind), "restore {path} {kind:?}");
            }
            if matches!(path, "memory" | "tcp") {
                assert!(has("live", path, kind), "live {path} {kind:?}");
            }
        }
    }
    // Every device-moving row moved the whole state, and restores and live were checked.
    let raw = rep
        .results
        .iter()
        .find(|r| r.op == "save" && r.kind == Kind::Raw)
        .unwrap()
        .bytes;
    for r in rep.results.iter().filter(|r| {
        matches!(r.op.as_str(), "save" | "restore" | "live") && r.kind != Kind::Reference
    }) {
        assert_eq!(r.bytes, raw, "{} {} {:?}", r.op, r.path.as_str(), r.kind);
        assert!(
            r.ratio_to.is_some(),
            "{} {} {:?} has no ratio",
            r.op,
            r.path.as_str(),
            r.kind
        );
        if r.op != "save" {
            assert!(r.verified);
        }
    }
    // Every transfer of a block is listed with its place in the block: the loops of the main
    // pass ran one after the other (positions 0 to n - 1, one transfer each with --quick),
    // the whole-state loop first in its own pass.
    let blocks: std::collections::BTreeSet<(String, &str)> = rep
        .results
        .iter()
        .filter(|r| matches!(r.op.as_str(), "save" | "restore" | "live"))
        .map(|r| (r.op.clone(), r.path.as_str()))
        .collect();
    for (op, path) in &blocks {
        let rows: Vec<&ResultRow> = rep
            .results
            .iter()
            .filter(|r| &r.op == op && r.path.as_str() == *path)
            .collect();
        let mut main = Vec::new();
        for r in &rows {
            assert_eq!(r.samples.len(), r.repeats, "{op} {path} {:?}", r.kind);
            assert_eq!(r.samples[0].seconds, r.seconds, "{op} {path} {:?}", r.kind);
            if r.kind == Kind::WholeState {
                assert_eq!(r.samples[0].position, 0, "{op} {path}");
            } else {
                main.push(r.samples[0].position);
            }
        }
        main.sort_unstable();
        assert_eq!(main, (0..main.len()).collect::<Vec<_>>(), "{op} {path}");
    }
    let p = rep.parallel.as_ref().unwrap();
    assert_eq!(
        p.points.iter().map(|x| x.devices).collect::<Vec<_>>(),
        [1, 2]
    );
    let o = rep.overlap.as_ref().unwrap();
    assert!(o.harness_bytes_per_s.is_some() && o.raw_bytes_per_s.is_some());
    assert_eq!(rep.downtime.as_ref().unwrap().points.len(), 2);
    // Compression over the capped link: none and auto for sparse and random state; auto
    // puts less of the sparse state on the wire, and names its references.
    let compress: Vec<_> = rep
        .results
        .iter()
        .filter(|r| r.op == "compress-save")
        .collect();
    if crate::migration::stream::Compression::Auto.available() {
        assert_eq!(compress.len(), 4, "{}", rep.to_table());
        for r in &compress {
            assert_eq!(r.ratio_to.as_deref(), Some("link rate"));
            assert!(r.compression.is_some() && r.content.is_some());
        }
        let sparse_auto = compress
            .iter()
            .find(|r| {
                r.compression == Some(crate::migration::stream::Compression::Auto)
                    && r.content.as_deref() == Some("50 % zero pages")
            })
            .unwrap();
        assert!(sparse_auto.stream_bytes.unwrap() < sparse_auto.bytes * 6 / 10);
        assert!(sparse_auto
            .ratios
            .iter()
            .any(|x| x.to == "compression none"));
    }
    assert!(!rep.arcs.is_empty());
    assert_eq!(rep.settings.backing.as_deref(), Some("memory"));
    assert!(rep.targets.is_empty(), "no targets on --quick");
    // The files are gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A simulated device whose STOP_COPY size estimate cannot be read.
struct NoEstimate(Box<dyn crate::migration::MigrationDriver>);

impl crate::migration::MigrationDriver for NoEstimate {
    fn protocol(&self) -> crate::migration::Protocol {
        self.0.protocol()
    }
    fn device(&self) -> &crate::device::DeviceHandle {
        self.0.device()
    }
    fn flags(&self) -> crate::device::MigFlags {
        self.0.flags()
    }
    fn set_state(&mut self, state: crate::device::MigState) -> crate::migration::Result<()> {
        self.0.set_state(state)
    }
    fn state(&mut self) -> crate::migration::Result<crate::device::MigState> {
        self.0.state()
    }
    fn read(&mut self, buf: &mut [u8]) -> crate::migration::Result<usize> {
        self.0.read(buf)
    }
    fn write(&mut self, buf: &[u8]) -> crate::migration::Result<usize> {
        self.0.write(buf)
    }
    fn pending(&mut self) -> crate::migration::Result<crate::migration::Pending> {
        self.0.pending()
    }
    fn stop_copy_size(&mut self) -> crate::migration::Result<Option<u64>> {
        Err(crate::migration::MigrationError::Protocol {
            device: "no-estimate".into(),
            what: "the estimate broke".into(),
        })
    }
}

#[test]
fn a_block_sizes_its_references_by_the_estimate_and_notes_when_it_cannot_be_read() {
    let cfg = BenchConfig::new(true);
    let mut notes = Vec::new();
    let devs = devices::open(&cfg, &mut notes).unwrap();
    let dev = devs.primary.clone();
    let report = |_: &Step<'_>| {};
    let progress = progress::Progress::new(&cfg, &devs, &report).unwrap();
    let mut run = modes::Run::new(&cfg, devs, "v2".into(), progress, notes);
    let sim = || crate::migration::driver_for(dev.clone()).unwrap();
    let before = run.notes.len();

    let mut d = sim();
    let estimate = d.stop_copy_size().unwrap().unwrap();
    assert_ne!(
        estimate, cfg.state,
        "the stream's framing is in the estimate"
    );
    assert_eq!(run.state_of(d.as_mut(), "save -> file"), estimate);
    assert_eq!(
        run.notes.len(),
        before,
        "an estimate read is nothing to note"
    );

    let mut broken = NoEstimate(sim());
    assert_eq!(run.state_of(&mut broken, "save -> file"), cfg.state);
    let note = run.notes.last().unwrap();
    assert!(
        note.starts_with("save -> file: the device's STOP_COPY size could not be read")
            && note.contains("the estimate broke"),
        "{note}"
    );
}
