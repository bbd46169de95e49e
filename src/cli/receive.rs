//! `vfio-harness receive DEVICE... --listen ADDR:PORT`: the destination of a cross-host
//! migration. Listens, authenticates the peer (TLS with client certificates unless
//! `--insecure`), opens the devices only then, restores each device's stream and commits
//! when the source asks, then acknowledges.
//!
//! A peer that fails the TLS handshake (no certificate, one not signed by the CA) is refused
//! before any device is opened, and the listener waits for the next peer.
//!
//! JSON output (`--json`): `peer` (address), `peer_harness_version`, `devices` (per device,
//! the restore report: `device`, `protocol`, `source` (the stream header), `bytes`,
//! `stream_bytes`, `chunks`, `seconds`, `commit_seconds`, `throughput_bytes_per_s`),
//! `seconds` (from the HELLO until the acknowledgement), `handshake_seconds` (of which until
//! the ACCEPT: checking the streams and opening the devices); when the source sent mdev
//! dynamic resources to compare with a destination
//! mdev's, `dynamic_resources` (per device,
//! the list `migrate` reports in process: `resource`, `attribute`, `source`,
//! `destination_before`, `destination_after`, `action`, `note`), copied to the destination
//! mdevs before they are opened (`--no-copy-attrs`: refused when they differ).

use std::process::ExitCode;

use vfio_harness::migration::attrs::{Policy, ResourceCopy};
use vfio_harness::migration::engine::Options;
use vfio_harness::migration::{driver_for, MigrationDriver, MigrationError};
use vfio_harness::sysfs::SysfsRoot;
use vfio_harness::transport::{self, Hello, Listener, TransportError};
use vfio_harness::units::{format_bytes, format_seconds};
use vfio_harness::DeviceSpec;

use super::output::escape;
use super::remote::{finish_transport_error, TransportArgs};
use super::signals::install_interrupt_handler;
use super::transfer::{print_json, Bar, Threads};
use super::Global;

/// Arguments of `receive`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The devices receiving the state, in the order of the source's devices.
    #[arg(required = true)]
    pub devices: Vec<DeviceSpec>,
    /// Address to listen on, HOST:PORT (port 0 picks one; the address is printed on stderr).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: String,
    /// Transport security and timeouts.
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Do not copy the source's `dynamic_resources` attributes (sent by the source for an
    /// mdev) to a destination mdev before opening it; refuse when they differ (with --force:
    /// leave them to the device).
    #[arg(long)]
    pub no_copy_attrs: bool,
    /// With --no-copy-attrs: migrate even when dynamic resources differ.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub threads: Threads,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Out<'a> {
    #[serde(flatten)]
    report: &'a transport::ReceiveReport,
    /// Per device (in device-index order), what was done with each dynamic resource.
    #[serde(skip_serializing_if = "<[Vec<ResourceCopy>]>::is_empty")]
    dynamic_resources: &'a [Vec<ResourceCopy>],
}

/// Runs `receive`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let security = args.transport.security()?;
    let timeout = args.transport.timeout()?;
    let listener = Listener::bind(&args.listen, security)?;
    errln!("listening on {}", listener.local_addr()?);
    let cancel = install_interrupt_handler()?.flag();
    let (link, peer) = loop {
        match listener.accept_unless(timeout, Some(cancel.as_ref())) {
            Ok(v) => break v,
            Err(e @ TransportError::Handshake { .. }) => {
                errln!("refused a peer: {}", escape(&e.to_string()));
            }
            Err(e) => return finish_transport_error(e, args.json),
        }
    };
    errln!("receiving from {peer}");
    let bar = Bar::new(args.json, false);
    let opts = args.threads.apply(Options {
        cancel: Some(cancel),
        progress: bar.callback(),
        ..Options::default()
    });
    let open_opts = global.open_options();
    let specs = args.devices.clone();
    // Dynamic resources go to the destination before anything opens it (vendors fix them at
    // first open), as for an in-process migrate.
    let policy = match (args.no_copy_attrs, args.force) {
        (false, _) => Policy::Copy,
        (true, false) => Policy::Refuse,
        (true, true) => Policy::Ignore,
    };
    let root = SysfsRoot::from_option(open_opts.sysfs_root.as_deref());
    let mut resources = Vec::new();
    let mut open = |hello: &Hello| -> Result<Vec<Box<dyn MigrationDriver>>, TransportError> {
        resources = transport::copy_resources(&root, &specs, hello, policy)?;
        let handles = vfio_harness::open_all(&specs, &open_opts).map_err(MigrationError::from)?;
        Ok(handles
            .into_iter()
            .map(driver_for)
            .collect::<Result<_, MigrationError>>()?)
    };
    let result = transport::receive(&link, &mut open, &opts);
    bar.finish();
    let mut r = match result {
        Ok(r) => r,
        Err(e) => {
            // The devices are closed by now: what was copied to them goes back.
            for (spec, done) in specs.iter().zip(&resources) {
                if let Err(re) = vfio_harness::migration::attrs::revert(&root, spec, done) {
                    errln!("warning: after the failure reported below, {re}");
                }
            }
            return finish_transport_error(e, args.json);
        }
    };
    r.peer = Some(peer.to_string());
    let resources = resources;
    if args.json {
        print_json(&Out {
            report: &r,
            dynamic_resources: if resources.iter().all(Vec::is_empty) {
                &[]
            } else {
                &resources
            },
        })?;
    } else {
        for d in &r.devices {
            outln!(
                "received {} into {} from {} in {}, commit {} (acknowledged)",
                format_bytes(d.bytes),
                d.device,
                peer,
                format_seconds(d.seconds),
                format_seconds(d.commit_seconds)
            );
        }
        outln!(
            "{} from the source's HELLO to the acknowledgement, of which {} checking the streams and opening the devices",
            format_seconds(r.seconds),
            format_seconds(r.handshake_seconds)
        );
        for (d, res) in r.devices.iter().zip(&resources) {
            if !res.is_empty() {
                outln!(
                    "  dynamic resources of {}: {}",
                    d.device,
                    // Named and valued by the peer's HELLO.
                    escape(&super::migrate::resources_summary(res))
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
