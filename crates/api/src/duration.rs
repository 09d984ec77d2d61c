//! Istio duration strings (`"1.5s"`, `"100ms"`, `"1h30m"`).
//!
//! Istio fields are protobuf `Duration`s; in YAML users write them the way Go's
//! `time.ParseDuration` reads them: a sequence of decimal numbers, each with a unit
//! (`h`, `m`, `s`, `ms`, `us`/`µs`, `ns`).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer};

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration `{input}`: negative durations are not allowed")]
    Negative { input: String },
    #[error(
        "invalid duration `{input}`: expected a number followed by a unit (h, m, s, ms, us, ns), like \"1.5s\" or \"100ms\""
    )]
    Malformed { input: String },
    #[error("invalid duration `{input}`: unknown unit `{unit}` (expected h, m, s, ms, us or ns)")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid duration `{input}`: too large")]
    Overflow { input: String },
}

/// A duration written as an Istio duration string. Dereferences to [`std::time::Duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl std::ops::Deref for Duration {
    type Target = std::time::Duration;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Duration)
    }
}

impl fmt::Display for Duration {
    /// Seconds with the fraction Istio would print (`1.5s`, `0.100s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.subsec_nanos();
        if nanos == 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            let frac = format!("{nanos:09}");
            write!(f, "{}.{}s", self.0.as_secs(), frac.trim_end_matches('0'))
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// Parses an Istio/Go duration string into a [`std::time::Duration`].
pub fn parse_duration(input: &str) -> Result<std::time::Duration, DurationError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed {
        input: input.to_owned(),
    };
    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    if let Some(magnitude) = text.strip_prefix('-') {
        // "-0s" is zero, as in Go; anything else below zero is meaningless for Istio.
        return match parse_duration(magnitude)? {
            zero if zero.is_zero() => Ok(zero),
            _ => Err(DurationError::Negative {
                input: input.to_owned(),
            }),
        };
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    // Go accepts a bare "0" with no unit.
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total_nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(malformed)?;
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(malformed());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after_unit) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" | "μs" => 1_000,
            "ns" => 1,
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| overflow())?
        };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // The fraction is scaled digit by digit so "1.5s" is exact, not a float.
        let mut scale = unit_nanos;
        for digit in fraction.chars() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            let value = u128::from(digit.to_digit(10).ok_or_else(malformed)?);
            nanos += value * scale;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(overflow)?;
        rest = after_unit;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| overflow())?;
    // The remainder is below 1e9 and fits in u32.
    let nanos = (total_nanos % 1_000_000_000) as u32;
    Ok(std::time::Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    #[test]
    fn parses_istio_forms() {
        assert_eq!(parse_duration("1.5s"), Ok(Std::from_millis(1500)));
        assert_eq!(parse_duration("100ms"), Ok(Std::from_millis(100)));
        assert_eq!(parse_duration("300s"), Ok(Std::from_secs(300)));
        assert_eq!(parse_duration("3m"), Ok(Std::from_secs(180)));
        assert_eq!(parse_duration("1h30m"), Ok(Std::from_secs(5400)));
        assert_eq!(parse_duration("0.001s"), Ok(Std::from_millis(1)));
        assert_eq!(parse_duration("250us"), Ok(Std::from_micros(250)));
        assert_eq!(parse_duration("7ns"), Ok(Std::from_nanos(7)));
        assert_eq!(parse_duration("0"), Ok(Std::ZERO));
        assert_eq!(parse_duration(".5s"), Ok(Std::from_millis(500)));
    }

    #[test]
    fn refuses_with_a_reason() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("10"),
            Err(DurationError::Malformed { .. })
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::Malformed { .. })
        ));
        assert!(matches!(
            parse_duration("1.2.3s"),
            Err(DurationError::Malformed { .. })
        ));
        assert!(matches!(
            parse_duration("-1s"),
            Err(DurationError::Negative { .. })
        ));
        let err = parse_duration("5d").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid duration `5d`: unknown unit `d` (expected h, m, s, ms, us or ns)"
        );
    }

    #[test]
    fn displays_as_seconds() {
        assert_eq!(Duration(Std::from_millis(1500)).to_string(), "1.5s");
        assert_eq!(Duration(Std::from_secs(2)).to_string(), "2s");
    }
}
