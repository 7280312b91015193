//! Failed logins, counted per username and per client address: past the
//! limit within a window, logins for that username or from that address
//! are refused until the window ends, before the password is checked.
//!
//! Why: a wrong password costs an argon2 verification (tens of
//! milliseconds of a core), and nothing else held back a client guessing
//! passwords (review of issue 16, D2). The principal rate limit
//! ([`super::rate`]) cannot: it needs a principal, which a failed login
//! never yields. Every login path counts here (`POST /v1/auth/login`,
//! HTTP Basic on any request, `GET /v2/token`, gRPC `Login`), since all go
//! through [`Registry::login`](super::Registry::login) or
//! [`Registry::authenticate_password`](super::Registry::authenticate_password).
//!
//! A fixed window per key, rather than a `governor` bucket: a bucket is
//! drawn from when checked, and here only failures may draw, so the check
//! before the password ("is this key blocked?") must not cost anything.
//! A success neither counts nor clears the count, so an attacker who
//! knows one password cannot use it to reset another's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::time::{Clock, Timestamp};

/// How many failed logins are allowed before the rest of the window is
/// refused (`0`: that key is not limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimit {
    /// Failures per username within `window`.
    pub per_username: u32,
    /// Failures per client address within `window`. Behind a reverse
    /// proxy every client has the proxy's address.
    pub per_address: u32,
    /// How long failures are counted, from the first of a window, and so
    /// the longest a refusal lasts.
    pub window: Duration,
}

/// Counter of logins refused for earlier failures, without checking the
/// password (no labels: a username is not a label value).
const LOGINS_REFUSED: &str = "mcr_rate_limited_logins_total";

/// How often windows that ended are dropped, in failures.
const PRUNE_EVERY: u64 = 1024;

/// The failures of one key within its window.
#[derive(Debug, Clone, Copy)]
struct Window {
    failures: u32,
    ends: Timestamp,
}

/// Failed logins by key (`user:<name>`, `addr:<ip>`).
pub(super) struct FailedLogins {
    limit: LoginLimit,
    clock: Arc<dyn Clock>,
    windows: Mutex<HashMap<String, Window>>,
    /// Failures recorded, for pruning.
    recorded: AtomicU64,
}

impl std::fmt::Debug for FailedLogins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailedLogins")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl FailedLogins {
    pub fn new(limit: LoginLimit, clock: Arc<dyn Clock>) -> FailedLogins {
        FailedLogins {
            limit,
            clock,
            windows: Mutex::new(HashMap::new()),
            recorded: AtomicU64::new(0),
        }
    }

    /// The limited keys of a login: (key, limit, what a refusal names).
    fn keys(
        &self,
        username: &str,
        ip: Option<&str>,
    ) -> impl Iterator<Item = (String, u32, String)> {
        let user = (
            format!("user:{username}"),
            self.limit.per_username,
            format!("failed logins for {username}"),
        );
        let addr = ip.map(|ip| {
            (
                format!("addr:{ip}"),
                self.limit.per_address,
                format!("failed logins from {ip}"),
            )
        });
        std::iter::once(user)
            .chain(addr)
            .filter(|(_, limit, _)| *limit > 0)
    }

    /// Refuses a login (`Error::TooManyRequests` with the rest of the
    /// window) while its username or address is over its limit.
    pub fn check(&self, username: &str, ip: Option<&str>) -> Result<()> {
        let now = self.clock.now();
        let windows = self.windows.lock().expect("failed-login windows poisoned");
        for (key, limit, what) in self.keys(username, ip) {
            let Some(w) = windows.get(&key) else { continue };
            if w.failures >= limit && now < w.ends {
                metrics::describe_counter!(
                    LOGINS_REFUSED,
                    "Logins refused, without checking the password, after too many failures"
                );
                metrics::counter!(LOGINS_REFUSED).increment(1);
                let ms = w.ends.as_millis().saturating_sub(now.as_millis());
                return Err(Error::TooManyRequests {
                    what,
                    retry_after: Duration::from_millis(ms.unsigned_abs()),
                });
            }
        }
        Ok(())
    }

    /// Counts a failed login against its username and address.
    pub fn failed(&self, username: &str, ip: Option<&str>) {
        let now = self.clock.now();
        let mut windows = self.windows.lock().expect("failed-login windows poisoned");
        if self.recorded.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            windows.retain(|_, w| now < w.ends);
        }
        for (key, _, _) in self.keys(username, ip) {
            let w = windows.entry(key).or_insert(Window {
                failures: 0,
                ends: now,
            });
            if now >= w.ends {
                *w = Window {
                    failures: 0,
                    ends: now.saturating_add(self.limit.window),
                };
            }
            w.failures = w.failures.saturating_add(1);
        }
    }
}
