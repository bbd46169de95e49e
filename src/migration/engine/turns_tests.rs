//! The two threads sharing a source ([`super::turns`]): a sink slower than the device does
//! not stop the reading, and the stream stays in order.

use super::*;
use crate::device::{DeviceHandle, MigFlags, MigState};
use crate::migration::stream::tests::chunks_untimed;
use crate::migration::stream::ChunkKind;
use crate::migration::{driver_for, MigrationDriver, MigrationError, Pending, Protocol, Result};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A driver counting the bytes its device's reads returned.
struct Counted {
    inner: Box<dyn MigrationDriver>,
    read: Arc<(Mutex<u64>, Condvar)>,
}

impl MigrationDriver for Counted {
    fn protocol(&self) -> Protocol {
        self.inner.protocol()
    }
    fn device(&self) -> &DeviceHandle {
        self.inner.device()
    }
    fn flags(&self) -> MigFlags {
        self.inner.flags()
    }
    fn set_state(&mut self, state: MigState) -> crate::migration::Result<()> {
        self.inner.set_state(state)
    }
    fn state(&mut self) -> crate::migration::Result<MigState> {
        self.inner.state()
    }
    fn read(&mut self, buf: &mut [u8]) -> crate::migration::Result<usize> {
        let n = self.inner.read(buf)?;
        let (count, changed) = &*self.read;
        *count.lock().unwrap_or_else(|e| e.into_inner()) += n as u64;
        changed.notify_all();
        Ok(n)
    }
    fn write(&mut self, buf: &[u8]) -> crate::migration::Result<usize> {
        self.inner.write(buf)
    }
    fn pending(&mut self) -> crate::migration::Result<Pending> {
        self.inner.pending()
    }
    fn stop_copy_size(&mut self) -> crate::migration::Result<Option<u64>> {
        self.inner.stop_copy_size()
    }
}

/// A sink whose first write waits until the device has returned `until` bytes (at most
/// `patience`), then records whether it got there.
struct Held {
    out: Vec<u8>,
    read: Arc<(Mutex<u64>, Condvar)>,
    until: u64,
    patience: Duration,
    got_there: Option<bool>,
    waited_at: Arc<AtomicU64>,
}

impl Write for Held {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.got_there.is_none() && !self.out.is_empty() {
            let (count, changed) = &*self.read;
            let g = count.lock().unwrap_or_else(|e| e.into_inner());
            self.waited_at.store(*g, Ordering::Relaxed);
            let (g, timeout) = changed
                .wait_timeout_while(g, self.patience, |n| *n < self.until)
                .unwrap_or_else(|e| e.into_inner());
            self.got_there = Some(!timeout.timed_out() && *g >= self.until);
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Asserts that the stream `two` threads saved is `alone`, the one-thread save's, chunk
/// for chunk (kind, payload), under the same header but for its creation time (the two
/// saves may straddle a second).
fn assert_one_thread_stream(two: &[u8], alone: &[u8]) {
    let (two, one) = (chunks_untimed(two), chunks_untimed(alone));
    assert_eq!(two.0, one.0, "the headers differ");
    assert!(
        two.1 == one.1,
        "the stream differs from the one-thread save's: {} chunks against {}",
        two.1.len(),
        one.1.len()
    );
}

/// While the sink takes its time with the first chunk, the other thread reads the next
/// chunks into the other buffers of the ring (three more, here) rather than waiting for
/// its turn; the stream still restores byte for byte.
#[test]
fn a_sink_holding_its_first_chunk_does_not_hold_the_reading() {
    const CHUNK: usize = 64 << 10;
    let state = 1u64 << 20;
    let open = |seed: u32| {
        let spec = format!("sim:state={state},seed={seed}");
        let dev = crate::open(&spec.parse().expect("spec"), &Default::default()).expect("open");
        driver_for(dev).expect("driver")
    };
    let read = Arc::new((Mutex::new(0u64), Condvar::new()));
    let mut src = Counted {
        inner: open(5),
        read: read.clone(),
    };
    // The header's write comes first; the first chunk's frame is the second write.
    let sink = Held {
        out: Vec::new(),
        read: read.clone(),
        until: 0,
        patience: Duration::from_secs(20),
        got_there: None,
        waited_at: Arc::new(AtomicU64::new(0)),
    };
    let waited_at = sink.waited_at.clone();
    // While the first chunk is held, the ring's three other buffers take three more
    // chunks, each a buffer less the room for its header (64 bytes at most): more than
    // three chunks' payload at least is read. Without reading ahead (or with a ring of two
    // buffers) the device would stop at two chunks.
    let sink = Held {
        until: 3 * (CHUNK as u64 - 64) + 1,
        ..sink
    };
    let opts = Options {
        buffer_size: CHUNK,
        ..Default::default()
    };
    let (sink, rep) = save(&mut src, sink, "held", &opts).expect("save");
    assert_eq!(
        sink.got_there,
        Some(true),
        "the device had returned {} bytes when the sink began to wait, and no more than \
         that within the patience",
        waited_at.load(Ordering::Relaxed)
    );
    assert!(rep.bytes >= state);
    // The same stream as one thread with one buffer writes from the same state.
    let one = Options {
        overlap: false,
        ..opts.clone()
    };
    let (alone, _) = save(open(5).as_mut(), Vec::new(), "alone", &one).expect("save alone");
    assert_one_thread_stream(&sink.out, &alone);
    let mut dst = open(9);
    restore(dst.as_mut(), &sink.out[..], &opts).expect("restore");
}

/// With `max_poll` zero a thread waiting for its turn sleeps at once, every time: the two
/// threads still read the state once, in order, into the stream one thread writes.
#[test]
fn threads_that_never_poll_write_the_one_thread_stream() {
    let open = || {
        let spec = "sim:state=1M,seed=7";
        let dev = crate::open(&spec.parse().expect("spec"), &Default::default()).expect("open");
        driver_for(dev).expect("driver")
    };
    let sleeping = Options {
        buffer_size: 16 << 10,
        max_poll: Duration::ZERO,
        ..Default::default()
    };
    let one = Options {
        overlap: false,
        ..sleeping.clone()
    };
    let (two, _) = save(open().as_mut(), Vec::new(), "sleeping", &sleeping).expect("save");
    let (alone, _) = save(open().as_mut(), Vec::new(), "alone", &one).expect("save alone");
    assert_one_thread_stream(&two, &alone);
}

/// A reader whose step failed is spent: called again (as the other thread sharing it may
/// be, when it took the device just after the failure) it fails without touching the
/// device. Here the device refuses PRE_COPY -> PRE_COPY_P2P once; driven again, the reader
/// would retry the stop, call the P2P hook's ready point a second time and quiesce the
/// device after the error (which hung a group's transfer: the retried device waited at the
/// group's barrier for a peer already gone).
#[test]
fn a_reader_that_failed_is_not_driven_again() {
    let ready = Arc::new(AtomicU64::new(0));
    let r2 = ready.clone();
    let opts = Options {
        precopy: PrecopyPolicy {
            max_rounds: 1,
            dirty_threshold: 0,
            ..Default::default()
        },
        p2p: Some(Arc::new(move |p: &P2pPoint<'_>| {
            if p.step == P2pStep::Ready {
                r2.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })),
        ..Default::default()
    };
    let spec = "sim:state=64K,seed=2,fail-at=pre-copy-p2p,fail-count=1";
    let dev = crate::open(&spec.parse().expect("spec"), &Default::default()).expect("open");
    let mut d = driver_for(dev).expect("driver");
    const CHUNK: usize = 16 << 10;
    let mut s = source::source_session(d.as_mut(), &opts, CHUNK).expect("session");
    let mut r = source::Reader::new(&mut s, &opts, CHUNK, source::Framing::default());
    let mut buf = AlignedBuf::new(CHUNK).unwrap();
    let e = loop {
        match r.next(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the state was read to its end past a refused quiesce"),
            Err(e) => break e,
        }
    };
    assert!(e.to_string().contains("PRE_COPY_P2P"), "{e}");
    assert_eq!(ready.load(Ordering::SeqCst), 1);
    for _ in 0..2 {
        assert!(matches!(r.next(&mut buf), Err(MigrationError::PeerStopped)));
    }
    assert_eq!(
        ready.load(Ordering::SeqCst),
        1,
        "the reader retried the stop after the device refused it"
    );
    assert_eq!(
        s.stage(),
        MigState::PreCopy,
        "the session moved on after the error"
    );
}

/// What [`share_holding_first_put`] saw: for each chunk in stream order, its number, the
/// thread that read it and the thread that put it.
type Puts = Vec<(u64, std::thread::ThreadId, std::thread::ThreadId)>;

/// Runs [`turns::share`] over `chunks` chunks of 4 KiB (each payload filled with its
/// number), whose first put waits until `hold` chunks have been read (so the second chunk,
/// and without `own_puts` the third, is read while the first is being put), then fails
/// with `fail_first` or returns. Returns what was put and how, or share's error. Gives up, failing the test, if
/// share has not returned within a minute (a thread waiting for a turn that never comes).
fn share_holding_first_put(own_puts: bool, chunks: u64, fail_first: bool) -> Result<Puts> {
    // A thread waiting for its turn reads nothing more; one queuing its chunk reads on.
    let hold = if own_puts { 2 } else { 3 };
    use std::sync::mpsc;
    use std::thread::{current, ThreadId};
    const CHUNK: usize = 4096;
    const HEAD: usize = 64;
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let readers = Arc::new((Mutex::new(Vec::<ThreadId>::new()), Condvar::new()));
        let r2 = readers.clone();
        let mut puts: Puts = Vec::new();
        let reader = move |buf: &mut [u8]| -> Result<Option<(ChunkKind, usize)>> {
            let (by, more) = &*r2;
            let mut by = by.lock().unwrap_or_else(|e| e.into_inner());
            let n = by.len() as u64;
            if n == chunks {
                return Ok(None);
            }
            buf[HEAD..].fill(n as u8);
            by.push(current().id());
            more.notify_all();
            Ok(Some((ChunkKind::Stopcopy, CHUNK - HEAD)))
        };
        let put = |_: ChunkKind, frame: &mut [u8], _: Option<u64>| -> Result<()> {
            let n = u64::from(frame[HEAD]);
            let (by, more) = &*readers;
            let by = by.lock().unwrap_or_else(|e| e.into_inner());
            let by = if puts.is_empty() {
                let (by, waited) = more
                    .wait_timeout_while(by, Duration::from_secs(20), |by| by.len() < hold)
                    .unwrap_or_else(|e| e.into_inner());
                assert!(!waited.timed_out(), "{hold} chunks were never read");
                by
            } else {
                by
            };
            puts.push((n, by[n as usize], current().id()));
            if fail_first {
                return Err(MigrationError::Interrupted);
            }
            Ok(())
        };
        let plan = turns::Plan {
            chunk: CHUNK,
            head: HEAD,
            hash: false,
            huge: false,
            own_puts,
            max_poll: Duration::ZERO,
        };
        let res = turns::share(plan, reader, put);
        // The receiver is gone only when the test already failed.
        let _ = done_tx.send(res.map(|()| puts));
    });
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("share did not return: a thread waits for a turn that never comes")
}

/// With `put_own_chunks` every chunk is put by the thread that read it, in order, even the
/// one read while the first chunk was being put; without it that chunk is queued (its
/// thread reads the third before the first put ends) and put by the thread putting, which
/// read the first.
#[test]
fn own_puts_keep_each_chunk_on_the_thread_that_read_it() {
    for own in [true, false] {
        let puts = share_holding_first_put(own, 40, false).expect("share");
        let order: Vec<u64> = puts.iter().map(|p| p.0).collect();
        assert_eq!(order, (0..40).collect::<Vec<u64>>(), "own puts: {own}");
        let (first, second) = (&puts[0], &puts[1]);
        assert_ne!(
            first.1, second.1,
            "the first two chunks were read on one thread"
        );
        if own {
            for (n, read, put) in &puts {
                assert_eq!(
                    read, put,
                    "chunk {n} was put by the thread that did not read it"
                );
            }
        } else {
            assert_eq!(
                second.2, first.2,
                "the second chunk was not queued for the thread putting the first"
            );
        }
    }
}

/// A put that fails while the other thread waits for its turn ends the transfer: the
/// waiting thread is woken and the put's error returned.
#[test]
fn a_failed_put_wakes_the_thread_waiting_for_its_turn() {
    for own in [true, false] {
        match share_holding_first_put(own, 40, true) {
            Err(MigrationError::Interrupted) => {}
            other => panic!("own puts {own}: {:?}", other.map(|p| p.len())),
        }
    }
}
