//! [`LocalCoordination`]: the [`Coordination`] port in process memory, for
//! a registry that runs as one process (SQLite and a local disk) and for
//! embedders.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures_util::lock::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::error::Result;
use crate::ports::{Coordination, LockGuard, LockKey};

/// Keyed async mutexes in one process.
///
/// A key's mutex exists while someone holds or waits for it, so the table
/// grows with the locks in use, not with every digest ever locked. It uses
/// no runtime (only `futures` locks), so it works under any executor; a
/// guard dropped mid-way (a cancelled request) releases its lock at once.
#[derive(Debug, Default, Clone)]
pub struct LocalCoordination {
    table: Arc<Mutex<HashMap<LockKey, Arc<AsyncMutex<()>>>>>,
}

impl LocalCoordination {
    pub fn new() -> LocalCoordination {
        LocalCoordination::default()
    }

    fn table(&self) -> MutexGuard<'_, HashMap<LockKey, Arc<AsyncMutex<()>>>> {
        // Every change to the table is one insert or remove: a panic
        // elsewhere cannot have left it half-made.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key's mutex, created if no one holds or waits for it.
    fn mutex(&self, key: &LockKey) -> Arc<AsyncMutex<()>> {
        Arc::clone(self.table().entry(key.clone()).or_default())
    }

    fn guard(&self, key: &LockKey, held: OwnedMutexGuard<()>) -> LockGuard {
        LockGuard::new(Held {
            owner: self.clone(),
            key: key.clone(),
            held: Some(held),
        })
    }
}

/// A held key: releases the mutex, then drops the table's entry if no one
/// else holds or waits for it.
struct Held {
    owner: LocalCoordination,
    key: LockKey,
    held: Option<OwnedMutexGuard<()>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut table = self.owner.table();
        // Released under the table's lock, so no one can fetch the mutex
        // between the release and the check below.
        drop(self.held.take());
        // The table's own reference is the only one left: nobody holds
        // or waits.
        if table
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            table.remove(&self.key);
        }
    }
}

#[async_trait]
impl Coordination for LocalCoordination {
    async fn lock(&self, key: &LockKey) -> Result<LockGuard> {
        let held = self.mutex(key).lock_owned().await;
        Ok(self.guard(key, held))
    }

    async fn try_lock(&self, key: &LockKey) -> Result<Option<LockGuard>> {
        let mutex = self.mutex(key);
        let held = mutex.try_lock_owned();
        let guard = held.map(|h| self.guard(key, h));
        if guard.is_none() {
            // Our fetch may have created the entry: tidy it like a guard
            // would.
            let mut table = self.table();
            drop(mutex);
            if table.get(key).is_some_and(|m| Arc::strong_count(m) == 1) {
                table.remove(key);
            }
        }
        Ok(guard)
    }

    async fn is_locked(&self, key: &LockKey) -> Result<bool> {
        let table = self.table();
        Ok(table.get(key).is_some_and(|m| m.try_lock().is_none()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use futures_executor::block_on;
    use futures_util::FutureExt;

    #[test]
    fn a_key_is_held_once_and_the_table_empties() {
        let c = LocalCoordination::new();
        let key = LockKey::Blob(Digest::sha256_of(b"a"));
        block_on(async {
            let first = c.lock(&key).await.unwrap();
            assert!(c.is_locked(&key).await.unwrap());
            assert!(c.try_lock(&key).await.unwrap().is_none());
            // A waiter does not get the lock until the guard drops.
            let mut waiter = Box::pin(c.lock(&key));
            assert!((&mut waiter).now_or_never().is_none());
            let other = c.try_lock(&LockKey::GarbageCollection).await.unwrap();
            assert!(other.is_some(), "other keys do not wait");
            drop(other);
            drop(first);
            let second = waiter.await.unwrap();
            drop(second);
            assert!(!c.is_locked(&key).await.unwrap());
        });
        assert!(c.table().is_empty(), "{:?}", c.table().keys());
    }

    #[test]
    fn a_cancelled_waiter_leaves_nothing_behind() {
        let c = LocalCoordination::new();
        let key = LockKey::GarbageCollection;
        block_on(async {
            let held = c.lock(&key).await.unwrap();
            let mut waiter = Box::pin(c.lock(&key));
            assert!((&mut waiter).now_or_never().is_none());
            drop(waiter);
            drop(held);
        });
        assert!(c.table().is_empty());
    }
}
