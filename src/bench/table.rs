//! The human-readable report (a table), as printed without `--json`: the machine and what the
//! hash and copies use, then one block per operation and path with every ratio next to its
//! reference, then the parallel, overlap and downtime summaries, the arcs and the targets.

use super::config::Kind;
use super::report::{BenchReport, ResultRow};
use super::targets::block_name;
use crate::units::{format_bytes, format_rate, format_seconds};
use std::fmt::Write as _;

fn opt_secs(v: Option<f64>) -> String {
    v.map(format_seconds).unwrap_or_else(|| "-".into())
}

fn opt_bytes(v: Option<i64>) -> String {
    match v {
        Some(b) if b < 0 => format!("-{}", format_bytes(b.unsigned_abs())),
        Some(b) => format_bytes(b as u64),
        None => "-".into(),
    }
}

/// `0.97x raw, 1.10x qemu-style`.
fn ratios(r: &ResultRow) -> String {
    r.ratios
        .iter()
        .map(|x| format!("{:.2}x {}", x.ratio, x.to))
        .collect::<Vec<_>>()
        .join(", ")
}

impl BenchReport {
    fn header(&self, s: &mut String) {
        let m = &self.machine;
        let _ = writeln!(
            s,
            "machine: {} ({} cores{}), kernel {} {}",
            m.cpu_model,
            m.cores,
            m.memory_bytes
                .map(|b| format!(", {}", format_bytes(b)))
                .unwrap_or_default(),
            self.kernel.release,
            self.kernel.machine
        );
        let _ = writeln!(s, "cpu:     {}", m.cpu_features.join(" "));
        let _ = writeln!(s, "hash:    {}", m.hash);
        let _ = writeln!(s, "copies:  {}", m.copies);
        if !m.memory_reclaim.is_empty() {
            let _ = writeln!(s, "reclaim: {}", m.memory_reclaim.join(", "));
        }
        let _ = writeln!(s, "device:  {}", self.settings.devices.join(", "));
        let _ = writeln!(s, "files:   {}", self.settings.dir);
        let more = if self.settings.max_repeat > self.settings.repeat {
            format!(
                " (up to {} where a target was not settled)",
                self.settings.max_repeat
            )
        } else {
            String::new()
        };
        let warm = match self.settings.warmup {
            0 => String::new(),
            1 => ", after an untimed round of every loop".to_string(),
            w => format!(", after {w} untimed rounds of every loop"),
        };
        let _ = writeln!(
            s,
            "rows:    median of {} transfers{more}{warm}; RSS is the peak without the simulated \
             device memory",
            self.settings.repeat
        );
    }

    fn blocks(&self, s: &mut String) {
        let idx = |r: &ResultRow| r.kind.rank();
        let rows = &self.results;
        let mut i = 0;
        while i < rows.len() {
            let first = &rows[i];
            let mut j = i + 1;
            while j < rows.len()
                && rows[j].op == first.op
                && rows[j].path == first.path
                && rows[j].devices == first.devices
                && (idx(&rows[j]) > idx(&rows[j - 1])
                    || (rows[j].compression.is_some() && rows[j].content == rows[j - 1].content))
            {
                j += 1;
            }
            let block = &rows[i..j];
            let buffer = block
                .iter()
                .find(|r| r.kind == Kind::Harness)
                .unwrap_or(first)
                .buffer_bytes;
            let _ = writeln!(
                s,
                "\n{}, {} buffer{}{}",
                block_name(&first.op, first.path.as_str()),
                format_bytes(buffer),
                first
                    .devices
                    .map(|n| format!(", {n} device(s)"))
                    .unwrap_or_default(),
                first
                    .content
                    .as_deref()
                    .map(|c| format!(", {c} state"))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                s,
                "  {:<12} {:>11} {:>10} {:>10} {:>10} {:>10} {:>11}  ratios (to what)",
                "kind", "throughput", "bytes", "time", "cpu", "downtime", "RSS"
            );
            for r in block {
                let _ = writeln!(
                    s,
                    "  {:<12} {:>11} {:>10} {:>10} {:>10} {:>10} {:>11}  {}{}",
                    match r.compression {
                        Some(c) => format!("{} {c}", r.kind.as_str()),
                        None => r.kind.as_str().to_string(),
                    },
                    format_rate(r.throughput_bytes_per_s),
                    format_bytes(r.bytes),
                    format_seconds(r.seconds),
                    opt_secs(r.cpu_seconds),
                    opt_secs(r.downtime_s),
                    opt_bytes(r.data_path_rss_bytes),
                    ratios(r),
                    if r.verified { "  verified" } else { "" }
                );
                let _ = writeln!(s, "      {}", r.what);
            }
            i = j;
        }
    }

    fn summaries(&self, s: &mut String) {
        if let Some(p) = &self.parallel {
            let _ = writeln!(s, "\nparallel: {}", p.thread_budget);
            for x in &p.points {
                let _ = writeln!(
                    s,
                    "  {} device(s), {} thread(s): harness {} ({}x one device), raw {} ({}x)",
                    x.devices,
                    x.threads,
                    format_rate(x.aggregate_bytes_per_s),
                    x.scaling
                        .map(|v| format!("{v:.2}"))
                        .unwrap_or_else(|| "-".into()),
                    x.raw_aggregate_bytes_per_s
                        .map(format_rate)
                        .unwrap_or_else(|| "-".into()),
                    x.raw_scaling
                        .map(|v| format!("{v:.2}"))
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        if let Some(o) = &self.overlap {
            let _ = writeln!(
                s,
                "\noverlap: device D = {}, sink S = {}: harness {} = {} x min(D, S) {}; raw {} = {} x serial {}",
                format_rate(o.device_bytes_per_s),
                format_rate(o.sink_bytes_per_s),
                o.harness_bytes_per_s.map(format_rate).unwrap_or_else(|| "-".into()),
                o.harness_over_ideal.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
                format_rate(o.ideal_bytes_per_s),
                o.raw_bytes_per_s.map(format_rate).unwrap_or_else(|| "-".into()),
                o.raw_over_serial.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
                format_rate(o.serial_bytes_per_s),
            );
        }
        if let Some(d) = &self.downtime {
            let _ = writeln!(
                s,
                "\ndowntime sweep: {} state, up to {} pre-copy rounds, threshold {}; predicted = remaining / drain rate, engine = the switchover's own (STOP_COPY estimate / drain rate)",
                format_bytes(d.state_bytes),
                d.max_rounds,
                format_bytes(d.threshold_bytes)
            );
            let _ = writeln!(
                s,
                "  {:>11} {:>11} {:>7} {:>6} {:>10} {:>11} {:>10} {:>10} {:>10} {:>10}",
                "link",
                "dirty",
                "x/link",
                "rounds",
                "remaining",
                "drain",
                "predicted",
                "engine",
                "measured",
                "model"
            );
            for p in &d.points {
                let _ = writeln!(
                    s,
                    "  {:>11} {:>11} {:>7.2} {:>6} {:>10} {:>11} {:>10} {:>10} {:>10} {:>10}",
                    format_rate(p.link_bytes_per_s),
                    format_rate(p.dirty_bytes_per_s),
                    p.dirty_over_link,
                    p.rounds,
                    format_bytes(p.remaining_bytes),
                    p.drain_bytes_per_s
                        .map(format_rate)
                        .unwrap_or_else(|| "-".into()),
                    opt_secs(p.predicted_s),
                    opt_secs(p.engine_predicted_s),
                    format_seconds(p.measured_s),
                    opt_secs(p.model_s)
                );
            }
        }
    }

    fn arcs_and_targets(&self, s: &mut String) {
        if !self.arcs.is_empty() {
            let _ = writeln!(
                s,
                "\narc latency on {} (min / median / max):",
                self.arcs_device.as_deref().unwrap_or("?")
            );
            for a in &self.arcs {
                let name = format!("{} -> {}", a.from, a.to);
                match (&a.error, a.min_s, a.median_s, a.max_s) {
                    (None, Some(lo), Some(me), Some(hi)) => {
                        let _ = writeln!(
                            s,
                            "  {name:<30} {:>10} {:>10} {:>10}  ({} runs)",
                            format_seconds(lo),
                            format_seconds(me),
                            format_seconds(hi),
                            a.repeats
                        );
                    }
                    (e, ..) => {
                        let _ = writeln!(
                            s,
                            "  {name:<30} failed: {}",
                            e.as_deref().unwrap_or("no sample")
                        );
                    }
                }
            }
        }
        if !self.targets.is_empty() {
            let _ = writeln!(
                s,
                "\nproject targets (defined for a 4 GiB memory-backed state, main buffer):"
            );
            for t in &self.targets {
                // A verdict the repetitions' spread could turn says so, with the spread.
                let unsettled = match (t.settled, t.spread) {
                    (Some(false), Some([lo, hi])) => {
                        format!(" (within the repetitions' spread, {lo} to {hi})")
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    s,
                    "  {:<50} {:>8} ({} {})  {}{unsettled}",
                    t.name,
                    t.measured,
                    if t.comparison == "at_most" {
                        "<="
                    } else {
                        ">="
                    },
                    t.required,
                    if t.met { "met" } else { "MISSED" }
                );
            }
        }
    }

    /// The human-readable report.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        self.header(&mut s);
        self.blocks(&mut s);
        self.summaries(&mut s);
        self.arcs_and_targets(&mut s);
        if !self.notes.is_empty() {
            s.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(s, "\ntotal {}", format_seconds(self.total_seconds));
        s
    }
}
