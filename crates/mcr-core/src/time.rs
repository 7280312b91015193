//! Time as the engine sees it: a millisecond timestamp and a clock port,
//! so grace periods and expiry are testable without sleeping.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub fn from_system(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }

    pub fn to_system(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.0.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_millis(self.0.unsigned_abs())
        }
    }

    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// RFC 3339 in UTC with millisecond precision. RFC 3339 has four-digit
    /// years, so a time outside 1970-01-01 to 9999-12-31 (a far-off expiry
    /// from a huge TTL, say) prints as the nearest end of that range.
    pub fn to_rfc3339(self) -> String {
        let t = Timestamp(self.0.clamp(0, Self::MAX_RFC3339.0));
        humantime::format_rfc3339_millis(t.to_system()).to_string()
    }

    /// 9999-12-31T23:59:59.999Z, the last time RFC 3339 can write.
    const MAX_RFC3339: Timestamp = Timestamp(253_402_300_799_999);

    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, Error> {
        humantime::parse_rfc3339_weak(s)
            .map(Timestamp::from_system)
            .map_err(|e| Error::invalid("timestamp", format!("{s:?} is not an RFC 3339 time: {e}")))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// Where the engine gets the current time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }
}

/// Parses a duration such as `1h`, `30s`, `1h 30m` (humantime syntax).
pub fn parse_duration(field: &'static str, s: &str) -> Result<Duration, Error> {
    humantime::parse_duration(s).map_err(|e| {
        Error::invalid(
            field,
            format!("{s:?} is not a duration like 30s or 1h: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_rfc3339() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:20.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn every_timestamp_prints_within_rfc3339s_range() {
        let max = Timestamp::from_millis(253_402_300_799_999);
        assert_eq!(max.to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp::parse_rfc3339(&max.to_rfc3339()).unwrap(), max);
        let far = Timestamp::from_millis(0).saturating_add(Duration::MAX);
        assert_eq!(far.to_rfc3339(), max.to_rfc3339());
        assert_eq!(
            Timestamp::from_millis(i64::MIN).to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(
            parse_duration("grace_period", "5s").unwrap(),
            Duration::from_secs(5)
        );
        let err = parse_duration("grace_period", "soon")
            .unwrap_err()
            .to_string();
        assert!(err.contains("grace_period"), "{err}");
    }
}
