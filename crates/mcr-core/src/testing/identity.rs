//! `FakeIdentity`: the [`TokenValidator`] port in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::ports::{IssuedToken, Secret, TokenValidator};
use crate::principal::Principal;
use crate::time::{Clock, Timestamp};

/// An identity service with users added by the test.
///
/// Logins mint random tokens that expire after [`FakeIdentity::ttl`] by the
/// injected clock; tokens can be revoked (or logged out), and
/// [`FakeIdentity::set_unavailable`] makes every call fail with
/// `Error::Unavailable`, as when MCIAS cannot be reached.
pub struct FakeIdentity {
    clock: Arc<dyn Clock>,
    ttl: Duration,
    unavailable: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// username → (password, principal)
    users: HashMap<String, (Secret, Principal)>,
    /// token → (principal, expiry)
    tokens: HashMap<String, (Principal, Timestamp)>,
}

impl FakeIdentity {
    /// How long a token lives unless [`FakeIdentity::with_ttl`] says
    /// otherwise.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    /// An identity service with no users, reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> FakeIdentity {
        FakeIdentity {
            clock,
            ttl: Self::DEFAULT_TTL,
            unavailable: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    /// Tokens minted from now on live for `ttl`.
    pub fn with_ttl(mut self, ttl: Duration) -> FakeIdentity {
        self.ttl = ttl;
        self
    }

    /// How long a minted token lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Adds (or replaces) a user who logs in as `principal`.
    pub fn add_user(&self, username: &str, password: &str, principal: Principal) {
        self.lock()
            .users
            .insert(username.to_string(), (Secret::new(password), principal));
    }

    /// Mints a token for `principal` without a login.
    pub fn issue(&self, principal: Principal) -> Result<IssuedToken> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| Error::storage("drawing randomness for a token", e.to_string()))?;
        let token = hex::encode(bytes);
        let expires_at = self.clock.now().saturating_add(self.ttl);
        self.lock()
            .tokens
            .insert(token.clone(), (principal, expires_at));
        Ok(IssuedToken {
            token: Secret::new(token),
            expires_at,
        })
    }

    /// Revokes a token; returns whether it was known.
    pub fn revoke(&self, token: &Secret) -> bool {
        self.lock().tokens.remove(token.expose()).is_some()
    }

    /// While `true`, every call fails with `Error::Unavailable`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    fn check_available(&self) -> Result<()> {
        if self.unavailable.load(Ordering::SeqCst) {
            Err(Error::Unavailable(
                "identity service unreachable (fake)".into(),
            ))
        } else {
            Ok(())
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation is one insert or remove; a poisoned lock holds
        // consistent maps.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl TokenValidator for FakeIdentity {
    async fn validate(&self, token: &Secret) -> Result<Principal> {
        self.check_available()?;
        let now = self.clock.now();
        match self.lock().tokens.get(token.expose()) {
            Some((principal, expires_at)) if now < *expires_at => Ok(principal.clone()),
            Some(_) => Err(Error::Unauthenticated("token expired".into())),
            None => Err(Error::Unauthenticated("token not valid".into())),
        }
    }

    async fn login(&self, username: &str, password: &Secret) -> Result<IssuedToken> {
        self.check_available()?;
        let principal = match self.lock().users.get(username) {
            Some((stored, principal)) if stored == password => principal.clone(),
            _ => {
                return Err(Error::Unauthenticated(
                    "invalid username or password".into(),
                ))
            }
        };
        self.issue(principal)
    }

    async fn logout(&self, token: &Secret) -> Result<()> {
        self.check_available()?;
        self.revoke(token);
        Ok(())
    }
}
