//! The validation cache: which tokens MCIAS called valid a moment ago.
//!
//! Keyed by the SHA-256 of the token, so the cache never holds a token; only
//! valid answers are stored. An entry lives until the TTL or the token's own
//! expiry, whichever comes first. When the cache is full, expired entries
//! go first, then the ones closest to expiry (the oldest, since every entry
//! gets the same TTL).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use mcr_core::ports::Secret;
use mcr_core::principal::Principal;
use mcr_core::time::Timestamp;
use sha2::{Digest as _, Sha256};

/// The SHA-256 of a token: what the cache is keyed by.
pub(super) type TokenHash = [u8; 32];

pub(super) fn token_hash(token: &Secret) -> TokenHash {
    Sha256::digest(token.expose().as_bytes()).into()
}

pub(super) struct ValidationCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<TokenHash, Entry>>,
}

struct Entry {
    principal: Principal,
    until: Timestamp,
}

impl ValidationCache {
    pub fn new(ttl: Duration, capacity: usize) -> ValidationCache {
        ValidationCache {
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The principal cached for `key`, if its entry has not run out at `now`.
    pub fn get(&self, key: &TokenHash, now: Timestamp) -> Option<Principal> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some(e) if now < e.until => Some(e.principal.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers a valid token's principal from `now` for the TTL, or until
    /// `expires_at` if that is sooner.
    pub fn insert(
        &self,
        key: TokenHash,
        principal: Principal,
        now: Timestamp,
        expires_at: Option<Timestamp>,
    ) {
        let mut until = now.saturating_add(self.ttl);
        if let Some(exp) = expires_at {
            until = until.min(exp);
        }
        if until <= now {
            return;
        }
        let mut entries = self.lock();
        if !entries.contains_key(&key) && entries.len() >= self.capacity {
            entries.retain(|_, e| now < e.until);
            if entries.len() >= self.capacity {
                let oldest = entries.iter().min_by_key(|(_, e)| e.until).map(|(k, _)| *k);
                if let Some(k) = oldest {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(key, Entry { principal, until });
    }

    /// Forgets a token (after a logout).
    pub fn remove(&self, key: &TokenHash) {
        self.lock().remove(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenHash, Entry>> {
        // The map stays consistent even if a holder panicked: every update
        // is a single insert or remove.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_core::principal::AccountType;

    fn p(sub: &str) -> Principal {
        Principal::new(sub, AccountType::Human, vec![])
    }

    fn key(n: u8) -> TokenHash {
        [n; 32]
    }

    const T0: Timestamp = Timestamp::from_millis(1_000_000);

    fn at(secs: u64) -> Timestamp {
        T0.saturating_add(Duration::from_secs(secs))
    }

    #[test]
    fn keys_are_the_sha256_of_the_token() {
        let k = token_hash(&Secret::new("abc"));
        assert_eq!(
            hex::encode(k),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn entries_live_for_the_ttl() {
        let c = ValidationCache::new(Duration::from_secs(30), 10);
        c.insert(key(1), p("a"), T0, None);
        assert_eq!(c.get(&key(1), at(29)).unwrap().subject, "a");
        assert!(c.get(&key(1), at(30)).is_none());
        assert_eq!(c.len(), 0, "an expired entry is dropped when read");
    }

    #[test]
    fn entries_end_with_the_token() {
        let c = ValidationCache::new(Duration::from_secs(30), 10);
        c.insert(key(1), p("a"), T0, Some(at(5)));
        assert!(c.get(&key(1), at(4)).is_some());
        assert!(c.get(&key(1), at(5)).is_none());
        c.insert(key(2), p("b"), T0, Some(T0));
        assert_eq!(c.len(), 0, "an already expired token is not stored");
    }

    #[test]
    fn a_full_cache_drops_expired_then_oldest() {
        let c = ValidationCache::new(Duration::from_secs(30), 3);
        c.insert(key(1), p("1"), T0, Some(at(1)));
        c.insert(key(2), p("2"), T0, None);
        c.insert(key(3), p("3"), at(1), None);
        // Full: key 1 has expired at t=2 and goes first.
        c.insert(key(4), p("4"), at(2), None);
        assert_eq!(c.len(), 3);
        assert!(c.get(&key(1), at(2)).is_none());
        // Full of live entries: the oldest (key 2) goes.
        c.insert(key(5), p("5"), at(3), None);
        assert_eq!(c.len(), 3);
        assert!(c.get(&key(2), at(3)).is_none());
        for k in [3, 4, 5] {
            assert!(c.get(&key(k), at(3)).is_some(), "{k}");
        }
        // Refreshing a present key evicts nothing.
        c.insert(key(5), p("5"), at(4), None);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn remove_forgets() {
        let c = ValidationCache::new(Duration::from_secs(30), 10);
        c.insert(key(1), p("a"), T0, None);
        c.remove(&key(1));
        assert!(c.get(&key(1), T0).is_none());
    }
}
