//! A destination with one device reads its stream straight from the link: the restore thread
//! itself reads the DATA frames, their payloads land in the restore engine's buffers (no copy
//! through a frame buffer, no thread in between), and it waits for COMMIT on the link. With
//! several devices the frames are demultiplexed by `receive`'s pump instead.

use super::error::{Stage, TransportError};
use super::frame::{Frame, FrameKind, RefusalKind};
use super::link::{Incoming, Link};
use super::send::expect_json;
use crate::migration::engine::Cancel;
use crate::migration::MigrationError;
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// What a stream cut short by the link or the source fails with (the cause is kept
/// elsewhere: [`Direct::take_failure`], or the link's fault).
pub(super) fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the migration was aborted (the link failed or the source gave up) before the commit",
    )
}

/// A COMMIT that came before the device's stream ended.
pub(super) fn commit_too_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "COMMIT before the end of the stream",
    )
}

/// Stream data that came after the device's stream ended.
pub(super) fn data_after_end() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "stream data after the end of the stream",
    )
}

/// Whether the user interrupted the destination (`cancel` set); if so the source is told why.
pub(super) fn interrupted(link: &Link, cancel: Option<&Cancel>) -> bool {
    let set = cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    if set {
        link.refuse(RefusalKind::Interrupted, &"interrupted on the destination");
    }
    set
}

/// `e`, after telling the peer when it is the interruption that ended a wait on the link
/// ([`Link::cancel_on`]: a wait for the peer gives up on its own when the user interrupts).
/// `side` names this end in the refusal: `source` or `destination`.
pub(super) fn tell_if_interrupted(link: &Link, side: &str, e: TransportError) -> TransportError {
    if matches!(e, TransportError::Migration(MigrationError::Interrupted)) {
        link.refuse(
            RefusalKind::Interrupted,
            &format_args!("interrupted on the {side}"),
        );
    }
    e
}

/// The one device's side of the link, shared by its stream reader ([`Direct::reader`]) and its
/// commit gate ([`Direct::wait_commit`]).
pub(super) struct Direct {
    link: Link,
    cancel: Option<Cancel>,
    /// The first failure of the link or of the source (a link fault, a refusal, a broken
    /// protocol, an interruption): the restore was aborted because of it, and `receive`
    /// returns it.
    failure: Mutex<Option<TransportError>>,
}

impl Direct {
    pub(super) fn new(link: Link, cancel: Option<Cancel>) -> Direct {
        Direct {
            link,
            cancel,
            failure: Mutex::new(None),
        }
    }

    /// The failure that aborted the restore, if any.
    pub(super) fn take_failure(&self) -> Option<TransportError> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Keeps `e` (the first one is the cause) and returns what the engine sees: an abort.
    fn fail(&self, e: TransportError) -> io::Error {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
        aborted()
    }

    /// Fails once the user interrupted the destination, telling the source why.
    fn check_cancel(&self) -> io::Result<()> {
        if interrupted(&self.link, self.cancel.as_ref()) {
            return Err(self.fail(MigrationError::Interrupted.into()));
        }
        Ok(())
    }

    /// A frame that has no place in the transfer: the source's refusal, or a broken protocol.
    fn unexpected(&self, f: Frame) -> io::Error {
        let e = match f.kind {
            FrameKind::Refuse => match expect_json(&f.payload, "REFUSE") {
                Ok(r) => TransportError::Refused(r),
                Err(e) => e,
            },
            k => TransportError::Protocol(format!("unexpected {k:?} during the transfer")),
        };
        self.fail(e)
    }

    /// The device's stream: DATA payloads up to its END, then end of input.
    pub(super) fn reader(&self) -> LinkReader<'_> {
        LinkReader {
            direct: self,
            ended: false,
        }
    }

    /// Waits for the source's COMMIT (every stream was verified and READY sent).
    pub(super) fn wait_commit(&self) -> io::Result<()> {
        loop {
            self.check_cancel()?;
            let f = self
                .link
                .recv_any()
                .map_err(|e| self.fail(tell_if_interrupted(&self.link, "destination", e)))?;
            match f.kind {
                FrameKind::Keepalive => {}
                FrameKind::Commit => {
                    self.link.set_stage(Stage::Commit);
                    return Ok(());
                }
                FrameKind::Data | FrameKind::End => return Err(data_after_end()),
                _ => return Err(self.unexpected(f)),
            }
        }
    }
}

/// The `Read` the restore engine pulls the device's stream from: the payloads of its DATA
/// frames, read from the link into the engine's buffer, and end of input at its END.
pub(super) struct LinkReader<'a> {
    direct: &'a Direct,
    ended: bool,
}

impl Read for LinkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.ended {
            return Ok(0);
        }
        let d = self.direct;
        loop {
            d.check_cancel()?;
            let r = d.link.read_data(0, out);
            match r.map_err(|e| d.fail(tell_if_interrupted(&d.link, "destination", e)))? {
                Incoming::Data(n) => return Ok(n),
                Incoming::Frame(f) => match f.kind {
                    FrameKind::Keepalive => {}
                    FrameKind::End => {
                        self.ended = true;
                        return Ok(0);
                    }
                    FrameKind::Commit => return Err(commit_too_early()),
                    _ => return Err(d.unexpected(f)),
                },
            }
        }
    }
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
