//! `vfio-harness bar`: width-correct register access to a region, by positioned I/O on the
//! device fd or (`--mmap`) through a mapping of the region.

use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Serialize;

use vfio_harness::device::{find_region, Device, RegionAccess, RegionInfo, RegionMap};
use vfio_harness::units::{format_bytes, format_rate, format_seconds};

use super::args::{parse_len, parse_u64};
use super::output::print_json;
use super::Global;

/// An access width: 1, 2, 4 or 8 bytes (what a register access can be).
fn parse_width(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(w @ (1 | 2 | 4 | 8)) => Ok(w),
        _ => Err(format!("{s:?} is not an access width: 1, 2, 4 or 8")),
    }
}

/// Arguments of `bar`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device.
    pub device: vfio_harness::DeviceSpec,
    /// Go through an mmap of the region instead of read/write on the device fd.
    #[arg(long, global = true)]
    pub mmap: bool,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub op: Op,
}

/// What to do with the region.
#[derive(clap::Subcommand, Debug)]
pub enum Op {
    /// Read COUNT registers of WIDTH bytes from OFFSET.
    Read {
        /// Region index or name (BAR0, CONFIG, 7, migration-v1...).
        region: String,
        /// Offset in the region (decimal or 0x hex).
        #[arg(value_parser = parse_u64)]
        offset: u64,
        /// Access width in bytes: 1, 2, 4 or 8.
        #[arg(long, short, default_value_t = 4, value_parser = parse_width)]
        width: usize,
        /// Number of consecutive registers.
        #[arg(long, short, default_value_t = 1)]
        count: u64,
    },
    /// Write VALUE with one access of WIDTH bytes at OFFSET.
    Write {
        /// Region index or name.
        region: String,
        /// Offset in the region.
        #[arg(value_parser = parse_u64)]
        offset: u64,
        /// Value (decimal or 0x hex).
        #[arg(value_parser = parse_u64)]
        value: u64,
        /// Access width in bytes: 1, 2, 4 or 8.
        #[arg(long, short, default_value_t = 4, value_parser = parse_width)]
        width: usize,
        /// Read the register back (through the same path: fd, or the mapping with --mmap)
        /// and fail unless it holds VALUE.
        #[arg(long)]
        readback: bool,
    },
    /// Write the deterministic pattern for SEED over LEN bytes at OFFSET (through the mapping
    /// with --mmap), read it back through positioned reads on the device fd, and compare.
    /// The pattern depends only on the seed and the absolute offset (`vfio_harness::pattern`),
    /// so `dma --fill` and later `crc` runs produce and check the same bytes.
    Fill {
        /// Region index or name.
        region: String,
        /// Offset in the region.
        #[arg(long, value_parser = parse_u64, default_value = "0")]
        offset: u64,
        /// Length in bytes (decimal or 0x hex); `all` (or 0) = to the end of the region.
        #[arg(long, value_parser = parse_len, default_value = "4096")]
        len: u64,
        /// Pattern seed (different seeds give different patterns).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Skip the read-back (large fills checked later with `crc`).
        #[arg(long)]
        no_readback: bool,
        /// Write zeros instead of the pattern (touched, all-zero memory, as a mostly empty
        /// GPU's VRAM); the read-back checks for zeros.
        #[arg(long, conflicts_with = "seed")]
        zeros: bool,
    },
    /// Print the CRC-32 (IEEE, as crc32fast / zlib) of LEN bytes at OFFSET, read through
    /// positioned reads on the device fd (or the mapping with --mmap), so two devices'
    /// memories can be compared without dumping them. With --seed, also compares the range
    /// against that pattern and fails on a difference.
    Crc {
        /// Region index or name.
        region: String,
        /// Offset in the region.
        #[arg(long, value_parser = parse_u64, default_value = "0")]
        offset: u64,
        /// Length in bytes; `all` (or 0, the default) = to the end of the region.
        #[arg(long, value_parser = parse_len, default_value = "all")]
        len: u64,
        /// Also check the bytes against the pattern for this seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Hex-dump LEN bytes from OFFSET (4-byte accesses where aligned, else bytes).
    Dump {
        /// Region index or name.
        region: String,
        /// Offset in the region.
        #[arg(long, value_parser = parse_u64, default_value = "0")]
        offset: u64,
        /// Length (default: up to 256 bytes of the region).
        #[arg(long, value_parser = parse_u64)]
        len: Option<u64>,
    },
}

/// Chunk size of large `fill` / `crc` transfers.
const CHUNK: usize = 4 << 20;

/// Register access either through the fd or through a mapping of the touched pages.
struct Access<'a> {
    dev: &'a dyn Device,
    region: RegionInfo,
    map: Option<(u64, RegionMap)>,
}

impl<'a> Access<'a> {
    fn new(
        dev: &'a dyn Device,
        key: &str,
        mmap: bool,
        offset: u64,
        len: u64,
    ) -> anyhow::Result<Self> {
        let region = find_region(&dev.info().regions, key)
            .with_context(|| {
                let names: Vec<String> = dev
                    .info()
                    .regions
                    .iter()
                    .map(|r| format!("{} ({})", r.index, r.name))
                    .collect();
                format!(
                    "{}: no region {key:?} (regions: {})",
                    dev.name(),
                    names.join(", ")
                )
            })?
            .clone();
        if !matches!(offset.checked_add(len), Some(e) if e <= region.size) {
            bail!(
                "{}: {len:#x} byte(s) at {offset:#x} are outside region {} ({}) of {:#x} byte(s)",
                dev.name(),
                region.index,
                region.name,
                region.size
            );
        }
        let map = if mmap {
            // Map the whole mmap-able area holding the access: some drivers (mdpy) only
            // accept mappings that start at the area's beginning.
            let area = region
                .mmap_areas()
                .into_iter()
                .find(|a| offset >= a.offset && offset + len <= a.offset + a.size)
                .with_context(|| {
                    format!(
                        "{}: {len:#x} byte(s) at {offset:#x} of region {} ({}) are not inside one mmap-able area",
                        dev.name(),
                        region.index,
                        region.name
                    )
                })?;
            let m = dev.map_region(region.index, area.offset, area.size)?;
            Some((area.offset, m))
        } else {
            None
        };
        Ok(Access { dev, region, map })
    }

    fn read(&self, offset: u64, width: usize) -> anyhow::Result<u64> {
        match &self.map {
            None => Ok(self.dev.read_width(self.region.index, offset, width)?),
            Some((base, m)) => Ok(vfio_harness::vfio::region::map_read(
                m,
                (offset - base) as usize,
                width,
            )?),
        }
    }

    fn write(&self, offset: u64, width: usize, v: u64) -> anyhow::Result<()> {
        match &self.map {
            None => Ok(self.dev.write_width(self.region.index, offset, width, v)?),
            Some((base, m)) => Ok(vfio_harness::vfio::region::map_write(
                m,
                (offset - base) as usize,
                width,
                v,
            )?),
        }
    }
}

#[derive(Serialize)]
struct RegOut {
    region: u32,
    region_name: String,
    offset: u64,
    width: usize,
    value: u64,
    via: &'static str,
}

#[derive(Serialize)]
struct DumpOut {
    region: u32,
    region_name: String,
    offset: u64,
    len: u64,
    via: &'static str,
    hex: String,
}

fn hexdump(base: u64, data: &[u8]) {
    for (i, chunk) in data.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let asc: String = chunk
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        outln!(
            "{:08x}  {:<48} |{asc}|",
            base + (i * 16) as u64,
            hex.join(" ")
        );
    }
}

/// `len`, or (when 0) the rest of the region from `offset`.
fn whole_len(d: &dyn Device, key: &str, offset: u64, len: u64) -> anyhow::Result<u64> {
    if len != 0 {
        return Ok(len);
    }
    let r = find_region(&d.info().regions, key)
        .with_context(|| format!("{}: no region {key:?}", d.name()))?;
    let rest = r.size.saturating_sub(offset);
    if rest == 0 {
        bail!(
            "{}: nothing at {offset:#x} in region {} ({}) of {:#x} byte(s)",
            d.name(),
            r.index,
            r.name,
            r.size
        );
    }
    Ok(rest)
}

/// Runs `bar`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dev = vfio_harness::open(&args.device, &global.open_options())?;
    let d = dev.as_ref();
    let via = if args.mmap { "mmap" } else { "fd" };
    match args.op {
        Op::Read {
            region,
            offset,
            width,
            count,
        } => {
            let total = (width as u64)
                .checked_mul(count)
                .context("count too large")?;
            let a = Access::new(d, &region, args.mmap, offset, total)?;
            let mut outs = Vec::new();
            for i in 0..count {
                let off = offset + i * width as u64;
                let v = a.read(off, width)?;
                outs.push(RegOut {
                    region: a.region.index,
                    region_name: a.region.name.clone(),
                    offset: off,
                    width,
                    value: v,
                    via,
                });
            }
            if args.json {
                if outs.len() == 1 {
                    print_json(&outs[0])?;
                } else {
                    print_json(&outs)?;
                }
            } else {
                for o in &outs {
                    outln!(
                        "{}[{:#x}] = {:#0w$x}",
                        o.region_name,
                        o.offset,
                        o.value,
                        w = 2 + 2 * width
                    );
                }
            }
        }
        Op::Write {
            region,
            offset,
            value,
            width,
            readback,
        } => {
            let a = Access::new(d, &region, args.mmap, offset, width as u64)?;
            a.write(offset, width, value)?;
            if readback {
                let got = a.read(offset, width)?;
                if got != value {
                    bail!(
                        "{}: {}[{offset:#x}] reads back {got:#x} after writing {value:#x} ({via})",
                        d.name(),
                        a.region.name
                    );
                }
            }
            let o = RegOut {
                region: a.region.index,
                region_name: a.region.name.clone(),
                offset,
                width,
                value,
                via,
            };
            if args.json {
                print_json(&o)?;
            } else {
                outln!(
                    "{}[{:#x}] <- {:#0w$x}",
                    o.region_name,
                    offset,
                    value,
                    w = 2 + 2 * width
                );
            }
        }
        Op::Fill {
            region,
            offset,
            len,
            seed,
            no_readback,
            zeros,
        } => {
            let len = whole_len(d, &region, offset, len)?;
            let a = Access::new(d, &region, args.mmap, offset, len)?;
            let t = std::time::Instant::now();
            let mut buf = vec![0u8; CHUNK.min(len as usize)];
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(buf.len() as u64) as usize;
                let chunk = &mut buf[..n];
                if !zeros {
                    vfio_harness::pattern::fill(seed, offset + done, chunk);
                }
                match &a.map {
                    Some((base, m)) => m.write((offset + done - base) as usize, chunk)?,
                    None => d.write_region(a.region.index, offset + done, chunk)?,
                }
                done += n as u64;
            }
            let write_seconds = t.elapsed().as_secs_f64();
            let mut mismatch = None;
            if !no_readback {
                let mut done = 0u64;
                while done < len && mismatch.is_none() {
                    let n = (len - done).min(buf.len() as u64) as usize;
                    d.read_region(a.region.index, offset + done, &mut buf[..n])?;
                    mismatch = if zeros {
                        buf[..n].iter().position(|&b| b != 0)
                    } else {
                        vfio_harness::pattern::first_mismatch(seed, offset + done, &buf[..n])
                    }
                    .map(|p| done + p as u64);
                    done += n as u64;
                }
            }
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "region": a.region.index,
                        "region_name": a.region.name,
                        "offset": offset,
                        "len": len,
                        "seed": if zeros { None } else { Some(seed) },
                        "zeros": zeros,
                        "via": via,
                        "readback": if no_readback { "none" } else { "fd" },
                        "matched": mismatch.is_none(),
                        "first_mismatch": mismatch,
                        "write_seconds": write_seconds,
                        "write_bytes_per_second": len as f64 / write_seconds.max(1e-9),
                    })
                );
            } else {
                outln!(
                    "{}: wrote {} of {} at {}[{offset:#x}] via {via} in {} ({}), read back via fd: {}",
                    d.name(),
                    format_bytes(len),
                    if zeros { "zeros".to_string() } else { format!("pattern {seed}") },
                    a.region.name,
                    format_seconds(write_seconds),
                    format_rate(len as f64 / write_seconds.max(1e-9)),
                    match (no_readback, mismatch) {
                        (true, _) => "skipped".to_string(),
                        (false, None) => "match".to_string(),
                        (false, Some(p)) => format!("MISMATCH at +{p:#x}"),
                    }
                );
            }
            if let Some(p) = mismatch {
                if zeros {
                    errln!("error: read back is not zero at +{p:#x}");
                } else {
                    errln!("error: read back differs from pattern {seed} at +{p:#x}");
                }
                return Ok(ExitCode::FAILURE);
            }
        }
        Op::Crc {
            region,
            offset,
            len,
            seed,
        } => {
            let len = whole_len(d, &region, offset, len)?;
            let a = Access::new(d, &region, args.mmap, offset, len)?;
            let t = std::time::Instant::now();
            let mut buf = vec![0u8; CHUNK.min(len as usize)];
            let mut h = crc32fast::Hasher::new();
            let mut mismatch = None;
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(buf.len() as u64) as usize;
                let chunk = &mut buf[..n];
                match &a.map {
                    Some((base, m)) => m.read((offset + done - base) as usize, chunk)?,
                    None => d.read_region(a.region.index, offset + done, chunk)?,
                }
                h.update(chunk);
                if let (Some(s), None) = (seed, mismatch) {
                    mismatch = vfio_harness::pattern::first_mismatch(s, offset + done, chunk)
                        .map(|p| done + p as u64);
                }
                done += n as u64;
            }
            let crc = h.finalize();
            let seconds = t.elapsed().as_secs_f64();
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "region": a.region.index,
                        "region_name": a.region.name,
                        "offset": offset,
                        "len": len,
                        "via": via,
                        "crc32": format!("{crc:08x}"),
                        "seed": seed,
                        "matched": seed.map(|_| mismatch.is_none()),
                        "first_mismatch": mismatch,
                        "seconds": seconds,
                    })
                );
            } else {
                let check = match (seed, mismatch) {
                    (None, _) => String::new(),
                    (Some(s), None) => format!(", matches pattern {s}"),
                    (Some(s), Some(p)) => format!(", DIFFERS from pattern {s} at +{p:#x}"),
                };
                outln!(
                    "{}: {}[{offset:#x}..+{len:#x}] crc32 {crc:08x} via {via} in {}{check}",
                    d.name(),
                    a.region.name,
                    format_seconds(seconds)
                );
            }
            if mismatch.is_some() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Op::Dump {
            region,
            offset,
            len,
        } => {
            let r = find_region(&d.info().regions, &region)
                .with_context(|| format!("{}: no region {region:?}", d.name()))?;
            let len = len.unwrap_or_else(|| r.size.saturating_sub(offset).min(256));
            let a = Access::new(d, &region, args.mmap, offset, len)?;
            let mut data = Vec::with_capacity(len as usize);
            let mut off = offset;
            while off < offset + len {
                let w = if off % 4 == 0 && offset + len - off >= 4 {
                    4
                } else {
                    1
                };
                let v = a.read(off, w)?;
                data.extend_from_slice(&v.to_le_bytes()[..w]);
                off += w as u64;
            }
            if args.json {
                let o = DumpOut {
                    region: a.region.index,
                    region_name: a.region.name.clone(),
                    offset,
                    len,
                    via,
                    hex: data.iter().map(|b| format!("{b:02x}")).collect(),
                };
                print_json(&o)?;
            } else {
                hexdump(offset, &data);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
