//! Value parsers shared by the subcommands' arguments: numbers (decimal or `0x` hex),
//! lengths (also with K/M/G suffixes, or `all`), `OFFSET:LEN` ranges and rates (`2G/s`).
//! Sizes with suffixes alone are [`vfio_harness::units::ByteSize`].

/// Parses decimal or `0x` hex (`_` separators allowed).
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|e| format!("{s:?} is not a number: {e}"))
}

/// Parses a length: decimal, `0x` hex, a K/M/G suffix, or `all` (= 0, to the end).
pub fn parse_len(s: &str) -> Result<u64, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(0);
    }
    if let Ok(v) = parse_u64(s) {
        return Ok(v);
    }
    s.parse::<vfio_harness::units::ByteSize>()
        .map(|b| b.bytes())
        .map_err(|e| format!("{s:?} is not a length: {e}"))
}

/// Parses `OFFSET:LEN`, each as [`parse_len`] (LEN `all` = 0 = to the end).
pub fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (o, l) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not OFFSET:LEN"))?;
    Ok((parse_len(o)?, parse_len(l)?))
}

/// Parses a rate in bytes per second: a size with an optional `/s` (`2G/s`, `512M`), above 0.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    match t.parse::<vfio_harness::units::ByteSize>() {
        Ok(b) if b.bytes() > 0 => Ok(b.bytes()),
        Ok(_) => Err(format!("{s:?}: a rate must be above 0")),
        Err(e) => Err(format!("{s:?} is not a rate (2G/s, 512M): {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_lengths_and_ranges() {
        assert_eq!(parse_u64("0x1_000"), Ok(4096));
        assert_eq!(parse_u64(" 12 "), Ok(12));
        assert!(parse_u64("12K").is_err());
        assert_eq!(parse_len("12K"), Ok(12 << 10));
        assert_eq!(parse_len("ALL"), Ok(0));
        assert_eq!(parse_range("512M:all"), Ok((512 << 20, 0)));
        assert_eq!(parse_range("0x3000000:32M"), Ok((0x300_0000, 32 << 20)));
        assert!(parse_range("512M").is_err());
        assert_eq!(parse_rate("2G/s"), Ok(2 << 30));
        assert_eq!(parse_rate("512M"), Ok(512 << 20));
        assert!(parse_rate("0/s").is_err() && parse_rate("fast").is_err());
    }
}
