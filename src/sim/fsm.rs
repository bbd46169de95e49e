//! The v2 migration arcs exactly as the kernel's `vfio_mig_get_next_state()` walks them.

use crate::device::{MigFlags, MigState};

/// Flags a state needs to exist (`state_flags_table` in `drivers/vfio/vfio_main.c`).
fn needs(s: MigState) -> u64 {
    match s {
        MigState::Stop | MigState::Running | MigState::StopCopy | MigState::Resuming => {
            MigFlags::STOP_COPY
        }
        MigState::PreCopy => MigFlags::STOP_COPY | MigFlags::PRE_COPY,
        MigState::PreCopyP2p => MigFlags::STOP_COPY | MigFlags::P2P | MigFlags::PRE_COPY,
        MigState::RunningP2p => MigFlags::STOP_COPY | MigFlags::P2P,
        MigState::Error => u64::MAX,
    }
}

/// Whether `s` exists for a device with `flags`.
pub(crate) fn exists(s: MigState, flags: MigFlags) -> bool {
    flags.has(needs(s))
}

/// `vfio_from_fsm_table[cur][new]`: the next arc from `cur` towards `new` with every
/// optional state present.
fn table(cur: MigState, new: MigState) -> MigState {
    use MigState::*;
    if cur == new {
        return cur;
    }
    match (cur, new) {
        (Error, _) | (_, Error) => Error,
        (Stop, Running | PreCopy | PreCopyP2p | RunningP2p) => RunningP2p,
        (Stop, StopCopy) => StopCopy,
        (Stop, Resuming) => Resuming,
        (Stop, Stop) => Stop,
        (Running, PreCopy) => PreCopy,
        (Running, _) => RunningP2p,
        (PreCopy, PreCopyP2p | StopCopy) => PreCopyP2p,
        (PreCopy, _) => Running,
        (PreCopyP2p, PreCopy) => PreCopy,
        (PreCopyP2p, StopCopy) => StopCopy,
        (PreCopyP2p, _) => RunningP2p,
        (StopCopy, PreCopy | PreCopyP2p) => Error,
        (StopCopy, _) => Stop,
        (Resuming, _) => Stop,
        (RunningP2p, Running | PreCopy) => Running,
        (RunningP2p, PreCopyP2p) => PreCopyP2p,
        (RunningP2p, _) => Stop,
    }
}

/// The next single arc from `cur` towards `new` for a device with `flags`, skipping states
/// the device does not have; `None` where the kernel returns `-EINVAL`.
pub(crate) fn next_state(cur: MigState, new: MigState, flags: MigFlags) -> Option<MigState> {
    if !exists(cur, flags) || !exists(new, flags) {
        return None;
    }
    let mut next = table(cur, new);
    while next != MigState::Error && !exists(next, flags) {
        next = table(next, new);
    }
    (next != MigState::Error).then_some(next)
}

/// The whole path the kernel walks from `cur` to `new` (excluding `cur`), or `None`.
#[cfg(test)]
pub(crate) fn path(cur: MigState, new: MigState, flags: MigFlags) -> Option<Vec<MigState>> {
    if !exists(cur, flags) || !exists(new, flags) {
        return None;
    }
    let mut out = Vec::new();
    let mut s = cur;
    while s != new {
        s = next_state(s, new, flags)?;
        out.push(s);
        if out.len() > 8 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use MigState::*;

    const ALL: MigFlags = MigFlags(7);

    #[test]
    fn combination_paths_match_the_kernel_comment() {
        // From the comment above vfio_from_fsm_table (all optional features present).
        let cases: &[(MigState, MigState, &[MigState])] = &[
            (PreCopy, StopCopy, &[PreCopyP2p, StopCopy]),
            (PreCopy, Stop, &[Running, RunningP2p, Stop]),
            (PreCopy, Resuming, &[Running, RunningP2p, Stop, Resuming]),
            (PreCopyP2p, Running, &[RunningP2p, Running]),
            (Resuming, PreCopy, &[Stop, RunningP2p, Running, PreCopy]),
            (Resuming, StopCopy, &[Stop, StopCopy]),
            (Running, StopCopy, &[RunningP2p, Stop, StopCopy]),
            (Stop, PreCopyP2p, &[RunningP2p, PreCopyP2p]),
            (StopCopy, Running, &[Stop, RunningP2p, Running]),
        ];
        for (from, to, want) in cases {
            assert_eq!(
                path(*from, *to, ALL).as_deref(),
                Some(*want),
                "{from}->{to}"
            );
        }
        assert_eq!(path(StopCopy, PreCopy, ALL), None);
        assert_eq!(path(Running, Error, ALL), None);
        assert_eq!(path(Error, Running, ALL), None);
    }

    #[test]
    fn optional_states_are_skipped() {
        let sc = MigFlags(MigFlags::STOP_COPY);
        assert_eq!(
            path(Running, StopCopy, sc).as_deref(),
            Some(&[Stop, StopCopy][..])
        );
        assert_eq!(
            path(Resuming, Running, sc).as_deref(),
            Some(&[Stop, Running][..])
        );
        assert_eq!(path(Running, RunningP2p, sc), None);
        assert_eq!(path(Running, PreCopy, sc), None);
        let pre = MigFlags(MigFlags::STOP_COPY | MigFlags::PRE_COPY);
        assert_eq!(
            path(PreCopy, StopCopy, pre).as_deref(),
            Some(&[StopCopy][..])
        );
        assert_eq!(
            path(PreCopy, Stop, pre).as_deref(),
            Some(&[Running, Stop][..])
        );
        let p2p = MigFlags(MigFlags::STOP_COPY | MigFlags::P2P);
        assert_eq!(
            path(Running, Stop, p2p).as_deref(),
            Some(&[RunningP2p, Stop][..])
        );
        assert_eq!(path(Stop, PreCopy, p2p), None);
    }

    #[test]
    fn every_pair_either_reaches_or_is_refused() {
        for flags in [1u64, 3, 5, 7].map(MigFlags) {
            for a in MigState::ALL {
                for b in MigState::ALL {
                    if let Some(p) = path(a, b, flags) {
                        assert!(exists(a, flags) && exists(b, flags));
                        assert!(p.iter().all(|s| exists(*s, flags)));
                        assert_eq!(p.last().copied().unwrap_or(a), b);
                    }
                }
            }
        }
    }
}
