//! `vfio-harness irq`: connect an eventfd to an interrupt, fire it (loopback through
//! `VFIO_IRQ_SET_ACTION_TRIGGER`) or have the device raise it (through its test driver when
//! one can, e.g. vhgpu's MSI-X raise register; else waiting for it), measure delivery
//! latency, exercise mask/unmask, and disable the index again.

use std::process::ExitCode;
use std::time::Duration;

use vfio_harness::drivers::irq::{exercise_irq, irq_index, IrqExercise};

use super::output::print_json;
use super::Global;

/// Arguments of `irq`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device.
    pub device: vfio_harness::DeviceSpec,
    /// IRQ index (0 INTX, 1 MSI, 2 MSIX, 3 ERR, 4 REQ for PCI) or its name.
    #[arg(long)]
    pub index: String,
    /// Vector within the index.
    #[arg(long, default_value_t = 0)]
    pub vector: u32,
    /// Fire the interrupt from userspace (loopback) instead of having the device raise it
    /// (made to by its test driver when one can, as vhgpu's MSI-X vectors; else waited for).
    #[arg(long)]
    pub trigger: bool,
    /// Number of interrupts to deliver.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// How long to wait for each interrupt, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout: u64,
    /// Skip the mask/unmask exercise.
    #[arg(long)]
    pub no_mask: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `irq`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dev = vfio_harness::open(&args.device, &global.open_options())?;
    let d = dev.as_ref();
    let x = IrqExercise {
        index: irq_index(d, &args.index)?,
        vector: args.vector,
        trigger: args.trigger,
        count: args.count,
        timeout: Duration::from_millis(args.timeout),
        mask_check: !args.no_mask,
    };
    let out = exercise_irq(d, &x)?;
    let ok = out.all_delivered();
    if args.json {
        print_json(&out)?;
    } else {
        let by = out
            .raised_by
            .map(|d| format!(", raised through the {d} driver"))
            .unwrap_or_default();
        outln!(
            "{}: IRQ {} ({}) vector {}: {} of {} interrupt(s) delivered ({}{by})",
            out.device,
            out.index,
            out.name,
            out.vector,
            out.delivered,
            out.requested,
            out.mode
        );
        if let Some(l) = &out.latency {
            outln!(
                "latency  min {:.1} us  avg {:.1} us  max {:.1} us",
                l.min_us,
                l.avg_us,
                l.max_us
            );
        }
        if let Some(m) = &out.mask {
            let seen = |v: Option<bool>| match v {
                Some(true) => "yes",
                Some(false) => "no",
                None => "not checked",
            };
            outln!(
                "mask     {} (delivered while masked: {}); unmask {} (delivered after: {})",
                m.mask,
                seen(m.delivered_while_masked),
                m.unmask,
                seen(m.delivered_after_unmask)
            );
        }
    }
    if !ok {
        errln!(
            "error: only {} of {} interrupt(s) arrived within {} ms each",
            out.delivered,
            out.requested,
            args.timeout
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
