//! Password hashes (argon2id) and the short-lived cache of good logins.

use std::collections::HashMap;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use mcr_core::ports::Secret;
use mcr_core::principal::Principal;
use mcr_core::time::Timestamp;
use mcr_core::{Error, Result};
use sha2::{Digest as _, Sha256};

/// argon2id with 7 MiB, 5 passes, 1 lane: the lowest-memory of OWASP's
/// equivalent recommended settings, chosen over the crate's 19 MiB default
/// to keep the daemon's
/// peak memory low (each login allocates this much while it runs).
/// Verification reads the parameters from the stored hash, so hashes made
/// elsewhere with other argon2id parameters still work.
fn hasher() -> Argon2<'static> {
    let params = Params::new(7 * 1024, 5, 1, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id PHC string of `password` with a fresh random salt, for the
/// `password_hash` of a user in the config (`mcrsrv hash-password`).
pub fn hash_password(password: &Secret) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt)
        .map_err(|e| Error::Unavailable(format!("no randomness for a salt: {e}")))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| Error::storage("encoding a salt", e.to_string()))?;
    hasher()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::storage("hashing the password", e.to_string()))
}

/// Checks that `phc` is an argon2id hash this module can verify.
pub(super) fn check_hash(phc: &str) -> std::result::Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(format!("algorithm {} is not argon2id", hash.algorithm));
    }
    Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    Ok(())
}

/// Whether `password` matches the PHC string `phc`. This is the slow part
/// of a login (tens of milliseconds): call it off the async workers.
pub(super) fn verify(phc: &str, password: &Secret) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            hasher()
                .verify_password(password.expose().as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Recently successful logins, so a client that sends HTTP Basic
/// credentials with every request pays for argon2 once per TTL, not once
/// per request.
///
/// Keyed by SHA-256 of `username \0 password`; the password itself is never
/// stored. Only successes go in: a wrong password is always checked in
/// full, so the cache cannot be used to guess faster.
pub(super) struct LoginCache {
    entries: HashMap<[u8; 32], Cached>,
    ttl: Duration,
    capacity: usize,
}

struct Cached {
    principal: Principal,
    until: Timestamp,
}

impl LoginCache {
    pub fn new(ttl: Duration, capacity: usize) -> LoginCache {
        LoginCache {
            entries: HashMap::new(),
            ttl,
            capacity,
        }
    }

    pub fn key(username: &str, password: &Secret) -> [u8; 32] {
        Sha256::new()
            .chain_update(username.as_bytes())
            .chain_update([0u8])
            .chain_update(password.expose().as_bytes())
            .finalize()
            .into()
    }

    /// The principal of a login with this key that succeeded less than the
    /// TTL before `now`.
    pub fn get(&self, key: &[u8; 32], username: &str, now: Timestamp) -> Option<Principal> {
        self.entries
            .get(key)
            // The username check rules out the one ambiguity of the key, a
            // NUL inside the username.
            .filter(|c| now < c.until && c.principal.username.as_deref() == Some(username))
            .map(|c| c.principal.clone())
    }

    pub fn insert(&mut self, key: [u8; 32], principal: Principal, now: Timestamp) {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, c| now < c.until);
            // Still full of live entries: forget them all. That costs only
            // an argon2 run per client at its next request, and keeps this
            // simple and bounded.
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        let until = now.saturating_add(self.ttl);
        self.entries.insert(key, Cached { principal, until });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_core::principal::AccountType;

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let pw = Secret::new("correct horse");
        let a = hash_password(&pw).unwrap();
        let b = hash_password(&pw).unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        check_hash(&a).unwrap();
        assert!(verify(&a, &pw));
        assert!(!verify(&a, &Secret::new("battery staple")));
        assert!(!verify("not a hash", &pw));
        assert!(check_hash("plaintext").is_err());
    }

    #[test]
    fn the_cache_forgets_after_its_ttl_and_stays_bounded() {
        let mut cache = LoginCache::new(Duration::from_secs(30), 2);
        let t0 = Timestamp::from_millis(1_000_000);
        let mut p = Principal::new("local:a", AccountType::Human, vec![]);
        p.username = Some("a".into());
        let k = LoginCache::key("a", &Secret::new("pw"));
        cache.insert(k, p.clone(), t0);
        assert_eq!(cache.get(&k, "a", t0), Some(p.clone()));
        assert_eq!(cache.get(&k, "b", t0), None);
        let later = t0.saturating_add(Duration::from_secs(30));
        assert_eq!(cache.get(&k, "a", later), None);

        for i in 0..10u8 {
            cache.insert([i; 32], p.clone(), t0);
            assert!(cache.entries.len() <= 2);
        }
    }
}
