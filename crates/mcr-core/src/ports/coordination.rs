//! The `Coordination` port: mutual exclusion between everything that
//! shares the stores — the tasks of one process, or several replicas.
//!
//! The engine takes four kinds of lock ([`LockKey`]): a blob's digest
//! while committing or deleting its file and row (GC's safety argument,
//! docs/ARCHITECTURE.md), an upload session while appending to or
//! finishing it (one writer at a time, so a chunk and the session's
//! recorded state stay in step, and two chunks cannot pass the blob size
//! limit together), the one garbage collection and the one retention
//! run that may run at a time, and a blob a pull-through cache is fetching (one upstream fetch per
//! digest).
//!
//! [`crate::coordination::LocalCoordination`] implements it in process
//! memory: right for one process (SQLite and a local disk, an embedder).
//! Replicas need an implementation over what they share, such as
//! PostgreSQL advisory locks.

use std::fmt;

use async_trait::async_trait;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::Result;
use crate::ids::UploadId;

/// What a lock is taken on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// A blob's content: committing its file and row, against deleting
    /// them (GC phase two, reconcile).
    Blob(Digest),
    /// An upload session: appending a chunk and recording the session's
    /// new state, or finishing it.
    Upload(UploadId),
    /// The one garbage collection that may run at a time.
    GarbageCollection,
    /// The one retention run (not a dry run) that may run at a time.
    Retention,
    /// A pull-through cache filling a blob from its upstream: one fetch
    /// per digest at a time. Pulls in the process running the fill join
    /// it without taking the lock; another replica's wait, then read the
    /// stored blob.
    Fill(Digest),
}

impl LockKey {
    /// A stable signed 64-bit number for the key, for stores whose locks
    /// are numbered (PostgreSQL's `pg_advisory_lock(bigint)`): the first 8
    /// bytes, big-endian, of the SHA-256 of its [`Display`](fmt::Display)
    /// form. Two keys sharing a number (about one chance in 2^64 per pair)
    /// only make them wait on each other.
    pub fn id64(&self) -> i64 {
        let hash = Sha256::digest(self.to_string().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash[..8]);
        i64::from_be_bytes(first)
    }
}

impl fmt::Display for LockKey {
    /// `blob:<digest>`, `upload:<id>`, `gc`, `retention` or `fill:<digest>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockKey::Blob(d) => write!(f, "blob:{d}"),
            LockKey::Upload(id) => write!(f, "upload:{id}"),
            LockKey::GarbageCollection => f.write_str("gc"),
            LockKey::Retention => f.write_str("retention"),
            LockKey::Fill(d) => write!(f, "fill:{d}"),
        }
    }
}

/// A held lock: dropping the guard releases the lock.
///
/// An implementation puts whatever holds the lock inside (a mutex guard, a
/// connection holding an advisory lock, a handle whose `Drop` unlocks).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    _held: Box<dyn Send + Sync>,
}

impl LockGuard {
    /// A guard holding `held` until it is dropped.
    pub fn new(held: impl Send + Sync + 'static) -> LockGuard {
        LockGuard {
            _held: Box::new(held),
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

/// Exclusive locks by key, shared by everyone who shares the stores.
///
/// Guarantees every implementation gives (the engine's safety rests on
/// them, and `testing::contract::run_coordination_contract` checks them):
/// - at most one guard per key exists at a time, across every process
///   using the same stores;
/// - a lock is released when its guard is dropped, also when the holding
///   task is cancelled mid-way (its future dropped), and when the holding
///   process dies (in process memory at once; over a network within a
///   round trip, so another process may see it held a moment longer);
/// - different keys never wait on each other (but for [`LockKey::id64`]
///   collisions where locks are numbered).
///
/// **Releasing without blocking.** `Drop` cannot await, so a guard whose
/// release is I/O must not block the thread in `drop`. Over PostgreSQL,
/// for example: hold the lock with `pg_advisory_xact_lock` inside a
/// transaction the guard owns (dropping a `tokio_postgres::Transaction`
/// queues its `ROLLBACK`, which releases the lock, and returns the
/// connection to the pool), or keep session locks on one dedicated
/// connection and have `drop` send `pg_advisory_unlock` through a channel
/// to a task that owns it. Either way a crashed replica's locks go with its
/// connections. Mind the cost: an upload lock is held while a chunk's body
/// streams in, so an implementation that pins a pooled connection per held
/// lock needs a pool sized for the concurrent uploads.
#[async_trait]
pub trait Coordination: Send + Sync + 'static {
    /// Waits until `key` is free, then holds it until the guard drops.
    async fn lock(&self, key: &LockKey) -> Result<LockGuard>;
    /// Takes `key` if it is free now; `None` if someone holds it.
    async fn try_lock(&self, key: &LockKey) -> Result<Option<LockGuard>>;
    /// Whether someone holds `key` at this moment (for status displays:
    /// the answer may be stale by the time it is read).
    async fn is_locked(&self, key: &LockKey) -> Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_stable_names_and_numbers() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(LockKey::Blob(d.clone()).to_string(), format!("blob:{d}"));
        assert_eq!(LockKey::GarbageCollection.to_string(), "gc");
        // The number must not change between builds: replicas of two
        // versions agree on it during a rolling upgrade.
        assert_eq!(
            LockKey::GarbageCollection.id64(),
            LockKey::GarbageCollection.id64()
        );
        let gc = Sha256::digest(b"gc");
        assert_eq!(LockKey::GarbageCollection.id64().to_be_bytes(), gc[..8]);
        assert_ne!(LockKey::Blob(d).id64(), LockKey::GarbageCollection.id64());
    }
}
