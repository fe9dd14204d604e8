//! Durations as people write them in configuration and scenarios: `90s`, `20m`, `3h`, `2d`, `1h30m`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration that reads and writes as text (`"90s"`, `"1h30m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(pub Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration like 90s, 20m, 3h, 2d or 1h30m")]
pub struct SpanError(pub String);

impl Span {
    pub const ZERO: Span = Span(Duration::ZERO);

    pub fn seconds(n: u64) -> Self {
        Span(Duration::from_secs(n))
    }

    pub fn minutes(n: u64) -> Self {
        Span(Duration::from_secs(n.saturating_mul(60)))
    }

    pub fn hours(n: u64) -> Self {
        Span(Duration::from_secs(n.saturating_mul(3600)))
    }

    pub fn days(n: u64) -> Self {
        Span(Duration::from_secs(n.saturating_mul(86_400)))
    }

    /// Whole seconds, rounded up so that an estimate errs long; anything not a positive number is zero, anything
    /// beyond [`crate::config::MAX_SPAN`] is that.
    pub fn from_secs_ceil(seconds: f64) -> Self {
        let max = crate::config::MAX_SPAN;
        if seconds.is_nan() || seconds <= 0.0 {
            Span::ZERO
        } else if seconds >= max.0.as_secs_f64() {
            max
        } else {
            // In range: the cast is exact after ceil, below the largest span.
            Span::seconds(seconds.ceil() as u64)
        }
    }

    pub fn parse(text: &str) -> Result<Self, SpanError> {
        let fail = || SpanError(text.to_owned());
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(fail());
        }
        let mut total = Duration::ZERO;
        let mut digits = String::new();
        for c in trimmed.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(fail()),
            };
            let n: u64 = digits.parse().map_err(|_| fail())?;
            let part = Duration::from_secs(n.checked_mul(unit).ok_or_else(fail)?);
            total = total.checked_add(part).ok_or_else(fail)?;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(fail());
        }
        Ok(Span(total))
    }

    pub fn as_chrono(self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl From<Span> for Duration {
    fn from(span: Span) -> Self {
        span.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_people_write() {
        assert_eq!(Span::parse("90s").unwrap(), Span::seconds(90));
        assert_eq!(Span::parse("20m").unwrap(), Span::minutes(20));
        assert_eq!(Span::parse("3h").unwrap(), Span::hours(3));
        assert_eq!(Span::parse("1h30m").unwrap(), Span::minutes(90));
        assert_eq!(Span::parse("2d").unwrap(), Span::hours(48));
        assert_eq!(Span::parse("0s").unwrap(), Span::ZERO);
    }

    #[test]
    fn rejects_what_is_ambiguous_or_overflows() {
        for bad in ["", "90", "m", "5 minutes", "1.5h", "-3m", "3w", "18446744073709551615s1s", "99999999999999999999s"]
        {
            assert!(Span::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writes_back_what_it_reads() {
        for text in ["90s", "20m", "1h30m", "2d", "1d2h3m4s", "0s"] {
            let span = Span::parse(text).unwrap();
            assert_eq!(Span::parse(&span.to_string()).unwrap(), span);
        }
        assert_eq!(Span::seconds(90).to_string(), "1m30s");
    }
}
