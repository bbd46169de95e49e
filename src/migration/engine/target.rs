//! Where a state stream goes ([`Output`]) and where it comes from ([`Input`]).
//!
//! Outputs, by what the path names (symlinks followed):
//! - a regular file, or nothing yet: written **atomically**. The stream goes to an anonymous
//!   file (`O_TMPFILE`) in the target's directory, which a crash cannot leave behind; on
//!   [`Output::commit`] it is fsync'd, linked under a short hidden name and renamed over the
//!   target. Where the filesystem has no `O_TMPFILE`, a named hidden file
//!   `.vfh-<boot>-<pid>-<hex>.tmp` is used instead, removed on failure, and one left by a
//!   killed process of this host's current boot is removed by the next [`Output::open`] in
//!   that directory (never one another host wrote into a shared directory). The file is 0600
//!   whether it is new or replaces one (device state holds guest data: a replaced file's
//!   wider mode is not carried over); a replaced file's owner is kept where the process may
//!   give it away (root).
//! - a FIFO, a character device, a socket-backed or pipe-backed descriptor (`-`,
//!   `/dev/stdout`, `/dev/fd/N`): written directly, in order; nothing is replaced.
//! - a directory, a name longer than 255 bytes, an unwritable directory: refused by
//!   [`Output::open`], before any device is touched.
//!
//! Inputs ([`Input`]): `-` (and `/dev/stdin`, `/dev/fd/N`) read the descriptor; a FIFO is
//! opened without blocking past a cancel; anything else is opened once. The one open file
//! serves every pass over the stream.

use super::cancel::{is_regular, CancelToken};
use crate::migration::{MigrationError, Result};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Longest file name most Linux filesystems take (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Prefix and suffix of the named temporary files (fallback without `O_TMPFILE`).
const TMP_PREFIX: &str = ".vfh-";
const TMP_SUFFIX: &str = ".tmp";

fn file_err(path: &Path, source: io::Error) -> MigrationError {
    MigrationError::File {
        path: path.display().to_string(),
        source,
    }
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// What a path names once `-` and descriptor aliases are taken out: a descriptor number to
/// duplicate (`-` is `default`), or a path with its symlinks followed.
enum Named {
    Fd(i32),
    Path(PathBuf),
}

fn fd_alias(p: &Path) -> Option<i32> {
    let s = p.to_str()?;
    match s {
        "/dev/stdin" => return Some(0),
        "/dev/stdout" => return Some(1),
        "/dev/stderr" => return Some(2),
        _ => {}
    }
    s.strip_prefix("/dev/fd/")
        .or_else(|| s.strip_prefix("/proc/self/fd/"))
        .and_then(|n| n.parse().ok())
}

/// Follows `path`'s symlinks (at most 40, as the kernel), stopping at descriptor aliases.
fn resolve(path: &Path, dash_fd: i32) -> io::Result<Named> {
    if path.as_os_str() == "-" {
        return Ok(Named::Fd(dash_fd));
    }
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        if let Some(fd) = fd_alias(&p) {
            return Ok(Named::Fd(fd));
        }
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let t = fs::read_link(&p)?;
                p = if t.is_absolute() {
                    t
                } else {
                    p.parent().unwrap_or(Path::new(".")).join(t)
                };
            }
            _ => return Ok(Named::Path(p)),
        }
    }
    Err(errno(libc::ELOOP))
}

fn dup(fd: i32) -> io::Result<File> {
    // SAFETY: F_DUPFD_CLOEXEC on any int is safe; failure is reported through -1.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl returned a fresh descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(n) }))
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| errno(libc::EINVAL))
}

/// A stream's destination (see the module docs). Dropping an uncommitted output removes
/// its temporary file, if it has a name.
#[derive(Debug)]
pub struct Output {
    /// The path as given, for messages and reports.
    name: PathBuf,
    file: File,
    atomic: Option<Atomic>,
}

#[derive(Debug)]
struct Atomic {
    dir: PathBuf,
    target: OsString,
    /// The named temporary file (fallback), or `None` for an anonymous one.
    named: Option<PathBuf>,
}

impl Output {
    /// Opens `path` for a stream (see the module docs), before any device is touched: a
    /// path that cannot take the stream is refused here. `token` interrupts a FIFO's open.
    ///
    /// # Errors
    ///
    /// [`MigrationError::File`]: a directory, a name too long, a missing or unwritable
    /// directory, a FIFO or device that cannot be opened, or a cancel while waiting.
    pub fn open(path: &Path, token: &Arc<CancelToken>) -> Result<Output> {
        let err = |e| file_err(path, e);
        let p = match resolve(path, 1).map_err(err)? {
            Named::Fd(fd) => {
                return Ok(Output {
                    name: path.to_path_buf(),
                    file: dup(fd).map_err(err)?,
                    atomic: None,
                })
            }
            Named::Path(p) => p,
        };
        let existing = match fs::metadata(&p) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(err(e)),
        };
        if let Some(m) = &existing {
            let ft = m.file_type();
            if ft.is_dir() {
                return Err(err(errno(libc::EISDIR)));
            }
            if !ft.is_file() {
                let mut o = OpenOptions::new();
                o.write(true).custom_flags(libc::O_CLOEXEC);
                let file = token.open_blocking(&p, o).map_err(err)?;
                return Ok(Output {
                    name: path.to_path_buf(),
                    file,
                    atomic: None,
                });
            }
        }
        let target = p
            .file_name()
            .ok_or_else(|| err(errno(libc::EISDIR)))?
            .to_os_string();
        if target.len() > NAME_MAX {
            return Err(err(errno(libc::ENAMETOOLONG)));
        }
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        remove_stale(&dir);
        let (file, named) = create_temp(&dir).map_err(|e| MigrationError::File {
            path: format!(
                "{} (cannot create a temporary file in {})",
                path.display(),
                dir.display()
            ),
            source: e,
        })?;
        let out = Output {
            name: path.to_path_buf(),
            file,
            atomic: Some(Atomic { dir, target, named }),
        };
        // Private whatever the file it replaces allowed: the stream holds guest data.
        let owner = existing.as_ref().map(|m| (m.uid(), m.gid()));
        out.set_mode_owner(0o600, owner).map_err(err)?;
        Ok(out)
    }

    fn set_mode_owner(&self, mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
        let fd = self.file.as_raw_fd();
        // SAFETY: fchmod on a descriptor we own.
        if unsafe { libc::fchmod(fd, mode) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some((uid, gid)) = owner {
            // SAFETY: fchown on a descriptor we own.
            if unsafe { libc::fchown(fd, uid, gid) } != 0 {
                let e = io::Error::last_os_error();
                // Only root may give a file away: an unprivileged user replacing someone
                // else's file in a directory it may write makes the new file its own.
                if e.raw_os_error() != Some(libc::EPERM) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Wraps an open file (a pipe, a socket, a file already positioned) as an output named
    /// `name`, written directly and in order, as a descriptor alias (`-`, `/dev/fd/N`) is:
    /// nothing is replaced and [`commit`](Self::commit) has nothing to do. For a VMM that
    /// holds its own connection to the destination.
    ///
    /// ```
    /// use std::path::Path;
    /// use vfio_harness::migration::engine::Output;
    ///
    /// let (w, _peer) = std::os::unix::net::UnixStream::pair()?;
    /// let out = Output::from_file(std::os::fd::OwnedFd::from(w).into(), Path::new("to-peer"));
    /// assert!(!out.is_atomic());
    /// assert_eq!(out.path(), Path::new("to-peer"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_file(file: File, name: &Path) -> Output {
        Output {
            name: name.to_path_buf(),
            file,
            atomic: None,
        }
    }

    /// The open destination.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.name
    }

    /// Whether the stream goes to the same open file as `fd` (e.g. stdout, whose reports
    /// must then go elsewhere).
    pub fn is_same_file(&self, fd: std::os::fd::BorrowedFd<'_>) -> bool {
        let (Ok(a), Ok(b)) = (
            self.file.metadata(),
            File::from(match fd.try_clone_to_owned() {
                Ok(f) => f,
                Err(_) => return false,
            })
            .metadata(),
        ) else {
            return false;
        };
        a.dev() == b.dev() && a.ino() == b.ino()
    }

    /// Whether the target is a regular file written atomically (committed by
    /// [`commit`](Self::commit)); otherwise the stream was written to it directly.
    pub fn is_atomic(&self) -> bool {
        self.atomic.is_some()
    }

    /// Makes the written stream the target: for an atomic output fsync, link, rename over
    /// the target and fsync the directory; for a direct one, nothing to do.
    ///
    /// # Errors
    ///
    /// [`MigrationError::File`]: fsync, link or rename failed (the target is untouched).
    pub fn commit(mut self) -> Result<()> {
        // Until the rename, a failure returns with `self.atomic` in place, so that dropping
        // `self` removes a named temporary file (an anonymous one goes with its descriptor).
        let Some(a) = &self.atomic else {
            return Ok(());
        };
        let err = |e| file_err(&self.name, e);
        self.file.sync_all().map_err(err)?;
        let final_path = a.dir.join(&a.target);
        let tmp = match &a.named {
            Some(t) => t.clone(),
            None => {
                let t = a.dir.join(temp_name());
                link_anonymous(&self.file, &t).map_err(err)?;
                t
            }
        };
        if let Err(e) = fs::rename(&tmp, &final_path) {
            if a.named.is_none() {
                // The name just linked to the anonymous file (the cleanup of a commit that
                // already failed: its own error is the one reported).
                let _ = fs::remove_file(&tmp);
            }
            return Err(err(e));
        }
        let dir = a.dir.clone();
        // Renamed: nothing is left for drop to remove.
        self.atomic = None;
        if let Ok(d) = File::open(&dir) {
            // Makes the rename durable; a failure here does not invalidate the file.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(Atomic { named: Some(t), .. }) = self.atomic.take() {
            // Nothing to report to: the operation already failed with its own error.
            let _ = fs::remove_file(t);
        }
    }
}

/// A hidden name for a temporary file that [`remove_stale`] recognises: `.vfh-BOOT-PID-HEX.tmp`.
pub(crate) fn temp_name() -> String {
    format!(
        "{TMP_PREFIX}{}-{}-{:016x}{TMP_SUFFIX}",
        boot_tag().unwrap_or("00000000"),
        std::process::id(),
        crate::entropy::u64()
    )
}

/// The first 8 hex digits of this boot's id (`/proc/sys/kernel/random/boot_id`): a pid means
/// something only on the host, and in the boot, that wrote it. `None` when it cannot be read.
fn boot_tag() -> Option<&'static str> {
    static TAG: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let tag: String = id.chars().filter(char::is_ascii_hexdigit).take(8).collect();
        (tag.len() == 8).then_some(tag)
    })
    .as_deref()
}

/// An anonymous (`O_TMPFILE`) file in `dir`, or a named one where the filesystem cannot.
fn create_temp(dir: &Path) -> io::Result<(File, Option<PathBuf>)> {
    let anon = OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(dir);
    match anon {
        Ok(f) => Ok((f, None)),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
            ) =>
        {
            let t = dir.join(temp_name());
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(&t)?;
            Ok((f, Some(t)))
        }
        Err(e) => Err(e),
    }
}

/// Gives an `O_TMPFILE` file the name `to`: through `/proc/self/fd` (unprivileged), else
/// `AT_EMPTY_PATH` (needs CAP_DAC_READ_SEARCH).
fn link_anonymous(file: &File, to: &Path) -> io::Result<()> {
    let to_c = cstr(to)?;
    let proc_path = cstr(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())))?;
    // SAFETY: both paths are valid NUL-terminated strings for the call's duration.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let first = io::Error::last_os_error();
    let empty = c"";
    // SAFETY: a descriptor we own, an empty path with AT_EMPTY_PATH, a valid target string.
    let r = unsafe {
        libc::linkat(
            file.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(first)
    }
}

/// The boot tag and pid in a temporary file's name (`.vfh-BOOT-PID-HEX.tmp`), when the name
/// is one.
fn temp_owner(name: &OsStr) -> Option<(&str, u32)> {
    let rest = name
        .to_str()?
        .strip_prefix(TMP_PREFIX)?
        .strip_suffix(TMP_SUFFIX)?;
    let mut parts = rest.splitn(3, '-');
    let (boot, pid, hex) = (parts.next()?, parts.next()?, parts.next()?);
    let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(boot, 8) && hex_of(hex, 16)).then_some(())?;
    Some((boot, pid.parse().ok()?))
}

fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes temporary files in `dir` left by processes of this host's current boot that no
/// longer exist (killed before they could clean up). A file another host wrote into a
/// shared directory (NFS, where `O_TMPFILE` is missing and the named files are used) carries
/// that host's boot tag and is never touched, nor is one from an earlier boot. Best effort:
/// a directory that cannot be listed has nothing this run could remove either.
pub fn remove_stale(dir: &Path) {
    let Some(ours) = boot_tag() else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if let Some((boot, pid)) = temp_owner(&name) {
            if boot == ours && pid != std::process::id() && !alive(pid) {
                // Another run may have removed it first; either way it is gone.
                let _ = fs::remove_file(dir.join(&name));
            }
        }
    }
}

/// A stream's source (see the module docs): one open file for every pass.
#[derive(Debug)]
pub struct Input {
    name: PathBuf,
    file: File,
    regular: bool,
}

impl Input {
    /// Opens `path` (`-` is stdin). `token` interrupts a FIFO's open.
    ///
    /// # Errors
    ///
    /// [`MigrationError::File`]: missing, unreadable, a directory, or a cancel while
    /// waiting for a FIFO's writer.
    pub fn open(path: &Path, token: &Arc<CancelToken>) -> Result<Input> {
        let err = |e| file_err(path, e);
        let file = match resolve(path, 0).map_err(err)? {
            Named::Fd(fd) => dup(fd).map_err(err)?,
            Named::Path(p) => {
                let m = fs::metadata(&p).map_err(err)?;
                if m.is_dir() {
                    return Err(err(errno(libc::EISDIR)));
                }
                let mut o = OpenOptions::new();
                o.read(true).custom_flags(libc::O_CLOEXEC);
                if m.is_file() {
                    o.open(&p).map_err(err)?
                } else {
                    token.open_blocking(&p, o).map_err(err)?
                }
            }
        };
        let regular = is_regular(file.as_raw_fd());
        Ok(Input {
            name: path.to_path_buf(),
            file,
            regular,
        })
    }

    /// Wraps an open file (a pipe, a socket, a file) as an input named `name`.
    pub fn from_file(file: File, name: &Path) -> Input {
        let regular = is_regular(file.as_raw_fd());
        Input {
            name: name.to_path_buf(),
            file,
            regular,
        }
    }

    /// The open source.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.name
    }

    /// Whether the source is a regular file (seekable: it can be read twice).
    pub fn is_seekable(&self) -> bool {
        self.regular
    }
}

#[cfg(test)]
#[path = "target_tests.rs"]
mod tests;
