//! `vfio-harness migrate SRC DST`: live-migrate device state from SRC into DST in this
//! process, measuring downtime (SRC leaving RUNNING until DST is RUNNING). With DST an
//! address (`tls://HOST:PORT`, or `tcp://HOST:PORT` with `--insecure`) the state goes to
//! `vfio-harness receive` on another host: see `remote.rs` and `docs/transport.md`.
//!
//! JSON output (`--json`): the engine's `MigrateReport` — `source`, `destination`,
//! `protocol`, `bytes`, `precopy_bytes`, `stopcopy_bytes`, `chunks`, `rounds`, `converged`,
//! `precopy_end` (`not-run`, `converged`, `within-downtime`, `not-converging`, `round-limit`,
//! `capped`), `predicted_downtime_seconds` (next to the measured `downtime_seconds`),
//! `seconds`, `precopy_seconds`, `stop_copy_seconds`, `commit_seconds`, `downtime_seconds`,
//! `throughput_bytes_per_s`, `precopy_rounds` (per round: `round`, `pending_before` and
//! `pending_after` {`initial_bytes`, `dirty_bytes`}, `bytes`, `seconds`); with
//! `--dirty-writer` also `dirty_writer` (`region`, `offset`, `len`, `rate`, `pages_written`,
//! `bytes_dirtied`, `passes`, `seconds`, `achieved_rate`); for mdev pairs `dynamic_resources`
//! (per resource: `resource`, `attribute`, `source`, `destination_before`,
//! `destination_after`, `action` = `equal` / `copied` / `differs` / `unknown`, `note`).

use std::process::ExitCode;

use vfio_harness::migration::attrs::{self as dyn_attrs, Policy, ResourceCopy};
use vfio_harness::migration::compat;
use vfio_harness::migration::engine::{self, Options, MAX_PRECOPY_ROUNDS};
use vfio_harness::migration::stream::Compression;
use vfio_harness::migration::workload::{DirtyWriterSpec, DirtyingDriver, WriterStats};
use vfio_harness::migration::MigrationDriver;
use vfio_harness::sysfs::SysfsRoot;
use vfio_harness::units::{format_bytes, format_rate, format_seconds};
use vfio_harness::DeviceSpec;

use super::remote::{self, Destination, TransportArgs};
use super::signals::install_interrupt_handler;
use super::transfer::{
    finish_error, open_drivers, precopy_summary, predicted_suffix, print_json, Bar, CopyArgs,
    Polling, Threads,
};
use super::Global;

/// Arguments of `migrate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device whose state is migrated.
    pub src: DeviceSpec,
    /// The device receiving it, or the address of `vfio-harness receive` on another host
    /// (`tls://HOST:PORT`; `tcp://HOST:PORT` with --insecure).
    pub dst: Destination,
    /// More source devices migrated with SRC to the same address, each in its own stream,
    /// in parallel (the receiver lists as many devices, in the same order), P2P-quiesced
    /// together: every device needs the P2P states.
    #[arg(long = "with", value_name = "SRC")]
    pub with: Vec<DeviceSpec>,
    /// Transport security and timeouts (for an address).
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Maximum pre-copy rounds while SRC runs (when it supports PRE_COPY; 0 = none; at
    /// most 100).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_PRECOPY_ROUNDS)))]
    pub precopy_rounds: u32,
    /// Pre-copy end, switchover, buffer size, progress lines.
    #[command(flatten)]
    pub copy: CopyArgs,
    /// How the state stream's chunks are encoded on the way to an address: `none`, `zero`
    /// (zero runs elided), `lz4`, `auto` (LZ4 only where it pays); see `save --compress`.
    /// The receiver needs no option. (A migration between two devices here has no stream.)
    #[arg(long, default_value = "none", value_name = "none|zero|lz4|auto")]
    pub compress: Compression,
    /// Skip the compatibility checks (the `compat` pre-check and the identity check).
    #[arg(long)]
    pub force: bool,
    /// Run a writer on SRC while it is RUNNING / PRE_COPY: a thread rewriting one word per
    /// 4 KiB page of REGION's mmap (optionally only OFFSET:LEN of it) at RATE dirtied
    /// bytes per second, stopped before SRC leaves PRE_COPY. K/M/G suffixes
    /// (`BAR2:32M`, `BAR2:16M:0:256M`).
    #[arg(long, value_name = "REGION:RATE[:OFFSET:LEN]")]
    pub dirty_writer: Option<DirtyWriterSpec>,
    /// Do not copy the type's `dynamic_resources` attributes to DST before opening it;
    /// refuse when they differ (with --force: leave them to the device). In process only:
    /// across hosts, pass it to `receive`.
    #[arg(long)]
    pub no_copy_attrs: bool,
    #[command(flatten)]
    pub threads: Threads,
    #[command(flatten)]
    pub polling: Polling,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The compatibility gate run before migrating unless `--force`: the `compat` pre-check
/// (device_api, type, software_version, compatible_* lists, dynamic resources,
/// migration_version write test). A failed rule refuses; unknown rules (attributes the
/// driver does not expose) do not block, as in `compat` without `--strict`.
fn compat_gate(
    src: &dyn MigrationDriver,
    dst: &dyn MigrationDriver,
    global: &Global,
) -> anyhow::Result<()> {
    let root = SysfsRoot::from_option(global.open_options().sysfs_root.as_deref());
    compat::check(src.device(), dst.device(), true, &root)
        .ensure_compatible()
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}; run `vfio-harness compat` for the full report, or --force to migrate anyway"
            )
        })
}

#[derive(serde::Serialize)]
struct Out<'a> {
    #[serde(flatten)]
    report: &'a engine::MigrateReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    dirty_writer: Option<&'a WriterStats>,
    #[serde(skip_serializing_if = "<[ResourceCopy]>::is_empty")]
    dynamic_resources: &'a [ResourceCopy],
}

/// Runs `migrate`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dst = match &args.dst {
        Destination::Device(d) => d.clone(),
        Destination::Remote(ep) => {
            if args.no_copy_attrs {
                usage!(
                    "across hosts the destination copies the dynamic resources: pass --no-copy-attrs to `receive`"
                );
            }
            let mut sources = vec![args.src.clone()];
            sources.extend(args.with.iter().cloned());
            let x = remote::Transfer {
                buffer: args.copy.buffer_size(),
                precopy: args.copy.precopy(args.precopy_rounds),
                compression: args.compress,
                threads: args.threads,
                polling: args.polling,
                json: args.json,
                dirty_writer: args.dirty_writer.clone(),
            };
            return remote::migrate_to(&sources, ep, &args.transport, &x, global);
        }
    };
    if !args.with.is_empty() {
        usage!("--with is for a migration to an address (tcp:// or tls://)");
    }
    if args.compress != Compression::None {
        usage!(
            "--compress is for a migration to an address (tcp:// or tls://): between two devices here there is no stream to compress"
        );
    }
    if args.src == dst {
        usage!("source and destination are the same device ({})", args.src);
    }
    // Dynamic resources go to DST before anything opens it (vendors fix them at first open).
    let policy = match (args.no_copy_attrs, args.force) {
        (false, _) => Policy::Copy,
        (true, false) => Policy::Refuse,
        (true, true) => Policy::Ignore,
    };
    let root = SysfsRoot::from_option(global.open_options().sysfs_root.as_deref());
    let resources = dyn_attrs::prepare(&root, &args.src, &dst, policy)?;
    let result = migrate_prepared(&args, global, &dst, &resources);
    if result.is_err() {
        // The destination is closed by now: what was copied to it goes back. (The failure
        // itself is reported by the caller, after this.)
        if let Err(re) = dyn_attrs::revert(&root, &dst, &resources) {
            errln!("warning: after the failure reported below, {re}");
        }
    }
    result
}

/// The in-process migration once the destination's dynamic resources are in place: open
/// both devices, check them, migrate, report.
fn migrate_prepared(
    args: &Args,
    global: &Global,
    dst: &DeviceSpec,
    resources: &[ResourceCopy],
) -> anyhow::Result<ExitCode> {
    let token = install_interrupt_handler()?;
    let mut drivers = open_drivers(&[args.src.clone(), dst.clone()], global)?;
    let (Some(mut dst), Some(mut src)) = (drivers.pop(), drivers.pop()) else {
        anyhow::bail!("could not open both devices");
    };
    if !args.force {
        compat_gate(src.as_ref(), dst.as_ref(), global)?;
    }
    let bar = Bar::new(args.json, args.copy.progress_lines);
    let opts = args.polling.apply(args.threads.apply(Options {
        buffer_size: args.copy.buffer_size(),
        precopy: args.copy.precopy(args.precopy_rounds),
        cancel: Some(token.flag()),
        progress: bar.callback(),
        check_identity: !args.force,
        ..Options::default()
    }));
    let (result, writer) = match &args.dirty_writer {
        Some(spec) => {
            let mut dirtying = DirtyingDriver::new(src.as_mut(), spec)?;
            let r = engine::migrate(&mut dirtying, dst.as_mut(), &opts);
            (r, Some(dirtying.stop_writer()))
        }
        None => (engine::migrate(src.as_mut(), dst.as_mut(), &opts), None),
    };
    bar.finish();
    let r = match result {
        Ok(r) => r,
        Err(e) => return Err(finish_error(e, &mut [src.as_mut(), dst.as_mut()])),
    };
    // The devices migrated; a writer that ended on its own (a failed write, a panic) means
    // the pages were not dirtied throughout, so the run did not test what was asked.
    let writer = writer.transpose()?;
    if args.json {
        print_json(&Out {
            report: &r,
            dirty_writer: writer.as_ref(),
            dynamic_resources: resources,
        })?;
    } else {
        outln!(
            "migrated {} from {} to {} in {} ({}), downtime {}{}",
            format_bytes(r.bytes),
            r.source,
            r.destination,
            format_seconds(r.seconds),
            format_rate(r.throughput_bytes_per_s),
            format_seconds(r.downtime_seconds),
            predicted_suffix(r.predicted_downtime_seconds)
        );
        let precopy = precopy_summary(
            r.rounds,
            r.precopy_bytes,
            Some(r.precopy_seconds),
            r.precopy_end,
        );
        outln!(
            "  protocol {}, {}stop-copy {} in {}, commit {}, {} chunk(s)",
            r.protocol,
            precopy,
            format_bytes(r.stopcopy_bytes),
            format_seconds(r.stop_copy_seconds),
            format_seconds(r.commit_seconds),
            r.chunks
        );
        for rs in &r.precopy_rounds {
            outln!(
                "  round {}: pending {} (dirty {}), read {} in {}, pending after {} (dirty {})",
                rs.round,
                format_bytes(rs.pending_before.total()),
                format_bytes(rs.pending_before.dirty_bytes),
                format_bytes(rs.bytes),
                format_seconds(rs.seconds),
                format_bytes(rs.pending_after.total()),
                format_bytes(rs.pending_after.dirty_bytes)
            );
        }
        if !resources.is_empty() {
            outln!("  dynamic resources: {}", resources_summary(resources));
        }
        if let Some(w) = &writer {
            outln!(
                "  dirty writer: {} page writes ({}) over {} at region {} +{:#x} in {} ({}, asked {}), {} pass(es)",
                w.pages_written,
                format_bytes(w.bytes_dirtied),
                format_bytes(w.len),
                w.region,
                w.offset,
                format_seconds(w.seconds),
                format_rate(w.achieved_rate),
                format_rate(w.rate as f64),
                w.passes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `aggregate 1 -> 2 (copied), priority 0 (equal)`.
pub(super) fn resources_summary(r: &[ResourceCopy]) -> String {
    r.iter()
        .map(|c| {
            let v = |o: &Option<String>| o.clone().unwrap_or_else(|| "?".into());
            match c.action {
                dyn_attrs::Action::Copied => format!(
                    "{} {} -> {} (copied)",
                    c.resource,
                    v(&c.destination_before),
                    v(&c.destination_after)
                ),
                dyn_attrs::Action::Equal => format!("{} {} (equal)", c.resource, v(&c.source)),
                dyn_attrs::Action::Differs => format!(
                    "{} source {} destination {} (left, --force)",
                    c.resource,
                    v(&c.source),
                    v(&c.destination_before)
                ),
                _ => format!(
                    "{} (unknown: {})",
                    c.resource,
                    c.note.as_deref().unwrap_or("not compared")
                ),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
