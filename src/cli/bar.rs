//! `vfio-harness bar`: width-correct register access to a region, by positioned I/O on the
//! device fd or (`--mmap`) through a mapping of the region.

use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Serialize;

use vfio_harness::device::{Device, RegionAccess, RegionInfo, RegionMap};
use vfio_harness::vfio::region::find_region;

use super::Global;

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
        #[arg(long, short, default_value_t = 4)]
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
        #[arg(long, short, default_value_t = 4)]
        width: usize,
        /// Read the register back (through the same path: fd, or the mapping with --mmap)
        /// and fail unless it holds VALUE.
        #[arg(long)]
        readback: bool,
    },
    /// Write a pattern of LEN bytes at OFFSET (through the mapping with --mmap), read it back
    /// through positioned reads on the device fd, and compare.
    Fill {
        /// Region index or name.
        region: String,
        /// Offset in the region.
        #[arg(long, value_parser = parse_u64, default_value = "0")]
        offset: u64,
        /// Length in bytes.
        #[arg(long, value_parser = parse_u64, default_value = "4096")]
        len: u64,
        /// Pattern seed (different seeds give different patterns).
        #[arg(long, default_value_t = 1)]
        seed: u8,
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

/// Parses decimal or `0x` hex.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|e| format!("{s:?} is not a number: {e}"))
}

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
        println!(
            "{:08x}  {:<48} |{asc}|",
            base + (i * 16) as u64,
            hex.join(" ")
        );
    }
}

/// Runs `bar`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dev = vfio_harness::device::open(&args.device, &global.open_options())?;
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
                    println!("{}", serde_json::to_string_pretty(&outs[0])?);
                } else {
                    println!("{}", serde_json::to_string_pretty(&outs)?);
                }
            } else {
                for o in &outs {
                    println!(
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
                println!("{}", serde_json::to_string_pretty(&o)?);
            } else {
                println!(
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
        } => {
            let a = Access::new(d, &region, args.mmap, offset, len)?;
            let pattern: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(seed | 1) ^ ((i >> 8) as u8) ^ seed)
                .collect();
            match &a.map {
                Some((base, m)) => m.write((offset - base) as usize, &pattern)?,
                None => d.write_region(a.region.index, offset, &pattern)?,
            }
            let mut got = vec![0u8; len as usize];
            d.read_region(a.region.index, offset, &mut got)?;
            let mismatch = got.iter().zip(&pattern).position(|(x, y)| x != y);
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "region": a.region.index,
                        "region_name": a.region.name,
                        "offset": offset,
                        "len": len,
                        "via": via,
                        "readback": "fd",
                        "matched": mismatch.is_none(),
                        "first_mismatch": mismatch,
                    })
                );
            } else {
                println!(
                    "{}: wrote {len} pattern byte(s) at {}[{offset:#x}] via {via}, read back via fd: {}",
                    d.name(),
                    a.region.name,
                    match mismatch {
                        None => "match".to_string(),
                        Some(p) => format!("MISMATCH at +{p:#x}"),
                    }
                );
            }
            if let Some(p) = mismatch {
                let end = (p + 16).min(got.len());
                eprintln!(
                    "error: read back differs at +{p:#x}: wrote {:02x?}, read {:02x?}",
                    &pattern[p..end],
                    &got[p..end]
                );
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
                println!("{}", serde_json::to_string_pretty(&o)?);
            } else {
                hexdump(offset, &data);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
