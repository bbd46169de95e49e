//! `vfio-harness dma`: map and unmap DMA memory at IOVAs the IOMMU allows and measure it;
//! `--check` makes a known device (QEMU edu, vhgpu) DMA a pattern through itself and back;
//! `--fill` / `--crc` make its DMA engine write a pattern into device memory (and leave it
//! there) or read device memory out and checksum it.
//!
//! JSON (`--json`): `device`, `backend`, `iova_granule`, `iova_ranges`, `map` (the timing,
//! absent with `--fill`/`--crc`), `check` (with `--check`), `transfer` (with `--fill` or
//! `--crc`: `op`, `driver`, `offset`, `len`, `seed`, `chunk`, `chunks`, `seconds`,
//! `bytes_per_second`, `crc32` (of the device range as read back), `matched`,
//! `first_mismatch`).

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
    /// Device-memory offset --check uses.
    #[arg(long, value_parser = super::bar::parse_u64, default_value = "0")]
    pub check_offset: u64,
    /// DMA the pattern for --seed into device memory (vhgpu: VRAM) at OFFSET:LEN and leave it
    /// there; every chunk is DMA-ed back and compared unless --no-readback. LEN `all` = to
    /// the end of device memory. K/M/G suffixes and 0x hex accepted.
    #[arg(long, value_name = "OFFSET:LEN", value_parser = parse_range, conflicts_with = "crc")]
    pub fill: Option<(u64, u64)>,
    /// DMA device memory at OFFSET:LEN out into host memory and print its CRC-32 (with
    /// --seed: also compare it with that pattern).
    #[arg(long, value_name = "OFFSET:LEN", value_parser = parse_range)]
    pub crc: Option<(u64, u64)>,
    /// Pattern seed for --fill / --crc (`vfio_harness::pattern`, the same bytes as
    /// `bar fill --seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// With --fill: skip DMA-ing each chunk back.
    #[arg(long)]
    pub no_readback: bool,
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
struct TransferOut {
    op: &'static str,
    driver: &'static str,
    offset: u64,
    len: u64,
    seed: Option<u64>,
    chunk: u64,
    chunks: u64,
    seconds: f64,
    bytes_per_second: f64,
    crc32: Option<String>,
    matched: Option<bool>,
    first_mismatch: Option<u64>,
}

/// Parses `OFFSET:LEN` (each decimal, 0x hex or with a K/M/G suffix; LEN `all` = 0 = to the
/// end).
fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (o, l) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not OFFSET:LEN"))?;
    Ok((super::bar::parse_len(o)?, super::bar::parse_len(l)?))
}

#[derive(Serialize)]
struct Out {
    device: String,
    backend: String,
    iova_granule: u64,
    iova_ranges: Vec<IovaRange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    map: Option<Timing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<CheckOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer: Option<TransferOut>,
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
    dev_offset: u64,
) -> anyhow::Result<CheckOut> {
    let mut drv = driver(dev)?;
    if bytes == 0 {
        bail!("--check-bytes must be at least 1");
    }
    // When the whole check fits in device memory each chunk goes to its own place there;
    // otherwise (edu's 4 KiB buffer) every chunk reuses the window at `dev_offset`.
    let mem = drv.device_memory();
    let chunk = drv.max_chunk() as u64;
    let spread = matches!(dev_offset.checked_add(bytes), Some(e) if e <= mem);
    if !spread && !matches!(dev_offset.checked_add(bytes.min(chunk)), Some(e) if e <= mem) {
        bail!(
            "{}: a {}-byte chunk at device offset {dev_offset:#x} does not fit in its {mem} byte(s) of device memory",
            dev.info().name,
            bytes.min(chunk)
        );
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
    let mut off = 0;
    let mut chunks = 0;
    let t = std::time::Instant::now();
    while off < bytes {
        let n = (bytes - off).min(chunk) as usize;
        let at = dev_offset + if spread { off } else { 0 };
        drv.copy_to_device_at(src_iova + off, at, n)?;
        drv.copy_from_device_at(dst_iova + off, at, n)?;
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

fn driver(dev: &KernelDevice) -> anyhow::Result<Box<dyn edu::DmaTestDriver + '_>> {
    edu::probe(dev).with_context(|| {
        format!(
            "{}: no DMA engine driver for this device (pci id {}); supported: {}",
            dev.info().name,
            dev.info().identity.pci_id.as_deref().unwrap_or("none"),
            edu::KNOWN_DEVICES
        )
    })
}

/// `--fill` (pattern into device memory, optionally DMA-ed back and compared) and `--crc`
/// (device memory out, CRC-32, optionally compared with a pattern), chunk by chunk through
/// two mapped buffers.
fn transfer(
    dev: &KernelDevice,
    ctx: &VfioContext,
    ranges: &[IovaRange],
    granule: u64,
    args: &Args,
) -> anyhow::Result<TransferOut> {
    let Some(range) = args.fill.or(args.crc) else {
        bail!("neither --fill nor --crc given");
    };
    let (seed, fill, readback) = (args.seed, args.fill.is_some(), !args.no_readback);
    let mut drv = driver(dev)?;
    let (offset, len) = range;
    let mem = drv.device_memory();
    let len = if len == 0 {
        mem.saturating_sub(offset)
    } else {
        len
    };
    if len == 0 || !matches!(offset.checked_add(len), Some(e) if e <= mem) {
        bail!(
            "{}: {len} byte(s) at device offset {offset:#x} are outside its {mem} byte(s) of device memory",
            dev.info().name
        );
    }
    let seed_v = match (fill, seed) {
        (true, None) => bail!("--fill needs --seed"),
        (_, s) => s,
    };
    let chunk = (drv.max_chunk() as u64).min(len);
    let buf_len = chunk.div_ceil(granule) * granule;
    let limit = drv.dma_limit();
    let out_iova = pick_iova(ranges, buf_len, granule, 1 << 20, Some(limit))
        .context("no IOVA range below the device's DMA limit for the buffer")?;
    let in_iova = pick_iova(ranges, buf_len, granule, out_iova + buf_len, Some(limit))
        .context("no IOVA range below the device's DMA limit for the second buffer")?;
    let out_buf = DmaBuffer::alloc(out_iova, buf_len, false)?;
    let in_buf = DmaBuffer::alloc(in_iova, buf_len, false)?;
    out_buf.fill(0)?;
    in_buf.fill(0)?;
    let (om, _) = DmaMapping::map(ctx, out_buf)?;
    let (im, _) = DmaMapping::map(ctx, in_buf)?;
    drv.init()?;
    let mut data = vec![0u8; chunk as usize];
    let mut h = crc32fast::Hasher::new();
    let mut mismatch = None;
    let mut done = 0u64;
    let mut chunks = 0u64;
    let t = std::time::Instant::now();
    while done < len {
        let n = (len - done).min(chunk) as usize;
        let at = offset + done;
        if fill {
            if let Some(s) = seed_v {
                vfio_harness::pattern::fill(s, at, &mut data[..n]);
            }
            om.buffer().write(0, &data[..n])?;
            drv.copy_to_device_at(out_iova, at, n)?;
        }
        if !fill || readback {
            drv.copy_from_device_at(in_iova, at, n)?;
            im.buffer().read(0, &mut data[..n])?;
            h.update(&data[..n]);
            if let (Some(s), None) = (seed_v, mismatch) {
                mismatch = vfio_harness::pattern::first_mismatch(s, at, &data[..n])
                    .map(|p| done + p as u64);
            }
        }
        done += n as u64;
        chunks += 1;
    }
    let seconds = t.elapsed().as_secs_f64();
    drv.shutdown()?;
    im.unmap()?;
    om.unmap()?;
    let read = !fill || readback;
    Ok(TransferOut {
        op: if fill { "fill" } else { "crc" },
        driver: drv.name(),
        offset,
        len,
        seed: seed_v,
        chunk,
        chunks,
        seconds,
        bytes_per_second: rate(len, Duration::from_secs_f64(seconds)),
        crc32: read.then(|| format!("{:08x}", h.finalize())),
        matched: (read && seed_v.is_some()).then_some(mismatch.is_none()),
        first_mismatch: mismatch,
    })
}

/// Runs `dma`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dev = vfio_harness::open(&args.device, &global.open_options())?;
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
    let xfer_range = args.fill.or(args.crc);
    let map = if xfer_range.is_none() || args.check {
        Some(measure(ctx, &ranges, granule, size, args.hugepages)?)
    } else {
        None
    };
    let chk = if args.check {
        Some(check(
            kd,
            ctx,
            &ranges,
            granule,
            args.check_bytes.bytes(),
            args.check_offset,
        )?)
    } else {
        None
    };
    let xfer = match xfer_range {
        Some(_) => Some(transfer(kd, ctx, &ranges, granule, &args)?),
        None => None,
    };
    let out = Out {
        device: dev.name().to_string(),
        backend: dev.info().backend.clone(),
        iova_granule: granule,
        iova_ranges: ranges,
        map,
        check: chk,
        transfer: xfer,
    };
    let ok = out
        .check
        .as_ref()
        .is_none_or(|c| c.matched && c.guard_intact)
        && out
            .transfer
            .as_ref()
            .is_none_or(|t| t.matched != Some(false));
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
        if let Some(m) = &out.map {
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
        }
        if let Some(t) = &out.transfer {
            println!(
                "{} ({}): {} at device offset {:#x} in {} chunk(s), {} ({}){}{}",
                t.op,
                t.driver,
                format_bytes(t.len),
                t.offset,
                t.chunks,
                format_seconds(t.seconds),
                format_rate(t.bytes_per_second),
                t.crc32
                    .as_ref()
                    .map(|c| format!(", crc32 {c}"))
                    .unwrap_or_default(),
                match (t.seed, t.matched, t.first_mismatch) {
                    (Some(s), Some(true), _) => format!(", matches pattern {s}"),
                    (Some(s), Some(false), Some(p)) =>
                        format!(", DIFFERS from pattern {s} at +{p:#x}"),
                    _ => String::new(),
                }
            );
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
