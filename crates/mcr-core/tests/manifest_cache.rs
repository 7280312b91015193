//! The manifest cache (issue 17) never serves a manifest older than a
//! change that was answered: each use case that changes manifests or tags
//! invalidates, a fill that read before a change inserts nothing, and a
//! change dropped mid-write leaves nothing stale behind. Each test warms
//! the cache first, so a missing invalidation shows as an old answer.

mod support;

use bytes::Bytes;
use futures_util::future::{self, Either};
use mcr_core::names::{Reference, RepoName, Tag};
use mcr_core::ports::prelude::*;
use mcr_core::registry::{Registry, RegistryConfig};
use mcr_core::testing::{admin, user, TestRegistry};
use mcr_core::Error;
use support::*;

/// Pulls `reference` twice (the second answer is the cache's) and
/// returns the digest.
async fn pull_warm(r: &Registry, app: &RepoName, reference: &Reference) -> String {
    let first = r.get_manifest(&user(), app, reference).await.unwrap();
    let second = r.get_manifest(&user(), app, reference).await.unwrap();
    assert_eq!(first, second);
    second.digest.to_string()
}

#[test]
fn a_pull_racing_a_tag_move_never_serves_the_old_manifest_after_the_move() {
    let t = TestRegistry::new();
    let r = &t.registry;
    run(async {
        let app = repo("app");
        let (old, _, _) = push_image(r, &user(), &app, "latest", "old").await;
        // A pull of `latest` reads the old manifest and stops before it
        // answers (and before it fills the cache).
        let hold = t.meta.hold_next_manifest_read();
        let (who, latest) = (user(), reference("latest"));
        let pull = r.get_manifest(&who, &app, &latest);
        let mv = async {
            hold.reached().await;
            let (new, _, _) = push_image(r, &user(), &app, "latest", "new").await;
            hold.release();
            new
        };
        let (racing, new) = future::join(pull, mv).await;
        // Overlapping the move, the pull may answer either.
        assert_eq!(racing.unwrap().digest, old.digest);
        // Once the move returned, every pull sees it: the racing fill
        // inserted nothing.
        for _ in 0..2 {
            let got = r.get_manifest(&user(), &app, &latest).await.unwrap();
            assert_eq!(
                got.digest, new.digest,
                "the racing fill's old manifest was served"
            );
        }
    });
}

#[test]
fn every_change_of_manifests_or_tags_is_seen_by_the_next_pull() {
    let t = TestRegistry::new();
    let r = &t.registry;
    run(async {
        let app = repo("app");
        let latest = reference("latest");
        let (one, raw_one, _) = push_image(r, &user(), &app, "latest", "1").await;
        assert_eq!(pull_warm(r, &app, &latest).await, one.digest.to_string());

        // A push moving the tag.
        let (two, _, _) = push_image(r, &user(), &app, "latest", "2").await;
        assert_eq!(pull_warm(r, &app, &latest).await, two.digest.to_string());

        // A push by digest with `?tag=` moving it back.
        r.put_manifest_tagged(
            &user(),
            &app,
            &Reference::Digest(one.digest.clone()),
            &[Tag::new("latest").unwrap()],
            None,
            Bytes::from(raw_one),
        )
        .await
        .unwrap();
        assert_eq!(pull_warm(r, &app, &latest).await, one.digest.to_string());

        // Deleting the tag.
        r.delete_manifest(&user(), &app, &latest).await.unwrap();
        let err = r.get_manifest(&user(), &app, &latest).await.unwrap_err();
        assert!(matches!(err, Error::ManifestUnknown(_)), "{err}");

        // Deleting a manifest by digest takes its tags with it.
        let two_ref = Reference::Digest(two.digest.clone());
        let (stable, _, _) = push_image(r, &user(), &app, "stable", "2").await;
        assert_eq!(stable.digest, two.digest);
        pull_warm(r, &app, &reference("stable")).await;
        pull_warm(r, &app, &two_ref).await;
        r.delete_manifest(&user(), &app, &two_ref).await.unwrap();
        for gone in [&two_ref, &reference("stable")] {
            let err = r.get_manifest(&user(), &app, gone).await.unwrap_err();
            assert!(matches!(err, Error::ManifestUnknown(_)), "{err}");
        }

        // Deleting the repository.
        let one_ref = Reference::Digest(one.digest.clone());
        pull_warm(r, &app, &one_ref).await;
        r.delete_repository(&admin(), &app).await.unwrap();
        let err = r.get_manifest(&user(), &app, &one_ref).await.unwrap_err();
        assert!(matches!(err, Error::NameUnknown(_)), "{err}");
    });
}

/// A client that goes away while its change is in the store's hands
/// drops the use case, but the store may commit it later (SQLite's write
/// goes on on its thread). Nothing filled in between may outlive it.
#[test]
fn a_change_dropped_mid_write_is_never_hidden_by_the_cache() {
    let t = TestRegistry::new();
    let r = &t.registry;
    run(async {
        let app = repo("app");
        let latest = reference("latest");
        push_image(r, &user(), &app, "latest", "1").await;
        pull_warm(r, &app, &latest).await;
        let hold = t.meta.hold_next_manifest_write();
        let who = user();
        let delete = Box::pin(r.delete_manifest(&who, &app, &latest));
        let reached = std::pin::pin!(hold.reached());
        let Either::Right(((), delete)) = future::select(delete, reached).await else {
            panic!("the delete finished through its hold");
        };
        drop(delete);
        // Not committed yet: the pull reads the tag, and must not keep it.
        pull_warm(r, &app, &latest).await;
        // The orphaned write commits.
        assert!(t
            .meta
            .delete_tag(
                &app,
                &Tag::new("latest").unwrap(),
                None,
                &mcr_core::testing::tag_deletion()
            )
            .await
            .unwrap());
        let err = r.get_manifest(&user(), &app, &latest).await.unwrap_err();
        assert!(matches!(err, Error::ManifestUnknown(_)), "{err}");
    });
}

/// Replicas sharing a store turn the cache off; each then sees the
/// other's changes at once.
#[test]
fn with_the_cache_off_a_change_through_another_registry_is_seen_at_once() {
    let off = RegistryConfig {
        manifest_cache_entries: 0,
        ..RegistryConfig::default()
    };
    let t = TestRegistry::with_config(off.clone());
    let replica = Registry::new(
        t.meta.clone(),
        t.blobs.clone(),
        t.identity.clone(),
        t.policy.clone(),
    )
    .with_clock(t.clock.clone())
    .with_config(off);
    run(async {
        let app = repo("app");
        let latest = reference("latest");
        push_image(&t.registry, &user(), &app, "latest", "1").await;
        pull_warm(&replica, &app, &latest).await;
        t.registry
            .delete_manifest(&user(), &app, &latest)
            .await
            .unwrap();
        let err = replica
            .get_manifest(&user(), &app, &latest)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ManifestUnknown(_)), "{err}");
    });
}
