//! Tokens this process has already verified, so a client sending the same
//! bearer token with every request pays the MAC check and the claims'
//! decoding once (issue 17: they were about a quarter of a manifest GET's
//! instructions).
//!
//! An entry is the token's exact text and what it proved: the principal,
//! the expiry and the token id. Expiry and revocation are checked on every
//! use, as for a token verified afresh, so the cache never answers for
//! longer or more than the token itself would. The key never changes
//! while the process runs, so an entry cannot outlive its signature's
//! validity. Bounded: at [`VERIFIED_MAX`] entries the expired go, and if
//! that frees nothing the whole set is dropped (tokens are verified again,
//! nothing is refused).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mcr_core::principal::Principal;

use super::lock;

/// Most verified tokens remembered at once. A token is ~250 bytes and its
/// principal a few more: a few MiB at most.
pub(super) const VERIFIED_MAX: usize = 8192;

/// What a verified token proved: its holder as configured now (see the
/// module above), its expiry and its id.
pub(super) struct Verified {
    pub principal: Principal,
    /// Milliseconds since the epoch.
    pub exp: i64,
    /// The token's id, which a logout revokes.
    pub jti: String,
}

/// The verified tokens, by their text.
#[derive(Default)]
pub(super) struct VerifiedTokens {
    entries: Mutex<HashMap<String, Arc<Verified>>>,
}

impl VerifiedTokens {
    /// What `token` proved when it was verified, if it was.
    pub fn get(&self, token: &str) -> Option<Arc<Verified>> {
        lock(&self.entries).get(token).cloned()
    }

    /// Remembers that `token` proved `verified` (valid at `now`,
    /// milliseconds since the epoch).
    pub fn insert(&self, token: &str, verified: Arc<Verified>, now: i64) {
        let mut entries = lock(&self.entries);
        if entries.len() >= VERIFIED_MAX {
            entries.retain(|_, v| now < v.exp);
            if entries.len() >= VERIFIED_MAX {
                entries.clear();
            }
        }
        entries.insert(token.to_owned(), verified);
    }
}

#[cfg(test)]
mod tests {
    use mcr_core::principal::AccountType;

    use super::*;

    fn verified(exp: i64) -> Arc<Verified> {
        Arc::new(Verified {
            principal: Principal::new("local:alice", AccountType::Human, Vec::new()),
            exp,
            jti: "id".to_string(),
        })
    }

    #[test]
    fn at_the_bound_the_expired_go_then_everything() {
        let tokens = VerifiedTokens::default();
        let len = || lock(&tokens.entries).len();
        // Half expire at 10, half at 20.
        for i in 0..VERIFIED_MAX {
            let exp = if i % 2 == 0 { 10 } else { 20 };
            tokens.insert(&format!("t{i}"), verified(exp), 0);
        }
        assert_eq!(len(), VERIFIED_MAX);
        tokens.insert("late", verified(30), 15);
        assert_eq!(len(), VERIFIED_MAX / 2 + 1, "the expired went");
        assert!(tokens.get("t1").is_some() && tokens.get("t0").is_none());
        for i in 0..VERIFIED_MAX {
            tokens.insert(&format!("u{i}"), verified(40), 15);
        }
        assert!(len() <= VERIFIED_MAX);
        assert!(tokens.get(&format!("u{}", VERIFIED_MAX - 1)).is_some());
    }
}
