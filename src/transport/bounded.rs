//! Writing a frame within the link's bounds: in pieces the receiver takes in well, retrying
//! the socket's short timeouts until the peer has accepted nothing for the link's timeout or
//! the migration is interrupted.

use crate::migration::engine::LOW_WATER_MAX;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

/// The most bytes of a frame written in one call: twice the receiving side's low-water mark
/// ([`LOW_WATER_MAX`]), so a frame of 1 MiB of payload and its header goes out in three
/// writes, the last of them the header's length. A 4 GiB migration over a loopback
/// connection with each side on one thread, on a 2-vCPU EPYC guest on two days
/// (hw-notes/bench.md, "Session 30" and "Session 31", the second with slower memory copies):
/// on the first, median 0.755 s in 256 KiB writes, 0.751 and 0.828 s in 512 KiB writes,
/// 0.962 s in whole frames; on the second, 1.058 s in 256 KiB writes, 0.963 s in 512 KiB
/// writes, 0.916 s in whole frames (five blocks of each, but two of 512 KiB on the first
/// day). Writes of 512 KiB were within 10 % of the best size on both.
pub(crate) const SEND_PIECE: usize = 2 * LOW_WATER_MAX;

/// A socket timeout of [`POLL`](super::POLL) (or a signal's `EINTR`): the wait goes on.
pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Why [`write_all_bounded`] stopped.
#[derive(Debug)]
pub(super) enum Bounded {
    /// The write or flush failed, or made no progress for the link's timeout.
    Io(io::Error),
    /// The migration was interrupted while the peer accepted nothing ([`Link::cancel_on`]).
    Cancelled,
}

impl From<io::Error> for Bounded {
    fn from(e: io::Error) -> Self {
        Bounded::Io(e)
    }
}

/// Writes every slice, at most [`SEND_PIECE`] bytes per call, retrying short writes and
/// socket timeouts until `timeout` passes with no progress (or `cancelled` says the
/// migration was interrupted); then flushes the same way.
pub(super) fn write_all_bounded(
    io: &mut dyn Write,
    slices: &mut [&[u8]],
    timeout: Duration,
    cancelled: impl Fn() -> bool,
) -> std::result::Result<(), Bounded> {
    let mut last = Instant::now();
    // A socket timeout: give up when interrupted or when nothing moved for `timeout`.
    let waited = |last: Instant| -> std::result::Result<(), Bounded> {
        if cancelled() {
            Err(Bounded::Cancelled)
        } else if last.elapsed() >= timeout {
            Err(io::Error::new(io::ErrorKind::TimedOut, "the peer stalled").into())
        } else {
            Ok(())
        }
    };
    let mut first = 0;
    while first < slices.len() {
        if slices[first].is_empty() {
            first += 1;
            continue;
        }
        let mut room = SEND_PIECE;
        let io_slices: Vec<IoSlice<'_>> = slices[first..]
            .iter()
            .map_while(|s| {
                let k = s.len().min(room);
                room -= k;
                (k > 0 || s.is_empty()).then(|| IoSlice::new(&s[..k]))
            })
            .collect();
        match io.write_vectored(&io_slices) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
            Ok(mut n) => {
                last = Instant::now();
                while n > 0 {
                    let l = slices[first].len();
                    if n >= l {
                        n -= l;
                        slices[first] = &[];
                        first += 1;
                    } else {
                        slices[first] = &slices[first][n..];
                        n = 0;
                    }
                }
            }
            Err(e) if is_timeout(&e) => waited(last)?,
            Err(e) => return Err(e.into()),
        }
    }
    loop {
        match io.flush() {
            Ok(()) => return Ok(()),
            Err(e) if is_timeout(&e) => waited(last)?,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer taking at most `take` bytes per call, recording how many each call offered.
    struct Calls {
        out: Vec<u8>,
        offered: Vec<usize>,
        take: usize,
    }

    impl Write for Calls {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(b)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.offered.push(bufs.iter().map(|b| b.len()).sum());
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(self.take - n);
                self.out.extend_from_slice(&b[..k]);
                n += k;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A frame of more than [`SEND_PIECE`] bytes is offered in writes of at most that many
    /// (a 1 MiB frame and its header in three), and every byte arrives in order, through
    /// short writes too.
    #[test]
    fn a_frame_is_written_in_pieces_of_at_most_send_piece() {
        let head = [7u8; 16];
        let payload: Vec<u8> = (0..(1usize << 20) + 5).map(|i| (i % 251) as u8).collect();
        let mut whole = head.to_vec();
        whole.extend_from_slice(&payload);
        for take in [usize::MAX, 100_000] {
            let mut w = Calls {
                out: Vec::new(),
                offered: Vec::new(),
                take,
            };
            let mut slices: Vec<&[u8]> = vec![&head, &[], &payload];
            write_all_bounded(&mut w, &mut slices, Duration::from_secs(5), || false)
                .expect("write");
            assert!(
                w.out == whole,
                "the bytes differ (writes of at most {take})"
            );
            let most = w.offered.iter().max().copied().unwrap_or(0);
            assert!(most <= SEND_PIECE, "a write offered {most} bytes");
            if take == usize::MAX {
                assert_eq!(w.offered.len(), whole.len().div_ceil(SEND_PIECE));
            }
        }
    }
}
