//! `vfio-harness dma`: map and unmap DMA memory at IOVAs the IOMMU allows and measure it;
//! `--check` makes a known device (QEMU edu) DMA a pattern through itself and back.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use vfio_harness::device::Device;
use vfio_harness::units::{format_bytes, format_rate, format_seconds, ByteSize};
use vfio_harness::vfio::dma::{pick_iova, DmaBuffer, DmaMapping, HUGE_2M};
use vfio_harness::vfio::{edu, IovaRange, KernelDevice, VfioContext};

use super::Global;

/// Arguments of `dma`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device (a kernel device: DMA goes through its IOMMU context).
    pub device: vfio_harness::DeviceSpec,
    /// Bytes to map (K/M/G suffixes).
    #[arg(long, default_value = "64M")]
    pub size: ByteSize,
    /// Back the buffer with 2 MiB hugetlb pages when available.
    #[arg(long)]
    pub hugepages: bool,
    /// Have the device DMA a pattern into itself and back, and compare (edu).
    #[arg(long)]
    pub check: bool,
    /// Bytes pushed through the device by --check.
    #[arg(long, default_value = "8K")]
    pub check_bytes: ByteSize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Timing {
    size: u64,
    iova: u64,
    hugepages: bool,
    map_seconds: f64,
    unmap_seconds: f64,
    map_bytes_per_second: f64,
    unmap_bytes_per_second: f64,
}

#[derive(Serialize)]
struct CheckOut {
    driver: &'static str,
    bytes: u64,
    chunks: u64,
    src_iova: u64,
    dst_iova: u64,
    matched: bool,
    first_mismatch: Option<u64>,
    guard_intact: bool,
    msi_latency_us: f64,
    dma_seconds: f64,
}

#[derive(Serialize)]
struct Out {
    device: String,
    backend: String,
    iova_granule: u64,
    iova_ranges: Vec<IovaRange>,
    map: Timing,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<CheckOut>,
}

fn rate(bytes: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        bytes as f64 / s
    } else {
        0.0
    }
}

fn measure(
    ctx: &VfioContext,
    ranges: &[IovaRange],
    granule: u64,
    size: u64,
    huge: bool,
) -> anyhow::Result<Timing> {
    let align = if huge { HUGE_2M.max(granule) } else { granule };
    let iova = pick_iova(ranges, size.div_ceil(align) * align, align, 1 << 20, None)
        .with_context(|| format!("no IOVA range can hold {}", format_bytes(size)))?;
    let buf = DmaBuffer::alloc(iova, size, huge)?;
    buf.fill(0)?; // populate before timing the pinning
    let len = buf.len();
    let used_huge = buf.hugepages();
    let (m, map_t) = DmaMapping::map(ctx, buf)?;
    let unmap_t = m.unmap()?;
    Ok(Timing {
        size: len,
        iova,
        hugepages: used_huge,
        map_seconds: map_t.as_secs_f64(),
        unmap_seconds: unmap_t.as_secs_f64(),
        map_bytes_per_second: rate(len, map_t),
        unmap_bytes_per_second: rate(len, unmap_t),
    })
}

fn check(
    dev: &KernelDevice,
    ctx: &VfioContext,
    ranges: &[IovaRange],
    granule: u64,
    bytes: u64,
) -> anyhow::Result<CheckOut> {
    let mut drv = edu::probe(dev).with_context(|| {
        format!(
            "{}: --check knows no DMA engine for this device (pci id {}); supported: QEMU edu 1234:11e8",
            dev.info().name,
            dev.info().identity.pci_id.as_deref().unwrap_or("none")
        )
    })?;
    if bytes == 0 {
        bail!("--check-bytes must be at least 1");
    }
    let limit = drv.dma_limit();
    let buf_len = bytes.div_ceil(granule) * granule + granule; // + a guard page
    let src_iova = pick_iova(ranges, buf_len, granule, 1 << 20, Some(limit))
        .context("no IOVA range below the device's DMA limit for the source buffer")?;
    let dst_iova = pick_iova(ranges, buf_len, granule, src_iova + buf_len, Some(limit))
        .context("no IOVA range below the device's DMA limit for the destination buffer")?;
    let src = DmaBuffer::alloc(src_iova, buf_len, false)?;
    let dst = DmaBuffer::alloc(dst_iova, buf_len, false)?;
    let pattern: Vec<u8> = (0..bytes)
        .map(|i| (i as u8) ^ ((i >> 8) as u8).wrapping_mul(31) ^ 0x5a)
        .collect();
    src.fill(0)?;
    src.write(0, &pattern)?;
    dst.fill(0xa5)?;
    let (sm, _) = DmaMapping::map(ctx, src)?;
    let (dm, _) = DmaMapping::map(ctx, dst)?;
    drv.init()?;
    let chunk = drv.max_chunk() as u64;
    let mut off = 0;
    let mut chunks = 0;
    let t = std::time::Instant::now();
    while off < bytes {
        let n = (bytes - off).min(chunk) as usize;
        drv.copy_to_device(src_iova + off, n)?;
        drv.copy_from_device(dst_iova + off, n)?;
        off += n as u64;
        chunks += 1;
    }
    let dma_seconds = t.elapsed().as_secs_f64();
    let msi = drv.raise_msi()?;
    drv.shutdown()?;
    let mut got = vec![0u8; bytes as usize];
    dm.buffer().read(0, &mut got)?;
    let first_mismatch = got
        .iter()
        .zip(&pattern)
        .position(|(a, b)| a != b)
        .map(|p| p as u64);
    let mut guard = vec![0u8; (buf_len - bytes) as usize];
    dm.buffer().read(bytes, &mut guard)?;
    let guard_intact = guard.iter().all(|&b| b == 0xa5);
    dm.unmap()?;
    sm.unmap()?;
    Ok(CheckOut {
        driver: drv.name(),
        bytes,
        chunks,
        src_iova,
        dst_iova,
        matched: first_mismatch.is_none(),
        first_mismatch,
        guard_intact,
        msi_latency_us: msi.as_secs_f64() * 1e6,
        dma_seconds,
    })
}

/// Runs `dma`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dev = vfio_harness::device::open(&args.device, &global.open_options())?;
    let kd = dev
        .as_any()
        .downcast_ref::<KernelDevice>()
        .with_context(|| {
            format!(
                "{}: DMA mapping needs a kernel device (an IOMMU context)",
                dev.name()
            )
        })?;
    let ctx = kd.context().as_ref();
    let (granule, ranges) = ctx.iova_ranges()?;
    let size = args.size.bytes();
    if size == 0 {
        bail!("--size must be at least 1 byte");
    }
    let map = measure(ctx, &ranges, granule, size, args.hugepages)?;
    let chk = if args.check {
        Some(check(kd, ctx, &ranges, granule, args.check_bytes.bytes())?)
    } else {
        None
    };
    let out = Out {
        device: dev.name().to_string(),
        backend: dev.info().backend.clone(),
        iova_granule: granule,
        iova_ranges: ranges,
        map,
        check: chk,
    };
    let ok = out
        .check
        .as_ref()
        .is_none_or(|c| c.matched && c.guard_intact);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} ({}): IOVA ranges {}",
            out.device,
            out.backend,
            out.iova_ranges
                .iter()
                .map(|r| format!("{:#x}..={:#x}", r.start, r.last))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let m = &out.map;
        println!(
            "map   {} at IOVA {:#x}{}: {} ({})",
            format_bytes(m.size),
            m.iova,
            if m.hugepages { " (2M hugepages)" } else { "" },
            format_seconds(m.map_seconds),
            format_rate(m.map_bytes_per_second)
        );
        println!(
            "unmap {}: {} ({})",
            format_bytes(m.size),
            format_seconds(m.unmap_seconds),
            format_rate(m.unmap_bytes_per_second)
        );
        if args.hugepages && !m.hugepages {
            println!("note: no 2M hugepages available (vm.nr_hugepages); normal pages used");
        }
        if let Some(c) = &out.check {
            println!(
                "check ({}): {} in {} chunk(s) RAM {:#x} -> device -> RAM {:#x}: {}; guard {}; MSI in {:.1} us",
                c.driver,
                format_bytes(c.bytes),
                c.chunks,
                c.src_iova,
                c.dst_iova,
                match c.first_mismatch {
                    None => "bytes match".to_string(),
                    Some(p) => format!("MISMATCH at byte {p}"),
                },
                if c.guard_intact { "intact" } else { "OVERWRITTEN" },
                c.msi_latency_us
            );
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
