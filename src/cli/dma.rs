//! `vfio-harness dma`: map and unmap DMA memory at IOVAs the IOMMU allows and measure it;
//! `--check` makes a known device (QEMU edu, vhgpu) DMA a pattern through itself and back;
//! `--fill` / `--crc` make its DMA engine write a pattern into device memory (and leave it
//! there) or read device memory out and checksum it.
//!
//! JSON (`--json`): `device`, `backend`, `iova_granule`, `iova_ranges`, `map` (the timing,
//! absent with `--fill`/`--crc`), `check` (with `--check`; `check.unmapped` with
//! `--check-unmapped`), `transfer` (with `--fill` or
//! `--crc`: `op`, `driver`, `offset`, `len`, `seed`, `chunk`, `chunks`, `seconds`,
//! `bytes_per_second`, `crc32` (of the device range as read back), `matched`,
//! `first_mismatch`).

use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use vfio_harness::drivers::dma_check::{dma_check_with, CheckOptions, CheckReport};
use vfio_harness::drivers::dma_pattern::{dma_pattern, PatternJob, PatternReport};
use vfio_harness::drivers::space::{kernel_context, DmaSpace};
use vfio_harness::units::{format_bytes, format_rate, format_seconds, ByteSize};
use vfio_harness::vfio::dma_timing::{time_map_unmap, time_map_unmap_at, MapTiming};
use vfio_harness::vfio::IovaRange;

use super::args::{parse_range, parse_u64};
use super::output::print_json;
use super::Global;

/// Arguments of `dma`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device (a kernel device: DMA goes through its IOMMU context).
    pub device: vfio_harness::DeviceSpec,
    /// Bytes to map (K/M/G suffixes).
    #[arg(long, default_value = "64M")]
    pub size: ByteSize,
    /// Back the buffers (the timed one and --check's) with 2 MiB hugetlb pages when
    /// available (vm.nr_hugepages); the report says whether they were.
    #[arg(long)]
    pub hugepages: bool,
    /// Place the timed buffer (and --check's source buffer, the destination after it) at
    /// this IOVA instead of the lowest free one. Not checked against the IOVA ranges: the
    /// kernel decides, and its refusal is reported with the errno.
    #[arg(long, value_parser = parse_u64)]
    pub iova: Option<u64>,
    /// Have the device DMA a pattern into itself and back, and compare (edu).
    #[arg(long)]
    pub check: bool,
    /// With --check: afterwards remove both mappings (keeping the memory) and have the
    /// device DMA to and from their IOVAs again; the IOMMU must stop both.
    #[arg(long, requires = "check")]
    pub check_unmapped: bool,
    /// Bytes pushed through the device by --check.
    #[arg(long, default_value = "8K")]
    pub check_bytes: ByteSize,
    /// Device-memory offset --check uses.
    #[arg(long, value_parser = parse_u64, default_value = "0")]
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
struct Out {
    device: String,
    backend: String,
    iova_granule: u64,
    iova_ranges: Vec<IovaRange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    map: Option<MapTiming>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<CheckReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transfer: Option<PatternReport>,
}

/// The `--fill` / `--crc` job from the arguments.
fn pattern_job(args: &Args) -> anyhow::Result<Option<(PatternJob, u64, u64)>> {
    Ok(match (args.fill, args.crc) {
        (Some((offset, len)), _) => {
            let Some(seed) = args.seed else {
                usage!("--fill needs --seed");
            };
            let readback = !args.no_readback;
            Some((PatternJob::Fill { seed, readback }, offset, len))
        }
        (None, Some((offset, len))) => Some((PatternJob::Crc { seed: args.seed }, offset, len)),
        (None, None) => None,
    })
}

/// Runs `dma`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dev = vfio_harness::open(&args.device, &global.open_options())?;
    let ctx = kernel_context(dev.as_ref()).with_context(|| {
        format!(
            "{}: DMA mapping needs a kernel device (an IOMMU context)",
            dev.name()
        )
    })?;
    let (granule, ranges) = DmaSpace::iova_ranges(ctx)?;
    let size = args.size.bytes();
    if size == 0 {
        usage!("--size must be at least 1 byte");
    }
    let job = pattern_job(&args)?;
    let map = if job.is_none() || args.check {
        Some(match args.iova {
            Some(iova) => time_map_unmap_at(ctx, iova, size, args.hugepages)?,
            None => time_map_unmap(ctx, &ranges, granule, size, args.hugepages)?,
        })
    } else {
        None
    };
    let check = if args.check {
        if args.check_bytes.bytes() == 0 {
            usage!("--check-bytes must be at least 1");
        }
        let mut o = CheckOptions::new(args.check_bytes.bytes(), args.check_offset);
        o.iova = args.iova;
        o.hugepages = args.hugepages;
        o.unmapped = args.check_unmapped;
        Some(dma_check_with(dev.as_ref(), ctx, &o)?)
    } else {
        None
    };
    let transfer = match job {
        Some((job, offset, len)) => Some(dma_pattern(dev.as_ref(), ctx, job, offset, len)?),
        None => None,
    };
    let out = Out {
        device: dev.name().to_string(),
        backend: dev.info().backend.clone(),
        iova_granule: granule,
        iova_ranges: ranges,
        map,
        check,
        transfer,
    };
    let ok = out.check.as_ref().is_none_or(CheckReport::passed)
        && out
            .transfer
            .as_ref()
            .is_none_or(|t| t.matched != Some(false));
    if args.json {
        print_json(&out)?;
    } else {
        print_human(&out, args.hugepages);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_human(out: &Out, asked_hugepages: bool) {
    outln!(
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
        outln!(
            "map   {} at IOVA {:#x}{}: {} ({})",
            format_bytes(m.size),
            m.iova,
            if m.hugepages { " (2M hugepages)" } else { "" },
            format_seconds(m.map_seconds),
            format_rate(m.map_bytes_per_second)
        );
        outln!(
            "unmap {}: {} ({})",
            format_bytes(m.size),
            format_seconds(m.unmap_seconds),
            format_rate(m.unmap_bytes_per_second)
        );
        if asked_hugepages && !m.hugepages {
            outln!("note: no 2M hugepages available (vm.nr_hugepages); normal pages used");
        }
    }
    if let Some(t) = &out.transfer {
        outln!(
            "{} ({}): {} at device offset {:#x} in {} chunk(s), {} ({}){}{}",
            t.op,
            t.driver,
            format_bytes(t.len),
            t.offset,
            t.chunks,
            format_seconds(t.seconds),
            format_rate(t.bytes_per_second),
            t.crc32
                .map(|c| format!(", crc32 {c:08x}"))
                .unwrap_or_default(),
            match (t.seed, t.matched, t.first_mismatch) {
                (Some(s), Some(true), _) => format!(", matches pattern {s}"),
                (Some(s), Some(false), Some(p)) => format!(", DIFFERS from pattern {s} at +{p:#x}"),
                _ => String::new(),
            }
        );
    }
    if let Some(c) = &out.check {
        outln!(
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
        if c.hugepages {
            outln!("check buffers: 2M hugepages");
        }
        if let Some(u) = &c.unmapped {
            let said = |e: &Option<String>| {
                e.as_ref()
                    .map(|e| format!(" (device: {e})"))
                    .unwrap_or_default()
            };
            outln!(
                "after unmap: device -> IOVA {:#x}: {}{}; IOVA {:#x} -> device: {}{}",
                u.write_iova,
                if u.write_blocked {
                    "blocked"
                } else {
                    "REACHED THE HOST MEMORY"
                },
                said(&u.write_error),
                u.read_iova,
                if u.read_blocked {
                    "blocked"
                } else {
                    "THE DEVICE READ THE PATTERN"
                },
                said(&u.read_error),
            );
        }
    }
}
