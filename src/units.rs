//! Byte sizes and rates as users type and read them (`64M`, `1G`, `32KiB`, `1.5 GiB/s`).

use std::fmt;
use std::str::FromStr;

/// A byte count parsed from a human size such as `4096`, `64K`, `64M`, `1G`, `2GiB`, `512KB`.
///
/// Suffixes are binary (K = 1024) whether written `K`, `KB`, `KiB` or lower case, matching what
/// kernel and QEMU users expect of buffer and state sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// Error for a size string that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {reason} (examples: 4096, 64K, 64M, 1G, 2GiB)")]
pub struct ParseSizeError {
    /// The text that was given.
    pub input: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl ByteSize {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseSizeError {
            input: s.to_string(),
            reason,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(err("empty"));
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, suffix) = t.split_at(split);
        if num.is_empty() {
            return Err(err("no number"));
        }
        let mult: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => return Err(err("unknown suffix")),
        };
        if num.contains('.') {
            let v: f64 = num.parse().map_err(|_| err("bad number"))?;
            let b = v * mult as f64;
            // 2^64 is the first value a u64 cannot hold (`u64::MAX as f64` rounds up to it).
            if !(0.0..18_446_744_073_709_551_616.0).contains(&b) {
                return Err(err("out of range"));
            }
            // From 2^53 on an f64 no longer holds every whole number: 2^53 + 1 reads as 2^53.
            if b >= 9_007_199_254_740_992.0 {
                return Err(err("too large to be given with a decimal point"));
            }
            if b.fract() != 0.0 {
                return Err(err("not a whole number of bytes"));
            }
            Ok(ByteSize(b as u64))
        } else {
            let v: u64 = num.parse().map_err(|_| err("bad number"))?;
            v.checked_mul(mult)
                .map(ByteSize)
                .ok_or_else(|| err("out of range"))
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(self.0))
    }
}

/// Formats a byte count with a binary unit: `512 B`, `64.0 KiB`, `1.00 GiB`.
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[i])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[i])
    } else {
        format!("{v:.2} {}", UNITS[i])
    }
}

/// Formats a rate in bytes per second: `1.23 GiB/s`.
pub fn format_rate(bytes_per_s: f64) -> String {
    if !bytes_per_s.is_finite() || bytes_per_s < 0.0 {
        return "n/a".into();
    }
    format!("{}/s", format_bytes(bytes_per_s as u64))
}

/// `bytes / seconds`, or 0 when no time was measured.
pub fn bytes_per_second(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        0.0
    }
}

/// Formats a duration in seconds with a fitting unit: `850 ns`, `12.3 us`, `4.56 ms`, `1.20 s`.
pub fn format_seconds(s: f64) -> String {
    if !s.is_finite() {
        "n/a".into()
    } else if s < 1e-6 {
        format!("{:.0} ns", s * 1e9)
    } else if s < 1e-3 {
        format!("{:.1} us", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_sizes() {
        assert_eq!("4096".parse::<ByteSize>().unwrap().0, 4096);
        assert_eq!("64K".parse::<ByteSize>().unwrap().0, 64 << 10);
        assert_eq!("64m".parse::<ByteSize>().unwrap().0, 64 << 20);
        assert_eq!("1G".parse::<ByteSize>().unwrap().0, 1 << 30);
        assert_eq!("2GiB".parse::<ByteSize>().unwrap().0, 2 << 30);
        assert_eq!("512KB".parse::<ByteSize>().unwrap().0, 512 << 10);
        assert_eq!("1.5K".parse::<ByteSize>().unwrap().0, 1536);
        assert_eq!(
            "4095.5T".parse::<ByteSize>().unwrap().0,
            (1 << 52) - (1 << 39)
        );
        assert_eq!(" 8 M ".parse::<ByteSize>().unwrap().0, 8 << 20);
    }

    #[test]
    fn refuses_bad_sizes() {
        for bad in [
            "",
            "M",
            "12Q",
            "-1",
            "1.3",
            "99999999999999999999",
            "16777216T",
            // 2^64 and a value rounded away by an f64, with a decimal point.
            "16777216.0T",
            "9007199254740993.0",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(64 << 10), "64.0 KiB");
        assert_eq!(format_bytes(1 << 30), "1.00 GiB");
        assert_eq!(format_rate(2.0 * (1u64 << 30) as f64), "2.00 GiB/s");
        assert_eq!(format_seconds(0.0015), "1.50 ms");
    }
}
