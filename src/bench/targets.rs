//! The project's targets, checked against a run's figures (defined for a 4 GiB memory-backed
//! state; not judged with `--quick`, whose tiny states measure fixed costs):
//! - on every path, the harness at least 0.95x the raw loop of that path, and at least the
//!   QEMU-style loop;
//! - with the device capped at `D` and the sink at `S`, the harness at least 0.9 x `min(D, S)`;
//! - the harness's peak RSS at most its buffers + 16 MiB (the simulated device memory taken
//!   out), at any state size;
//! - over a capped link (`compress` mode), with `auto` compression: a state with 50 % zero
//!   pages moves at least 1.8 x the link rate, and random state at least 0.97 x the rate
//!   without compression (no more than 3 % slower).

use super::config::Kind;
use super::report::{block_start, OverlapReport, ResultRow, Target};
use super::rss::RssScope;
use super::stats::{round4, Summary};

/// The targets of every `save`, `restore` and `live` block: the harness's throughput over
/// that of the loop of this kind, at least this much.
const TRANSFER: [(Kind, f64); 2] = [(Kind::Raw, 0.95), (Kind::QemuStyle, 1.0)];

/// Whether the transfers timed so far in one block of `op` leave one of its targets open:
/// the harness's throughput over another loop's, from their median times, is on one side of
/// the required ratio, and the spread of their repetitions (the harness's slowest transfer
/// against the other's fastest, its fastest against the other's slowest; as `targets`
/// reports it) reaches the other side. `kinds[j]` is the loop whose transfers are
/// `samples[j]`, `(seconds, bytes moved)` each. False for other operations, and for loops
/// timed fewer than twice.
pub(super) fn undecided(op: &str, kinds: &[Kind], samples: &[&[(f64, u64)]]) -> bool {
    if !matches!(op, "save" | "restore" | "live") {
        return false;
    }
    // Throughput at the median transfer, and the extremes around it.
    let rates = |k: Kind| {
        let j = kinds.iter().position(|&x| x == k)?;
        let s = samples.get(j)?;
        let seconds: Vec<f64> = s.iter().map(|x| x.0).collect();
        let sum = Summary::of(&seconds)?;
        let bytes = s.last()?.1 as f64;
        let ext = extremes(sum.median, sum.min, sum.max, sum.count)?;
        Some((bytes / sum.median, ext))
    };
    let Some((harness, h_ext)) = rates(Kind::Harness) else {
        return false;
    };
    TRANSFER.iter().any(|&(kind, required)| {
        rates(kind).is_some_and(|(other, o_ext)| {
            let ratio = harness / other;
            let holds = |x: f64| x >= required;
            !settled(holds, holds(ratio), ends(ratio, h_ext, o_ext))
        })
    })
}

/// How a block is named in the targets and the table: `save -> file`, `restore <- pipe`,
/// `live over tcp`.
pub fn block_name(op: &str, path: &str) -> String {
    match op {
        "save" => format!("save -> {path}"),
        "restore" => format!("restore <- {path}"),
        "live" => format!("live over {path}"),
        other => format!("{other} ({path})"),
    }
}

/// The targets this run has figures for.
pub(super) fn targets(results: &[ResultRow], overlap: Option<&OverlapReport>) -> Vec<Target> {
    let mut t = Vec::new();
    let mut check = |name: String, measured: f64, required: f64, at_least: bool, spread| {
        let holds = |x: f64| {
            if at_least {
                x >= required
            } else {
                x <= required
            }
        };
        let met = holds(measured);
        t.push(Target {
            name,
            measured: round4(measured),
            required,
            comparison: if at_least { "at_least" } else { "at_most" }.into(),
            met,
            spread,
            settled: spread.map(|ends| settled(holds, met, ends)),
        })
    };
    let is_transfer = |r: &ResultRow| {
        r.kind == Kind::Harness && matches!(r.op.as_str(), "save" | "restore" | "live")
    };
    for (h, r) in results.iter().enumerate().filter(|(_, r)| is_transfer(r)) {
        let block = block_name(&r.op, r.path.as_str());
        for (kind, required) in TRANSFER {
            let to = kind.as_str();
            if let Some(x) = r.ratios.iter().find(|x| x.to == to) {
                // The reference of the harness's own block (a sweep lists one per buffer).
                let reference = results[block_start(results, h)..h]
                    .iter()
                    .find(|o| o.kind.as_str() == to);
                let spread = reference.and_then(|o| spread(x.ratio, r, Some(o)));
                check(
                    format!("{block}: harness / {to}"),
                    x.ratio,
                    required,
                    true,
                    spread,
                );
            }
        }
    }
    if let Some(h) = overlap.and_then(|o| o.harness_over_ideal) {
        check("overlap: harness / min(D, S)".into(), h, 0.9, true, None);
    }
    for r in results.iter().filter(|r| r.op == "compress-save") {
        if r.compression != Some(crate::migration::stream::Compression::Auto) {
            continue;
        }
        let content = r.content.as_deref().unwrap_or("");
        let (to, required) = if content == crate::bench::modes::compress::SPARSE {
            ("link rate", 1.8)
        } else {
            ("compression none", 0.97)
        };
        if let Some(x) = r.ratios.iter().find(|x| x.to == to) {
            let spread = match to {
                "link rate" => spread(x.ratio, r, None),
                _ => results
                    .iter()
                    .find(|o| {
                        o.op == r.op
                            && o.content == r.content
                            && o.compression == Some(crate::migration::stream::Compression::None)
                    })
                    .and_then(|o| spread(x.ratio, r, Some(o))),
            };
            check(
                format!("compress auto, {content} state: effective rate / {to}"),
                x.ratio,
                required,
                true,
                spread,
            );
        }
    }
    let worst = results
        .iter()
        .filter(|r| is_transfer(r))
        .filter(|r| r.rss_scope == RssScope::Mode)
        .filter_map(|r| r.rss_over_buffers_bytes)
        .max();
    if let Some(w) = worst {
        check(
            "harness peak RSS above its buffers (MiB)".into(),
            w as f64 / (1 << 20) as f64,
            16.0,
            false,
            None,
        );
    }
    t
}

/// `ratio`, the throughput of `row` over that of `reference` (or over a fixed rate when
/// `None`) from their median times, at the two ends of the repetitions' spread: `row`'s
/// slowest transfer against the reference's fastest, and its fastest against the reference's
/// slowest. `None` when a row was timed fewer than twice (one transfer shows no spread).
fn spread(ratio: f64, row: &ResultRow, reference: Option<&ResultRow>) -> Option<[f64; 2]> {
    let of = |r: &ResultRow| extremes(r.seconds, r.seconds_min, r.seconds_max, r.repeats);
    let reference = match reference {
        Some(o) => of(o)?,
        None => (1.0, 1.0),
    };
    Some(ends(ratio, of(row)?, reference))
}

/// A row's throughput at its slowest and fastest transfers over its median throughput, from
/// its `median`, `min` and `max` seconds (every transfer of a row moves the same bytes);
/// `None` for fewer than 2 transfers or times too short to measure.
fn extremes(median: f64, min: f64, max: f64, repeats: usize) -> Option<(f64, f64)> {
    (repeats >= 2 && min > 0.0 && max > 0.0).then(|| (median / max, median / min))
}

/// `ratio` at the two ends of the spread, from the [`extremes`] of its row and of its
/// reference: the row's slowest transfer against the reference's fastest, its fastest
/// against the reference's slowest.
fn ends(ratio: f64, (slow, fast): (f64, f64), (ref_slow, ref_fast): (f64, f64)) -> [f64; 2] {
    [
        round4(ratio * slow / ref_fast),
        round4(ratio * fast / ref_slow),
    ]
}

/// Whether the verdict `met` (of `holds` at the median) holds at both `ends` of the spread.
fn settled(holds: impl Fn(f64) -> bool, met: bool, [lo, hi]: [f64; 2]) -> bool {
    holds(lo) == met && holds(hi) == met
}
