//! How many bytes a [`StreamReader`](super::StreamReader) still needs before it can go on,
//! told to the lowest reader of its input: [`Needed`].
//!
//! A stream reader knows, before every read, how many more bytes it must have to finish what
//! it is reading (the rest of a chunk header, of a payload, of the trailer). A reader at the
//! bottom of the input stack can use that to wait for more at once: a TCP socket woken when
//! any data arrived hands over a few segments per wake-up, and on a loopback connection the
//! wake-ups cost more than the copy (hw-notes/bench.md, session 10).
//! [`Cancellable::low_water`](crate::migration::engine::Cancellable::low_water) sets the
//! socket's receive low-water mark from it; the engine's `restore_from` does not ask for it
//! (it measured slower with it in session 19), the transport's TCP link sets its own count
//! per frame.
//!
//! The count is only a promise about the bytes the input must deliver when every reader in
//! between is empty at the moment it reads its own input, which `BufReader` and the stream
//! reader's look-ahead are (they read underneath only once drained). A reader that keeps
//! bytes across reads while also reading underneath would make the count too high, and a
//! low-water mark set from it could wait for bytes that never come.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes the stream reader must still receive to finish its current read (0 when it is not
/// reading, or before it was attached with
/// [`StreamReader::report_needed`](super::StreamReader::report_needed)). Shared between the
/// stream reader, which sets it before every read of its input, and the input's lowest
/// reader, which reads it on the same thread.
#[derive(Debug, Default)]
pub struct Needed(AtomicUsize);

impl Needed {
    /// A count of 0, to share.
    pub fn new() -> Arc<Needed> {
        Arc::new(Needed::default())
    }

    /// Sets the count (the stream reader does).
    pub fn set(&self, bytes: usize) {
        self.0.store(bytes, Ordering::Relaxed);
    }

    /// The count (the input's lowest reader reads it).
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}
