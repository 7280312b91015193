//! The local identity: users from the configuration with argon2id
//! password hashes, and tokens the server signs itself.
//!
//! For standalone deployments and `mcrsrv dev`, where no MCIAS runs. A
//! token is `<base64url claims>.<base64url HMAC-SHA256>` under a 32-byte key
//! kept in the data directory (mode 0600). Validation, which runs on every
//! request, is a parse, a MAC and a clock check — no argon2. Logins, which
//! clients may repeat on every request with HTTP Basic, are cached for a
//! short while by the SHA-256 of username and password, never the password.
//! Revocation (`logout`) is kept in this process's memory until the token
//! would have expired anyway.

mod key;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use mcr_core::ports::{IssuedToken, Secret, TokenValidator};
use mcr_core::principal::{AccountType, Principal, Role};
use mcr_core::time::{Clock, Timestamp};
use mcr_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use key::{load_or_create_key, Key};

/// How long a successful login is remembered for repeated Basic auth.
const LOGIN_CACHE_TTL: Duration = Duration::from_secs(30);
/// Most remembered logins; the cache is cleared when full.
const LOGIN_CACHE_MAX: usize = 1024;
/// Longest token accepted for validation.
const MAX_TOKEN_LEN: usize = 4096;

/// A user of the local identity, as the config file lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalUser {
    pub username: String,
    /// An argon2id PHC string, from `mcrsrv hash-password`.
    pub password_hash: String,
    pub account_type: AccountType,
    pub roles: Vec<Role>,
}

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    sub: String,
    name: String,
    typ: AccountType,
    roles: Vec<Role>,
    /// Expiry, milliseconds since the epoch.
    exp: i64,
    /// Random id, so a logout can revoke exactly this token.
    jti: String,
}

/// argon2id with 12 MiB, 3 passes, 1 lane: one of OWASP's recommended
/// settings, chosen over the crate's 19 MiB default to keep the daemon's
/// peak memory low (a login allocates this much while it runs).
fn hasher() -> Argon2<'static> {
    let params = Params::new(12 * 1024, 3, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id hash of a password, for the config file.
pub fn hash_password(password: &Secret) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)
        .map_err(|e| Error::storage(format!("no randomness for a salt: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::storage(format!("salt: {e}")))?;
    hasher()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::storage(format!("hashing the password: {e}")))
}

/// The local identity service.
pub struct LocalIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    users: HashMap<String, LocalUser>,
    key: Key,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    /// A hash to verify against for unknown users, so they take as long as
    /// known ones.
    dummy_hash: String,
    logins: Mutex<HashMap<[u8; 32], (Principal, Timestamp)>>,
    revoked: Mutex<HashSet<String>>,
}

impl LocalIdentity {
    /// Users from the config, the signing key at `key_path` (created on
    /// first use), tokens valid for `ttl`.
    pub fn new(
        users: Vec<LocalUser>,
        key_path: &std::path::Path,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<LocalIdentity> {
        let mut by_name = HashMap::new();
        for u in users {
            PasswordHash::new(&u.password_hash).map_err(|e| {
                Error::invalid(
                    "local.users",
                    format!("password_hash of {:?} is not a PHC string: {e}", u.username),
                )
            })?;
            if by_name.insert(u.username.clone(), u).is_some() {
                return Err(Error::invalid("local.users", "a username appears twice"));
            }
        }
        Ok(LocalIdentity {
            inner: Arc::new(Inner {
                users: by_name,
                key: load_or_create_key(key_path)?,
                ttl,
                clock,
                dummy_hash: hash_password(&Secret::new("not a real password"))?,
                logins: Mutex::new(HashMap::new()),
                revoked: Mutex::new(HashSet::new()),
            }),
        })
    }
}

impl Inner {
    fn principal(user: &LocalUser) -> Principal {
        let mut p = Principal::new(
            format!("local:{}", user.username),
            user.account_type,
            user.roles.clone(),
        );
        p.username = Some(user.username.clone());
        p
    }

    fn sign(&self, claims: &Claims) -> Result<Secret> {
        let payload =
            serde_json::to_vec(claims).map_err(|e| Error::storage(format!("token claims: {e}")))?;
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let mac = self.mac(payload.as_bytes());
        Ok(Secret::new(format!(
            "{payload}.{}",
            URL_SAFE_NO_PAD.encode(mac)
        )))
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.bytes())
            .expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    fn verify(&self, token: &Secret) -> Result<Claims> {
        let invalid = || Error::Unauthenticated("invalid token".into());
        let t = token.expose();
        if t.len() > MAX_TOKEN_LEN {
            return Err(invalid());
        }
        let (payload, mac) = t.split_once('.').ok_or_else(invalid)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| invalid())?;
        let mut check = <Hmac<Sha256> as Mac>::new_from_slice(self.key.bytes())
            .expect("HMAC takes any key length");
        check.update(payload.as_bytes());
        check.verify_slice(&mac).map_err(|_| invalid())?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or_else(invalid)?;
        if self.clock.now().as_millis() >= claims.exp {
            return Err(Error::Unauthenticated("token expired".into()));
        }
        if self
            .revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&claims.jti)
        {
            return Err(Error::Unauthenticated("token revoked".into()));
        }
        Ok(claims)
    }

    /// Checks the password, from the cache when it was checked recently.
    fn check_password(&self, username: &str, password: &Secret) -> Result<Principal> {
        let key: [u8; 32] = Sha256::new()
            .chain_update(username.as_bytes())
            .chain_update([0u8])
            .chain_update(password.expose().as_bytes())
            .finalize()
            .into();
        let now = self.clock.now();
        if let Some((p, until)) = self
            .logins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if now < *until {
                return Ok(p.clone());
            }
        }
        let user = self.users.get(username);
        let hash = user.map_or(self.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let parsed =
            PasswordHash::new(hash).map_err(|e| Error::storage(format!("stored hash: {e}")))?;
        let ok = hasher()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok();
        match user {
            Some(u) if ok => {
                let p = Self::principal(u);
                let mut cache = self.logins.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= LOGIN_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(key, (p.clone(), now.saturating_add(LOGIN_CACHE_TTL)));
                Ok(p)
            }
            _ => Err(Error::Unauthenticated(
                "invalid username or password".into(),
            )),
        }
    }
}

#[async_trait]
impl TokenValidator for LocalIdentity {
    async fn validate(&self, token: &Secret) -> Result<Principal> {
        let c = self.inner.verify(token)?;
        let mut p = Principal::new(c.sub, c.typ, c.roles);
        p.username = Some(c.name);
        Ok(p)
    }

    async fn login(&self, username: &str, password: &Secret) -> Result<IssuedToken> {
        // argon2 takes tens of milliseconds: off the async workers.
        let inner = Arc::clone(&self.inner);
        let (name, pw) = (username.to_string(), password.clone());
        let principal = tokio::task::spawn_blocking(move || inner.check_password(&name, &pw))
            .await
            .map_err(|e| Error::storage(format!("password check: {e}")))??;
        let inner = &self.inner;
        let mut jti = [0u8; 16];
        getrandom::getrandom(&mut jti)
            .map_err(|e| Error::storage(format!("no randomness for a token: {e}")))?;
        let expires_at = inner.clock.now().saturating_add(inner.ttl);
        let claims = Claims {
            sub: principal.subject.clone(),
            name: principal.username.clone().unwrap_or_default(),
            typ: principal.account_type,
            roles: principal.roles.clone(),
            exp: expires_at.as_millis(),
            jti: hex::encode(jti),
        };
        Ok(IssuedToken {
            token: inner.sign(&claims)?,
            expires_at,
        })
    }

    async fn logout(&self, token: &Secret) -> Result<()> {
        let claims = self.inner.verify(token)?;
        self.inner
            .revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(claims.jti);
        Ok(())
    }
}
