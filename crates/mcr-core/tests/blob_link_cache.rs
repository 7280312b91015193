//! The blob-link cache (issue 17) never lets a repository serve a blob
//! after the link that made it visible there was removed: each use case
//! that removes links invalidates. Each test warms the cache first (two
//! HEADs and a GET), so a missing invalidation shows as an answer where
//! `BLOB_UNKNOWN` is due. The blob stays stored in another repository
//! throughout, so its bytes are still there to be (wrongly) served.

mod support;

use std::time::Duration;

use mcr_core::digest::Digest;
use mcr_core::names::RepoName;
use mcr_core::ports::prelude::*;
use mcr_core::ports::BlobInfo;
use mcr_core::registry::{MountOutcome, Registry, RegistryConfig};
use mcr_core::testing::{admin, user, TestRegistry};
use mcr_core::Error;
use support::*;

async fn warm(r: &Registry, repo: &RepoName, digest: &Digest) {
    for _ in 0..2 {
        r.stat_blob(&user(), repo, digest).await.expect("visible");
    }
    r.get_blob(&user(), repo, digest, None)
        .await
        .expect("readable");
}

async fn assert_unknown(r: &Registry, repo: &RepoName, digest: &Digest, after: &str) {
    let head = r.stat_blob(&user(), repo, digest).await;
    assert!(
        matches!(head, Err(Error::BlobUnknown(_) | Error::NameUnknown(_))),
        "HEAD after {after}: {head:?}"
    );
    let get = r
        .get_blob(&user(), repo, digest, None)
        .await
        .map(|b| b.size);
    assert!(
        matches!(get, Err(Error::BlobUnknown(_) | Error::NameUnknown(_))),
        "GET after {after}: {get:?}"
    );
}

async fn mount(r: &Registry, from: &RepoName, to: &RepoName, blob: &BlobInfo) {
    let out = r
        .mount_blob(&user(), to, &blob.digest, Some(from))
        .await
        .unwrap();
    assert!(matches!(out, MountOutcome::Mounted(_)), "mounted");
}

#[test]
fn every_removal_of_a_link_is_seen_by_the_next_blob_pull() {
    let t = TestRegistry::new();
    let r = &t.registry;
    run(async {
        let (keep, app) = (repo("keep"), repo("app"));
        let blob = push_blob(r, &user(), &keep, b"shared layer").await;

        // Deleting the blob from the repository.
        mount(r, &keep, &app, &blob).await;
        warm(r, &app, &blob.digest).await;
        r.delete_blob(&user(), &app, &blob.digest).await.unwrap();
        assert_unknown(r, &app, &blob.digest, "DELETE of the blob").await;

        // Linking it again makes it visible again (only presence is cached).
        mount(r, &keep, &app, &blob).await;
        warm(r, &app, &blob.digest).await;

        // Deleting the repository.
        r.delete_repository(&admin(), &app).await.unwrap();
        assert_unknown(r, &app, &blob.digest, "the repository's deletion").await;
        warm(r, &keep, &blob.digest).await;
    });
}

#[test]
fn a_gc_sweep_removing_a_link_is_seen_by_the_next_blob_pull() {
    let t = TestRegistry::with_config(RegistryConfig {
        gc_grace_period: Duration::from_secs(60),
        ..RegistryConfig::default()
    });
    let r = &t.registry;
    run(async {
        // An image keeps its layer alive in `keep`; in `app` the same
        // layer is linked by an upload no manifest references, which GC
        // sweeps once the grace period passed — only the whole blob row
        // goes in a sweep, so the layer must be unreferenced everywhere:
        // `keep` holds it by a link only too, and the image is deleted.
        let (keep, app) = (repo("keep"), repo("app"));
        let blob = push_blob(r, &user(), &keep, b"orphan layer").await;
        mount(r, &keep, &app, &blob).await;
        warm(r, &app, &blob.digest).await;
        warm(r, &keep, &blob.digest).await;
        t.clock.advance(Duration::from_secs(120));
        let report = r.collect_garbage(&admin()).await.unwrap();
        assert_eq!(report.blobs_removed, 1, "{report:?}");
        for repo in [&app, &keep] {
            assert_unknown(r, repo, &blob.digest, "GC's sweep").await;
        }
    });
}

/// A link removed behind the registry's back (by another replica sharing
/// the store) is still served from the cache — which is why replicas run
/// with it off — and is seen at once with it off.
#[test]
fn only_the_registrys_own_changes_reach_its_cache() {
    for entries in [RegistryConfig::default().blob_link_cache_entries, 0] {
        let t = TestRegistry::with_config(RegistryConfig {
            blob_link_cache_entries: entries,
            ..RegistryConfig::default()
        });
        let r = &t.registry;
        run(async {
            let (keep, app) = (repo("keep"), repo("app"));
            let blob = push_blob(r, &user(), &keep, b"layer").await;
            mount(r, &keep, &app, &blob).await;
            warm(r, &app, &blob.digest).await;
            assert!(t
                .meta
                .unlink_blob(&app, &blob.digest, &mcr_core::testing::blob_unlink())
                .await
                .unwrap());
            let head = r.stat_blob(&user(), &app, &blob.digest).await;
            if entries == 0 {
                assert_unknown(r, &app, &blob.digest, "another replica's delete").await;
            } else {
                assert!(
                    head.is_ok(),
                    "the warm link was read from the store: {head:?}"
                );
            }
        });
    }
}
