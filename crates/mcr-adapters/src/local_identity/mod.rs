//! The local identity: users from the configuration with argon2id
//! password hashes, and tokens the server signs itself.
//!
//! For standalone deployments and `mcrsrv dev`, where no MCIAS runs.
//!
//! - **Tokens** are `<base64url claims>.<base64url HMAC-SHA256>` under a
//!   32-byte key kept in the data directory with mode 0600
//!   ([`load_or_create_key`]). The claims carry the subject
//!   (`local:<username>`), username, account type, roles, issue and expiry
//!   times and a random token id.
//! - **Validation** runs on every request, so it is only a parse, a MAC
//!   check and a clock check — never argon2 — and a token verified once
//!   is remembered by its text ([`verified`]): the next requests with it
//!   check only its expiry and revocation.
//! - **Logins** verify the password with argon2id on a blocking thread.
//!   Clients that send HTTP Basic credentials with every request would pay
//!   that each time, so a success is remembered for 30 s, keyed by the
//!   SHA-256 of username and password (never the password itself).
//!   Unknown users are checked against a dummy hash, so they fail with the
//!   same message and in about the same time as a wrong password.
//! - **The holder** of a token is the user it names as the configuration
//!   lists it now: validation refuses a token whose user is no longer in
//!   `[[local.users]]` and takes the account type and roles from the
//!   list, not from the token (review r16, D1). The list is read at start,
//!   so removing a user or changing their roles takes effect for every
//!   token at the next restart.
//! - **Revocation** (`logout`) is checked in this process's memory until
//!   the token would have expired anyway. With a [`RevocationStore`]
//!   ([`LocalIdentity::keep_revocations_in`], what `mcrsrv` does with its
//!   metadata store) each logout is recorded there first and the live
//!   ones are loaded at start, so a logout survives a restart (issue 16,
//!   case 6), and read again once [`REVOCATION_MAX_STALENESS`] has passed,
//!   so a logout through one replica is refused by every other sharing
//!   the store within that bound (issue 14). Without a store a restart
//!   forgets it.

mod key;
mod password;
mod token;
mod verified;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use mcr_core::ports::{IssuedToken, Revocation, RevocationStore, Secret, TokenValidator};
use mcr_core::principal::{AccountType, Principal, Role};
use mcr_core::time::{Clock, Timestamp};
use mcr_core::{Error, Result};
use serde::{Deserialize, Serialize};

pub use key::{load_or_create_key, Key, KEY_LEN};
pub use password::hash_password;

use crate::metrics::TokenMetrics;
use password::LoginCache;
use token::Claims;
use verified::{Verified, VerifiedTokens};

/// How long a token is valid when the config does not say.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// How old this process's copy of the stored revocations may be when a
/// token is validated: a logout through another replica is refused here
/// at most this long after it was acknowledged. The copy is read again
/// (one query, of the revocations still in force) by the first validation
/// after the bound; if the store cannot be read the validation fails
/// rather than accept a token it cannot check.
pub const REVOCATION_MAX_STALENESS: Duration = Duration::from_secs(2);
/// How long a successful login is remembered for repeated Basic auth.
pub const LOGIN_CACHE_TTL: Duration = Duration::from_secs(30);
/// Most logins remembered at once.
const LOGIN_CACHE_MAX: usize = 1024;
/// Most revoked, not yet expired tokens remembered at once. At about 100
/// bytes each this bounds the set to a few MiB; past it, logouts fail
/// rather than forget an earlier revocation.
const REVOKED_MAX: usize = 65_536;

const BAD_LOGIN: &str = "invalid username or password";
/// Why a well-signed token of a user no longer configured is refused.
const GONE_USER: &str =
    "the token's user is no longer configured on this registry; log in as a configured user";
/// What a local user's subject starts with; the username follows.
const SUBJECT_PREFIX: &str = "local:";

/// A user of the local identity, as the config file lists it
/// (`[[local.users]]`). Its `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalUser {
    pub username: String,
    /// An argon2id PHC string, from `mcrsrv hash-password`.
    pub password_hash: String,
    pub account_type: AccountType,
    #[serde(default)]
    pub roles: Vec<Role>,
}

impl fmt::Debug for LocalUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalUser")
            .field("username", &self.username)
            .field("password_hash", &"***")
            .field("account_type", &self.account_type)
            .field("roles", &self.roles)
            .finish()
    }
}

/// The local identity service: a [`TokenValidator`] that needs nothing but
/// its config and a key file.
pub struct LocalIdentity {
    inner: Arc<Inner>,
    /// Where revocations are kept beyond this process, if anywhere.
    revocations: Option<SharedRevocations>,
}

/// The revocation store and when this process last read it.
struct SharedRevocations {
    store: Arc<dyn RevocationStore>,
    /// `Timestamp` milliseconds of the last read.
    read_at: AtomicI64,
    /// One read at a time: validations that find the copy stale wait for
    /// it instead of each reading the whole set.
    reading: tokio::sync::Mutex<()>,
}

struct Inner {
    users: HashMap<String, LocalUser>,
    key: Key,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    /// Verified against when the user is unknown, so an unknown user takes
    /// as long as a wrong password.
    dummy_hash: String,
    logins: Mutex<LoginCache>,
    /// Revoked token ids and when each token expires anyway.
    revoked: Mutex<HashMap<String, i64>>,
    /// argon2 verifications run so far.
    verifications: AtomicU64,
    tokens: TokenMetrics,
    verified: VerifiedTokens,
}

impl LocalIdentity {
    /// Users from the config, the signing key at `key_path` (created on
    /// first start), tokens valid for `ttl` (see [`DEFAULT_TOKEN_TTL`]).
    ///
    /// Refuses a user list with a duplicate or malformed username or a
    /// hash that is not argon2id, naming the user.
    pub fn new(
        users: Vec<LocalUser>,
        key_path: &Path,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<LocalIdentity> {
        let key = load_or_create_key(key_path)?;
        LocalIdentity::with_key(users, key, ttl, clock)
    }

    /// Like [`LocalIdentity::new`] with a key already in hand.
    pub fn with_key(
        users: Vec<LocalUser>,
        key: Key,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<LocalIdentity> {
        let mut by_name = HashMap::with_capacity(users.len());
        for u in users {
            check_user(&u)?;
            if by_name.contains_key(&u.username) {
                return Err(Error::invalid(
                    "local.users",
                    format!("username {:?} appears twice", u.username),
                ));
            }
            by_name.insert(u.username.clone(), u);
        }
        if ttl.is_zero() {
            return Err(Error::invalid("local.token_ttl", "must be longer than 0s"));
        }
        Ok(LocalIdentity {
            inner: Arc::new(Inner {
                users: by_name,
                key,
                ttl,
                clock,
                dummy_hash: hash_password(&Secret::new("not anybody's password"))?,
                logins: Mutex::new(LoginCache::new(LOGIN_CACHE_TTL, LOGIN_CACHE_MAX)),
                revoked: Mutex::new(HashMap::new()),
                verifications: AtomicU64::new(0),
                tokens: TokenMetrics::new(),
                verified: VerifiedTokens::default(),
            }),
            revocations: None,
        })
    }

    /// Records every logout in `store` before answering it, and loads the
    /// revocations `store` holds that are still in force now, so tokens
    /// revoked before a restart stay refused; reads them again when the
    /// copy is [`REVOCATION_MAX_STALENESS`] old, so logouts through other
    /// processes sharing `store` hold here too. Fails if `store` cannot be
    /// read (the identity must not start forgetting logouts).
    pub async fn keep_revocations_in(
        mut self,
        store: Arc<dyn RevocationStore>,
    ) -> Result<LocalIdentity> {
        let shared = SharedRevocations {
            store,
            read_at: AtomicI64::new(i64::MIN),
            reading: tokio::sync::Mutex::new(()),
        };
        shared.read(&self.inner).await?;
        self.revocations = Some(shared);
        Ok(self)
    }

    /// Reads the stored revocations again if the copy is stale.
    async fn fresh_revocations(&self) -> Result<()> {
        let Some(shared) = &self.revocations else {
            return Ok(());
        };
        if shared.fresh(&self.inner) {
            return Ok(());
        }
        let _one = shared.reading.lock().await;
        // Another validation may have read them while this one waited.
        if shared.fresh(&self.inner) {
            return Ok(());
        }
        shared.read(&self.inner).await
    }

    /// How many argon2 password verifications this instance has run. A
    /// login answered from the cache runs none; for tests and metrics.
    pub fn verifications(&self) -> u64 {
        self.inner.verifications.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.inner.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("LocalIdentity")
            .field("users", &names)
            .field("ttl", &self.inner.ttl)
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

fn check_user(u: &LocalUser) -> Result<()> {
    // HTTP Basic splits at the first ':', and a NUL would make the login
    // cache key ambiguous: neither can be typed at a login anyway.
    if u.username.is_empty() || u.username.contains([':', '\0']) || u.username.trim() != u.username
    {
        return Err(Error::invalid(
            "local.users",
            format!(
                "username {:?} must be non-empty, without ':', NUL or surrounding spaces",
                u.username
            ),
        ));
    }
    password::check_hash(&u.password_hash).map_err(|why| {
        Error::invalid(
            "local.users",
            format!(
                "password_hash of {:?}: {why} (make one with `mcrsrv hash-password`)",
                u.username
            ),
        )
    })
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here is a single map operation).
impl SharedRevocations {
    /// Whether the copy was read less than [`REVOCATION_MAX_STALENESS`]
    /// ago (a clock set back makes it stale).
    fn fresh(&self, inner: &Inner) -> bool {
        let age = inner
            .clock
            .now()
            .as_millis()
            .saturating_sub(self.read_at.load(Ordering::Acquire));
        let bound = i64::try_from(REVOCATION_MAX_STALENESS.as_millis()).unwrap_or(i64::MAX);
        (0..bound).contains(&age)
    }

    /// Adds the store's live revocations to this process's set, dropping
    /// those that ended. Adds, never replaces: a logout answered here
    /// while the read was under way stays in the set.
    async fn read(&self, inner: &Inner) -> Result<()> {
        let now = inner.clock.now();
        let live = self.store.live_revocations(now).await?;
        let mut revoked = lock(&inner.revoked);
        revoked.retain(|_, exp| now.as_millis() < *exp);
        revoked.extend(
            live.into_iter()
                .map(|r| (r.token_id, r.expires.as_millis())),
        );
        drop(revoked);
        self.read_at.store(now.as_millis(), Ordering::Release);
        Ok(())
    }
}

/// Who `user` is, as configured.
fn principal_of(user: &LocalUser) -> Principal {
    let mut p = Principal::new(
        format!("{SUBJECT_PREFIX}{}", user.username),
        user.account_type,
        user.roles.clone(),
    );
    p.username = Some(user.username.clone());
    p
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    /// What a token this server signed proves, if it has not expired nor
    /// been revoked: from the verified tokens, or verified now and added.
    fn verify(&self, token: &Secret) -> Result<Principal> {
        let now = self.clock.now().as_millis();
        let (verified, known) = match self.verified.get(token.expose()) {
            Some(v) => {
                self.tokens.cache_hit();
                (v, true)
            }
            None => {
                let claims = token::verify(&self.key, token.expose())
                    .ok_or_else(|| Error::Unauthenticated("invalid token".into()))?;
                // The holder as configured now, not as when the token was
                // signed: a user removed from `[[local.users]]` is refused
                // and changed roles hold, for every token, from the start
                // that read the new list. The users never change while
                // the process runs, so the verified token keeps this.
                let user = claims
                    .sub
                    .strip_prefix(SUBJECT_PREFIX)
                    .and_then(|name| self.users.get(name))
                    .ok_or_else(|| Error::Unauthenticated(GONE_USER.into()))?;
                let verified = Verified {
                    principal: principal_of(user),
                    exp: claims.exp,
                    jti: claims.jti,
                };
                (Arc::new(verified), false)
            }
        };
        if now >= verified.exp {
            return Err(Error::Unauthenticated("token expired".into()));
        }
        if lock(&self.revoked).contains_key(&verified.jti) {
            return Err(Error::Unauthenticated("token revoked".into()));
        }
        if !known {
            self.verified
                .insert(token.expose(), Arc::clone(&verified), now);
        }
        Ok(verified.principal.clone())
    }

    /// The full password check: argon2, slow on purpose. Blocking.
    fn check_password(&self, username: &str, password: &Secret) -> Result<Principal> {
        let user = self.users.get(username);
        let hash = user.map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let ok = password::verify(hash, password);
        self.verifications.fetch_add(1, Ordering::Relaxed);
        match user {
            Some(u) if ok => {
                let p = principal_of(u);
                let key = LoginCache::key(username, password);
                lock(&self.logins).insert(key, p.clone(), self.clock.now());
                Ok(p)
            }
            _ => Err(Error::Unauthenticated(BAD_LOGIN.into())),
        }
    }

    fn issue(&self, principal: Principal) -> Result<IssuedToken> {
        let mut jti = [0u8; 16];
        getrandom::getrandom(&mut jti)
            .map_err(|e| Error::Unavailable(format!("no randomness for a token id: {e}")))?;
        let now = self.clock.now();
        let expires_at = now.saturating_add(self.ttl);
        let claims = Claims {
            sub: principal.subject,
            name: principal.username.unwrap_or_default(),
            typ: principal.account_type,
            roles: principal.roles,
            iat: now.as_millis(),
            exp: expires_at.as_millis(),
            jti: hex::encode(jti),
        };
        Ok(IssuedToken {
            token: Secret::new(token::sign(&self.key, &claims)),
            expires_at,
        })
    }
}

#[async_trait]
impl TokenValidator for LocalIdentity {
    async fn validate(&self, token: &Secret) -> Result<Principal> {
        self.fresh_revocations().await?;
        let inner = &self.inner;
        inner.tokens.record(inner.verify(token))
    }

    async fn login(&self, username: &str, password: &Secret) -> Result<IssuedToken> {
        let inner = &self.inner;
        let cache_key = LoginCache::key(username, password);
        let cached = lock(&inner.logins).get(&cache_key, username, inner.clock.now());
        let principal = match cached {
            Some(p) => p,
            None => {
                let inner = Arc::clone(inner);
                let (name, pw) = (username.to_owned(), password.clone());
                let check = move || inner.check_password(&name, &pw);
                // argon2 takes tens of milliseconds: keep it off the async
                // workers when there are any.
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => rt.spawn_blocking(check).await.map_err(|e| {
                        Error::Unavailable(format!("the password check did not finish: {e}"))
                    })??,
                    Err(_) => check()?,
                }
            }
        };
        inner.issue(principal)
    }

    /// Revokes `token` until it expires: in the revocation store first,
    /// if there is one (a logout that could not be recorded fails), then
    /// in this process. A token that has already expired or been revoked
    /// needs nothing more.
    async fn logout(&self, token: &Secret) -> Result<()> {
        let inner = &self.inner;
        let claims = token::verify(&inner.key, token.expose())
            .ok_or_else(|| Error::Unauthenticated("invalid token".into()))?;
        let now = inner.clock.now().as_millis();
        if now >= claims.exp {
            return Ok(());
        }
        {
            let mut revoked = lock(&inner.revoked);
            // Forget revocations of tokens that have expired since: they
            // are refused as expired now. Logouts are rare; the scan is
            // cheap.
            revoked.retain(|_, exp| now < *exp);
            if revoked.len() >= REVOKED_MAX && !revoked.contains_key(&claims.jti) {
                return Err(Error::Unavailable(
                    "too many tokens revoked recently; try again once some expire".into(),
                ));
            }
        }
        if let Some(shared) = &self.revocations {
            shared
                .store
                .revoke_token(
                    &Revocation {
                        token_id: claims.jti.clone(),
                        expires: Timestamp::from_millis(claims.exp),
                    },
                    Timestamp::from_millis(now),
                )
                .await?;
        }
        let mut revoked = lock(&inner.revoked);
        revoked.insert(claims.jti, claims.exp);
        Ok(())
    }
}
