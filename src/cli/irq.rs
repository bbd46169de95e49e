//! `vfio-harness irq`: connect an eventfd to an interrupt, fire it (loopback through
//! `VFIO_IRQ_SET_ACTION_TRIGGER`) or wait for the device to raise it, measure delivery
//! latency, exercise mask/unmask, and disable the index again.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use vfio_harness::device::{Device, IRQ_FLAG_AUTOMASKED, IRQ_FLAG_MASKABLE};
use vfio_harness::vfio::irq::IrqEvent;

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
    /// Fire the interrupt from userspace (loopback) instead of waiting for the device.
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

#[derive(Serialize, Default)]
struct Latency {
    min_us: f64,
    avg_us: f64,
    max_us: f64,
}

#[derive(Serialize)]
struct MaskOut {
    /// `ok`, or the error of the mask call.
    mask: String,
    delivered_while_masked: Option<bool>,
    /// `ok`, or the error of the unmask call.
    unmask: String,
    delivered_after_unmask: Option<bool>,
}

fn status(r: &vfio_harness::device::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[derive(Serialize)]
struct Out {
    device: String,
    index: u32,
    name: String,
    vector: u32,
    mode: &'static str,
    requested: u32,
    delivered: u32,
    latency: Option<Latency>,
    mask: Option<MaskOut>,
    disabled: bool,
}

fn resolve_index(dev: &dyn Device, key: &str) -> anyhow::Result<u32> {
    let irqs = &dev.info().irqs;
    let found = match key.parse::<u32>() {
        Ok(i) => irqs.iter().find(|q| q.index == i),
        Err(_) => irqs.iter().find(|q| q.name.eq_ignore_ascii_case(key)),
    };
    found.map(|q| q.index).with_context(|| {
        let names: Vec<String> = irqs
            .iter()
            .map(|q| format!("{} ({}, {} vector(s))", q.index, q.name, q.count))
            .collect();
        format!(
            "{}: no IRQ index {key:?} (indexes: {})",
            dev.name(),
            names.join(", ")
        )
    })
}

fn exercise(dev: &dyn Device, a: &Args, index: u32, ev: &IrqEvent) -> anyhow::Result<Out> {
    let info = dev
        .info()
        .irq(index)
        .cloned()
        .context("IRQ index vanished")?;
    let timeout = Duration::from_millis(a.timeout);
    dev.set_irq_eventfds(index, a.vector, &[ev.raw_fd()])?;
    ev.drain()?;
    let mut lat = Vec::new();
    let mut delivered = 0;
    for _ in 0..a.count {
        let t = Instant::now();
        if a.trigger {
            dev.trigger_irq(index, a.vector)?;
        }
        match ev.wait(timeout)? {
            Some(_) => {
                delivered += 1;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                // Level-triggered (INTx) interrupts are masked on delivery; unmask as a
                // VMM does at EOI, or the next one never arrives.
                if info.flags & IRQ_FLAG_AUTOMASKED != 0 {
                    dev.mask_irq(index, a.vector, false)?;
                }
            }
            None => break,
        }
    }
    let latency = (!lat.is_empty()).then(|| Latency {
        min_us: lat.iter().cloned().fold(f64::INFINITY, f64::min),
        max_us: lat.iter().cloned().fold(0.0, f64::max),
        avg_us: lat.iter().sum::<f64>() / lat.len() as f64,
    });
    let mask = if a.trigger && !a.no_mask && info.flags & IRQ_FLAG_MASKABLE != 0 {
        let m = dev.mask_irq(index, a.vector, true);
        let mut while_masked = None;
        let mut after = None;
        if m.is_ok() {
            dev.trigger_irq(index, a.vector)?;
            // Observation window for a delivery that should not happen while masked.
            while_masked = Some(ev.wait(Duration::from_millis(50).min(timeout))?.is_some());
        }
        let u = dev.mask_irq(index, a.vector, false);
        if u.is_ok() && while_masked == Some(false) {
            // A masked trigger may be left pending and delivered on unmask (INTx), or dropped.
            after = Some(ev.wait(Duration::from_millis(50).min(timeout))?.is_some());
        }
        Some(MaskOut {
            mask: status(&m),
            delivered_while_masked: while_masked,
            unmask: status(&u),
            delivered_after_unmask: after,
        })
    } else {
        None
    };
    Ok(Out {
        device: dev.name().to_string(),
        index,
        name: info.name,
        vector: a.vector,
        mode: if a.trigger { "loopback" } else { "device" },
        requested: a.count,
        delivered,
        latency,
        mask,
        disabled: false,
    })
}

/// Runs `irq`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dev = vfio_harness::open(&args.device, &global.open_options())?;
    let d = dev.as_ref();
    let index = resolve_index(d, &args.index)?;
    let ev = IrqEvent::new().context("cannot create an eventfd")?;
    let res = exercise(d, &args, index, &ev);
    // Always disable the index again, also after a failure.
    let dis = d.set_irq_eventfds(index, 0, &[]);
    let mut out = res?;
    dis?;
    out.disabled = true;
    let ok = out.delivered == out.requested;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}: IRQ {} ({}) vector {}: {} of {} interrupt(s) delivered ({})",
            out.device, out.index, out.name, out.vector, out.delivered, out.requested, out.mode
        );
        if let Some(l) = &out.latency {
            println!(
                "latency  min {:.1} us  avg {:.1} us  max {:.1} us",
                l.min_us, l.avg_us, l.max_us
            );
        }
        if let Some(m) = &out.mask {
            let seen = |v: Option<bool>| match v {
                Some(true) => "yes",
                Some(false) => "no",
                None => "not checked",
            };
            println!(
                "mask     {} (delivered while masked: {}); unmask {} (delivered after: {})",
                m.mask,
                seen(m.delivered_while_masked),
                m.unmask,
                seen(m.delivered_after_unmask)
            );
        }
    }
    if !ok {
        eprintln!(
            "error: only {} of {} interrupt(s) arrived within {} ms each",
            out.delivered, out.requested, args.timeout
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
