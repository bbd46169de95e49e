//! The reading half of a plain TCP link: the socket, its receive low-water mark set before
//! every read from what the frame reader still lacks ([`LowWater`]), so the receiving thread
//! is woken once per up to [`LOW_WATER_MAX`](crate::migration::engine::LOW_WATER_MAX) bytes
//! of a frame instead of at every few segments.
//!
//! The link's reads keep their short timeout ([`POLL`](super::link::POLL)): a read whose
//! mark is not reached within it returns what did arrive, so the link still looks at its
//! shutdown flag and its stall timeout as often as before.

use crate::migration::engine::LowWater;
use crate::migration::stream::Needed;
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::Arc;

/// A TCP socket read with its low-water mark following `needed`; the socket's own mark is
/// put back on drop.
pub(super) struct MarkedSocket {
    sock: TcpStream,
    mark: Option<LowWater>,
}

impl MarkedSocket {
    /// `sock`, its mark following `needed` (left alone if `sock` is not TCP).
    ///
    /// # Errors
    ///
    /// Reading the socket's mark failed.
    pub(super) fn new(sock: TcpStream, needed: Arc<Needed>) -> io::Result<MarkedSocket> {
        let mark = LowWater::new(sock.as_fd(), needed)?;
        Ok(MarkedSocket { sock, mark })
    }
}

impl Read for MarkedSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(m) = &mut self.mark {
            m.apply(self.sock.as_fd())?;
        }
        self.sock.read(buf)
    }
}

impl Drop for MarkedSocket {
    fn drop(&mut self) {
        if let Some(m) = &self.mark {
            m.put_back(self.sock.as_fd());
        }
    }
}
