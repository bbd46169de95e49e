//! The human-readable report (a table), as printed without `--json`.

use super::report::BenchReport;
use crate::units::{format_bytes, format_rate, format_seconds};
use std::fmt::Write as _;

impl BenchReport {
    /// The human-readable report.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
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
        let _ = writeln!(s, "device:  {}", self.settings.devices.join(", "));
        if let Some(r) = self.reference.memcpy_bytes_per_s {
            let _ = writeln!(
                s,
                "memcpy:  {} ({} copies between two {} regions, one thread)",
                format_rate(r),
                format_bytes(self.reference.memcpy_buffer_bytes),
                format_bytes(self.reference.memcpy_region_bytes)
            );
        }
        if !self.results.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{:<20} {:>9} {:>10} {:>11} {:>8} {:>10} {:>10} {:>10} {:>10}",
                "mode",
                "buffer",
                "bytes",
                "throughput",
                "/memcpy",
                "time",
                "cpu",
                "downtime",
                "peak RSS"
            );
            for r in &self.results {
                let extra = match (r.devices, r.scaling, &self.parallel) {
                    (Some(n), Some(x), Some(p)) => {
                        let threads = if p.overlap {
                            "two threads each"
                        } else {
                            "one thread each"
                        };
                        let save = p
                            .over_save_row
                            .map(|v| format!(", {v:.2}x the save row"))
                            .unwrap_or_default();
                        format!(
                            "  {n} devices on {} cores, {threads}: {x:.2}x one device alone{save}",
                            p.cores
                        )
                    }
                    (Some(n), Some(x), None) => format!("  {n} devices, {x:.2}x one device"),
                    _ => String::new(),
                };
                let _ = writeln!(
                    s,
                    "{:<20} {:>9} {:>10} {:>11} {:>8} {:>10} {:>10} {:>10} {:>10}{}{}",
                    r.mode,
                    format_bytes(r.buffer_bytes),
                    format_bytes(r.bytes),
                    format_rate(r.throughput_bytes_per_s),
                    r.ratio_to_memcpy
                        .map(|x| format!("{x:.2}x"))
                        .unwrap_or_else(|| "-".into()),
                    format_seconds(r.seconds),
                    r.cpu_seconds
                        .map(format_seconds)
                        .unwrap_or_else(|| "-".into()),
                    r.downtime_s
                        .map(format_seconds)
                        .unwrap_or_else(|| "-".into()),
                    r.peak_rss_bytes
                        .map(format_bytes)
                        .unwrap_or_else(|| "-".into()),
                    if r.verified { "  verified" } else { "" },
                    extra
                );
            }
        }
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
                "\nproject targets (defined for a 1 GiB simulated state, main buffer):"
            );
            for t in &self.targets {
                let _ = writeln!(
                    s,
                    "  {:<45} {:>8} ({} {})  {}",
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
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(s, "\ntotal {}", format_seconds(self.total_seconds));
        s
    }
}
