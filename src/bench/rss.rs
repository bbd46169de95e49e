//! Resident-memory measurement: the process's peak RSS (`VmHWM`), reset between modes when
//! the kernel allows it (`echo 5 > /proc/self/clear_refs`, Linux >= 4.0), so each mode's
//! peak is its own.

use serde::{Deserialize, Serialize};

/// Whether a peak covers one mode or the whole process so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RssScope {
    /// The peak was reset before the mode ran: it is the mode's own peak.
    Mode,
    /// The peak could not be reset: it is the process's peak up to the end of the mode.
    Process,
}

/// Memory figures from `/proc/self/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// `VmHWM`: peak resident set size, bytes.
    pub peak_rss: Option<u64>,
    /// `VmRSS`: current resident set size, bytes.
    pub rss: Option<u64>,
}

/// Parses the `VmHWM` and `VmRSS` lines (`VmHWM:  123456 kB`, tab-separated) of a status file.
pub fn parse_status(text: &str) -> Status {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let mut it = rest.split_whitespace();
            let v: u64 = it.next()?.parse().ok()?;
            let mult = match it.next() {
                Some("kB") | Some("KB") | Some("kb") => 1024,
                Some("mB") | Some("MB") => 1 << 20,
                None | Some("B") => 1,
                Some(_) => return None,
            };
            v.checked_mul(mult)
        })
    };
    Status {
        peak_rss: field("VmHWM"),
        rss: field("VmRSS"),
    }
}

/// Reads this process's memory figures; falls back to `getrusage` (`ru_maxrss`) for the peak
/// when `/proc` is not mounted.
pub fn current() -> Status {
    let mut s = std::fs::read_to_string("/proc/self/status")
        .map(|t| parse_status(&t))
        .unwrap_or_default();
    if s.peak_rss.is_none() {
        // SAFETY: rusage is plain data; getrusage fills it and returns 0 on success.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
            s.peak_rss = Some(ru.ru_maxrss.max(0) as u64 * 1024);
        }
    }
    s
}

/// Resets the peak RSS to the current RSS. Returns whether it worked.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let t = "Name:\tvfio-harness\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t     1024 kB\nThreads:\t1\n";
        let s = parse_status(t);
        assert_eq!(s.peak_rss, Some(2048 * 1024));
        assert_eq!(s.rss, Some(1024 * 1024));
    }

    #[test]
    fn missing_or_malformed_fields_are_none() {
        assert_eq!(parse_status(""), Status::default());
        let s = parse_status("VmHWM:\tlots kB\nVmRSSX:\t5 kB\nVmRSS:\t5 parsecs\n");
        assert_eq!(s, Status::default());
    }

    #[test]
    fn reads_own_status() {
        let s = current();
        // Any running process has resident pages.
        assert!(s.peak_rss.unwrap_or(0) > 0);
    }
}
