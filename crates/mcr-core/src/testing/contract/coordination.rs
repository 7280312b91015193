//! The [`Coordination`] contract: one holder per key across every
//! instance sharing the same backend, release on drop (also of a waiter
//! given up half-way), and keys independent of each other.
//!
//! A backend shared over the network releases a dropped guard's lock
//! within a round trip, not at the instant of the drop (`Drop` cannot
//! wait for it): another instance may still see the key held for a
//! moment — longer on a loaded machine, where the unlock waits for its
//! task and the database's turn. So the checks look again, for up to
//! [`PATIENCE`], before they call a key still held after its release.
//!
//! `make` returns two instances over one fresh backend, as two replicas
//! would hold them (for [`crate::coordination::LocalCoordination`], two
//! clones; for a database, two connections to one database).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{join, select, Either};
use futures_util::FutureExt;

use super::support::{new_id, ok, sha256};
use super::{checks, run_suite};
use crate::ports::{Coordination, LockGuard, LockKey};

/// Two instances over one backend.
pub struct Replicas {
    pub a: Arc<dyn Coordination>,
    pub b: Arc<dyn Coordination>,
}

type Pair = Arc<Replicas>;

/// Runs every [`Coordination`] check, each on a fresh backend from `make`;
/// panics naming the first check that fails.
pub async fn run_coordination_contract<F, Fut>(make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Replicas>,
{
    let mut make = make;
    let checks = checks![Replicas =>
        a_key_has_one_holder_across_instances,
        a_waiter_gets_the_key_when_it_is_released,
        a_waiter_given_up_leaves_the_key_free,
        keys_do_not_wait_on_each_other,
    ];
    run_suite("Coordination", checks, move || {
        let made = make();
        async move { Arc::new(made.await) }
    })
    .await;
}

/// How long a check keeps looking before it calls a released key held.
/// Each look is a round trip (none for an in-process backend, which
/// releases at once and is seen free at the first look), so this bounds
/// wall time, not a count a slow machine could run through before the
/// unlock's own round trip is done.
const PATIENCE: Duration = Duration::from_secs(10);

/// Whether `c` sees `key` free within [`PATIENCE`].
async fn seen_free(c: &dyn Coordination, key: &LockKey) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if !ok(c.is_locked(key).await, "is_locked") {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// The key, from `c`, within [`PATIENCE`].
async fn taken_once_free(c: &dyn Coordination, key: &LockKey) -> Option<LockGuard> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(guard) = ok(c.try_lock(key).await, "try_lock") {
            return Some(guard);
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

fn keys() -> [LockKey; 3] {
    [
        LockKey::Blob(sha256(b"contended")),
        LockKey::Upload(new_id()),
        LockKey::GarbageCollection,
    ]
}

async fn a_key_has_one_holder_across_instances(p: Pair) {
    for key in keys() {
        assert!(
            !ok(p.b.is_locked(&key).await, "is_locked"),
            "{key} free at first"
        );
        let held = ok(p.a.lock(&key).await, "lock");
        for (who, c) in [("the same instance", &p.a), ("another instance", &p.b)] {
            assert!(
                ok(c.try_lock(&key).await, "try_lock").is_none(),
                "{who} took {key} while it was held"
            );
            assert!(
                ok(c.is_locked(&key).await, "is_locked"),
                "{who}: {key} held"
            );
        }
        drop(held);
        assert!(seen_free(&*p.b, &key).await, "{key} released");
        let again = taken_once_free(&*p.b, &key).await;
        assert!(
            again.is_some(),
            "{key} was not free after its guard dropped"
        );
    }
}

async fn a_waiter_gets_the_key_when_it_is_released(p: Pair) {
    let key = LockKey::Upload(new_id());
    let held = ok(p.a.lock(&key).await, "lock");
    let waiter = p.b.lock(&key);
    let release = async {
        assert!(
            ok(p.b.try_lock(&key).await, "try_lock").is_none(),
            "the key was free while held"
        );
        drop(held);
    };
    let (got, ()) = join(waiter, release).await;
    let got = ok(got, "lock after the release");
    assert!(ok(p.a.try_lock(&key).await, "try_lock").is_none());
    drop(got);
}

async fn a_waiter_given_up_leaves_the_key_free(p: Pair) {
    let key = LockKey::Blob(sha256(b"given up"));
    let held = ok(p.a.lock(&key).await, "lock");
    {
        // Poll the waiter a little, then drop it: a cancelled request.
        let waiter = p.b.lock(&key).boxed();
        let nothing = futures_util::future::ready(());
        match select(waiter, nothing).await {
            Either::Left((got, _)) => {
                drop(got);
                panic!("a waiter got a held key");
            }
            Either::Right(((), waiter)) => drop(waiter),
        }
    }
    drop(held);
    let again = taken_once_free(&*p.b, &key).await;
    assert!(again.is_some(), "a cancelled waiter kept the key");
}

async fn keys_do_not_wait_on_each_other(p: Pair) {
    let [blob, upload, gc] = keys();
    let _blob = ok(p.a.lock(&blob).await, "lock blob");
    let _upload = ok(p.b.lock(&upload).await, "lock upload");
    let _gc = ok(p.a.try_lock(&gc).await, "try_lock gc");
    assert!(_gc.is_some(), "gc waited on other keys");
    let other = LockKey::Blob(sha256(b"another blob"));
    assert!(ok(p.b.try_lock(&other).await, "try_lock").is_some());
}
