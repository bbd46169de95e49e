//! Parsing of `sim:key=value,...` device specs.

use crate::device::{DeviceError, MigFlags, MigState, Result};
use crate::units::ByteSize;
use std::time::Duration;

/// Where the migration state lives (`backing=generated|memory`; see the `content.rs` notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Generated on the fly from the seed, never stored: costs no memory, and a save makes no
    /// memory traffic (the default).
    Generated,
    /// Held in real memory of the state's size: reads copy out of it, writes copy into it, as
    /// a driver's `copy_to_user` / `copy_from_user` do. For measuring data paths.
    Memory,
}

/// Which migration protocol the simulated device speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimProtocol {
    /// The region-based v1 protocol (migration region, type 3 / subtype 1).
    V1,
    /// The device-feature v2 protocol.
    V2,
}

/// What a transition selected by `fail-at` does to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// The device stays in the state it was in before the failing arc.
    Stay,
    /// The device goes to ERROR (only a reset recovers it).
    Error,
}

/// Deliberate protocol violations, for testing the harness's defences.
///
/// Besides the first three, each variant breaks one clause of the migration uAPI and is
/// named after the conformance check that must catch it (`violate=state-after-arc`, ...,
/// the same names as the bed's vhgpu `vendor/violate`). The v2 ones act only with
/// `protocol=v2`, the `v1-` ones only with `protocol=v1`. `dma-logging` has no simulator
/// counterpart (the simulator has no DMA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// STOP_COPY reads never reach the end of the stream.
    EndlessRead,
    /// The STOP_COPY size estimate is half the real size.
    WrongStopCopySize,
    /// v1: `data_size` reads back larger than the data section.
    OversizedChunk,
    /// `state-after-arc`: after a SET to STOP from RUNNING, GET reports RUNNING (until the
    /// next SET).
    StateAfterArc,
    /// `new-data-fd`: from the 2nd saving session on, entering a saving state from a
    /// non-saving one hands back the previous session's stream, not restarted.
    NewDataFd,
    /// `stop-copy-eof`: the end of the STOP_COPY stream reads as `ENOMSG`, not 0.
    StopCopyEof,
    /// `read-size`: reads shorter than 4096 bytes fail with `EINVAL`.
    ReadSize,
    /// `session-ends`: after leaving the saving states the stream keeps returning data.
    SessionEnds,
    /// `precopy-info-state`: `VFIO_MIG_GET_PRECOPY_INFO` is answered in STOP_COPY.
    PrecopyInfoState,
    /// `precopy-initial`: `initial_bytes` stays at its first reported value.
    PrecopyInitial,
    /// `precopy-info-agrees`: once data was read, the pre-copy info says 0/0 while reads
    /// still return data.
    PrecopyInfoAgrees,
    /// `precopy-path`: the stream ends as soon as STOP_COPY is entered from PRE_COPY (the
    /// stop-copy part is empty; a destination refuses it as truncated).
    PrecopyPath,
    /// `write-size`: a write that does not complete the stream fails with `EINVAL`.
    WriteSize,
    /// `resume-refuses`: leaving RESUMING accepts a truncated stream.
    ResumeRefuses,
    /// `resume-loads`: leaving RESUMING does not load the (valid) state.
    ResumeLoads,
    /// `reset`: reset leaves the migration state and its streams as they are.
    Reset,
    /// `data-size`: `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE` reports 0.
    DataSize,
    /// `v1-state-bits`: writing `_SAVING | _RESUMING` succeeds and changes nothing.
    V1StateBits,
    /// `v1-pending`: `pending_bytes` never drops below 1 while saving (endless).
    V1Pending,
    /// `v1-data-window`: `data_offset` points past the end of the region.
    V1DataWindow,
    /// `v1-resume-loads`: the v1 resume (the `data_size` commits) loads nothing.
    V1ResumeLoads,
}

impl Violation {
    /// Every violation, in the order of their names' list.
    pub const ALL: &'static [Violation] = &[
        Violation::EndlessRead,
        Violation::WrongStopCopySize,
        Violation::OversizedChunk,
        Violation::StateAfterArc,
        Violation::NewDataFd,
        Violation::StopCopyEof,
        Violation::ReadSize,
        Violation::SessionEnds,
        Violation::PrecopyInfoState,
        Violation::PrecopyInitial,
        Violation::PrecopyInfoAgrees,
        Violation::PrecopyPath,
        Violation::WriteSize,
        Violation::ResumeRefuses,
        Violation::ResumeLoads,
        Violation::Reset,
        Violation::DataSize,
        Violation::V1StateBits,
        Violation::V1Pending,
        Violation::V1DataWindow,
        Violation::V1ResumeLoads,
    ];

    /// The name in `violate=NAME`.
    pub fn name(self) -> &'static str {
        match self {
            Violation::EndlessRead => "endless-read",
            Violation::WrongStopCopySize => "wrong-stop-copy-size",
            Violation::OversizedChunk => "oversized-chunk",
            Violation::StateAfterArc => "state-after-arc",
            Violation::NewDataFd => "new-data-fd",
            Violation::StopCopyEof => "stop-copy-eof",
            Violation::ReadSize => "read-size",
            Violation::SessionEnds => "session-ends",
            Violation::PrecopyInfoState => "precopy-info-state",
            Violation::PrecopyInitial => "precopy-initial",
            Violation::PrecopyInfoAgrees => "precopy-info-agrees",
            Violation::PrecopyPath => "precopy-path",
            Violation::WriteSize => "write-size",
            Violation::ResumeRefuses => "resume-refuses",
            Violation::ResumeLoads => "resume-loads",
            Violation::Reset => "reset",
            Violation::DataSize => "data-size",
            Violation::V1StateBits => "v1-state-bits",
            Violation::V1Pending => "v1-pending",
            Violation::V1DataWindow => "v1-data-window",
            Violation::V1ResumeLoads => "v1-resume-loads",
        }
    }

    /// The violation named `name`.
    pub fn from_name(name: &str) -> Option<Violation> {
        Violation::ALL.iter().copied().find(|v| v.name() == name)
    }
}

/// The simulator's configuration, parsed from the spec parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimParams {
    /// Device name used in messages.
    pub name: String,
    /// Migration protocol (`protocol=v1|v2`, default v2).
    pub protocol: SimProtocol,
    /// Migration state size in bytes (`state=SIZE`, default 64 MiB).
    pub state: u64,
    /// Seed the state content derives from (`seed=N`, default 0).
    pub seed: u64,
    /// When set, a restored state must be the one seed N produces (`verify-seed=N`).
    pub verify_seed: Option<u64>,
    /// Transitions into this state fail (`fail-at=STATE`).
    pub fail_at: Option<MigState>,
    /// What a failing transition does (`fail-mode=stay|error`, default stay).
    pub fail_mode: FailMode,
    /// How many times `fail-at` fires before transitions succeed again (`fail-count=N`,
    /// default: always).
    pub fail_count: Option<u64>,
    /// Largest piece one data read or write handles (`chunk=SIZE`, default unlimited).
    pub chunk: Option<u64>,
    /// Bytes per second the running device dirties while pre-copying (`dirty-rate=SIZE/s`).
    pub dirty_rate: u64,
    /// v2 capability flags (`flags=STOP_COPY|P2P|PRE_COPY`, default all three).
    pub flags: MigFlags,
    /// A protocol violation to commit (`violate=NAME`, see [`Violation`]).
    pub violate: Option<Violation>,
    /// v1: whether the data section is mmap-able (`v1-mmap=0|1`, default 1).
    pub v1_mmap: bool,
    /// v1: data section size (`v1-data=SIZE`, default 256 KiB).
    pub v1_data: u64,
    /// Size of the mmap-able BAR2 (`bar2=SIZE`, a power of two >= 4 KiB, default 16 MiB).
    pub bar2: u64,
    /// Whether the device supports reset (`reset=0|1`, default 1).
    pub reset: bool,
    /// Report the device as an mdev of this type (`mdev-type=NAME`), for compatibility tests.
    pub mdev_type: Option<String>,
    /// Where the state lives (`backing=generated|memory`, default generated).
    pub backing: Backing,
    /// Bandwidth cap of the v2 data stream, bytes per second (`rate=SIZE/s`, default none);
    /// one read or write moves at most a tenth of a second of it.
    pub rate: Option<u64>,
    /// Added to every read and write of the v2 data stream (`latency=DURATION`: `50us`,
    /// `1ms`, `0.5ms`, `2s`; default none).
    pub latency: Duration,
    /// Fraction of the state's 4 KiB pages that are all zeros, in 65536ths
    /// (`zero-pages=FRACTION`: `0.5`, `90%`; default 0). Chosen page by page from the seed.
    pub zero_pages: u32,
    /// Milliseconds each migration data read takes (`read-delay=MS`, default 0): a slow
    /// device, for tests that interrupt a transfer.
    pub read_delay_ms: u64,
}

/// `zero_pages` of a fraction in `0.0..=1.0` (65536ths, rounded).
pub fn zero_pages_of(fraction: f64) -> u32 {
    (fraction.clamp(0.0, 1.0) * 65536.0).round() as u32
}

/// The fraction `zero_pages` 65536ths stand for.
pub fn zero_pages_fraction(zero_pages: u32) -> f64 {
    f64::from(zero_pages.min(65536)) / 65536.0
}

/// Parses a duration: a number with `ns`, `us`, `ms` or `s` (a bare number is seconds).
fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let x: f64 = num.parse().ok()?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        _ => return None,
    };
    let secs = x * scale;
    (secs.is_finite() && (0.0..=3600.0).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            name: "sim".into(),
            protocol: SimProtocol::V2,
            state: 64 << 20,
            seed: 0,
            verify_seed: None,
            fail_at: None,
            fail_mode: FailMode::Stay,
            fail_count: None,
            chunk: None,
            dirty_rate: 0,
            flags: MigFlags(MigFlags::STOP_COPY | MigFlags::P2P | MigFlags::PRE_COPY),
            violate: None,
            v1_mmap: true,
            v1_data: 256 << 10,
            bar2: 16 << 20,
            reset: true,
            mdev_type: None,
            backing: Backing::Generated,
            rate: None,
            latency: Duration::ZERO,
            zero_pages: 0,
            read_delay_ms: 0,
        }
    }
}

/// The largest state the simulator models (2^56 bytes, 64 PiB): its stream adds a record
/// header per record and a header and trailer, and every such size is a `u64`.
pub const MAX_STATE: u64 = 1 << 56;

const KEYS: &str = "protocol, state, seed, verify-seed, fail-at, fail-mode, fail-count, chunk, \
                    dirty-rate, flags, violate, v1-mmap, v1-data, bar2, reset, mdev-type, name, \
                    backing, rate, latency, zero-pages, read-delay";

impl SimParams {
    /// Parses `key=value,...` (what follows `sim:`).
    pub fn parse(params: &str) -> Result<SimParams> {
        let spec = if params.is_empty() {
            "sim".to_string()
        } else {
            format!("sim:{params}")
        };
        let bad = |reason: String| DeviceError::InvalidSpec {
            spec: spec.clone(),
            reason,
        };
        let mut p = SimParams {
            name: spec.clone(),
            ..SimParams::default()
        };
        let size = |k: &str, v: &str| {
            v.parse::<ByteSize>()
                .map(|b| b.0)
                .map_err(|e| bad(format!("{k}: {e}")))
        };
        let num = |k: &str, v: &str| {
            let r = match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse::<u64>(),
            };
            r.map_err(|_| bad(format!("{k}: {v:?} is not a number")))
        };
        let boolean = |k: &str, v: &str| match v {
            "1" | "on" | "yes" | "true" => Ok(true),
            "0" | "off" | "no" | "false" => Ok(false),
            _ => Err(bad(format!("{k}: {v:?} is not 0 or 1"))),
        };
        for kv in params.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| bad(format!("{kv:?} is not key=value (keys: {KEYS})")))?;
            let (k, v) = (k.trim(), v.trim());
            match k {
                "protocol" => {
                    p.protocol = match v.to_ascii_lowercase().as_str() {
                        "v1" | "1" => SimProtocol::V1,
                        "v2" | "2" => SimProtocol::V2,
                        _ => return Err(bad(format!("protocol: {v:?} is not v1 or v2"))),
                    }
                }
                "state" => {
                    let s = size(k, v)?;
                    if s > MAX_STATE {
                        return Err(bad(format!(
                            "state: {s} bytes is more than the simulator models ({MAX_STATE}: \
                             its stream's framing must stay countable in 64 bits)"
                        )));
                    }
                    p.state = s;
                }
                "seed" => p.seed = num(k, v)?,
                "verify-seed" => p.verify_seed = Some(num(k, v)?),
                "fail-at" => {
                    let s: MigState = v
                        .parse()
                        .map_err(|e: String| bad(format!("fail-at: {e}")))?;
                    if s == MigState::Error {
                        return Err(bad(
                            "fail-at: ERROR cannot be entered by a transition".into()
                        ));
                    }
                    p.fail_at = Some(s);
                }
                "fail-mode" => {
                    p.fail_mode = match v {
                        "stay" => FailMode::Stay,
                        "error" => FailMode::Error,
                        _ => return Err(bad(format!("fail-mode: {v:?} is not stay or error"))),
                    }
                }
                "fail-count" => p.fail_count = Some(num(k, v)?),
                "chunk" => {
                    let c = size(k, v)?;
                    if c == 0 {
                        return Err(bad("chunk: must be at least 1 byte".into()));
                    }
                    p.chunk = Some(c);
                }
                "dirty-rate" => {
                    let t = v.strip_suffix("/s").unwrap_or(v);
                    p.dirty_rate = size(k, t)?;
                }
                "flags" => {
                    let f = MigFlags::parse(v).map_err(|e| bad(format!("flags: {e}")))?;
                    if !f.has(MigFlags::STOP_COPY) {
                        return Err(bad("flags: STOP_COPY is mandatory for v2 migration".into()));
                    }
                    p.flags = f;
                }
                "violate" => {
                    p.violate = match v {
                        "" | "none" => None,
                        _ => Some(Violation::from_name(v).ok_or_else(|| {
                            let names: Vec<&str> =
                                Violation::ALL.iter().map(|v| v.name()).collect();
                            bad(format!("violate: {v:?} is not one of {}", names.join(", ")))
                        })?),
                    }
                }
                "v1-mmap" => p.v1_mmap = boolean(k, v)?,
                "v1-data" => {
                    let d = size(k, v)?;
                    if d < 4096 || d % 4096 != 0 || d > 1 << 30 {
                        return Err(bad(
                            "v1-data: must be a multiple of 4 KiB between 4 KiB and 1 GiB".into(),
                        ));
                    }
                    p.v1_data = d;
                }
                "bar2" => {
                    let b = size(k, v)?;
                    if b < 4096 || !b.is_power_of_two() || b > 1 << 34 {
                        return Err(bad(
                            "bar2: must be a power of two between 4 KiB and 16 GiB".into()
                        ));
                    }
                    p.bar2 = b;
                }
                "reset" => p.reset = boolean(k, v)?,
                "read-delay" => p.read_delay_ms = num(k, v)?,
                "mdev-type" => {
                    if v.is_empty() {
                        return Err(bad("mdev-type: empty".into()));
                    }
                    p.mdev_type = Some(v.to_string());
                }
                "backing" => {
                    p.backing = match v {
                        "generated" => Backing::Generated,
                        "memory" => Backing::Memory,
                        _ => return Err(bad(format!("backing: {v:?} is not generated or memory"))),
                    }
                }
                "rate" => {
                    let r = size(k, v.strip_suffix("/s").unwrap_or(v))?;
                    p.rate = (r > 0).then_some(r);
                }
                "latency" => {
                    p.latency = parse_duration(v).ok_or_else(|| {
                        bad(format!(
                            "latency: {v:?} is not a duration up to an hour (50us, 1ms, 0.5s)"
                        ))
                    })?;
                }
                "zero-pages" => {
                    let (num, scale) = match v.strip_suffix('%') {
                        Some(n) => (n, 100.0),
                        None => (v, 1.0),
                    };
                    let f = num
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .map(|x| x / scale)
                        .filter(|x| (0.0..=1.0).contains(x))
                        .ok_or_else(|| {
                            bad(format!(
                                "zero-pages: {v:?} is not a fraction in 0..1 (0.5, 90%)"
                            ))
                        })?;
                    p.zero_pages = zero_pages_of(f);
                }
                "name" => {
                    if v.is_empty() {
                        return Err(bad("name: empty".into()));
                    }
                    p.name = v.to_string();
                }
                _ => return Err(bad(format!("unknown parameter {k:?} (keys: {KEYS})"))),
            }
        }
        if let Some(s) = p.fail_at {
            if p.protocol == SimProtocol::V1
                && matches!(s, MigState::RunningP2p | MigState::PreCopyP2p)
            {
                return Err(bad(format!("fail-at: {s} does not exist in migration v1")));
            }
            if p.protocol == SimProtocol::V2 && !crate::device::fsm::state_exists(p.flags, s) {
                return Err(bad(format!(
                    "fail-at: {s} does not exist with flags {}",
                    p.flags
                )));
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_everything() {
        let p = SimParams::parse(
            "protocol=v1,state=1G,seed=7,verify-seed=0x7,fail-at=stop-copy,fail-mode=error,\
             fail-count=2,chunk=64K,dirty-rate=10M/s,violate=endless-read,v1-mmap=0,v1-data=1M,\
             bar2=4M,reset=0,mdev-type=sim-1,name=src",
        )
        .unwrap();
        assert_eq!(p.protocol, SimProtocol::V1);
        assert_eq!(p.state, 1 << 30);
        assert_eq!((p.seed, p.verify_seed), (7, Some(7)));
        assert_eq!(p.fail_at, Some(MigState::StopCopy));
        assert_eq!((p.fail_mode, p.fail_count), (FailMode::Error, Some(2)));
        assert_eq!((p.chunk, p.dirty_rate), (Some(64 << 10), 10 << 20));
        assert_eq!(p.violate, Some(Violation::EndlessRead));
        assert!(!p.v1_mmap && !p.reset);
        assert_eq!((p.v1_data, p.bar2), (1 << 20, 4 << 20));
        assert_eq!(
            (p.name.as_str(), p.mdev_type.as_deref()),
            ("src", Some("sim-1"))
        );
        let m = SimParams::parse("backing=memory,rate=2G/s,latency=50us,zero-pages=0.5").unwrap();
        assert_eq!(m.backing, Backing::Memory);
        assert_eq!(m.rate, Some(2 << 30));
        assert_eq!(m.latency, Duration::from_micros(50));
        assert_eq!(m.zero_pages, 32768);
        assert_eq!(zero_pages_fraction(m.zero_pages), 0.5);
        let m = SimParams::parse("rate=1M,latency=1.5ms,zero-pages=100%").unwrap();
        assert_eq!((m.rate, m.zero_pages), (Some(1 << 20), 65536));
        assert_eq!(m.latency, Duration::from_micros(1500));
        assert_eq!(
            SimParams::parse("latency=2").unwrap().latency,
            Duration::from_secs(2)
        );
        for v in Violation::ALL {
            let p = SimParams::parse(&format!("violate={}", v.name())).unwrap();
            assert_eq!(p.violate, Some(*v));
        }
        assert_eq!(SimParams::parse("violate=none").unwrap().violate, None);
        let d = SimParams::parse("").unwrap();
        assert_eq!(
            (d.backing, d.rate, d.zero_pages),
            (Backing::Generated, None, 0)
        );
        assert_eq!(
            (d.protocol, d.state, d.flags.0),
            (SimProtocol::V2, 64 << 20, 7)
        );
        assert_eq!(SimParams::parse("flags=STOP_COPY|P2P").unwrap().flags.0, 3);
    }

    #[test]
    fn refuses_bad_specs_with_reasons() {
        for (spec, why) in [
            ("protocol=v3", "protocol"),
            ("state=12Q", "state"),
            ("state=65537T", "more than the simulator models"),
            ("seed=x", "seed"),
            ("fail-at=flying", "fail-at"),
            ("fail-at=error", "ERROR"),
            ("flags=P2P", "STOP_COPY is mandatory"),
            ("flags=STOP_COPY,fail-at=pre-copy", "does not exist"),
            ("protocol=v1,fail-at=running-p2p", "v1"),
            ("chunk=0", "chunk"),
            ("bar2=5000", "power of two"),
            ("v1-data=100", "v1-data"),
            ("violate=nothing", "violate"),
            ("colour=blue", "unknown parameter"),
            ("state", "key=value"),
            ("backing=disk", "backing"),
            ("rate=fast", "rate"),
            ("latency=1 fortnight", "latency"),
            ("latency=2h", "latency"),
            ("zero-pages=1.5", "zero-pages"),
            ("zero-pages=-1", "zero-pages"),
        ] {
            match SimParams::parse(spec) {
                Err(DeviceError::InvalidSpec { reason, .. }) => {
                    assert!(reason.contains(why), "{spec}: {reason}")
                }
                other => panic!("{spec}: {other:?}"),
            }
        }
    }
}
