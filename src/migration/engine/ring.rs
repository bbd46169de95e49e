//! The ring: buffers passed between the side that reads a stream file and the side that
//! writes a device (restore), on two threads or inline on one.

use super::poll::{poll, Polled};
use super::AlignedBuf;
use crate::migration::recovery::recover;
use crate::migration::stream::PayloadCheck;
use crate::migration::{MigrationDriver, MigrationError, Result};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

/// Buffers in flight per operation.
pub const RING: usize = 4;

/// A full buffer travelling from the producer to the consumer.
pub(super) struct Filled {
    pub(super) buf: AlignedBuf,
    /// Payload length (`buf[..len]`).
    pub(super) len: usize,
    /// For a chunk read from a stream: its payload check, done by the consumer.
    pub(super) check: Option<PayloadCheck>,
}

/// The consuming side of a pipeline: called with each chunk and its pending payload check.
type Consume<'a> = dyn FnMut(&mut Chunk<'_>) -> Result<()> + 'a;

/// One chunk as the consumer sees it.
pub(super) struct Chunk<'a> {
    /// The payload: `buf[..len]` of the [`Filled`].
    data: &'a [u8],
    /// For a chunk read from a stream: its payload check, still to do.
    pub(super) check: Option<&'a PayloadCheck>,
}

impl Filled {
    fn chunk(&mut self) -> Chunk<'_> {
        Chunk {
            data: &self.buf[..self.len],
            check: self.check.as_ref(),
        }
    }
}

impl Chunk<'_> {
    /// The payload.
    pub(super) fn data(&self) -> &[u8] {
        self.data
    }
}

/// The producer's side of the ring.
/// Buffers are made as needed, up to [`RING`]: a state that fits one buffer never maps the
/// others.
pub(super) struct Producer<'a> {
    chunk: usize,
    to: Handoff<'a>,
}

/// Where the producer's chunks go.
enum Handoff<'a> {
    /// To the consumer's thread, through the ring.
    Ring {
        free: Receiver<AlignedBuf>,
        full: SyncSender<Filled>,
        /// Buffers made so far (at most [`RING`]).
        made: Cell<usize>,
        /// Chunks sent and not yet consumed.
        queued: &'a AtomicUsize,
        /// The producer's waits for free buffers.
        waiter: Waiter,
    },
    /// Straight into the consumer, on this thread; one buffer, reused.
    Inline {
        spare: RefCell<Option<AlignedBuf>>,
        consume: RefCell<&'a mut Consume<'a>>,
    },
}

impl Producer<'_> {
    /// Whether the consumer is so far behind that every buffer but the one the producer holds
    /// is queued for it: the producer's next [`Producer::take`] would wait for the consumer.
    /// Work done on the producer then costs the pipeline nothing (restore verifies chunks on
    /// the producer only then: a weaker signal, any chunk queued, had the reading thread take
    /// over checksums from a device writer that was only briefly behind, and become the
    /// slower side). Always `false` on one thread.
    pub(super) fn consumer_far_behind(&self) -> bool {
        self.queued() >= RING - 1
    }

    /// Chunks sent and not yet consumed (0 on one thread, where each is consumed as it is
    /// sent).
    fn queued(&self) -> usize {
        match &self.to {
            Handoff::Ring { queued, .. } => queued.load(Ordering::Acquire),
            Handoff::Inline { .. } => 0,
        }
    }

    /// A free buffer, or an error when the consumer has stopped (its error is reported).
    pub(super) fn take(&self) -> Result<AlignedBuf> {
        match &self.to {
            Handoff::Ring {
                free, made, waiter, ..
            } => {
                if let Ok(b) = free.try_recv() {
                    return Ok(b);
                }
                if made.get() < RING {
                    made.set(made.get() + 1);
                    return AlignedBuf::new(self.chunk);
                }
                waiter.recv(free).map_err(|_| consumer_gone())
            }
            Handoff::Inline { spare, .. } => match spare.borrow_mut().take() {
                Some(b) => Ok(b),
                None => AlignedBuf::new(self.chunk),
            },
        }
    }

    pub(super) fn send(&self, f: Filled) -> Result<()> {
        match &self.to {
            Handoff::Ring { full, queued, .. } => {
                queued.fetch_add(1, Ordering::AcqRel);
                full.send(f).map_err(|_| consumer_gone())
            }
            Handoff::Inline { spare, consume } => {
                let mut f = f;
                (consume.borrow_mut())(&mut f.chunk())?;
                *spare.borrow_mut() = Some(f.buf);
                Ok(())
            }
        }
    }
}

/// How long a side waiting for the other polls before it sleeps.
pub(super) const SPIN: Duration = Duration::from_micros(50);

/// Longest run of waits that sleep without polling after polls went unanswered.
const MAX_BACKOFF: u32 = 64;

/// One side's waits for the other: `recv`, polling first unless recent polls went unanswered.
///
/// A chunk takes the other side about 100 us per MiB at memory speed, and a sleeping thread
/// costs a futex wake-up on every hand-off, which in a VM (an IPI to the other vCPU) was
/// measured to cost more than the checksum the second thread is there to take over
/// (hw-notes/bench.md); a thread that is still polling is handed the chunk without one. But
/// a side that waits on a slow peer (a pipe, a socket, a disk) would poll in vain on every
/// chunk and take the CPU that the peer, or the kernel copying for it, needs. So a poll that
/// goes unanswered for [`SPIN`] makes the next waits sleep at once, twice as many after each
/// unanswered poll in a row (at most [`MAX_BACKOFF`]), and then polls again; a poll answered
/// in time resets that. Against a slow peer this polls in vain at most once per
/// [`MAX_BACKOFF`] waits; a peer that speeds up is polled for again within as many waits.
/// (Judging by how long sleeping waits took would not do: a sleeping wait includes the
/// wake-up it is trying to avoid, and could keep a side asleep against a fast peer.)
#[derive(Debug)]
pub(super) struct Waiter {
    /// Waits left that sleep without polling.
    skip: Cell<u32>,
    /// How many waits the next unanswered poll makes sleep.
    backoff: Cell<u32>,
}

impl Default for Waiter {
    fn default() -> Self {
        Waiter {
            skip: Cell::new(0),
            backoff: Cell::new(1),
        }
    }
}

impl Waiter {
    /// Whether the next wait polls before it sleeps.
    pub(super) fn polls(&self) -> bool {
        self.skip.get() == 0
    }

    /// Counts one wait: whether it polled, and if so whether the poll was answered in time.
    pub(super) fn record(&self, polled: bool, answered: bool) {
        if !polled {
            self.skip.set(self.skip.get().saturating_sub(1));
        } else if answered {
            self.backoff.set(1);
        } else {
            self.skip.set(self.backoff.get());
            self.backoff.set((self.backoff.get() * 2).min(MAX_BACKOFF));
        }
    }

    /// [`poll`](super::poll::poll) for up to `budget` when [`Waiter::polls`] (and `budget` is
    /// not zero), counting the wait ([`Waiter::record`]); `Unanswered` when it did not poll.
    pub(super) fn poll_first<T>(
        &self,
        budget: Duration,
        stop: impl FnMut() -> bool,
        attempt: impl FnMut() -> Option<T>,
    ) -> Polled<T> {
        let polls = self.polls() && !budget.is_zero();
        if polls {
            match poll(budget, stop, attempt) {
                Polled::Answered(v) => {
                    self.record(true, true);
                    return Polled::Answered(v);
                }
                Polled::Stopped => return Polled::Stopped,
                Polled::Unanswered => {}
            }
        }
        self.record(polls, false);
        Polled::Unanswered
    }

    /// `rx.recv()`, polling for up to [`SPIN`] first when [`Waiter::polls`].
    pub(super) fn recv<T>(&self, rx: &Receiver<T>) -> std::result::Result<T, mpsc::RecvError> {
        match rx.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(mpsc::RecvError),
            Err(TryRecvError::Empty) => {}
        }
        let polls = self.polls();
        if polls {
            let t0 = Instant::now();
            while t0.elapsed() < SPIN {
                std::hint::spin_loop();
                match rx.try_recv() {
                    Ok(v) => {
                        self.record(true, true);
                        return Ok(v);
                    }
                    Err(TryRecvError::Disconnected) => return Err(mpsc::RecvError),
                    Err(TryRecvError::Empty) => {}
                }
            }
        }
        self.record(polls, false);
        rx.recv()
    }
}

fn consumer_gone() -> MigrationError {
    MigrationError::PeerStopped
}

/// Runs `produce` and `consume` on two threads, passing [`RING`] buffers of `chunk` bytes
/// between them: restore's, where the consumer writes the device. The device side runs on
/// the calling thread: the thread that opened the device and that the embedding program
/// placed and configured keeps making the device calls, and the stream side runs on a
/// helper. (Under the bed's emulated CPUs, device reads from a fresh helper thread were
/// measured ~10 % slower than from the caller, hw-notes/bench.md.) The first error wins: a
/// side that only failed because the other went away reports the other's error.
///
/// Without `overlap`, both run on this thread: each chunk is consumed as soon as it is
/// produced, in one reused buffer.
///
/// A panic on either side, on either thread, stops both sides and continues on the calling
/// thread ([`guarded`] recovers the devices before letting it go on).
pub(super) fn pipeline<P, C, T>(
    chunk: usize,
    overlap: bool,
    produce: P,
    mut consume: C,
) -> Result<T>
where
    P: FnOnce(&Producer) -> Result<T> + Send,
    T: Send,
    C: FnMut(&mut Chunk<'_>) -> Result<()> + Send,
{
    if !overlap {
        let p = Producer {
            chunk,
            to: Handoff::Inline {
                spare: RefCell::new(None),
                consume: RefCell::new(&mut consume),
            },
        };
        return produce(&p);
    }
    let (free_tx, free_rx) = mpsc::sync_channel::<AlignedBuf>(RING);
    let (full_tx, full_rx) = mpsc::sync_channel::<Filled>(RING);
    let queued = AtomicUsize::new(0);
    let queued = &queued;
    let producer = move || {
        let p = Producer {
            chunk,
            to: Handoff::Ring {
                free: free_rx,
                full: full_tx,
                made: Cell::new(0),
                queued,
                waiter: Waiter::default(),
            },
        };
        // Returning drops the ring's sending end, which ends the consumer's loop.
        produce(&p)
    };
    // Calling this consumes it: its ends of the ring close as soon as it returns, which is
    // what stops a producer blocked on a full ring after the consumer failed.
    let consumer = move || -> Result<()> {
        let (full_rx, free_tx, mut consume) = (full_rx, free_tx, consume);
        let waiter = Waiter::default();
        while let Ok(mut f) = waiter.recv(&full_rx) {
            // On error, returning drops both of the consumer's channel ends, which stops the
            // producer.
            let consumed = consume(&mut f.chunk());
            queued.fetch_sub(1, Ordering::AcqRel);
            consumed?;
            // The producer may already be done; a closed return path is fine.
            let _ = free_tx.send(f.buf);
        }
        Ok(())
    };
    // A panic on the helper thread (a sink, a source or a progress callback) is carried
    // back and resumed on the calling thread once both sides stopped, so that the operation's
    // caller recovers the devices and the panic goes on, as it would on one thread.
    let (produced, consumed) = std::thread::scope(|s| {
        let h = s.spawn(producer);
        let consumed = consumer();
        (h.join(), Ok(consumed))
    });
    let (produced, consumed) = match (produced, consumed) {
        (Ok(p), Ok(c)) => (p, c),
        (Err(payload), _) | (_, Err(payload)) => std::panic::resume_unwind(payload),
    };
    match (produced, consumed) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
        // The producer failing because the consumer stopped is a consequence, not the cause.
        (Err(pe), Err(ce)) => {
            if matches!(pe, MigrationError::PeerStopped) {
                Err(ce)
            } else {
                Err(pe)
            }
        }
    }
}

/// Runs `op` against the devices in `drvs`; when `op` panics (on the calling thread, or on a
/// helper thread whose panic [`pipeline`] resumed here), every device is returned to RUNNING
/// (`crate::migration::recovery`) and the panic goes on.
pub(super) fn guarded<T>(
    drvs: &mut [&mut dyn MigrationDriver],
    op: impl FnOnce(&mut [&mut dyn MigrationDriver]) -> T,
) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&mut *drvs))) {
        Ok(v) => v,
        Err(payload) => {
            for d in drvs.iter_mut() {
                // The panic is what the caller gets; the device is recovered whatever the
                // outcome, which the unwinding caller has no way to receive.
                let _recovery = recover(&mut **d);
            }
            std::panic::resume_unwind(payload)
        }
    }
}
