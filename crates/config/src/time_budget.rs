//! `train.time_budget`: how long `medseg train` may take, written as people write durations
//! (`"20m"`, `"1h 30m"`, `"90s"`, `"2h"`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A wall-clock budget for a whole training run (planning, caching, training, validation and
/// the final checkpoint). Parsed by `humantime`, so `h`/`m`/`s` (and `min`, `hours`, ...)
/// combine: `"1h30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeBudget(Duration);

impl TimeBudget {
    /// The budget as a [`Duration`].
    pub fn duration(self) -> Duration {
        self.0
    }

    /// The budget in seconds.
    pub fn seconds(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl From<Duration> for TimeBudget {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl FromStr for TimeBudget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            format!("time budget {s:?}: {e}; write it as e.g. \"20m\", \"1h30m\" or \"90s\"")
        })?;
        if d.is_zero() {
            return Err(format!("time budget {s:?} is zero; give e.g. \"20m\""));
        }
        Ok(Self(d))
    }
}

impl fmt::Display for TimeBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for TimeBudget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeBudget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hours_minutes_seconds_and_round_trips() {
        for (text, secs) in [
            ("20m", 1200),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("90s", 90),
            ("2h", 7200),
        ] {
            let b: TimeBudget = text.parse().unwrap();
            assert_eq!(b.duration().as_secs(), secs, "{text}");
            let again: TimeBudget = b.to_string().parse().unwrap();
            assert_eq!(again, b);
        }
    }

    #[test]
    fn rejects_numbers_without_unit_and_zero() {
        for bad in ["20", "abc", "", "0s", "-5m"] {
            let e = bad.parse::<TimeBudget>().unwrap_err();
            assert!(e.contains("time budget"), "{bad}: {e}");
        }
    }
}
