//! A panicking progress callback, sink or source, on either thread arrangement: the devices
//! end RUNNING and the panic reaches the caller.

use super::*;
use crate::device::MigState;
use crate::migration::{driver_for, MigrationDriver};
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

fn open(spec: &str) -> Box<dyn MigrationDriver> {
    let dev = crate::open(&spec.parse().expect("spec"), &Default::default()).expect("open");
    driver_for(dev).expect("driver")
}

/// Options whose progress callback panics at its third call.
fn panicking_progress(overlap: bool) -> Options {
    let calls = Arc::new(AtomicU32::new(0));
    Options {
        buffer_size: 64 << 10,
        overlap,
        progress: Some(Arc::new(move |_: &Progress| {
            if calls.fetch_add(1, Ordering::Relaxed) == 2 {
                panic!("progress panicked");
            }
        })),
        ..Default::default()
    }
}

fn plain(overlap: bool) -> Options {
    Options {
        buffer_size: 64 << 10,
        overlap,
        ..Default::default()
    }
}

fn assert_panicked<T>(r: std::thread::Result<T>, msg: &str) {
    let Err(payload) = r else {
        panic!("the panic did not propagate")
    };
    assert_eq!(payload.downcast_ref::<&str>(), Some(&msg));
}

/// A writer that panics after some bytes.
struct PanickyWriter(usize);

impl Write for PanickyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0 < buf.len() {
            panic!("sink panicked");
        }
        self.0 -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A reader that panics after some bytes.
struct PanickyReader<'a>(&'a [u8], usize);

impl Read for PanickyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.1 == 0 {
            panic!("source panicked");
        }
        let n = buf.len().min(self.1).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        self.1 -= n;
        Ok(n)
    }
}

#[test]
fn save_with_a_panicking_progress_callback_or_sink() {
    for overlap in [true, false] {
        let mut drv = open("sim:state=1M,seed=1");
        let r = catch_unwind(AssertUnwindSafe(|| {
            save(
                drv.as_mut(),
                Vec::new(),
                "memory",
                &panicking_progress(overlap),
            )
        }));
        assert_panicked(r, "progress panicked");
        assert_eq!(drv.state().unwrap(), MigState::Running, "overlap={overlap}");

        let r = catch_unwind(AssertUnwindSafe(|| {
            save(drv.as_mut(), PanickyWriter(300 << 10), "w", &plain(overlap))
        }));
        assert_panicked(r, "sink panicked");
        assert_eq!(drv.state().unwrap(), MigState::Running, "overlap={overlap}");
    }
}

#[test]
fn migrate_with_a_panicking_progress_callback() {
    for overlap in [true, false] {
        let mut src = open("sim:state=1M,seed=1");
        let mut dst = open("sim:state=1M,verify-seed=1");
        let r = catch_unwind(AssertUnwindSafe(|| {
            migrate(src.as_mut(), dst.as_mut(), &panicking_progress(overlap))
        }));
        assert_panicked(r, "progress panicked");
        assert_eq!(src.state().unwrap(), MigState::Running, "overlap={overlap}");
        assert_eq!(dst.state().unwrap(), MigState::Running, "overlap={overlap}");
    }
}

#[test]
fn restore_with_a_panicking_progress_callback_or_source() {
    let mut src = open("sim:state=1M,seed=1");
    let (saved, _) = save(src.as_mut(), Vec::new(), "memory", &plain(true)).unwrap();
    for overlap in [true, false] {
        let mut dst = open("sim:state=1M,verify-seed=1");
        let r = catch_unwind(AssertUnwindSafe(|| {
            restore(dst.as_mut(), &saved[..], &panicking_progress(overlap))
        }));
        assert_panicked(r, "progress panicked");
        assert_eq!(dst.state().unwrap(), MigState::Running, "overlap={overlap}");

        let r = catch_unwind(AssertUnwindSafe(|| {
            restore(
                dst.as_mut(),
                PanickyReader(&saved, 300 << 10),
                &plain(overlap),
            )
        }));
        assert_panicked(r, "source panicked");
        assert_eq!(dst.state().unwrap(), MigState::Running, "overlap={overlap}");
        // And the device still takes the state afterwards.
        restore(dst.as_mut(), &saved[..], &plain(overlap)).unwrap();
    }
}

#[test]
fn a_reused_buffer_is_zeroed() {
    for _ in 0..8 {
        let mut b = AlignedBuf::new(3 * 4096).unwrap();
        b.fill(0xa5);
        drop(b);
        let b = AlignedBuf::new(3 * 4096).unwrap();
        assert!(b.iter().all(|x| *x == 0), "a pooled buffer kept old bytes");
    }
}
