//! Where the simulated device's migration state lives (`backing=generated|memory`).
//!
//! - **generated** (the default): nothing is stored. Saving generates the bytes of
//!   `(seed, zero pages)` straight into the reader's buffer ([`Gen::fill`]), restoring compares
//!   what is written against the same function ([`Gen::verify`]): a many-GiB state costs no
//!   memory, but a save makes no memory traffic at all (the buffer stays in the reader's
//!   cache), so it measures a data path with a device that is faster than memory.
//! - **memory**: the state is held in real memory, an anonymous mapping of the state's size
//!   filled with the content of `(seed, zero pages)` when the device opens (every page
//!   touched, zero pages too: device memory exists whether it holds zeros or not). Reads copy
//!   out of it and writes copy into it, as a driver's `copy_to_user` / `copy_from_user` do
//!   between its device memory and the caller's buffer. Restored bytes are not compared while
//!   they are written (a driver does not either); [`check`] compares the whole memory with
//!   what the stream's seed produces, on demand.

use super::gen::Gen;
use super::mem::AnonMem;
use crate::device::Result;
use std::sync::Arc;

/// Bytes filled or checked per step (bounded temporary views of the state memory).
const STEP: usize = 1 << 20;

/// The content a data stream reads or writes: what `(seed, zero pages)` produce, and where
/// the bytes live (`mem`: the state memory, or nowhere for a generated state).
#[derive(Clone, Debug)]
pub(crate) struct Content {
    /// What the state holds (or should hold).
    pub gen: Gen,
    /// The state memory of a memory-backed device.
    pub mem: Option<Arc<AnonMem>>,
}

impl Content {
    /// A generated state (no memory).
    #[cfg(test)]
    pub(crate) fn generated(gen: Gen) -> Content {
        Content { gen, mem: None }
    }

    /// Copies the state bytes `offset..offset + dst.len()` into `dst` (memory), or generates
    /// them. The caller holds the device lock and has checked bounds.
    pub(crate) fn read(&self, offset: u64, dst: &mut [u8]) {
        match &self.mem {
            Some(m) => m.read(offset as usize, dst),
            None => self.gen.fill(offset, dst),
        }
    }

    /// Takes restored bytes for `offset..offset + src.len()`: copies them into the state
    /// memory, or (generated) checks them. Returns the state offset of the first byte that
    /// differs from what the generator produces (generated states only).
    pub(crate) fn write(&self, offset: u64, src: &[u8]) -> Option<u64> {
        match &self.mem {
            Some(m) => {
                m.write(offset as usize, src);
                None
            }
            None => self.gen.verify(offset, src),
        }
    }
}

/// Maps `len` bytes of state memory for device `name` and fills it with `gen`'s content.
pub(crate) fn create(name: &str, len: u64, gen: &Gen) -> Result<Arc<AnonMem>> {
    let bytes = usize::try_from(len).map_err(|_| crate::device::DeviceError::Io {
        device: name.to_string(),
        what: format!("map {len} bytes of simulated state memory"),
        source: std::io::Error::from(std::io::ErrorKind::OutOfMemory),
    })?;
    let mem = AnonMem::new(name, bytes.max(1))?;
    fill(&mem, len, gen);
    Ok(mem)
}

/// Writes `gen`'s content into the first `len` bytes of `mem` (every page touched).
pub(crate) fn fill(mem: &AnonMem, len: u64, gen: &Gen) {
    let mut off = 0u64;
    while off < len {
        let n = ((len - off) as usize).min(STEP);
        // SAFETY: `off + n <= len <= mem.len()`; the state memory is only reached under the
        // device lock (or before the device is shared, at open), so nothing else reads or
        // writes these bytes while this temporary view exists.
        let view = unsafe { std::slice::from_raw_parts_mut(mem.ptr().add(off as usize), n) };
        gen.fill(off, view);
        off += n as u64;
    }
}

/// Compares the first `len` bytes of `mem` with `gen`'s content; the state offset of the
/// first difference, if any.
pub(crate) fn check(mem: &AnonMem, len: u64, gen: &Gen) -> Option<u64> {
    let mut off = 0u64;
    while off < len {
        let n = ((len - off) as usize).min(STEP);
        // SAFETY: in bounds as in `fill`; read-only view under the device lock.
        let view = unsafe { std::slice::from_raw_parts(mem.ptr().add(off as usize), n) };
        if let Some(bad) = gen.verify(off, view) {
            return Some(bad);
        }
        off += n as u64;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::gen::ZERO_ALL;

    #[test]
    fn memory_holds_the_generated_content_and_takes_writes() {
        let g = Gen::with_zero_pages(5, ZERO_ALL / 4);
        let len = 3 * STEP as u64 + 12345;
        let mem = create("t", len, &g).unwrap();
        assert_eq!(check(&mem, len, &g), None);
        let c = Content {
            gen: g,
            mem: Some(mem.clone()),
        };
        let mut a = vec![0u8; 10_000];
        let mut b = vec![0u8; 10_000];
        c.read(len - 10_000, &mut a);
        g.fill(len - 10_000, &mut b);
        assert_eq!(a, b);
        // Writes land in memory unchecked; the check finds them.
        assert_eq!(c.write(77, &[0xAA; 3]), None);
        assert_eq!(
            check(&mem, len, &g).map(|o| (77..80).contains(&o)),
            Some(true)
        );
        fill(&mem, len, &g);
        assert_eq!(check(&mem, len, &g), None);
        // A generated state checks what is written instead.
        let gc = Content::generated(g);
        let mut buf = vec![0u8; 4096 * 3];
        gc.read(4096, &mut buf);
        assert_eq!(gc.write(4096, &buf), None);
        buf[5] ^= 1;
        assert_eq!(gc.write(4096, &buf), Some(4096 + 5));
    }
}
