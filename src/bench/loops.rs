//! The other ways of moving a device's state the harness is compared with, besides the raw
//! loop ([`super::raw`]):
//! - **QEMU's**: the data fd read 1 MiB at a time (`VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE`), each
//!   read copied into the migration stream's 32 KiB buffer (`qemu_put_buffer` into
//!   `QEMUFile`'s `IO_BUF_SIZE` buffer), written out whenever it is full; restoring writes the
//!   data fd 32 KiB at a time (`qemu_file_get_to_fd`).
//! - **The whole state in memory**: rust-vmm `vfio-ioctls`' `read_migration_data_to_end`
//!   (a `Vec` sized by the device's STOP_COPY estimate, filled by `read_to_end`), then written
//!   out in one go; restoring reads the whole stream into memory, then writes it to the device
//!   (cloud-hypervisor does the same with the state it receives). Its peak memory is the
//!   state.
//!
//! Like the raw loops, each returns a [`RawRun`] and leaves the devices RUNNING, on error too.

use super::raw::{file_err, write_all, RawRun};
use crate::device::MigState;
use crate::migration::engine::recover_after;
use crate::migration::{MigrationDriver, MigrationError, Result};
use std::io::{self, Read, Write};
use std::time::Instant;

/// QEMU's read size for saving (`VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE`).
pub const QEMU_READ: usize = 1 << 20;
/// QEMU's migration stream buffer (`IO_BUF_SIZE`), the size of its restore writes.
pub const QEMU_STREAM_BUFFER: usize = 32 << 10;

/// A device's data stream as a [`Read`] (what `read_to_end` needs).
struct DeviceReader<'a>(&'a mut dyn MigrationDriver);

impl Read for DeviceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(io::Error::other)
    }
}

/// A device error that went through [`DeviceReader`], back as a migration error.
fn device_read_err(e: io::Error) -> MigrationError {
    match e.downcast::<MigrationError>() {
        Ok(m) => m,
        Err(e) => file_err("device data stream", e),
    }
}

/// Appends `data` to the 32 KiB stream buffer `stage` (holding `*held` bytes), writing it to
/// `sink` each time it is full.
fn put(stage: &mut [u8], held: &mut usize, mut data: &[u8], sink: &mut dyn Write) -> Result<()> {
    while !data.is_empty() {
        let n = data.len().min(stage.len() - *held);
        stage[*held..*held + n].copy_from_slice(&data[..n]);
        *held += n;
        data = &data[n..];
        if *held == stage.len() {
            sink.write_all(stage).map_err(|e| file_err("sink", e))?;
            *held = 0;
        }
    }
    Ok(())
}

/// QEMU-style save: RUNNING -> STOP_COPY, `read` into `read_buf` (1 MiB) until end of
/// stream, each read copied into `stage` (32 KiB) and written to `sink` when it is full; the
/// rest flushed, then RUNNING.
pub fn qemu_save(
    drv: &mut dyn MigrationDriver,
    read_buf: &mut [u8],
    stage: &mut [u8],
    sink: &mut dyn Write,
) -> Result<RawRun> {
    let r = (|| {
        let t0 = Instant::now();
        drv.set_state(MigState::StopCopy)?;
        let mut bytes = 0u64;
        let mut held = 0;
        loop {
            let n = drv.read(read_buf)?;
            if n == 0 {
                break;
            }
            put(stage, &mut held, &read_buf[..n.min(read_buf.len())], sink)?;
            bytes += n as u64;
        }
        let eof = t0.elapsed().as_secs_f64();
        sink.write_all(&stage[..held])
            .map_err(|e| file_err("sink", e))?;
        drv.set_state(MigState::Running)?;
        Ok(RawRun {
            bytes,
            seconds: t0.elapsed().as_secs_f64(),
            downtime: eof,
        })
    })();
    r.map_err(|e| recover_after(drv, e))
}

/// Whole-state save: RUNNING -> STOP_COPY, the stream read to its end into a `Vec` sized by
/// the STOP_COPY estimate (`read_migration_data_to_end`), written to `sink`, then RUNNING.
pub fn whole_save(drv: &mut dyn MigrationDriver, sink: &mut dyn Write) -> Result<RawRun> {
    let r = (|| {
        let t0 = Instant::now();
        drv.set_state(MigState::StopCopy)?;
        // A capacity hint only: reading to the end does not depend on it.
        let hint = drv.stop_copy_size().ok().flatten().unwrap_or(0);
        let mut data = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
        DeviceReader(&mut *drv)
            .read_to_end(&mut data)
            .map_err(device_read_err)?;
        let eof = t0.elapsed().as_secs_f64();
        sink.write_all(&data).map_err(|e| file_err("sink", e))?;
        let bytes = data.len() as u64;
        drop(data);
        drv.set_state(MigState::Running)?;
        Ok(RawRun {
            bytes,
            seconds: t0.elapsed().as_secs_f64(),
            downtime: eof,
        })
    })();
    r.map_err(|e| recover_after(drv, e))
}

/// Whole-state restore: `source` read to its end into a `Vec` (sized by `hint`), then
/// RUNNING -> RESUMING, the whole state written, -> RUNNING.
pub fn whole_restore(
    drv: &mut dyn MigrationDriver,
    source: &mut dyn Read,
    hint: u64,
) -> Result<RawRun> {
    let t0 = Instant::now();
    let mut data = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    source
        .read_to_end(&mut data)
        .map_err(|e| file_err("source", e))?;
    let r = (|| {
        drv.set_state(MigState::Resuming)?;
        write_all(drv, &data)?;
        drv.set_state(MigState::Running)?;
        let s = t0.elapsed().as_secs_f64();
        Ok(RawRun {
            bytes: data.len() as u64,
            seconds: s,
            downtime: s,
        })
    })();
    r.map_err(|e| recover_after(drv, e))
}

/// Runs `f` on a source and a destination device in that order: `dst` RUNNING -> RESUMING,
/// `f`, `dst` -> RUNNING, `src` -> RUNNING; both recovered on error. The downtime is from the
/// source's STOP_COPY entry (`f`'s first step) until the destination runs.
fn device_to_device(
    src: &mut dyn MigrationDriver,
    dst: &mut dyn MigrationDriver,
    f: impl FnOnce(&mut dyn MigrationDriver, &mut dyn MigrationDriver) -> Result<u64>,
) -> Result<RawRun> {
    let r = (|| {
        let t0 = Instant::now();
        dst.set_state(MigState::Resuming)?;
        let stop = Instant::now();
        src.set_state(MigState::StopCopy)?;
        let bytes = f(&mut *src, &mut *dst)?;
        dst.set_state(MigState::Running)?;
        let downtime = stop.elapsed().as_secs_f64();
        src.set_state(MigState::Running)?;
        Ok(RawRun {
            bytes,
            seconds: t0.elapsed().as_secs_f64(),
            downtime,
        })
    })();
    r.map_err(|e| {
        let e = recover_after(dst, e);
        recover_after(src, e)
    })
}

/// Raw device to device: the source read into `buf`, each piece written to the destination.
pub fn raw_live(
    src: &mut dyn MigrationDriver,
    dst: &mut dyn MigrationDriver,
    buf: &mut [u8],
) -> Result<RawRun> {
    device_to_device(src, dst, |src, dst| {
        let mut bytes = 0u64;
        loop {
            let n = src.read(buf)?;
            if n == 0 {
                return Ok(bytes);
            }
            write_all(dst, &buf[..n.min(buf.len())])?;
            bytes += n as u64;
        }
    })
}

/// QEMU-style device to device: 1 MiB source reads copied into a 32 KiB stream buffer, which
/// is written to the destination whenever it is full.
pub fn qemu_live(
    src: &mut dyn MigrationDriver,
    dst: &mut dyn MigrationDriver,
    read_buf: &mut [u8],
    stage: &mut [u8],
) -> Result<RawRun> {
    device_to_device(src, dst, |src, dst| {
        let mut bytes = 0u64;
        let mut held = 0;
        loop {
            let n = src.read(read_buf)?;
            if n == 0 {
                break;
            }
            let mut data = &read_buf[..n.min(read_buf.len())];
            while !data.is_empty() {
                let k = data.len().min(stage.len() - held);
                stage[held..held + k].copy_from_slice(&data[..k]);
                held += k;
                data = &data[k..];
                if held == stage.len() {
                    write_all(dst, stage)?;
                    held = 0;
                }
            }
            bytes += n as u64;
        }
        write_all(dst, &stage[..held])?;
        Ok(bytes)
    })
}

/// Whole-state device to device: the source read to its end into memory, then written to the
/// destination.
pub fn whole_live(src: &mut dyn MigrationDriver, dst: &mut dyn MigrationDriver) -> Result<RawRun> {
    device_to_device(src, dst, |src, dst| {
        // A capacity hint only, as in `whole_save`.
        let hint = src.stop_copy_size().ok().flatten().unwrap_or(0);
        let mut data = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
        DeviceReader(src)
            .read_to_end(&mut data)
            .map_err(device_read_err)?;
        write_all(dst, &data)?;
        Ok(data.len() as u64)
    })
}
