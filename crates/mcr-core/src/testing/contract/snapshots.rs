//! The [`SnapshotStore`] contract, for a metadata store that offers
//! snapshots: a snapshot's location is the store's to choose; snapshots at
//! times a second or more apart never share one, a second snapshot at the
//! same time is refused with `Conflict`, and the store keeps serving reads
//! and writes around them.

use std::future::Future;
use std::sync::Arc;

use super::meta_store::upload;
use super::support::{err_of, ok, repo, t};
use super::{checks, run_suite};
use crate::error::Error;
use crate::ports::{MetaStore, SnapshotStore};

/// Runs every [`SnapshotStore`] check, each on a fresh empty store from
/// `make` (which must also be the metadata store the snapshots copy);
/// panics naming the first check that fails.
pub async fn run_snapshot_store_contract<T, F, Fut>(make: F)
where
    T: MetaStore + SnapshotStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<T>>,
{
    let checks = checks![T =>
        snapshots_at_different_times_go_to_different_places,
        a_snapshot_never_overwrites_one_of_the_same_time,
    ];
    run_suite("SnapshotStore", checks, make).await;
}

async fn snapshots_at_different_times_go_to_different_places<T>(s: Arc<T>)
where
    T: MetaStore + SnapshotStore,
{
    let meta: Arc<dyn MetaStore> = s.clone();
    let r = repo("snap/app");
    let before = upload(&meta, &r, b"before the snapshots", t(1)).await;
    // A minute apart: a store may name its copies by the second.
    let first = ok(s.snapshot(t(60)).await, "snapshot");
    let second = ok(s.snapshot(t(120)).await, "a later snapshot");
    assert!(!first.is_empty(), "a snapshot says where it went");
    assert_ne!(first, second, "two snapshots went to the same place");

    // The store keeps serving reads and writes.
    assert_eq!(
        ok(
            meta.blob_in_repository(&r, &before.digest).await,
            "blob_in_repository"
        ),
        Some(before),
        "a snapshot changed what the store holds"
    );
    let after = upload(&meta, &r, b"after the snapshots", t(180)).await;
    assert_eq!(
        ok(
            meta.blob_in_repository(&r, &after.digest).await,
            "blob_in_repository"
        ),
        Some(after),
        "the store does not take writes after a snapshot"
    );
}

async fn a_snapshot_never_overwrites_one_of_the_same_time<T>(s: Arc<T>)
where
    T: SnapshotStore + ?Sized,
{
    let first = ok(s.snapshot(t(60)).await, "snapshot");
    let e = err_of(
        s.snapshot(t(60)).await,
        "a second snapshot at the same time",
    );
    assert!(
        matches!(e, Error::Conflict(_)),
        "expected Conflict, got {e:?}"
    );
    let later = ok(s.snapshot(t(120)).await, "a later snapshot");
    assert_ne!(first, later);
}
