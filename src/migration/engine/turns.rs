//! Two threads sharing one source: each reads a chunk into a buffer of its own and hashes
//! it; the chunk is then put (in stream order) by whichever thread is free to put it.
//!
//! The ring ([`super::ring`]) hands every buffer from the reading thread to the writing
//! one, so every byte is written into one core's cache by the device read and read back
//! out of it by the other core (the checksum, the sink's copy), and the reader cycles
//! through several buffers, which together do not fit its core's L2 next to the data
//! streaming in. Here a thread that finds the stream waiting for its chunk puts the chunk
//! itself, from its own cache, and reads its next chunk into the same buffer: with a sink
//! that keeps up, the threads take turns at the device and each chunk stays on the core
//! that read it (on a 2-vCPU Xeon the ring's save into memory ran 6 to 11 % behind a
//! one-buffer loop that does no checksum, this 3 to 5 %: hw-notes/bench.md, "Session 20"). When the sink is the slower side, the thread putting finds the next chunks queued
//! and puts them one after another, while the other reads ahead into up to [`RING`]
//! buffers: the ring's overlap, with no hand-off in the sink's path. With
//! [`Options::put_own_chunks`](super::Options::put_own_chunks) nothing is queued: a thread
//! whose chunk is not next waits for its turn and puts the chunk itself (for a sink that
//! holds a chunk of its own, such as a pipe, through the hand-over).
//!
//! The device is read by one thread at a time, in order (the source's reading step, a
//! [`Reader`](super::source::Reader)'s `next` for save and migrate, is held behind a
//! [`Gate`]); chunks are put one at a time, in the order read: the stream is the one a
//! single thread would write.

use super::buf::AlignedBuf;
use super::poll::Polled;
use super::ring::{Waiter, RING, SPIN};
use crate::migration::stream::{checksum, ChunkKind};
use crate::migration::{MigrationError, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing a panicking holder leaves half-done matters here: a panic stops the transfer
    // (see `StopOnPanic`) and goes on on the calling thread.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A lock on the device held for one read at a time, whose waiters poll before they sleep:
/// the other thread's read ends in about as long as the last read took, and a sleeping
/// waiter costs a wake-up (an IPI in a VM) on every chunk.
#[derive(Debug)]
struct Gate {
    held: AtomicBool,
    /// When the holder took it, nanoseconds since `epoch`.
    since: AtomicU64,
    /// How long the last holder held it, nanoseconds.
    last: AtomicU64,
    epoch: Instant,
    /// Threads asleep in [`Gate::enter`].
    sleepers: AtomicUsize,
    /// How long a waiter polls at most ([`Options::max_poll`](super::Options::max_poll)).
    max_poll: Duration,
    lock: Mutex<()>,
    woken: Condvar,
}

impl Gate {
    fn new(epoch: Instant, max_poll: Duration) -> Gate {
        Gate {
            max_poll,
            held: AtomicBool::new(false),
            since: AtomicU64::new(0),
            last: AtomicU64::new(0),
            epoch,
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            woken: Condvar::new(),
        }
    }

    fn try_enter(&self) -> bool {
        let took = self
            .held
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if took {
            self.since.store(self.now(), Ordering::Relaxed);
        }
        took
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes the gate, or returns `false` once `stop` is set. Polls first, for about as
    /// long as the last holder held it (at least [`SPIN`], at most `max_poll`; past
    /// [`MAX_SPIN`](super::poll::MAX_SPIN) yielding the CPU between polls), unless `w` says
    /// recent polls went unanswered (see [`Waiter`]) or `max_poll` is zero; then sleeps.
    fn enter(&self, w: &Waiter, stop: &AtomicBool) -> bool {
        if self.try_enter() {
            return true;
        }
        let last = Duration::from_nanos(self.last.load(Ordering::Relaxed));
        let budget = (last + last / 2).max(SPIN).min(self.max_poll);
        match w.poll_first(
            budget,
            || stop.load(Ordering::SeqCst),
            || self.try_enter().then_some(()),
        ) {
            Polled::Answered(()) => return true,
            Polled::Stopped => return false,
            Polled::Unanswered => {}
        }
        let mut g = lock(&self.lock);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let took = loop {
            if stop.load(Ordering::SeqCst) {
                break false;
            }
            if self.try_enter() {
                break true;
            }
            g = self.woken.wait(g).unwrap_or_else(PoisonError::into_inner);
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        took
    }

    fn leave(&self) {
        let held = self
            .now()
            .saturating_sub(self.since.load(Ordering::Relaxed));
        self.last.store(held, Ordering::Relaxed);
        self.held.store(false, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        // A sleeper counts itself under the lock before it tries the gate; taking the lock
        // here means it is either not yet trying (it will see the change) or waiting (and
        // is woken).
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = lock(&self.lock);
            self.woken.notify_all();
        }
    }
}

/// A chunk read and hashed, waiting for its turn to be put.
struct Ready {
    kind: ChunkKind,
    buf: AlignedBuf,
    /// Frame length: the room for the header, then the payload.
    len: usize,
    /// The payload's checksum, when hashing.
    sum: Option<u64>,
}

/// The putting side's state.
#[derive(Default)]
struct Puts {
    /// The number (in read order) of the next chunk to put.
    next: u64,
    /// Whether a thread is putting now.
    busy: bool,
    /// Chunks read ahead of `next`, by number.
    ready: BTreeMap<u64, Ready>,
}

/// Buffers not in use, and how many were made.
#[derive(Default)]
struct Buffers {
    free: Vec<AlignedBuf>,
    made: usize,
}

/// What the two threads share.
struct Shared<R, F> {
    /// The reading step and the number of the next chunk, behind `gate`.
    reader: Mutex<(R, u64)>,
    gate: Gate,
    puts: Mutex<Puts>,
    put: Mutex<F>,
    buffers: Mutex<Buffers>,
    /// A buffer went back to `buffers`.
    freed: Condvar,
    /// With `plan.own_puts`: a put ended (or the transfer stopped), so the next chunk's
    /// turn may have come.
    turn: Condvar,
    /// The transfer is over for both threads: a side failed (or panicked).
    stop: AtomicBool,
    /// The first error either thread met.
    failed: Mutex<Option<MigrationError>>,
    plan: Plan,
}

impl<R, F> Shared<R, F>
where
    F: FnMut(ChunkKind, &mut [u8], Option<u64>) -> Result<()>,
{
    /// Records `e` unless an error came first, and stops both threads.
    fn fail(&self, e: MigrationError) {
        lock(&self.failed).get_or_insert(e);
        self.halt();
    }

    fn halt(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.plan.own_puts {
            // Under the lock: a thread about to wait for its turn has either seen `stop`
            // or is waiting, and is woken.
            let _p = lock(&self.puts);
            self.turn.notify_all();
        }
        self.gate.wake();
        let _g = lock(&self.buffers);
        self.freed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// A buffer to read into: `mine`, a free one, a new one (at most [`RING`] in all), or
    /// the next one freed. `None` once stopped, or when a new one cannot be mapped (which
    /// fails the operation with that error).
    fn buffer(&self, mine: &mut Option<AlignedBuf>) -> Option<AlignedBuf> {
        if let Some(b) = mine.take() {
            return Some(b);
        }
        let mut bufs = lock(&self.buffers);
        loop {
            if self.stopped() {
                return None;
            }
            if let Some(b) = bufs.free.pop() {
                return Some(b);
            }
            if bufs.made < RING {
                bufs.made += 1;
                drop(bufs);
                return match AlignedBuf::chunk(self.plan.chunk, self.plan.huge) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        self.fail(e);
                        None
                    }
                };
            }
            bufs = self
                .freed
                .wait(bufs)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn give_back(&self, b: AlignedBuf) {
        lock(&self.buffers).free.push(b);
        self.freed.notify_one();
    }

    /// Puts chunk `n` when the stream is waiting for it, then every chunk queued after it;
    /// otherwise queues it for the thread putting, or with `own_puts` waits for its turn
    /// and puts it. Returns the buffer when this thread put its own chunk (it reads into it
    /// next), `None` when queued or stopped.
    fn put_or_queue(&self, n: u64, r: Ready) -> Option<AlignedBuf> {
        {
            let mut p = lock(&self.puts);
            if self.plan.own_puts {
                // The other thread holds at most the chunk before this one (each thread
                // puts its chunk before it reads again), so the turn comes when that put
                // ends.
                while (p.busy || p.next != n) && !self.stopped() {
                    p = self.turn.wait(p).unwrap_or_else(PoisonError::into_inner);
                }
                if self.stopped() {
                    return None;
                }
            } else if p.busy || p.next != n {
                p.ready.insert(n, r);
                return None;
            }
            p.busy = true;
        }
        let mut own = Some(r);
        let mut mine = None;
        loop {
            let Some(mut c) = own.take() else { break };
            let res = (lock(&self.put))(c.kind, &mut c.buf[..c.len], c.sum);
            if let Err(e) = res {
                self.fail(e);
                return None;
            }
            // This thread's own chunk keeps its buffer; a queued one's goes back.
            match mine {
                None => mine = Some(c.buf),
                Some(_) => self.give_back(c.buf),
            }
            if self.stopped() {
                return None;
            }
            let mut p = lock(&self.puts);
            p.next += 1;
            let next = p.next;
            match p.ready.remove(&next) {
                Some(q) => own = Some(q),
                None => p.busy = false,
            }
            if self.plan.own_puts {
                self.turn.notify_all();
            }
        }
        mine
    }
}

/// Closes the transfer when a thread unwinds, so the other one does not wait for it forever.
struct StopOnPanic<'x, R, F>(&'x Shared<R, F>)
where
    F: FnMut(ChunkKind, &mut [u8], Option<u64>) -> Result<()>;

impl<R, F> Drop for StopOnPanic<'_, R, F>
where
    F: FnMut(ChunkKind, &mut [u8], Option<u64>) -> Result<()>,
{
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.halt();
        }
    }
}

/// How [`share`] runs a transfer.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    /// Each buffer's length: the room for a chunk's header, then its payload.
    pub(super) chunk: usize,
    /// The room kept for the header before each payload.
    pub(super) head: usize,
    /// Hash each payload on the thread that read it.
    pub(super) hash: bool,
    /// Buffers in huge pages ([`AlignedBuf::huge`]).
    pub(super) huge: bool,
    /// Each thread puts the chunk it read, waiting for its turn, rather than queuing it
    /// for the thread putting ([`Options::put_own_chunks`](super::Options::put_own_chunks)).
    pub(super) own_puts: bool,
    /// How long a thread waiting for its turn at the device polls before it sleeps.
    pub(super) max_poll: Duration,
}

/// Reads a source to its end with `reader` on two threads (the calling one and a helper):
/// `reader` reads the next chunk's payload into a buffer after `plan.head` bytes kept for
/// its header and returns its kind and length, or `None` at the end. The reads are one at
/// a time and in order, each chunk hashed (with `plan.hash`) by the thread that read it,
/// and put with its kind, frame (`plan.chunk`-byte buffers: the room for the header, then
/// the payload) and checksum in the order read: by whichever thread is putting (a chunk
/// read while the other thread puts is queued for it), or with `plan.own_puts` by the
/// thread that read it, which waits for its turn. A thread waiting for its turn to read
/// polls for up to `plan.max_poll` before it sleeps. After `reader` fails it is not called
/// again. The first error ends both threads and is returned; a panic on either thread ends
/// both and goes on on the calling thread.
pub(super) fn share<R, F>(plan: Plan, reader: R, put: F) -> Result<()>
where
    R: FnMut(&mut [u8]) -> Result<Option<(ChunkKind, usize)>> + Send,
    F: FnMut(ChunkKind, &mut [u8], Option<u64>) -> Result<()> + Send,
{
    let shared = Shared {
        reader: Mutex::new((reader, 0)),
        gate: Gate::new(Instant::now(), plan.max_poll),
        puts: Mutex::new(Puts::default()),
        put: Mutex::new(put),
        buffers: Mutex::new(Buffers::default()),
        freed: Condvar::new(),
        turn: Condvar::new(),
        stop: AtomicBool::new(false),
        failed: Mutex::new(None),
        plan,
    };
    let sh = &shared;
    let done = std::thread::scope(|s| {
        let helper = s.spawn(move || work(sh));
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(sh)));
        (mine, helper.join())
    });
    match done {
        (Ok(()), Ok(())) => {}
        (Err(payload), _) | (_, Err(payload)) => std::panic::resume_unwind(payload),
    }
    match shared
        .failed
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One thread's part: read a chunk (when the device is free), then put it or queue it,
/// until the reader ends or a side fails.
fn work<R, F>(sh: &Shared<R, F>)
where
    R: FnMut(&mut [u8]) -> Result<Option<(ChunkKind, usize)>>,
    F: FnMut(ChunkKind, &mut [u8], Option<u64>) -> Result<()>,
{
    let _stop = StopOnPanic(sh);
    let wait = Waiter::default();
    let mut mine = None;
    loop {
        let Some(mut buf) = sh.buffer(&mut mine) else {
            return;
        };
        if !sh.gate.enter(&wait, &sh.stop) {
            return;
        }
        // Whether the other thread failed is looked at under the gate, and a failure here is
        // recorded before the gate is left: the thread taking the device next sees it and
        // does not drive the source after an error (it would retry a step the device
        // refused, such as the stop and its P2P points).
        let got = if sh.stopped() {
            None
        } else {
            let mut g = lock(&sh.reader);
            let (reader, next) = &mut *g;
            let n = *next;
            *next += 1;
            Some(reader(&mut buf).map(|c| c.map(|c| (n, c))))
        };
        let got = match got {
            Some(Ok(got)) => got,
            Some(Err(e)) => {
                sh.fail(e);
                sh.gate.leave();
                return;
            }
            None => {
                sh.gate.leave();
                return;
            }
        };
        sh.gate.leave();
        let (n, kind, len) = match got {
            Some((n, (kind, len))) => (n, kind, sh.plan.head + len),
            // The state is read: chunks read before are put by the threads holding them.
            None => return sh.give_back(buf),
        };
        let sum = sh.plan.hash.then(|| checksum(&buf[sh.plan.head..len]));
        mine = sh.put_or_queue(
            n,
            Ready {
                kind,
                buf,
                len,
                sum,
            },
        );
        if sh.stopped() {
            return;
        }
    }
}
