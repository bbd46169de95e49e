//! Report output shared by every subcommand: printing that never panics, escaping of
//! untrusted text, and the `--json` error object.
//!
//! `println!` panics when stdout fails (a closed pipe, a full disk); the commands print
//! through [`outln!`](crate::outln) and friends instead, which record the first failure and
//! drop later output. [`main`](super::main) then ends quietly on a closed pipe (`EPIPE`,
//! exit 141 like a process killed by SIGPIPE) and reports any other failure.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set when stdout carries data (`save -o -`): reports then go to stderr.
static REPORTS_TO_STDERR: AtomicBool = AtomicBool::new(false);

/// Sends every later report (and error object) to stderr: stdout carries the data.
pub fn reports_to_stderr() {
    REPORTS_TO_STDERR.store(true, Ordering::SeqCst);
}

/// The first stdout write error, if any.
static STDOUT_ERROR: Mutex<Option<io::Error>> = Mutex::new(None);

/// Writes to stdout, recording the first failure instead of panicking; nothing more is
/// written after one.
pub fn write_out(args: fmt::Arguments<'_>, newline: bool) {
    if REPORTS_TO_STDERR.load(Ordering::SeqCst) {
        return write_err(args, newline);
    }
    let Ok(mut failed) = STDOUT_ERROR.lock() else {
        return;
    };
    if failed.is_some() {
        return;
    }
    let mut out = io::stdout().lock();
    let r = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = r {
        *failed = Some(e);
    }
}

/// Writes to stderr; a failing stderr has nowhere left to be reported, so it is ignored.
pub fn write_err(args: fmt::Arguments<'_>, newline: bool) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args);
    if newline {
        let _ = err.write_all(b"\n");
    }
}

/// Flushes stdout and returns the first write error of the run, if any.
pub fn take_stdout_error() -> Option<io::Error> {
    let flushed = io::stdout().lock().flush();
    let mut g = STDOUT_ERROR.lock().ok()?;
    if g.is_none() {
        if let Err(e) = flushed {
            *g = Some(e);
        }
    }
    g.take()
}

/// `println!` that never panics (see the module docs).
macro_rules! outln {
    () => { $crate::cli::output::write_out(format_args!(""), true) };
    ($($t:tt)*) => { $crate::cli::output::write_out(format_args!($($t)*), true) };
}

/// `print!` that never panics (see the module docs).
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::output::write_out(format_args!($($t)*), false) };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    () => { $crate::cli::output::write_err(format_args!(""), true) };
    ($($t:tt)*) => { $crate::cli::output::write_err(format_args!($($t)*), true) };
}

/// Prints a serializable report as pretty JSON on stdout (every `--json`).
pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    let s = serde_json::to_string_pretty(v)?;
    write_out(format_args!("{s}"), true);
    Ok(())
}

/// `s` with control characters (terminal escape sequences among them) shown as `\u{..}`
/// escapes, for text from untrusted sources (stream metadata, error messages quoting it)
/// on its way to a terminal or log. Newlines and tabs are kept.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            o.extend(c.escape_unicode());
        } else {
            o.push(c);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_neutralises_terminal_sequences() {
        assert_eq!(super::escape("a\u{1b}[2Jb\u{7}\n"), "a\\u{1b}[2Jb\\u{7}\n");
        assert_eq!(super::escape("mtty-2 ü"), "mtty-2 ü");
    }
}
