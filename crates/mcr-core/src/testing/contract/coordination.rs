//! The [`Coordination`] contract: one holder per key across every
//! instance sharing the same backend, release on drop (also of a waiter
//! given up half-way), and keys independent of each other.
//!
//! `make` returns two instances over one fresh backend, as two replicas
//! would hold them (for [`crate::coordination::LocalCoordination`], two
//! clones; for a database, two connections to one database).

use std::future::Future;
use std::sync::Arc;

use futures_util::future::{join, select, Either};
use futures_util::FutureExt;

use super::support::{new_id, ok, sha256};
use super::{checks, run_suite};
use crate::ports::{Coordination, LockKey};

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
        assert!(
            !ok(p.b.is_locked(&key).await, "is_locked"),
            "{key} released"
        );
        let again = ok(p.b.try_lock(&key).await, "try_lock");
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
    let again = ok(p.b.try_lock(&key).await, "try_lock");
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
