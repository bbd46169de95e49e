//! Cross-host migration in the CLI: the transport options shared by `migrate SRC ADDR` and
//! `receive`, the source side of `migrate` to an address, and the exit codes of link faults.
//!
//! JSON output of `migrate SRC tcp://|tls://ADDR:PORT --json`: the fields of the in-process
//! `migrate` report (`source`, `destination`, `bytes`, `downtime_seconds`, ...; with several
//! devices the names are comma separated, counts summed, times the longest), plus `peer`,
//! `transport` (`tls` or `tcp`), `p2p` (several devices moved together through the P2P
//! states) and `devices` (per device: `save` (the save report), `destination`,
//! `commit_seconds`, `downtime_seconds`), `handshake_seconds` (from the HELLO until the
//! destination's ACCEPT: it checks the streams and opens its devices). `seconds` and
//! `throughput_bytes_per_s` run from the ACCEPT to the acknowledgement, as an in-process
//! migrate's run with both devices open. Downtime runs from the source leaving RUNNING (a
//! group: for its P2P states) until the destination's acknowledgement arrived. Each source
//! mdev's dynamic resources go to `receive` in the HELLO (see `docs/transport.md`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use vfio_harness::device::{DeviceHandle, MigFlags, MigState};
use vfio_harness::migration::attrs as dyn_attrs;
use vfio_harness::migration::engine::{Options, PrecopyPolicy};
use vfio_harness::migration::workload::{DirtyWriterSpec, DirtyingDriver, WriterStats};
use vfio_harness::migration::{MigrationDriver, Pending, Protocol, Result as MigResult};
use vfio_harness::sysfs::SysfsRoot;
use vfio_harness::transport::{
    self, Endpoint, RemoteReport, Scheme, Security, SendOptions, TlsFiles, TransportError,
};
use vfio_harness::units::{format_bytes, format_rate, format_seconds};
use vfio_harness::DeviceSpec;

use super::output::escape;
use super::signals::install_interrupt_handler;
use super::transfer::{open_drivers, precopy_summary, print_json, Bar};
use super::Global;

/// Exit code of a migration whose link broke or stalled before the commit: every device on
/// both sides is RUNNING, sources with their state, destinations reset (EX_TEMPFAIL).
pub const EXIT_LINK: u8 = 75;
/// Exit code of a migration whose commit was sent but not acknowledged: the source runs its
/// state; the destination may run it too.
pub const EXIT_UNACKNOWLEDGED: u8 = 76;
/// Exit code of a migration the peer refused (incompatible device, a stream it could not
/// restore, a refused commit): every device RUNNING.
pub const EXIT_REFUSED: u8 = 77;

/// Transport options of `migrate SRC ADDR` and `receive`.
#[derive(clap::Args, Debug, Clone)]
pub struct TransportArgs {
    /// CA certificate (PEM) the peer's certificate must be signed by (TLS).
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// This side's certificate (PEM) (TLS).
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// This side's private key (PEM) (TLS).
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// Plain TCP: no authentication, no encryption. Needed for tcp:// addresses.
    #[arg(long)]
    pub insecure: bool,
    /// Give up on a peer that sends or accepts nothing (not even a keepalive) for this long,
    /// seconds; also bounds connecting and the TLS handshake.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub timeout: f64,
}

impl TransportArgs {
    /// How links are secured: `--insecure`, or TLS with the three files.
    pub fn security(&self) -> anyhow::Result<Security> {
        if self.insecure {
            return Ok(Security::Insecure);
        }
        match (&self.ca, &self.cert, &self.key) {
            (Some(ca), Some(cert), Some(key)) => Ok(Security::Tls(TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })),
            _ => usage!(
                "TLS needs --ca, --cert and --key (see docs/transport.md); plain TCP needs --insecure"
            ),
        }
    }

    /// `--timeout` as a duration.
    pub fn timeout(&self) -> anyhow::Result<Duration> {
        if !(self.timeout.is_finite() && self.timeout > 0.0 && self.timeout < 1e6) {
            usage!("--timeout must be a positive number of seconds");
        }
        Ok(Duration::from_secs_f64(self.timeout))
    }
}

/// The outcome of a transport error: link faults and refusals get their own exit codes
/// (after the error is printed), everything else propagates.
/// With `json`, the report is the failure object on stdout (`kind` `interrupted`,
/// `unacknowledged`, `link` or `refused`, the devices' situation as its `hint`).
pub fn finish_transport_error(e: TransportError, json: bool) -> anyhow::Result<ExitCode> {
    let (kind, code, devices) = match &e {
        TransportError::NotAcknowledged(_) => (
            "unacknowledged",
            ExitCode::from(EXIT_UNACKNOWLEDGED),
            "the source runs its state; the destination may have committed it (check it)",
        ),
        // A signal caught ends the migration whatever the link said after it.
        e if super::signals::caught_signal().is_some()
            || matches!(
                e,
                TransportError::Migration(vfio_harness::migration::MigrationError::Interrupted)
            ) =>
        {
            (
                "interrupted",
                super::failure::exit_code("interrupted"),
                "devices returned to RUNNING",
            )
        }
        e if e.is_link_fault() => (
            "link",
            ExitCode::from(EXIT_LINK),
            "the sources run their state; the destination resets its devices to RUNNING",
        ),
        TransportError::Refused(_) => (
            "refused",
            ExitCode::from(EXIT_REFUSED),
            "every device is RUNNING",
        ),
        _ => return Err(e.into()),
    };
    // The peer's refusal quotes its own words: the report escapes them.
    super::failure::report_classified(&e, json, kind, devices);
    Ok(code)
}

#[derive(serde::Serialize)]
struct Out<'a> {
    #[serde(flatten)]
    report: &'a RemoteReport,
    peer: String,
    transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dirty_writer: Option<&'a WriterStats>,
}

/// The options `migrate` passes to the engine (shared with the in-process path's values).
pub struct Transfer {
    /// Chunk size.
    pub buffer: usize,
    /// Pre-copy policy.
    pub precopy: PrecopyPolicy,
    /// How the state streams are encoded (`--compress`).
    pub compression: vfio_harness::migration::stream::Compression,
    /// `--no-overlap`.
    pub threads: super::transfer::Threads,
    /// `--max-poll`.
    pub polling: super::transfer::Polling,
    /// `--json`.
    pub json: bool,
    /// `--dirty-writer`: a writer on the first source while it runs and pre-copies.
    pub dirty_writer: Option<DirtyWriterSpec>,
}

/// A driver lent to the transport (which takes boxed drivers) for the length of one
/// migration: every call goes to the borrowed driver.
struct Lent<'a>(&'a mut (dyn MigrationDriver + 'a));

impl MigrationDriver for Lent<'_> {
    fn protocol(&self) -> Protocol {
        self.0.protocol()
    }
    fn device(&self) -> &DeviceHandle {
        self.0.device()
    }
    fn flags(&self) -> MigFlags {
        self.0.flags()
    }
    fn set_state(&mut self, state: MigState) -> MigResult<()> {
        self.0.set_state(state)
    }
    fn state(&mut self) -> MigResult<MigState> {
        self.0.state()
    }
    fn read(&mut self, buf: &mut [u8]) -> MigResult<usize> {
        self.0.read(buf)
    }
    fn write(&mut self, buf: &[u8]) -> MigResult<usize> {
        self.0.write(buf)
    }
    fn pending(&mut self) -> MigResult<Pending> {
        self.0.pending()
    }
    fn stop_copy_size(&mut self) -> MigResult<Option<u64>> {
        self.0.stop_copy_size()
    }
    fn reset(&mut self) -> MigResult<()> {
        self.0.reset()
    }
    fn recover(&mut self) -> MigResult<()> {
        self.0.recover()
    }
}

/// `migrate SRC [--with SRC2...] tcp://|tls://HOST:PORT`: the source side.
pub fn migrate_to(
    sources: &[DeviceSpec],
    endpoint: &Endpoint,
    t: &TransportArgs,
    x: &Transfer,
    global: &Global,
) -> anyhow::Result<ExitCode> {
    let security = t.security()?;
    let timeout = t.timeout()?;
    // Each source mdev's dynamic resources go in the HELLO; `receive` copies them to its
    // destination before opening it.
    let root = SysfsRoot::from_option(global.open_options().sysfs_root.as_deref());
    let dynamic_resources = sources
        .iter()
        .map(|spec| {
            dyn_attrs::mdev_uuid(spec)
                .map(|u| dyn_attrs::source_values(&root, &u))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let send = SendOptions { dynamic_resources };
    let cancel = install_interrupt_handler()?.flag();
    let mut drivers = open_drivers(sources, global)?;
    let bar = Bar::new(x.json, false);
    let opts = x.polling.apply(x.threads.apply(Options {
        buffer_size: x.buffer,
        precopy: x.precopy,
        cancel: Some(cancel),
        progress: bar.callback(),
        compression: x.compression,
        ..Options::default()
    }));
    let (result, writer) = match &x.dirty_writer {
        None => (
            transport::connect(endpoint, &security, timeout)
                .and_then(|link| transport::migrate_to_with(&mut drivers, &link, &opts, &send)),
            None,
        ),
        Some(spec) => {
            let (first, rest) = drivers
                .split_first_mut()
                .ok_or_else(|| anyhow::anyhow!("no source device"))?;
            let mut dirtying = DirtyingDriver::new(first.as_mut(), spec)?;
            let r = {
                let mut all: Vec<Box<dyn MigrationDriver + '_>> =
                    vec![Box::new(Lent(&mut dirtying))];
                all.extend(
                    rest.iter_mut()
                        .map(|d| Box::new(Lent(d.as_mut())) as Box<dyn MigrationDriver + '_>),
                );
                transport::connect(endpoint, &security, timeout)
                    .and_then(|link| transport::migrate_to_with(&mut all, &link, &opts, &send))
            };
            (r, Some(dirtying.stop_writer()))
        }
    };
    bar.finish();
    let r = match result {
        Ok(r) => r,
        Err(e) => return finish_transport_error(e, x.json),
    };
    // The devices migrated; a writer that ended on its own (a failed write, a panic) means
    // the pages were not dirtied throughout, so the run did not test what was asked.
    let writer = writer.transpose()?;
    let s = &r.summary;
    if x.json {
        print_json(&Out {
            report: &r,
            peer: endpoint.to_string(),
            transport: match endpoint.scheme {
                Scheme::Tcp => "tcp",
                _ => "tls",
            },
            dirty_writer: writer.as_ref(),
        })?;
    } else {
        outln!(
            "migrated {} from {} to {} at {} in {} ({}) after a {} handshake, downtime {}{}",
            format_bytes(s.bytes),
            s.source,
            // Named by the peer's acknowledgement.
            escape(&s.destination),
            endpoint,
            format_seconds(s.seconds),
            format_rate(s.throughput_bytes_per_s),
            format_seconds(r.handshake_seconds),
            format_seconds(s.downtime_seconds),
            super::transfer::predicted_suffix(s.predicted_downtime_seconds)
        );
        outln!(
            "  protocol {}, {}stop-copy {} in {}, commit {} (acknowledged), {} chunk(s), {} device(s)",
            s.protocol,
            precopy_summary(s.rounds, s.precopy_bytes, Some(s.precopy_seconds), s.precopy_end),
            format_bytes(s.stopcopy_bytes),
            format_seconds(s.stop_copy_seconds),
            format_seconds(s.commit_seconds),
            s.chunks,
            r.devices.len()
        );
        if x.compression != vfio_harness::migration::stream::Compression::None {
            let device: u64 = r.devices.iter().map(|d| d.save.bytes).sum();
            let wire: u64 = r.devices.iter().map(|d| d.save.stream_bytes).sum();
            outln!(
                "  {}",
                super::save::wire_summary(x.compression, device, wire)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `migrate`'s destination: a device here, or a peer's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A device opened by this process (in-process migration).
    Device(DeviceSpec),
    /// `tcp://HOST:PORT` or `tls://HOST:PORT`, where `vfio-harness receive` listens.
    Remote(Endpoint),
}

impl std::str::FromStr for Destination {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Destination> {
        if s.contains("://") {
            Ok(Destination::Remote(s.parse()?))
        } else {
            Ok(Destination::Device(s.parse()?))
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Device(d) => d.fmt(f),
            Destination::Remote(e) => e.fmt(f),
        }
    }
}
