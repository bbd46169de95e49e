//! The `parallel` mode: 1, 2, 4 (`--devices`) devices saving into discarding writers at
//! once, the harness and the raw loops (rotating), reported as aggregate rate and scaling over
//! one device. Thread budget: each device's save runs on two threads (reading overlapped with
//! framing and hashing) only when there are two CPUs per device, else on one; the raw loops
//! use one thread per device.

use super::{alloc, opts, BlockId, Run};
use crate::bench::config::{DataPath, Kind, SIDE_STATE};
use crate::bench::devices::{driver, sim_memory, sim_params};
use crate::bench::error::{mig, BenchError};
use crate::bench::raw;
use crate::bench::report::{make_row, ParallelPoint, ParallelReport, RowInput};
use crate::bench::stats::{ratio, round4, throughput, Summary};
use crate::bench::timing::{timed_group, Job};
use crate::device::DeviceHandle;
use crate::migration::engine::{self, RING};
use crate::migration::{MigrationDriver, MigrationError};
use crate::units::format_bytes;
use std::sync::Barrier;
use std::time::Instant;

/// One parallel transfer: total bytes and each device's own rate.
#[derive(Clone, Debug, Default)]
struct Par {
    bytes: u64,
    per_device: Vec<f64>,
}

/// One device's transfer in a parallel run: `(bytes, seconds)`.
type DeviceJob<'a> =
    dyn Fn(usize, &mut dyn MigrationDriver) -> Result<(u64, f64), MigrationError> + Sync + 'a;

/// Runs `f` on every driver at once, one thread each, released together; the wall time (the
/// first thread's start to the last one's end, each timed by itself: the releasing thread
/// may well run last on a small machine) and what they moved.
fn at_once(
    drivers: &mut [Box<dyn MigrationDriver>],
    f: &DeviceJob<'_>,
) -> Result<(f64, Par), BenchError> {
    let n = drivers.len();
    let barrier = Barrier::new(n);
    let outs = std::thread::scope(|s| {
        let handles: Vec<_> = drivers
            .iter_mut()
            .enumerate()
            .map(|(i, d)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let t0 = Instant::now();
                    let r = f(i, d.as_mut());
                    (t0, Instant::now(), r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    let now = Instant::now();
                    (
                        now,
                        now,
                        Err(MigrationError::ThreadPanicked("parallel save")),
                    )
                })
            })
            .collect::<Vec<_>>()
    });
    let mut p = Par::default();
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    for (i, (t0, t1, o)) in outs.into_iter().enumerate() {
        let (bytes, secs) = o.map_err(mig(format!("parallel: device {i}")))?;
        p.bytes += bytes;
        p.per_device.push(throughput(bytes, secs).unwrap_or(0.0));
        first = Some(first.map_or(t0, |f| f.min(t0)));
        last = Some(last.map_or(t1, |l| l.max(t1)));
    }
    let wall = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    Ok((wall, p))
}

/// The devices of a point: `n` simulated ones of `state` bytes, or the first `n` kernel
/// devices given. `None` (noted) when there are not enough.
fn devices_for(
    run: &mut Run<'_>,
    n: usize,
    state: u64,
) -> Result<Option<Vec<DeviceHandle>>, BenchError> {
    let Some(base) = run.devs.sim_base.clone() else {
        if run.devs.parallel.len() < n {
            run.note(format!(
                "parallel: {n} devices: skipped, {} were given",
                run.devs.parallel.len()
            ));
            return Ok(None);
        }
        return Ok(Some(run.devs.parallel[..n].to_vec()));
    };
    let per = sim_memory(&base, state);
    if per > 0 && !run.can_hold(per * n as u64, &format!("parallel: {n} devices")) {
        return Ok(None);
    }
    let seed = crate::bench::devices::sim_seed(&base);
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let p = sim_params(
            &base,
            state,
            &[
                ("state", crate::bench::devices::size_param(state)),
                ("seed", seed.wrapping_add(10 + i).to_string()),
                ("name", format!("sim-parallel-{i}")),
            ],
        );
        let spec: crate::device::DeviceSpec = format!("sim:{p}").parse()?;
        out.push(crate::open::open(&spec, &run.cfg.open)?);
    }
    Ok(Some(out))
}

/// The parallel rows (`parallel-save`, `raw` and `harness` at every device count) and the
/// scaling summary.
pub(in crate::bench) fn measure(run: &mut Run<'_>) -> Result<ParallelReport, BenchError> {
    let cfg = run.cfg;
    let cores = crate::bench::machine::cores();
    let mut counts = cfg.parallel_devices.clone();
    counts.push(1);
    counts.sort_unstable();
    counts.dedup();
    let state = cfg.state.min(SIDE_STATE);
    let b = cfg.buffer;
    let mut points: Vec<ParallelPoint> = Vec::new();
    for n in counts {
        cfg.check_cancel()?;
        run.progress.step(&format!("parallel, {n} device(s)"));
        let Some(devs) = devices_for(run, n, state)? else {
            continue;
        };
        let mut drivers = Vec::with_capacity(n);
        for d in &devs {
            drivers.push(driver(d)?);
        }
        let mem: u64 = devs.iter().map(crate::bench::devices::memory_of).sum();
        let overlap = cfg.overlap && cores >= 2 * n;
        let mut o = opts(cfg, b);
        o.overlap = overlap;
        let mut bufs = Vec::with_capacity(n);
        for _ in 0..n {
            bufs.push(std::sync::Mutex::new(alloc(b, "a parallel raw buffer")?));
        }
        let drivers = std::cell::RefCell::new(drivers);
        let (dr, bufs, o) = (&drivers, &bufs, &o);
        let mut jobs: Vec<Job<'_, Par>> = vec![
            Box::new(move || {
                at_once(&mut dr.borrow_mut(), &|i, d| {
                    let mut buf = bufs[i].lock().unwrap_or_else(|e| e.into_inner());
                    raw::save(d, &mut buf, None).map(|r| (r.bytes, r.seconds))
                })
            }),
            Box::new(move || {
                at_once(&mut dr.borrow_mut(), &|_, d| {
                    engine::save(d, std::io::sink(), "discard", o).map(|r| (r.1.bytes, r.1.seconds))
                })
            }),
        ];
        let timed = timed_group(cfg, &mut jobs, cfg.warmup, |_| Ok(()), |_| false)?;
        drop(jobs);
        let threads = if overlap { 2 * n } else { n };
        let name = devs
            .first()
            .map(|d| d.name().to_string())
            .unwrap_or_default();
        let device = format!("{name} (+{} more)", n - 1);
        let id = BlockId {
            op: "parallel-save",
            path: DataPath::Memory,
            device: &device,
            protocol: &run.protocol,
            device_memory: run.devs.memory_bytes() + mem,
        };
        let mut rates = [0.0f64; 2];
        let mut per_device = Vec::new();
        for (k, (kind, t)) in [Kind::Raw, Kind::Harness]
            .into_iter()
            .zip(timed)
            .enumerate()
        {
            let secs: Vec<f64> = t.samples.iter().map(|s| s.0).collect();
            let last = t.samples.last().map(|s| s.1.clone()).unwrap_or_default();
            let mut row = make_row(RowInput {
                op: id.op,
                path: id.path,
                kind,
                device: id.device,
                protocol: id.protocol,
                what: format!(
                    "{n} device(s) saving into discarding writers at once, {}",
                    match (kind, overlap) {
                        (Kind::Harness, true) => "two threads each",
                        _ => "one thread each",
                    }
                ),
                buffer: b,
                buffers_bytes: n as u64
                    * b
                    * if kind == Kind::Harness && overlap {
                        RING as u64
                    } else {
                        1
                    },
                bytes: last.bytes,
                stream_bytes: None,
                seconds: secs,
                positions: t.positions.clone(),
                downtime: None,
                peak: t.peak,
                scope: t.scope,
                device_memory: id.device_memory,
                cpu: Some(t.cpu),
                verified: false,
            });
            row.devices = Some(n);
            rates[k] = row.throughput_bytes_per_s;
            let base = points.first().map(|p| {
                if kind == Kind::Harness {
                    p.aggregate_bytes_per_s
                } else {
                    p.raw_aggregate_bytes_per_s.unwrap_or(0.0)
                }
            });
            row.scaling = if n == 1 {
                Some(1.0)
            } else {
                ratio(row.throughput_bytes_per_s, base).map(round4)
            };
            if let Some(s) = row.scaling {
                row.ratios.push(crate::bench::report::RatioTo {
                    to: "one device".into(),
                    ratio: s,
                });
                row.ratio = Some(s);
                row.ratio_to = Some("one device".into());
            }
            if kind == Kind::Harness {
                per_device = (0..n)
                    .map(|i| {
                        let v: Vec<f64> = t
                            .samples
                            .iter()
                            .filter_map(|s| s.1.per_device.get(i).copied())
                            .collect();
                        Summary::of(&v).map(|s| s.median.round()).unwrap_or(0.0)
                    })
                    .collect();
            }
            run.results.push(row);
        }
        let (raw_rate, harness_rate) = (rates[0], rates[1]);
        let one = points.first();
        points.push(ParallelPoint {
            devices: n,
            overlap,
            threads,
            aggregate_bytes_per_s: harness_rate,
            scaling: if n == 1 {
                Some(1.0)
            } else {
                one.and_then(|p| ratio(harness_rate, Some(p.aggregate_bytes_per_s)))
                    .map(round4)
            },
            per_device_bytes_per_s: per_device,
            raw_aggregate_bytes_per_s: Some(raw_rate),
            raw_scaling: if n == 1 {
                Some(1.0)
            } else {
                one.and_then(|p| ratio(raw_rate, p.raw_aggregate_bytes_per_s))
                    .map(round4)
            },
        });
    }
    Ok(ParallelReport {
        cores,
        state_bytes: state,
        thread_budget: format!(
            "{cores} CPU(s): each device's save runs on two threads (device reads on one; \
             framing, checksum and writing on the other) only when there are two CPUs per \
             device, otherwise on one, since a second thread per device would only compete \
             with the other devices for the same CPUs (and costs more CPU per byte: the data \
             crosses from one core's cache to another's); the raw loops use one thread per \
             device; each device saves {} with {} buffers",
            format_bytes(state),
            format_bytes(b)
        ),
        points,
    })
}
