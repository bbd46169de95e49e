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
//! `seconds`.

use std::process::ExitCode;

use vfio_harness::migration::engine::Options;
use vfio_harness::migration::{driver_for, MigrationDriver, MigrationError};
use vfio_harness::transport::{self, Hello, Listener, TransportError};
use vfio_harness::units::{format_bytes, format_seconds};
use vfio_harness::DeviceSpec;

use super::remote::{finish_transport_error, TransportArgs};
use super::transfer::{install_interrupt_handler, print_json, Bar};
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
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
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
                errln!("refused a peer: {e}");
            }
            Err(e) => return finish_transport_error(e),
        }
    };
    errln!("receiving from {peer}");
    let bar = Bar::new(args.json, false);
    let opts = Options {
        cancel: Some(cancel),
        progress: bar.callback(),
        ..Options::default()
    };
    let open_opts = global.open_options();
    let specs = args.devices.clone();
    let mut open = |_: &Hello| -> Result<Vec<Box<dyn MigrationDriver>>, MigrationError> {
        let handles = vfio_harness::open_all(&specs, &open_opts)?;
        handles.into_iter().map(driver_for).collect()
    };
    let result = transport::receive(&link, &mut open, &opts);
    bar.finish();
    let mut r = match result {
        Ok(r) => r,
        Err(e) => return finish_transport_error(e),
    };
    r.peer = Some(peer.to_string());
    if args.json {
        print_json(&r)?;
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
    }
    Ok(ExitCode::SUCCESS)
}
