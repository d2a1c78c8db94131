//! Time spans in OpenSSH's format (`90`, `10m`, `1h30m`, `2w`) and in the
//! policy's format (`30s`, `10m`, `1h`).

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid time span {0:?}: use a number of seconds or units s, m, h, d, w (e.g. 90, 10m, 1h30m)"
)]
pub struct DurationError(pub String);

/// A duration as the policy writes it: `30m`, `1h30m`, `45s`.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Parses OpenSSH's `convtime` format: digits with an optional unit, repeated.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_string());
    if text.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
            if chars.peek().is_some() {
                continue;
            }
        }
        if digits.is_empty() {
            return Err(err());
        }
        let unit = if c.is_ascii_digit() {
            1
        } else {
            match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return Err(err()),
            }
        };
        let value: u64 = digits.parse().map_err(|_| err())?;
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
        digits.clear();
    }
    // OpenSSH carries key lifetimes in a u32 of seconds.
    if total > u64::from(u32::MAX) {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openssh_forms() {
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1h30"), Ok(Duration::from_secs(3630)));
        assert_eq!(parse("2W"), Ok(Duration::from_secs(1_209_600)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "m", "10x", "-5", "1.5h", "99999999999999999999"] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
