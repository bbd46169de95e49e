//! `vfio-harness dirty-log`: DMA dirty logging (`VFIO_DEVICE_FEATURE_DMA_LOGGING_*`) checked
//! against what the device really wrote. Maps a buffer over the logged IOVA range, STARTs
//! logging, has the device's DMA engine (its test driver: vhgpu) write each `--write
//! OFFSET:LEN` piece of the range (and read each `--read` piece, which must not count),
//! REPORTs, REPORTs again (must be empty: REPORT clears), STOPs, and prints the pages
//! written next to the pages reported. With `--refusals` it also sends requests the device
//! must refuse and prints each errno.
//!
//! Exit status 0 when every written page was reported, the second REPORT was empty and every
//! bad request was refused; extra reported pages are allowed (the uAPI lets a device report
//! more than it wrote) and listed.
//!
//! JSON (`--json`): `device`, `driver`, `iova`, `len`, `page_size_requested`, `page_size`
//! (chosen by the device), `report_page_size`, `writes` and `reads` [{`iova`, `len`,
//! `transfers`}], `written_pages`, `written` [{`start`, `last`}], `reported` {`pages`,
//! `pages_dirty`, `first_dirty_iova`, `last_dirty_iova`}, `dirty` [{`start`, `last`}],
//! `bitmap` (hex words), `missing`, `extra` (ranges), `second_report_pages`, `refusals`
//! [{`what`, `refused`, `errno`, `detail`}], `passed`.

use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use vfio_harness::drivers::dirty_log::{dirty_log, DirtyLogJob, DirtyLogReport};
use vfio_harness::drivers::space::kernel_context;
use vfio_harness::units::ByteSize;
use vfio_harness::vfio::IovaRange;

use super::args::{parse_range, parse_u64};
use super::output::print_json;
use super::Global;

/// Arguments of `dirty-log`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The device (a kernel device with DMA logging and a registered DMA driver: vhgpu).
    pub device: vfio_harness::DeviceSpec,
    /// IOVA of the logged range (page-size aligned); default: the lowest one the IOMMU
    /// allows above 1 MiB.
    #[arg(long, value_parser = parse_u64)]
    pub iova: Option<u64>,
    /// Bytes logged (a host buffer this large is mapped there).
    #[arg(long, default_value = "1M")]
    pub len: ByteSize,
    /// Page size asked for at START (the device may choose another; it is printed).
    #[arg(long, default_value = "4K")]
    pub page_size: ByteSize,
    /// Page size of the REPORT (default: the one the device chose).
    #[arg(long)]
    pub report_page_size: Option<ByteSize>,
    /// A piece the device writes by DMA, as OFFSET:LEN inside the logged range (repeatable;
    /// K/M/G and 0x accepted).
    #[arg(long = "write", value_name = "OFFSET:LEN", value_parser = parse_range)]
    pub writes: Vec<(u64, u64)>,
    /// A piece the device only reads by DMA (into its memory), as OFFSET:LEN (repeatable):
    /// DMA reads are not logged, so these pages must not be reported unless also written.
    #[arg(long = "read", value_name = "OFFSET:LEN", value_parser = parse_range)]
    pub reads: Vec<(u64, u64)>,
    /// Device-memory offset the DMA copies from.
    #[arg(long, value_parser = parse_u64, default_value = "0")]
    pub dev_offset: u64,
    /// Also send bad requests (misaligned, overlapping, empty ranges, a REPORT outside the
    /// range or without a session, a second START) and check each is refused.
    #[arg(long)]
    pub refusals: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Out<'a> {
    #[serde(flatten)]
    report: &'a DirtyLogReport,
    passed: bool,
}

fn ranges(r: &[IovaRange]) -> String {
    if r.is_empty() {
        return "none".into();
    }
    r.iter()
        .map(|r| format!("{:#x}-{:#x}", r.start, r.last))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `dirty-log`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<ExitCode> {
    let dev = vfio_harness::open(&args.device, &global.open_options())?;
    let ctx = kernel_context(dev.as_ref()).with_context(|| {
        format!(
            "{}: DMA dirty logging needs a kernel device (an IOMMU context)",
            dev.name()
        )
    })?;
    if args.len.bytes() == 0 || args.page_size.bytes() == 0 {
        usage!("--len and --page-size must not be 0");
    }
    let job = DirtyLogJob {
        iova: args.iova,
        len: args.len.bytes(),
        page_size: args.page_size.bytes(),
        report_page_size: args.report_page_size.map(|p| p.bytes()),
        writes: args.writes.clone(),
        reads: args.reads.clone(),
        dev_offset: args.dev_offset,
        refusals: args.refusals,
    };
    let r = dirty_log(dev.as_ref(), ctx, &job)?;
    let passed = r.passed();
    if args.json {
        print_json(&Out { report: &r, passed })?;
    } else {
        outln!(
            "{}: DMA logging over IOVA {:#x}+{:#x}, page size {} (asked {}), reported in pages of {}",
            r.device, r.iova, r.len, r.page_size, r.page_size_requested, r.report_page_size
        );
        for w in &r.writes {
            outln!(
                "  the {} DMA engine wrote {:#x}+{:#x} ({} transfer(s))",
                r.driver,
                w.iova,
                w.len,
                w.transfers
            );
        }
        for w in &r.reads {
            outln!(
                "  the {} DMA engine read  {:#x}+{:#x} ({} transfer(s))",
                r.driver,
                w.iova,
                w.len,
                w.transfers
            );
        }
        outln!(
            "written pages:  {:>6}  {}",
            r.written_pages,
            ranges(&r.written)
        );
        outln!(
            "reported dirty: {:>6}  {}",
            r.reported.pages_dirty,
            ranges(&r.dirty)
        );
        outln!(
            "missing (written, not reported): {}; extra (reported, not written): {}",
            ranges(&r.missing),
            ranges(&r.extra)
        );
        outln!(
            "second REPORT: {} dirty page(s) (REPORT clears the log)",
            r.second_report_pages
        );
        for f in &r.refusals {
            outln!(
                "  {:<52} {}",
                f.what,
                if f.refused {
                    format!("refused: {}", f.detail)
                } else {
                    "ACCEPTED (must be refused)".into()
                }
            );
        }
    }
    if !passed {
        errln!(
            "error: DMA logging check failed ({} page(s) missing, second REPORT {} page(s), {} bad request(s) accepted)",
            r.missing.iter().map(|m| (m.last - m.start) / r.report_page_size + 1).sum::<u64>(),
            r.second_report_pages,
            r.refusals.iter().filter(|f| !f.refused).count()
        );
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
