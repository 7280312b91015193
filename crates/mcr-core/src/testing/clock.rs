//! A clock that only moves when a test moves it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::time::{Clock, Timestamp};

/// A [`Clock`] set and advanced by hand, so grace periods, expiry and
/// "newest first" orderings are tested without sleeping.
///
/// It starts at [`ManualClock::START`] unless told otherwise; share it as an
/// `Arc<ManualClock>` between the test and whatever reads the time.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// 2024-01-01T00:00:00Z: a fixed, readable starting point.
    pub const START: Timestamp = Timestamp::from_millis(1_704_067_200_000);

    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            now: AtomicI64::new(start.as_millis()),
        }
    }

    /// Moves the clock to `t` (backwards too, to test clock skew).
    pub fn set(&self, t: Timestamp) {
        self.now.store(t.as_millis(), Ordering::SeqCst);
    }

    /// Moves the clock forward by `d`, returning the new time.
    pub fn advance(&self, d: Duration) -> Timestamp {
        let step = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let before = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |ms| {
                Some(ms.saturating_add(step))
            })
            .unwrap_or_else(|ms| ms);
        Timestamp::from_millis(before.saturating_add(step))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(ManualClock::START)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_only_when_told() {
        let clock = ManualClock::default();
        assert_eq!(clock.now(), ManualClock::START);
        let later = clock.advance(Duration::from_secs(90));
        assert_eq!(later.as_millis(), ManualClock::START.as_millis() + 90_000);
        assert_eq!(clock.now(), later);
        clock.set(Timestamp::from_millis(5));
        assert_eq!(clock.now(), Timestamp::from_millis(5));
    }
}
