//! Per-principal request rates: each subject draws from its own bucket
//! (GCRA, from `governor`), read against the engine's clock so tests move
//! time by hand. And per-principal requests in flight ([`InFlight`]): a
//! rate does not bound how many requests a principal holds open at once,
//! each with a connection, when their bodies come slowly.
//!
//! Every path that turns credentials into a principal draws one request
//! ([`Registry::authenticate`](super::Registry::authenticate) and the
//! logins), so REST, the OCI API, gRPC and an embedding service share one
//! limit per principal. A refusal is `Error::TooManyRequests` with the
//! wait, which the edges answer as 429 with `Retry-After`
//! (distribution-spec: `TOOMANYREQUESTS`).

use std::collections::HashMap;
use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock as RateClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::Quota;

use crate::error::{Error, Result};
use crate::time::Clock;

/// How many requests a principal may make: `per_second` on average, up to
/// `burst` at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// Counter of refused requests (`mcr_rate_limited_requests_total`, no
/// labels: a subject is not a label value).
const RATE_LIMITED: &str = "mcr_rate_limited_requests_total";

/// How often the buckets of principals that went quiet are dropped, in
/// requests: they refill to full anyway, so forgetting them loses nothing.
const PRUNE_EVERY: u64 = 4096;

/// The engine's clock as `governor` reads it: time since the epoch.
#[derive(Clone)]
struct EngineClock(Arc<dyn Clock>);

impl RateClock for EngineClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now().as_millis()).unwrap_or(0))
    }
}

type Buckets =
    governor::RateLimiter<String, HashMapStateStore<String>, EngineClock, NoOpMiddleware<Duration>>;

/// One bucket per subject.
pub(super) struct RateLimiter {
    buckets: Buckets,
    clock: EngineClock,
    checks: AtomicU64,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(limit: RateLimit, clock: Arc<dyn Clock>) -> RateLimiter {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        let clock = EngineClock(clock);
        RateLimiter {
            buckets: governor::RateLimiter::hashmap_with_clock(quota, clock.clone()),
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// Draws one request from `subject`'s bucket, or says how long until
    /// one is there.
    pub fn check(&self, subject: &str) -> Result<()> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.buckets.retain_recent();
        }
        self.buckets
            .check_key(&subject.to_string())
            .map_err(|not_until| {
                // Per refusal only, so the macro's lookup is off the
                // path of every request that passes.
                metrics::describe_counter!(
                    RATE_LIMITED,
                    "Requests refused because their principal went over its rate limit"
                );
                metrics::counter!(RATE_LIMITED).increment(1);
                Error::TooManyRequests {
                    what: format!("requests from {subject}"),
                    retry_after: not_until.wait_time_from(self.clock.now()),
                }
            })
    }
}

/// Counter of requests refused because their principal had too many in
/// flight (`mcr_concurrency_limited_requests_total`, no labels).
const CONCURRENCY_LIMITED: &str = "mcr_concurrency_limited_requests_total";

/// How long a client refused for too many requests in flight is told to
/// wait: one of them is likely done by then.
const IN_FLIGHT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Requests in flight per subject, counted while a [`RequestSlot`] lives.
type Counts = Arc<Mutex<HashMap<String, usize>>>;

/// At most `max` requests in flight per subject.
#[derive(Debug)]
pub(super) struct InFlight {
    max: NonZeroUsize,
    counts: Counts,
}

impl InFlight {
    pub fn new(max: NonZeroUsize) -> InFlight {
        InFlight {
            max,
            counts: Counts::default(),
        }
    }

    /// A slot for one more request of `subject`, or
    /// `Error::TooManyRequests` when it holds `max` already.
    pub fn begin(&self, subject: &str) -> Result<RequestSlot> {
        let mut counts = self.counts.lock().expect("in-flight counts poisoned");
        let count = counts.entry(subject.to_string()).or_insert(0);
        if *count >= self.max.get() {
            metrics::describe_counter!(
                CONCURRENCY_LIMITED,
                "Requests refused because their principal had too many in flight"
            );
            metrics::counter!(CONCURRENCY_LIMITED).increment(1);
            return Err(Error::TooManyRequests {
                what: format!("requests in flight for {subject} (at most {})", self.max),
                retry_after: IN_FLIGHT_RETRY_AFTER,
            });
        }
        *count += 1;
        Ok(RequestSlot {
            held: Some((Arc::clone(&self.counts), subject.to_string())),
        })
    }
}

/// One request of a principal in flight, until dropped
/// ([`Registry::begin_request`](super::Registry::begin_request)).
#[derive(Debug)]
#[must_use = "the request counts as in flight only while its slot lives"]
pub struct RequestSlot {
    /// The counts and the subject to give the slot back to; `None` when
    /// requests in flight are not limited.
    held: Option<(Counts, String)>,
}

impl RequestSlot {
    /// A slot that counts nothing, where there is no limit.
    pub(super) fn unlimited() -> RequestSlot {
        RequestSlot { held: None }
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        let Some((counts, subject)) = self.held.take() else {
            return;
        };
        let mut counts = counts.lock().expect("in-flight counts poisoned");
        if let Some(count) = counts.get_mut(&subject) {
            *count -= 1;
            // Forgotten at zero, so quiet principals take no memory.
            if *count == 0 {
                counts.remove(&subject);
            }
        }
    }
}
