//! The `compress` mode: what the stream's chunk encodings buy over a capped link. A
//! memory-backed simulated device saves into a link of rate `L` (`compress_link`, 1 GiB/s by
//! default) behind a socket-like send buffer ([`crate::bench::io::link`]), once without
//! compression and once with `auto`:
//! - **sparse** state (half of its pages zeros): the effective rate (device bytes per second)
//!   against the link rate: eliding the zeros puts half the bytes on the wire, so the device
//!   moves at up to twice the link rate (target: at least 1.8 x `L`);
//! - **random** state (nothing to elide or compress): `auto` against no compression (target:
//!   at most 3 % slower: the encoder's work is a sparse probe per chunk and one LZ4 attempt in
//!   up to 65 chunks).
//!
//! Rows: `op` `compress-save`, `path` `memory` (the capped link is in-process), `kind`
//! `harness`, `compression` `none` / `auto`; every row's first ratio is to the link rate, the
//! `auto` rows' second to the `none` row of the same content.

use super::{opts, run_block, save_into_fresh_sink, BlockId, Contender, Run};
use crate::bench::config::{DataPath, Kind, SIDE_STATE};
use crate::bench::devices::{driver, sim_memory, sim_params, size_param};
use crate::bench::error::BenchError;
use crate::bench::io::{capped_link, link::SEND_BUFFER};
use crate::bench::report::RatioTo;
use crate::bench::stats::{ratio, round4};
use crate::migration::engine::{self, RING};
use crate::migration::stream::Compression;
use crate::units::{format_bytes, format_rate};
use std::cell::RefCell;

/// The `op` of the rows.
pub(in crate::bench) const OP: &str = "compress-save";
/// The content of the sparse rows' device, and of the random rows'.
pub(in crate::bench) const SPARSE: &str = "50 % zero pages";
/// See [`SPARSE`].
pub(in crate::bench) const RANDOM: &str = "random";

/// Measures both contents (noted and skipped on kernel devices, whose content and rate are
/// what they are).
pub(in crate::bench) fn measure(run: &mut Run<'_>) -> Result<(), BenchError> {
    let cfg = run.cfg;
    cfg.check_cancel()?;
    run.progress
        .step("compress: capped link, sparse and random state");
    let Some(base) = run.devs.sim_base.clone() else {
        run.note("compress: needs the simulator (a kernel device's content is its own)".into());
        return Ok(());
    };
    if !Compression::Auto.available() {
        run.note("compress: skipped, this build has no LZ4 (feature `lz4`)".into());
        return Ok(());
    }
    let state = cfg.state.min(SIDE_STATE);
    let link = cfg.compress_link;
    for (content, zero) in [(SPARSE, "0.5"), (RANDOM, "0")] {
        let spec = sim_params(
            &base,
            state,
            &[
                ("state", size_param(state)),
                ("backing", "memory".into()),
                ("zero-pages", zero.into()),
                ("name", format!("sim-{}", content.replace([' ', '%'], ""))),
            ],
        );
        let mem = sim_memory(&spec, state);
        if !run.can_hold(mem, "compress") {
            return Ok(());
        }
        block(run, &spec, content, link, mem)?;
    }
    run.note(format!(
        "compress: {} state saved into a link of {} behind a {} send buffer: the effective \
         rate is device bytes per second, the stream bytes are what crossed the link",
        format_bytes(state),
        format_rate(link as f64),
        format_bytes(SEND_BUFFER)
    ));
    Ok(())
}

/// The `none` and `auto` rows of one content.
fn block(
    run: &mut Run<'_>,
    spec: &str,
    content: &str,
    link: u64,
    mem: u64,
) -> Result<(), BenchError> {
    let cfg = run.cfg;
    let dev = crate::open::open(&format!("sim:{spec}").parse()?, &cfg.open)?;
    let d = RefCell::new(driver(&dev)?);
    let b = cfg.buffer;
    let mut contenders = Vec::new();
    for mode in [Compression::None, Compression::Auto] {
        let o = engine::Options {
            compression: mode,
            ..opts(cfg, b)
        };
        let dr = &d;
        contenders.push(Contender {
            kind: Kind::Harness,
            buffer: b,
            buffers_bytes: RING as u64 * b,
            what: format!(
                "the engine's save, compression {mode}, {content} state, into a link of {} behind a {} send buffer",
                format_rate(link as f64),
                format_bytes(SEND_BUFFER)
            ),
            job: save_into_fresh_sink(dr, o, "compress", "capped link", move || {
                capped_link(link)
            }),
        });
    }
    let device = format!("sim:{spec}");
    let id = BlockId {
        op: OP,
        path: DataPath::Memory,
        device: &device,
        protocol: &run.protocol,
        device_memory: run.devs.memory_bytes() + mem,
    };
    let mut rows = run_block(cfg, &id, contenders, false, || Ok(()))?;
    // Run in the order given (none, then auto): label them and set their ratios.
    for (r, mode) in rows.iter_mut().zip([Compression::None, Compression::Auto]) {
        r.compression = Some(mode);
        r.content = Some(content.to_string());
        if let Some(wire) = r.stream_bytes {
            r.what = format!(
                "{}: {} on the wire for {} of state",
                r.what,
                format_bytes(wire),
                format_bytes(r.bytes)
            );
        }
    }
    let none = rows.first().map(|r| r.throughput_bytes_per_s);
    for r in rows.iter_mut() {
        let mut ratios = Vec::new();
        if let Some(x) = ratio(r.throughput_bytes_per_s, Some(link as f64)) {
            ratios.push(RatioTo {
                to: "link rate".into(),
                ratio: round4(x),
            });
        }
        if r.compression == Some(Compression::Auto) {
            if let Some(x) = ratio(r.throughput_bytes_per_s, none) {
                ratios.push(RatioTo {
                    to: "compression none".into(),
                    ratio: round4(x),
                });
            }
        }
        r.ratio = ratios.first().map(|x| x.ratio);
        r.ratio_to = ratios.first().map(|x| x.to.clone());
        r.ratios = ratios;
    }
    run.results.extend(rows);
    Ok(())
}
