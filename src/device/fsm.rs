//! The migration v2 finite state machine, exactly as the kernel defines it.
//!
//! Three things live here, all pure (no device access):
//! - which states exist for a device's capability flags ([`state_exists`], [`states`]);
//! - the single arcs a driver implements ([`is_arc`], [`arcs`]), from the comment above
//!   `enum vfio_device_mig_state` in `include/uapi/linux/vfio.h`;
//! - the path the kernel walks for any requested transition ([`next_step`], [`path`]): a
//!   transcription of the table-driven `vfio_mig_get_next_state()` of
//!   `drivers/vfio/vfio_main.c` (Linux 6.12). Every kernel migration driver loops on that
//!   function, so the path here is the sequence of arcs the vendor driver actually executes
//!   when user space asks for a combination transition such as RUNNING -> STOP_COPY.
//!
//! The path rules (vfio.h): shortest path; saving-group states (PRE_COPY, PRE_COPY_P2P,
//! STOP_COPY) are never interior, except that a transition between two saving states stays
//! inside the saving group (the data session is never torn down and reopened), which is why
//! STOP_COPY -> PRE_COPY is refused. ERROR can never be requested.

use crate::device::{MigFlags, MigState};

/// Number of states (`VFIO_DEVICE_STATE_NR`).
const NR: usize = 8;

use MigState::{
    Error as E, PreCopy as PC, PreCopyP2p as PCP, Resuming as RES, Running as RUN,
    RunningP2p as RP, Stop as ST, StopCopy as SC,
};

/// `vfio_from_fsm_table[cur][new]`: the next state when at `cur` heading to `new`, before
/// unsupported states are skipped. Indexed by the uAPI values
/// (ERROR, STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P).
const FROM_FSM_TABLE: [[MigState; NR]; NR] = [
    // from ERROR
    [E, E, E, E, E, E, E, E],
    // from STOP
    [E, ST, RP, SC, RES, RP, RP, RP],
    // from RUNNING
    [E, RP, RUN, RP, RP, RP, PC, RP],
    // from STOP_COPY
    [E, ST, ST, SC, ST, ST, E, E],
    // from RESUMING
    [E, ST, ST, ST, RES, ST, ST, ST],
    // from RUNNING_P2P
    [E, ST, RUN, ST, ST, RP, RUN, PCP],
    // from PRE_COPY
    [E, RUN, RUN, PCP, RUN, RUN, PC, PCP],
    // from PRE_COPY_P2P
    [E, RP, RP, SC, RP, RP, PC, PCP],
];

/// `state_flags_table`: the capability flags a state needs (ERROR: `~0U`, i.e. never).
fn required_flags(s: MigState) -> u64 {
    match s {
        ST | RUN | SC | RES => MigFlags::STOP_COPY,
        RP => MigFlags::STOP_COPY | MigFlags::P2P,
        PC => MigFlags::STOP_COPY | MigFlags::PRE_COPY,
        PCP => MigFlags::STOP_COPY | MigFlags::P2P | MigFlags::PRE_COPY,
        E => u32::MAX as u64,
    }
}

/// Whether `state` exists for a device with these capability flags (ERROR never counts: it
/// cannot be requested). STOP_COPY is mandatory: without it no state exists.
pub fn state_exists(flags: MigFlags, state: MigState) -> bool {
    state != E && flags.has(required_flags(state))
}

/// The states that exist for these flags, in uAPI order.
pub fn states(flags: MigFlags) -> Vec<MigState> {
    MigState::ALL
        .into_iter()
        .filter(|s| state_exists(flags, *s))
        .collect()
}

/// Whether `s` belongs to the saving group (states that share one data transfer session).
pub fn is_saving(s: MigState) -> bool {
    matches!(s, PC | PCP | SC)
}

/// Whether `from -> to` is a single arc a driver with these flags implements (the list in
/// the comment of `vfio_mig_get_next_state()`, derived from vfio.h).
pub fn is_arc(flags: MigFlags, from: MigState, to: MigState) -> bool {
    if !state_exists(flags, from) || !state_exists(flags, to) || from == to {
        return false;
    }
    let p2p = flags.has(MigFlags::P2P);
    let pre = flags.has(MigFlags::PRE_COPY);
    match (from, to) {
        // Mandatory.
        (RES, ST) | (ST, RES) | (ST, SC) | (SC, ST) => true,
        // RUNNING <-> STOP directly only without P2P; with P2P through RUNNING_P2P.
        (RUN, ST) | (ST, RUN) => !p2p,
        (RUN, RP) | (RP, RUN) | (RP, ST) | (ST, RP) => p2p,
        // Pre-copy.
        (RUN, PC) | (PC, RUN) => pre,
        (PC, SC) => pre && !p2p,
        (PC, PCP) | (PCP, PC) | (PCP, RP) | (PCP, SC) | (RP, PCP) => pre && p2p,
        _ => false,
    }
}

/// Every single arc for these flags, in uAPI order of (from, to).
pub fn arcs(flags: MigFlags) -> Vec<(MigState, MigState)> {
    let mut v = Vec::new();
    for a in MigState::ALL {
        for b in MigState::ALL {
            if is_arc(flags, a, b) {
                v.push((a, b));
            }
        }
    }
    v
}

/// Why a transition cannot be walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FsmError {
    /// The current state does not exist for these flags (or is ERROR: reset the device).
    #[error("the device cannot leave {0} with these migration flags (ERROR needs a reset)")]
    BadCurrent(MigState),
    /// The requested state does not exist for these flags, or is ERROR.
    #[error("state {0} cannot be requested with these migration flags")]
    BadTarget(MigState),
    /// The kernel refuses this combination (STOP_COPY -> PRE_COPY, STOP_COPY -> PRE_COPY_P2P).
    #[error("the transition {0} -> {1} is not permitted")]
    Blocked(MigState, MigState),
}

/// `vfio_mig_get_next_state()`: the next single arc from `cur` towards `new`.
///
/// Returns `cur` itself when `cur == new`. Unsupported intermediate states are skipped the way
/// the kernel skips them (the table is consulted again from the skipped state).
pub fn next_step(flags: MigFlags, cur: MigState, new: MigState) -> Result<MigState, FsmError> {
    let supported = |s: MigState| flags.has(required_flags(s));
    if !supported(cur) {
        return Err(FsmError::BadCurrent(cur));
    }
    if !supported(new) {
        return Err(FsmError::BadTarget(new));
    }
    let mut next = FROM_FSM_TABLE[cur as usize][new as usize];
    while next != E && !supported(next) {
        next = FROM_FSM_TABLE[next as usize][new as usize];
    }
    if next == E {
        return Err(if cur == E {
            FsmError::BadCurrent(cur)
        } else if new == E {
            FsmError::BadTarget(new)
        } else {
            FsmError::Blocked(cur, new)
        });
    }
    Ok(next)
}

/// The states the kernel passes through from `cur` to `new`, excluding `cur` and including
/// `new` (empty when `cur == new`).
pub fn path(flags: MigFlags, cur: MigState, new: MigState) -> Result<Vec<MigState>, FsmError> {
    let mut out = Vec::new();
    let mut at = cur;
    if !flags.has(required_flags(cur)) || cur == E {
        return Err(FsmError::BadCurrent(cur));
    }
    while at != new {
        let n = next_step(flags, at, new)?;
        out.push(n);
        at = n;
        // The table always makes progress; this bound only guards against a future edit
        // introducing a cycle.
        if out.len() > NR {
            return Err(FsmError::Blocked(cur, new));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Every flag combination (STOP_COPY without and with the optional bits), plus the
    /// malformed "no STOP_COPY" combinations.
    fn all_flags() -> Vec<MigFlags> {
        (0..8).map(MigFlags).collect()
    }

    /// BFS reference with the vfio.h rules: shortest path over single arcs; saving states
    /// never interior, unless both ends are saving states, in which case the whole path must
    /// stay inside the saving group. Returns the shortest length, or None.
    fn bfs_len(flags: MigFlags, from: MigState, to: MigState) -> Option<usize> {
        if !state_exists(flags, from) || !state_exists(flags, to) {
            return None;
        }
        let both_saving = is_saving(from) && is_saving(to);
        let mut dist = [usize::MAX; NR];
        dist[from as usize] = 0;
        let mut q = VecDeque::from([from]);
        while let Some(a) = q.pop_front() {
            if a == to {
                return Some(dist[a as usize]);
            }
            // `a` is interior (not the start, not the target): apply the rules.
            if a != from {
                if both_saving && !is_saving(a) {
                    continue;
                }
                if !both_saving && is_saving(a) {
                    continue;
                }
            }
            for b in MigState::ALL {
                if is_arc(flags, a, b) && dist[b as usize] == usize::MAX {
                    if both_saving && !is_saving(b) {
                        continue;
                    }
                    dist[b as usize] = dist[a as usize] + 1;
                    q.push_back(b);
                }
            }
        }
        None
    }

    #[test]
    fn states_per_flags() {
        let sc = MigFlags(MigFlags::STOP_COPY);
        assert_eq!(states(sc), [ST, RUN, SC, RES]);
        assert_eq!(
            states(MigFlags(MigFlags::STOP_COPY | MigFlags::P2P)),
            [ST, RUN, SC, RES, RP]
        );
        assert_eq!(
            states(MigFlags(MigFlags::STOP_COPY | MigFlags::PRE_COPY)),
            [ST, RUN, SC, RES, PC]
        );
        assert_eq!(states(MigFlags(7)), [ST, RUN, SC, RES, RP, PC, PCP]);
        for f in [0, MigFlags::P2P, MigFlags::PRE_COPY, 6] {
            assert!(states(MigFlags(f)).is_empty(), "flags {f:#x}");
        }
    }

    #[test]
    fn arc_lists_match_vfio_h() {
        assert_eq!(
            arcs(MigFlags(MigFlags::STOP_COPY)),
            [
                (ST, RUN),
                (ST, SC),
                (ST, RES),
                (RUN, ST),
                (SC, ST),
                (RES, ST)
            ]
        );
        let all = arcs(MigFlags(7));
        assert_eq!(all.len(), 15);
        for a in [(RUN, ST), (ST, RUN), (PC, SC)] {
            assert!(!all.contains(&a), "{a:?} must not be a single arc with P2P");
        }
        for a in [
            (RUN, RP),
            (RP, RUN),
            (RP, ST),
            (ST, RP),
            (RUN, PC),
            (PC, RUN),
            (PC, PCP),
            (PCP, PC),
            (PCP, RP),
            (PCP, SC),
            (RP, PCP),
        ] {
            assert!(all.contains(&a), "{a:?} missing");
        }
        let pre = arcs(MigFlags(MigFlags::STOP_COPY | MigFlags::PRE_COPY));
        assert!(pre.contains(&(PC, SC)) && pre.contains(&(RUN, ST)));
    }

    #[test]
    fn every_pair_every_flag_combination() {
        for flags in all_flags() {
            for from in MigState::ALL {
                for to in MigState::ALL {
                    let got = path(flags, from, to);
                    let reference = bfs_len(flags, from, to);
                    if to == E {
                        assert!(got.is_err(), "ERROR accepted as target ({flags}, {from})");
                    }
                    match (&got, reference) {
                        (Ok(p), Some(n)) => {
                            assert_eq!(p.len(), n, "{flags}: {from} -> {to}: {p:?} not shortest");
                            assert_eq!(p.last().copied().unwrap_or(from), to);
                            let mut at = from;
                            for (i, s) in p.iter().enumerate() {
                                assert!(
                                    is_arc(flags, at, *s),
                                    "{flags}: {from} -> {to}: {at} -> {s} is not an arc"
                                );
                                let interior = i + 1 < p.len();
                                if interior && is_saving(*s) {
                                    assert!(
                                        is_saving(from) && is_saving(to),
                                        "{flags}: {from} -> {to}: saving state {s} interior"
                                    );
                                }
                                at = *s;
                            }
                        }
                        (Err(_), None) => {}
                        (g, r) => panic!("{flags}: {from} -> {to}: kernel {g:?}, reference {r:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn kernel_documented_combinations() {
        let f = MigFlags(7);
        let cases: &[(&[MigState], MigState)] = &[
            (&[PC, PCP, SC], SC),
            (&[PC, RUN, RP, ST, RES], RES),
            (&[PCP, RP, RUN], RUN),
            (&[RES, ST, RP, RUN, PC], PC),
            (&[RUN, RP, ST, SC], SC),
            (&[SC, ST, RP, RUN], RUN),
            (&[ST, RP, PCP], PCP),
        ];
        for (walk, to) in cases {
            assert_eq!(path(f, walk[0], *to).unwrap(), walk[1..], "{walk:?}");
        }
        assert_eq!(path(f, SC, PC), Err(FsmError::Blocked(SC, PC)));
        assert_eq!(path(f, SC, PCP), Err(FsmError::Blocked(SC, PCP)));
        assert_eq!(path(f, RUN, E), Err(FsmError::BadTarget(E)));
        assert_eq!(path(f, E, RUN), Err(FsmError::BadCurrent(E)));
        let plain = MigFlags(MigFlags::STOP_COPY);
        assert_eq!(path(plain, RUN, SC).unwrap(), [ST, SC]);
        assert_eq!(path(plain, RUN, RP), Err(FsmError::BadTarget(RP)));
        assert_eq!(path(plain, RUN, RUN).unwrap(), []);
    }
}
