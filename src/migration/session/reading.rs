//! The reads of a [`SourceSession`]: pre-copy rounds and the stopped state, into the
//! session's own buffer and a [`ChunkSink`], or (the pull form) into the caller's buffers.

use super::source::{Round, SourceSession, Stage};
use super::ChunkSink;
use crate::migration::engine::RoundStats;
use crate::migration::stream::{stop_copy_limit, ChunkKind};
use crate::migration::{MigrationError, Pending, Result};
use std::sync::atomic::Ordering;
use std::time::Instant;

impl SourceSession<'_> {
    /// One pre-copy round: reads what was pending when it started (at least one chunk, so a
    /// device that under-reports still progresses), until the device has nothing more for
    /// now, every chunk into `sink`.
    ///
    /// Pre-copy data is bounded as STOP_COPY data is (four times the device's estimate and
    /// at least 64 MiB more): a device dirtying faster than it is read cannot grow the
    /// stream without end. Past the bound a round reads nothing (its `bytes` is 0 while
    /// `pending_after` is not, and [`precopy_capped`](Self::precopy_capped) is true): time
    /// to stop the device.
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: not pre-copying.
    /// - [`MigrationError::Interrupted`]: the [cancel flag](Self::with_cancel) is set.
    /// - [`MigrationError::Device`], [`MigrationError::Protocol`]: the device failed a read
    ///   or a query.
    /// - whatever `sink` returned.
    pub fn precopy_round(&mut self, sink: &mut dyn ChunkSink) -> Result<RoundStats> {
        self.begin_round()?;
        let mut buf = self.take_buf();
        let r = self.round_into(&mut buf, sink);
        self.buf = buf;
        r?;
        self.end_round()
    }

    fn round_into(&mut self, buf: &mut [u8], sink: &mut dyn ChunkSink) -> Result<()> {
        loop {
            let n = self.read_round(buf)?;
            if n == 0 {
                return Ok(());
            }
            sink.put_chunk(ChunkKind::Precopy, &buf[..n])?;
        }
    }

    /// Begins a pre-copy round read into the caller's own buffers: the pull form of
    /// [`precopy_round`](Self::precopy_round), for a caller that hands buffers to another
    /// thread (the one-call engine overlaps reading and writing this way). Takes what the
    /// device has pending now; [`read_round`](Self::read_round) then reads up to that much,
    /// and [`end_round`](Self::end_round) records the round. Returns what is pending.
    ///
    /// # Examples
    ///
    /// See [`read_round`](Self::read_round).
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: not pre-copying.
    /// - [`MigrationError::Interrupted`]: the [cancel flag](Self::with_cancel) is set.
    /// - [`MigrationError::Device`]: the device refused the query.
    pub fn begin_round(&mut self) -> Result<Pending> {
        self.expect(&[Stage::Precopy], "run a pre-copy round")?;
        self.check_cancel()?;
        let t0 = Instant::now();
        let before = self.drv.pending()?;
        self.round = Some(Round {
            t0,
            before,
            budget: before.total().max(1),
            bytes: 0,
        });
        Ok(before)
    }

    /// Reads the next chunk of the round begun by [`begin_round`](Self::begin_round) into
    /// `buf` (at most its length, at least one byte unless the round is over); 0 when the
    /// round has read what was pending, the device has nothing more for now, or pre-copy
    /// reached its bound ([`precopy_capped`](Self::precopy_capped)).
    ///
    /// # Examples
    ///
    /// A round into buffers of the caller's:
    ///
    /// ```
    /// use vfio_harness::migration::driver_for;
    /// use vfio_harness::migration::session::{EndState, SourceSession};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut drv = driver_for(vfio_harness::open(&"sim:state=1M".parse()?, &Default::default())?)?;
    /// let mut s = SourceSession::new(drv.as_mut())?;
    /// s.start_precopy()?;
    /// let pending = s.begin_round()?;
    /// let mut chunks: Vec<Vec<u8>> = Vec::new();
    /// loop {
    ///     let mut buf = vec![0; 256 << 10];
    ///     let n = s.read_round(&mut buf)?;
    ///     if n == 0 {
    ///         break;
    ///     }
    ///     buf.truncate(n);
    ///     chunks.push(buf); // e.g. handed to a writer thread
    /// }
    /// let round = s.end_round()?;
    /// assert_eq!(round.pending_before, pending);
    /// assert_eq!(round.bytes, chunks.iter().map(|c| c.len() as u64).sum::<u64>());
    /// s.stop_copy()?;
    /// let mut buf = vec![0; 256 << 10];
    /// while s.read_stopped(&mut buf)? > 0 {}
    /// s.finish(EndState::Running)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: no round begun.
    /// - [`MigrationError::Interrupted`]: the [cancel flag](Self::with_cancel) is set.
    /// - [`MigrationError::Device`], [`MigrationError::Protocol`]: a read failed, or
    ///   returned more than asked.
    pub fn read_round(&mut self, buf: &mut [u8]) -> Result<usize> {
        let Some(mut round) = self.round.filter(|_| self.stage == Stage::Precopy) else {
            return Err(self.wrong("read a pre-copy round", "a round begun (begin_round)"));
        };
        if round.budget == 0 || buf.is_empty() {
            return Ok(0);
        }
        // Pre-copy data is bounded like STOP_COPY data (a device dirtying faster than it is
        // read would otherwise grow the stream for as many rounds as asked).
        let cap = self.estimate.map(stop_copy_limit);
        let room = cap.map_or(u64::MAX, |c| c.saturating_sub(self.report.precopy_bytes));
        if room == 0 {
            self.capped = true;
            return Ok(0);
        }
        let want = round.budget.min(room).min(buf.len() as u64) as usize;
        let n = self.fill(&mut buf[..want])?;
        if n == 0 {
            round.budget = 0;
        } else {
            round.budget = round.budget.saturating_sub(n as u64);
            round.bytes += n as u64;
            self.report.precopy_bytes += n as u64;
            self.report.chunks += 1;
        }
        self.round = Some(round);
        Ok(n)
    }

    /// Ends the round begun by [`begin_round`](Self::begin_round): asks the device what is
    /// pending now and records the round in the report.
    ///
    /// # Examples
    ///
    /// See [`read_round`](Self::read_round).
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: no round begun.
    /// - [`MigrationError::Device`]: the device refused the query.
    pub fn end_round(&mut self) -> Result<RoundStats> {
        let Some(round) = self.round.filter(|_| self.stage == Stage::Precopy) else {
            return Err(self.wrong("end a pre-copy round", "a round begun (begin_round)"));
        };
        let after = self.drv.pending()?;
        self.round = None;
        let stats = RoundStats {
            round: self.report.rounds.len() as u32 + 1,
            pending_before: round.before,
            bytes: round.bytes,
            pending_after: after,
            seconds: round.t0.elapsed().as_secs_f64(),
        };
        self.report.rounds.push(stats);
        Ok(stats)
    }

    /// Whether pre-copy reached its bound (four times the device's STOP_COPY estimate and
    /// at least 64 MiB more): rounds read nothing more, time to stop the device.
    pub fn precopy_capped(&self) -> bool {
        self.capped
    }

    /// Reads the stopped device's state to its end, every chunk into `sink`; returns the
    /// bytes read.
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: [`stop_copy`](Self::stop_copy) was not called.
    /// - [`MigrationError::Device`]: a read failed.
    /// - [`MigrationError::Protocol`]: the device broke the protocol (a read longer than
    ///   asked, or a stream far beyond its own estimate that never ends).
    /// - whatever `sink` returned.
    pub fn drain(&mut self, sink: &mut dyn ChunkSink) -> Result<u64> {
        if self.stage == Stage::Drained {
            return Ok(0);
        }
        self.expect(&[Stage::StopCopy], "read the stopped state")?;
        let mut buf = self.take_buf();
        let r = self.drain_into(&mut buf, sink);
        self.buf = buf;
        r
    }

    fn drain_into(&mut self, buf: &mut [u8], sink: &mut dyn ChunkSink) -> Result<u64> {
        let mut read = 0u64;
        loop {
            let n = self.read_stopped(buf)?;
            if n == 0 {
                return Ok(read);
            }
            read += n as u64;
            sink.put_chunk(ChunkKind::Stopcopy, &buf[..n])?;
        }
    }

    /// Reads the next chunk of the stopped device's state into `buf` (the caller's own
    /// buffer: the pull form of [`drain`](Self::drain)); 0 at the end of the state, after
    /// which the session is drained and [`finish`](Self::finish) may be called.
    ///
    /// # Examples
    ///
    /// See [`read_round`](Self::read_round).
    ///
    /// # Errors
    ///
    /// - [`MigrationError::WrongState`]: [`stop_copy`](Self::stop_copy) was not called.
    /// - [`MigrationError::Interrupted`]: the [cancel flag](Self::with_cancel) is set.
    /// - [`MigrationError::Device`]: a read failed.
    /// - [`MigrationError::Protocol`]: the device broke the protocol (a read longer than
    ///   asked, or a stream far beyond its own estimate that never ends).
    pub fn read_stopped(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.stage == Stage::Drained {
            return Ok(0);
        }
        self.expect(&[Stage::StopCopy], "read the stopped state")?;
        let n = self.fill(buf)?;
        if n == 0 {
            if let Some(t) = self.stopped_at {
                self.report.stop_copy_seconds = t.elapsed().as_secs_f64();
            }
            self.stage = Stage::Drained;
            return Ok(0);
        }
        self.report.stopcopy_bytes += n as u64;
        self.report.chunks += 1;
        if let Some((limit, estimate)) = self.stop_limit {
            if self.report.stopcopy_bytes > limit {
                return Err(MigrationError::Protocol {
                    device: self.report.device.clone(),
                    what: format!(
                        "STOP_COPY keeps streaming: {} bytes read, the device estimated {estimate} on entering STOP_COPY (the end of stream never came)",
                        self.report.stopcopy_bytes,
                    ),
                });
            }
        }
        Ok(n)
    }

    /// The session's own buffer, made on first use.
    pub(super) fn take_buf(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.buf);
        if buf.len() != self.chunk {
            buf = vec![0; self.chunk];
        }
        buf
    }

    fn check_cancel(&self) -> Result<()> {
        match &self.cancel {
            Some(c) if c.load(Ordering::Relaxed) => Err(MigrationError::Interrupted),
            _ => Ok(()),
        }
    }

    /// Reads from the device into `buf` until it is full or the device returns 0. Only the
    /// bytes returned were written by this read; the rest of the buffer is never handed out.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let want = buf.len();
        let mut got = 0;
        while got < want {
            self.check_cancel()?;
            let n = self.drv.read(&mut buf[got..want])?;
            if n == 0 {
                break;
            }
            if n > want - got {
                return Err(MigrationError::Protocol {
                    device: self.report.device.clone(),
                    what: format!("read returned {n} bytes for a {}-byte buffer", want - got),
                });
            }
            got += n;
        }
        Ok(got)
    }
}
