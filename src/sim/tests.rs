//! Behaviour of the simulated device through the public `Device` interface. The migration
//! drivers over it are tested from above, in `tests/sim_migration.rs`.

use super::*;
use crate::device::fsm;
use crate::device::{DeviceError, MigFlags, MigState, RegionAccess};
use std::os::fd::RawFd;
use std::time::Duration;

fn dev(params: &str) -> DeviceHandle {
    open(params).unwrap()
}

fn errno(e: &DeviceError) -> Option<i32> {
    e.errno()
}

/// Saves the whole state of `d` (RUNNING -> STOP_COPY -> read to EOF -> STOP).
fn save_all(d: &DeviceHandle, buf_len: usize) -> Vec<u8> {
    d.set_mig_state(MigState::StopCopy).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; buf_len];
    loop {
        let n = d.mig_read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    d.set_mig_state(MigState::Stop).unwrap();
    out
}

/// Writes `data` in RESUMING and tries to leave to RUNNING.
fn restore(d: &DeviceHandle, data: &[u8]) -> Result<()> {
    d.set_mig_state(MigState::Resuming)?;
    let mut off = 0;
    while off < data.len() {
        off += d.mig_write(&data[off..])?;
    }
    d.set_mig_state(MigState::Running)
}

#[test]
fn every_v2_arc_behaves_like_the_kernel() {
    for flags in [
        "STOP_COPY",
        "STOP_COPY|P2P",
        "STOP_COPY|PRE_COPY",
        "STOP_COPY|P2P|PRE_COPY",
    ] {
        let spec = format!("state=64K,seed=3,flags={flags}");
        let good = save_all(&dev(&spec), 4096);
        let f = MigFlags::parse(flags).unwrap();
        for from in MigState::ALL {
            for to in MigState::ALL {
                let d = dev(&spec);
                if from == MigState::Error {
                    continue; // covered by the fail-mode test
                }
                if d.set_mig_state(from).is_err() {
                    assert!(!fsm::state_exists(f, from), "{flags}: cannot reach {from}");
                    continue;
                }
                if from == MigState::Resuming {
                    let mut off = 0;
                    while off < good.len() {
                        off += d.mig_write(&good[off..]).unwrap();
                    }
                }
                let r = d.set_mig_state(to);
                match fsm::next_step(f, from, to).ok() {
                    Some(_) => {
                        r.unwrap_or_else(|e| panic!("{flags}: {from} -> {to}: {e}"));
                        assert_eq!(d.mig_state().unwrap(), to);
                    }
                    None if from == to => r.unwrap(),
                    None => {
                        let e = r.expect_err("refused arc accepted");
                        assert_eq!(errno(&e), Some(libc::EINVAL), "{from} -> {to}");
                        assert_eq!(d.mig_state().unwrap(), from, "refused arcs leave the state");
                    }
                }
                // Streams exist exactly in the streaming states.
                let now = d.mig_state().unwrap();
                let mut b = [0u8; 16];
                let read = d.mig_read(&mut b);
                let write = d.mig_write(&b);
                match now {
                    MigState::StopCopy | MigState::PreCopy | MigState::PreCopyP2p => {
                        assert!(read.is_ok());
                        assert_eq!(errno(&write.unwrap_err()), Some(libc::EBADF));
                    }
                    MigState::Resuming => {
                        assert_eq!(errno(&read.unwrap_err()), Some(libc::EBADF));
                        assert!(write.is_ok());
                    }
                    _ => {
                        assert_eq!(errno(&read.unwrap_err()), Some(libc::EBADF));
                        assert_eq!(errno(&write.unwrap_err()), Some(libc::EBADF));
                    }
                }
            }
        }
    }
}

#[test]
fn multi_arc_paths_keep_the_precopy_stream() {
    // PRE_COPY -> STOP_COPY walks PRE_COPY_P2P and continues the same stream.
    let d = dev("state=100K,seed=11");
    d.set_mig_state(MigState::PreCopy).unwrap();
    let mut buf = vec![0u8; 1000];
    let mut data = Vec::new();
    let n = d.mig_read(&mut buf).unwrap();
    data.extend_from_slice(&buf[..n]);
    d.set_mig_state(MigState::StopCopy).unwrap();
    loop {
        let n = d.mig_read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    d.set_mig_state(MigState::Running).unwrap();
    restore(&dev("state=100K,verify-seed=11"), &data).unwrap();
}

#[test]
fn fail_at_stays_on_the_path_or_goes_to_error() {
    let d = dev("state=4K,fail-at=stop-copy,fail-count=1");
    let e = d.set_mig_state(MigState::StopCopy).unwrap_err();
    assert_eq!(errno(&e), Some(libc::EIO));
    // RUNNING -> RUNNING_P2P -> STOP succeeded, STOP -> STOP_COPY failed.
    assert_eq!(d.mig_state().unwrap(), MigState::Stop);
    // fail-count=1: the second attempt succeeds.
    d.set_mig_state(MigState::StopCopy).unwrap();

    let d = dev("state=4K,fail-at=running-p2p,fail-mode=error");
    assert!(d.set_mig_state(MigState::Stop).is_err());
    assert_eq!(d.mig_state().unwrap(), MigState::Error);
    let e = d.set_mig_state(MigState::Running).unwrap_err();
    assert_eq!(errno(&e), Some(libc::EINVAL));
    d.reset().unwrap();
    assert_eq!(d.mig_state().unwrap(), MigState::Running);

    let d = dev("reset=0");
    assert!(matches!(d.reset(), Err(DeviceError::Unsupported { .. })));
}

#[test]
fn restore_checks_seed_completeness_and_content() {
    let good = save_all(&dev("state=300K,seed=7,chunk=10000"), 65536);
    assert_eq!(good.len() as u64, stream::SaveStream::full_size(300 << 10));

    let ok = dev("state=300K,verify-seed=7,chunk=5000");
    restore(&ok, &good).unwrap();
    assert_eq!(ok.mig_state().unwrap(), MigState::Running);
    let sim = ok.as_any().downcast_ref::<SimDevice>().unwrap();
    assert_eq!(sim.state_seed(), 7);
    // The restored device saves the same state again.
    assert_eq!(save_all(&ok, 1 << 20), good);

    // Without verify-seed the state is still checked for completeness.
    restore(&dev("state=300K"), &good).unwrap();

    let refusals: [(&str, Vec<u8>, &str); 4] = [
        ("state=300K,verify-seed=8", good.clone(), "seed 7"),
        ("state=300K", good[..good.len() - 100].to_vec(), "truncated"),
        ("state=300K", vec![0x5a; 4096], "foreign"),
        ("state=200K", good.clone(), "307200 bytes"),
    ];
    for (spec, data, why) in refusals {
        let d = dev(spec);
        let e = restore(&d, &data).unwrap_err();
        assert_eq!(errno(&e), Some(libc::EINVAL), "{spec}");
        assert!(e.to_string().contains(why), "{spec}: {e}");
        assert_eq!(d.mig_state().unwrap(), MigState::Error);
        let sim = d.as_any().downcast_ref::<SimDevice>().unwrap();
        assert!(sim.last_refusal().unwrap().contains(why));
        d.reset().unwrap();
        assert_eq!(d.mig_state().unwrap(), MigState::Running);
    }
    let mut corrupt = good.clone();
    corrupt[200_000] ^= 0x10;
    let e = restore(&dev("state=300K,verify-seed=7"), &corrupt).unwrap_err();
    assert!(e.to_string().contains("corrupted"), "{e}");
}

#[test]
fn precopy_accounting_follows_the_clock() {
    let clock = ManualClock::new();
    let d = open_with_clock("state=1M,seed=5,dirty-rate=1M/s", clock.clone()).unwrap();
    assert_eq!(d.stop_copy_size().unwrap(), 32 + 24 + (1 << 20) + 32);
    assert!(d.precopy_info().is_err(), "precopy info outside PRE_COPY");
    d.set_mig_state(MigState::PreCopy).unwrap();
    let p = d.precopy_info().unwrap();
    assert_eq!((p.initial_bytes, p.dirty_bytes), (32 + 24 + (1 << 20), 0));
    let mut data = Vec::new();
    let mut buf = vec![0u8; 100_000];
    loop {
        match d.mig_read(&mut buf) {
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert_eq!(errno(&e), Some(libc::ENOMSG));
                break;
            }
        }
    }
    assert_eq!(data.len() as u64, p.initial_bytes);
    clock.advance(Duration::from_millis(500));
    let p = d.precopy_info().unwrap();
    assert_eq!((p.initial_bytes, p.dirty_bytes), (0, (512 << 10) + 24));
    let scs = d.stop_copy_size().unwrap();
    assert_eq!(scs, p.dirty_bytes + 32);
    d.set_mig_state(MigState::StopCopy).unwrap();
    clock.advance(Duration::from_secs(10)); // a stopped device dirties nothing
    let mut tail = 0u64;
    loop {
        let n = d.mig_read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        tail += n as u64;
        data.extend_from_slice(&buf[..n]);
    }
    assert_eq!(tail, scs);
    restore(&dev("state=1M,verify-seed=5"), &data).unwrap();
}

#[test]
fn chunk_and_endless_read() {
    let d = dev("state=1M,chunk=1000");
    d.set_mig_state(MigState::StopCopy).unwrap();
    let mut buf = vec![0u8; 65536];
    assert_eq!(d.mig_read(&mut buf).unwrap(), 1000);

    let d = dev("state=64K,violate=endless-read");
    d.set_mig_state(MigState::StopCopy).unwrap();
    let mut total = 0usize;
    for _ in 0..64 {
        let n = d.mig_read(&mut buf).unwrap();
        assert!(n > 0, "endless-read reached EOF");
        total += n;
    }
    assert!(total > 64 << 10);

    let d = dev("state=64K,violate=wrong-stop-copy-size");
    assert_eq!(
        d.stop_copy_size().unwrap(),
        stream::SaveStream::full_size(64 << 10) / 2
    );
}

// ---- v1 ----

#[test]
fn v1_region_refuses_bad_accesses() {
    let d = dev("protocol=v1,state=64K");
    let r = MIGRATION_V1;
    // _SAVING|_RESUMING and _RESUMING|_RUNNING are invalid.
    for bits in [6u64, 5, 7] {
        let e = d.write_width(r, 0, 4, bits).unwrap_err();
        assert_eq!(errno(&e), Some(libc::EINVAL));
    }
    assert_eq!(d.read_width(r, 0, 4).unwrap(), 1);
    // Partial field access and read-only fields.
    assert!(d.read_width(r, 8, 4).is_err());
    assert!(d.write_width(r, 8, 8, 1).is_err());
    // data_size is only writable while resuming.
    assert!(d.write_width(r, 24, 8, 1).is_err());
    d.write_width(r, 0, 4, 4).unwrap();
    assert!(d.write_width(r, 24, 8, (256 << 10) + 1).is_err());
    // Leaving RESUMING with nothing written: refused, error state reported.
    assert!(d.write_width(r, 0, 4, 1).is_err());
    assert_eq!(d.read_width(r, 0, 4).unwrap(), 6);
    assert!(
        d.write_width(r, 0, 4, 1).is_err(),
        "error state needs a reset"
    );
    d.reset().unwrap();
    assert_eq!(d.read_width(r, 0, 4).unwrap(), 1);
    // v2 calls are not there.
    assert_eq!(
        errno(&d.set_mig_state(MigState::Stop).unwrap_err()),
        Some(libc::ENOTTY)
    );
}

// ---- BARs, config, interrupts ----

#[test]
fn bars_and_config() {
    let d = dev("bar2=1M");
    assert_eq!(d.read_width(BAR0, REG_ID, 4).unwrap(), ID_VALUE as u64);
    d.write_width(BAR0, REG_SCRATCH, 4, 0xdead_beef).unwrap();
    assert_eq!(d.read_width(BAR0, REG_SCRATCH, 4).unwrap(), 0xdead_beef);
    d.write_width(BAR0, REG_ID, 4, 0).unwrap();
    assert_eq!(
        d.read_width(BAR0, REG_ID, 4).unwrap(),
        ID_VALUE as u64,
        "id is read-only"
    );
    assert_eq!(d.read_width(BAR0, REG_STATE_SIZE_LO, 4).unwrap(), 64 << 20);
    assert!(d.read_width(BAR0, 4096, 4).is_err());
    assert!(d.map_region(BAR0, 0, 4096).is_err(), "BAR0 is trapped");
    d.reset().unwrap();
    assert_eq!(d.read_width(BAR0, REG_SCRATCH, 4).unwrap(), 0);

    let m = d.map_region(BAR2, 4096, 8192).unwrap();
    m.write_u32(4, 0x1234_5678).unwrap();
    assert_eq!(d.read_width(BAR2, 4096 + 4, 4).unwrap(), 0x1234_5678);
    d.write_region(BAR2, 8192, b"hello").unwrap();
    let mut b = [0u8; 5];
    m.read(4096, &mut b).unwrap();
    assert_eq!(&b, b"hello");
    assert!(d.map_region(BAR2, 0, (1 << 20) + 4096).is_err());
    // As the kernel's mmap, a mapping starts on a page.
    assert!(matches!(
        d.map_region(BAR2, 4097, 4096),
        Err(DeviceError::Misaligned { .. })
    ));
    drop(d); // the mapping keeps the memory alive
    assert_eq!(m.read_u32(4).unwrap(), 0x1234_5678);

    let d = dev("");
    assert_eq!(d.read_width(CONFIG, 0, 2).unwrap(), VENDOR_ID as u64);
    assert_eq!(d.read_width(CONFIG, 2, 2).unwrap(), DEVICE_ID as u64);
    assert_eq!(d.read_width(CONFIG, 0x34, 1).unwrap(), 0x40);
    assert_eq!(d.read_width(CONFIG, 0x40, 1).unwrap(), 0x05); // MSI
    assert_eq!(d.read_width(CONFIG, 0x60, 1).unwrap(), 0x11); // MSI-X
    assert!(d.read_width(1, 0, 4).is_err(), "BAR1 is not implemented");
    let info = d.info();
    assert_eq!(info.backend, "sim");
    assert!(info.region_by_type(3, 1).is_none());
    let v1 = dev("protocol=v1,v1-mmap=0");
    let r = v1.info().region_by_type(3, 1).unwrap();
    assert!(r.mmap_areas().is_empty());
    assert!(v1.map_region(MIGRATION_V1, V1_DATA_OFFSET, 4096).is_err());
}

fn eventfd() -> RawFd {
    // SAFETY: plain syscall creating a new fd.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    assert!(fd >= 0);
    fd
}

fn count(fd: RawFd) -> u64 {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a live local from an eventfd we own.
    let r = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    if r == 8 {
        v
    } else {
        0
    }
}

#[test]
fn interrupts_reach_eventfds() {
    let d = dev("");
    let fds = [eventfd(), eventfd()];
    d.set_irq_eventfds(MSIX, 0, &fds).unwrap();
    d.trigger_irq(MSIX, 1).unwrap();
    assert_eq!((count(fds[0]), count(fds[1])), (0, 1));
    // Only one of INTx / MSI / MSI-X at a time.
    assert!(d.set_irq_eventfds(MSI, 0, &fds[..1]).is_err());
    assert!(
        d.set_irq_eventfds(MSIX, 3, &fds).is_err(),
        "beyond the vector count"
    );
    // Masking holds the interrupt back; unmasking delivers it.
    d.mask_irq(MSIX, 0, true).unwrap();
    d.trigger_irq(MSIX, 0).unwrap();
    assert_eq!(count(fds[0]), 0);
    d.mask_irq(MSIX, 0, false).unwrap();
    assert_eq!(count(fds[0]), 1);
    // The doorbell register raises the vector written to it.
    d.write_width(BAR0, REG_DOORBELL, 4, 0).unwrap();
    assert_eq!(count(fds[0]), 1);
    assert_eq!(d.read_width(BAR0, REG_IRQ_COUNT, 4).unwrap(), 1);
    d.set_irq_eventfds(MSIX, 0, &[]).unwrap();
    assert!(d.trigger_irq(MSIX, 0).is_err(), "disabled");
    // INTx is automasked.
    d.set_irq_eventfds(INTX, 0, &fds[..1]).unwrap();
    d.trigger_irq(INTX, 0).unwrap();
    d.trigger_irq(INTX, 0).unwrap();
    assert_eq!(count(fds[0]), 1);
    d.mask_irq(INTX, 0, false).unwrap();
    assert_eq!(count(fds[0]), 1);
    assert!(d.mask_irq(ERR, 0, true).is_err(), "ERR is not maskable");
    for fd in fds {
        // SAFETY: closing fds this test created.
        unsafe { libc::close(fd) };
    }
}

/// The device holds its own reference to each eventfd, as the kernel does: once the caller
/// puts another file on the number it gave (here another eventfd, with `dup2`), triggers
/// still reach the eventfd it set, never the new file. A number that is not open is refused
/// (`EBADF`) and the vectors stay as they were.
#[test]
fn a_vector_keeps_its_eventfd_when_the_callers_number_is_reused() {
    let d = dev("");
    let given = eventfd();
    // SAFETY: plain syscall duplicating an fd this test owns.
    let original = unsafe { libc::dup(given) };
    assert!(original >= 0);
    d.set_irq_eventfds(MSIX, 0, &[given]).unwrap();
    let other = eventfd();
    // SAFETY: replaces this test's own fd `given` by `other`.
    assert_eq!(unsafe { libc::dup2(other, given) }, given);
    d.trigger_irq(MSIX, 0).unwrap();
    assert_eq!(
        count(other),
        0,
        "the trigger went into the file now at the number"
    );
    assert_eq!(count(original), 1);

    match d.set_irq_eventfds(MSIX, 0, &[i32::MAX]) {
        Err(DeviceError::Irq { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EBADF))
        }
        other => panic!("{other:?}"),
    }
    d.trigger_irq(MSIX, 0).unwrap();
    assert_eq!(count(original), 1, "the vector kept its eventfd");
    for fd in [given, original, other] {
        // SAFETY: closing fds this test created.
        unsafe { libc::close(fd) };
    }
}

#[test]
fn bad_specs_are_refused() {
    assert!(matches!(
        open("state=lots"),
        Err(DeviceError::InvalidSpec { .. })
    ));
}

#[test]
fn memory_backing_copies_the_same_stream_and_restores_into_memory() {
    let spec = "state=300K,seed=7,zero-pages=0.5";
    let generated = save_all(&dev(spec), 65536);
    let m = dev(&format!("{spec},backing=memory"));
    let sim = m.as_any().downcast_ref::<SimDevice>().unwrap();
    assert_eq!(sim.state_memory_bytes(), 300 << 10);
    assert_eq!(sim.verify_state(), Ok(()));
    // Memory holds exactly what the generator produces: the same stream.
    assert_eq!(save_all(&m, 4096), generated);
    m.set_mig_state(MigState::Running).unwrap();

    // Restoring copies into memory; the state is checked on demand.
    let dst = dev("state=300K,seed=1,backing=memory,verify-seed=7");
    let dsim = dst.as_any().downcast_ref::<SimDevice>().unwrap();
    assert!(dsim.verify_state().unwrap_err().contains("seed 1"));
    restore(&dst, &generated).unwrap();
    assert_eq!(dsim.state_seed(), 7);
    assert_eq!(dsim.verify_state(), Ok(()));
    assert_eq!(save_all(&dst, 1 << 20), generated);
    dst.set_mig_state(MigState::Running).unwrap();

    // Corrupt bytes are copied in unchecked and found by verify_state.
    let mut corrupt = generated.clone();
    let at = corrupt.len() - 5000;
    corrupt[at] ^= 0x10;
    restore(&dst, &corrupt).unwrap();
    assert!(dsim.verify_state().unwrap_err().contains("differs"));

    // A refused resume puts the state it had back: a truncated stream of another seed.
    let other = save_all(&dev("state=300K,seed=9,zero-pages=0.5"), 65536);
    let keep = dev("state=300K,seed=7,zero-pages=0.5,backing=memory");
    let ksim = keep.as_any().downcast_ref::<SimDevice>().unwrap();
    assert!(restore(&keep, &other[..other.len() - 100]).is_err());
    keep.reset().unwrap();
    assert_eq!(ksim.verify_state(), Ok(()));
    assert_eq!(save_all(&keep, 65536), generated);
    // An aborted one (reset while RESUMING) too.
    keep.set_mig_state(MigState::Running).unwrap();
    keep.set_mig_state(MigState::Resuming).unwrap();
    keep.mig_write(&other[..100_000]).unwrap();
    keep.reset().unwrap();
    assert_eq!(ksim.verify_state(), Ok(()));
    // A generated device has no state memory.
    let g = dev(spec);
    let gsim = g.as_any().downcast_ref::<SimDevice>().unwrap();
    assert_eq!(
        (gsim.state_memory_bytes(), gsim.verify_state()),
        (0, Ok(()))
    );
}

#[test]
fn a_slow_rate_moves_a_tenth_of_a_second_of_bytes_per_call() {
    // At 40 KiB/s one call moves at most 4 KiB however much it asks for, so that the caller
    // comes back (and checks for cancellation) every tenth of a second, not after minutes.
    let d = dev("state=64K,rate=40K/s");
    let mut buf = vec![0u8; 64 << 10];
    d.set_mig_state(MigState::StopCopy).unwrap();
    assert_eq!(d.mig_read(&mut buf).unwrap(), 4096);
    d.set_mig_state(MigState::Stop).unwrap();
    d.set_mig_state(MigState::Resuming).unwrap();
    assert_eq!(d.mig_write(&buf).unwrap(), 4096);
    d.reset().unwrap();
    // Unpaced, a call moves what it asks for.
    let fast = dev("state=64K");
    fast.set_mig_state(MigState::StopCopy).unwrap();
    assert_eq!(fast.mig_read(&mut buf).unwrap(), 64 << 10);
}

#[test]
fn rate_caps_the_data_stream() {
    // 256 KiB at 8 MiB/s takes at least 31 ms (a lower bound: sleeping never ends early).
    let d = dev("state=256K,rate=8M/s,latency=1ms");
    let t = std::time::Instant::now();
    let s = save_all(&d, 64 << 10);
    assert_eq!(s.len() as u64, stream::SaveStream::full_size(256 << 10));
    assert!(
        t.elapsed() >= Duration::from_millis(31),
        "{:?}",
        t.elapsed()
    );
}
