//! The quota checks of the [`MetaStore`] contract: CRUD, what a scope
//! uses, refusals inside the push steps, and concurrent pushes.
//!
//! Pinned here: a scope's use is its distinct linked blobs plus its
//! distinct manifests, each once; covering quotas are asked in the order
//! of [`QuotaScope::covering`] (the repository's, then the namespaces
//! from the outermost) and the first refusal is the answer; a push that
//! adds nothing to a scope passes even over its limit; mirrored content
//! is never charged.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::join_all;

use super::super::support::{err_of, ok, repo, t};
use super::{image, info, page, put, session, upload, upload_as, Store, ALL};
use crate::audit::EventType;
use crate::digest::Digest;
use crate::error::Error;
use crate::names::RepoName;
use crate::ports::{NewManifest, Provenance};
use crate::quota::{QuotaLimit, QuotaRefusal, QuotaScope, QuotaUsage};
use crate::testing::{audited, pushed};

fn scope(s: &str) -> QuotaScope {
    QuotaScope::parse(s).expect("the contract uses valid scopes")
}

fn limit(bytes: u64) -> QuotaLimit {
    QuotaLimit::new(bytes).expect("the contract uses valid limits")
}

async fn set(s: &Store, on: &str, bytes: u64) -> i64 {
    ok(
        s.set_quota(&scope(on), limit(bytes), 100).await,
        "set_quota",
    )
    .id
}

async fn listed(s: &Store) -> Vec<QuotaUsage> {
    ok(s.quotas().await, "quotas")
}

/// What the listing says `on` uses.
async fn used(s: &Store, on: &str) -> u64 {
    listed(s)
        .await
        .into_iter()
        .find(|q| q.quota.scope.to_string() == on)
        .unwrap_or_else(|| panic!("no quota on {on}"))
        .used_bytes
}

fn refusal(e: Error, what: &str) -> QuotaRefusal {
    match e {
        Error::QuotaExceeded(r) => *r,
        other => panic!("{what}: expected QuotaExceeded, got {other:?}"),
    }
}

/// What `scope` uses, recomputed from scratch from every repository's
/// detail: its distinct layers plus its distinct manifests.
pub(in crate::testing) async fn recomputed(s: &Store, scope: &QuotaScope) -> u64 {
    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut manifests: BTreeMap<Digest, u64> = BTreeMap::new();
    let names = ok(s.list_repositories(&page(None, ALL)).await, "list");
    for name in names.iter().filter(|n| scope.covers(n)) {
        let Some(detail) = ok(s.repository_detail(name).await, "detail") else {
            continue;
        };
        blobs.extend(detail.layers.into_iter().map(|b| (b.digest, b.size)));
        manifests.extend(detail.manifests.into_iter().map(|m| (m.digest, m.size)));
    }
    blobs.values().sum::<u64>() + manifests.values().sum::<u64>()
}

pub(super) async fn quotas_crud(s: Store) {
    assert!(listed(&s).await.is_empty(), "a new store has no quotas");
    let ns = ok(s.set_quota(&scope("team-a/"), limit(100), 2).await, "set");
    assert!(ns.id > 0, "ids are positive");
    assert_eq!(
        (ns.scope.to_string(), ns.limit_bytes.bytes()),
        ("team-a/".into(), 100)
    );
    let one = ok(s.set_quota(&scope("team-a/app"), limit(50), 2).await, "set");
    assert_ne!(one.id, ns.id);
    let again = ok(
        s.set_quota(&scope("team-a/"), limit(200), 2).await,
        "set again",
    );
    assert_eq!(again.id, ns.id, "setting a scope again keeps its quota");
    assert_eq!(again.limit_bytes.bytes(), 200);
    let e = err_of(s.set_quota(&scope("b/"), limit(1), 2).await, "past the cap");
    assert!(matches!(e, Error::Conflict(_)), "{e:?}");
    let all = listed(&s).await;
    let got: Vec<(String, u64, u64)> = all
        .iter()
        .map(|q| {
            (
                q.quota.scope.to_string(),
                q.quota.limit_bytes.bytes(),
                q.used_bytes,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("team-a/".into(), 200, 0), ("team-a/app".into(), 50, 0)],
        "by scope, each with its use"
    );
    let gone = ok(s.delete_quota(ns.id).await, "delete");
    assert_eq!(gone.map(|q| q.scope.to_string()), Some("team-a/".into()));
    assert_eq!(ok(s.delete_quota(ns.id).await, "delete again"), None);
    let fresh = ok(
        s.set_quota(&scope("team-a/"), limit(5), 2).await,
        "set after delete",
    );
    assert!(fresh.id > one.id, "ids are never reused");
}

pub(super) async fn quota_use_counts_each_blob_and_manifest_once_per_scope(s: Store) {
    let (a, b, other) = (repo("team/a"), repo("team/b"), repo("teams/a"));
    set(&s, "team/", 1 << 20).await;
    set(&s, "team/a", 1 << 20).await;
    set(&s, "teams/", 1 << 20).await;
    let shared = upload(&s, &a, b"shared layer", t(1)).await;
    let own = upload(&s, &a, b"a's own", t(1)).await;
    ok(
        s.mount_blob(
            &a,
            &b,
            &shared.digest,
            t(2),
            Provenance::Pushed,
            &audited(EventType::BlobMounted, t(2)),
        )
        .await,
        "mount",
    );
    upload(&s, &b, b"shared layer", t(3)).await;
    upload(&s, &other, b"shared layer", t(3)).await;
    let m = image(&a, "m", &[&shared, &own], t(4));
    put(&s, &m).await;
    // The same manifest (same bytes) in b: the helper's references are
    // not part of the bytes.
    put(&s, &image(&b, "m", &[&shared], t(4))).await;
    let manifest = m.raw.len() as u64;
    assert_eq!(used(&s, "team/a").await, shared.size + own.size + manifest);
    assert_eq!(
        used(&s, "team/").await,
        shared.size + own.size + manifest,
        "a blob and a manifest in two repositories count once for the namespace"
    );
    assert_eq!(used(&s, "teams/").await, shared.size, "teams/ is not team/");
    for q in listed(&s).await {
        assert_eq!(
            q.used_bytes,
            recomputed(&s, &q.quota.scope).await,
            "{}",
            q.quota.scope
        );
    }
    // The repository's use is the size its listing shows.
    let detail = ok(s.repository_detail(&a).await, "detail").expect("team/a exists");
    assert_eq!(detail.summary.total_size, used(&s, "team/a").await);
    ok(
        s.unlink_blob(&a, &own.digest, &crate::testing::blob_unlink())
            .await,
        "unlink",
    );
    assert_eq!(used(&s, "team/").await, shared.size + manifest);
}

pub(super) async fn pushes_over_a_quota_are_refused_and_change_nothing(s: Store) {
    let (a, b, free) = (repo("q/a"), repo("q/b"), repo("free"));
    set(&s, "q/", 10).await;
    let six = upload(&s, &a, b"123456", t(1)).await;
    // An upload that would pass the limit.
    let x = session(&s, &b, t(2)).await;
    let more = info(b"abcdef");
    let e = err_of(
        s.complete_upload(
            &x.id,
            &more,
            t(2),
            Provenance::Pushed,
            &audited(EventType::BlobUploaded, t(2)),
        )
        .await,
        "upload over the quota",
    );
    let r = refusal(e, "upload");
    assert_eq!(
        (r.scope.to_string(), r.used, r.needs, r.limit.bytes()),
        ("q/".into(), 6, 6, 10)
    );
    assert_eq!(super::linked(&s, &b, &more.digest).await, None, "no link");
    assert!(!super::has_row(&s, &more.digest).await, "no blob row");
    assert!(
        ok(s.get_upload(&x.id).await, "get_upload").is_some(),
        "the session stays"
    );
    // A mount that would pass it links nothing and makes no repository.
    let outside = upload(&s, &free, b"ghijkl", t(3)).await;
    let e = err_of(
        s.mount_blob(
            &free,
            &repo("q/c"),
            &outside.digest,
            t(3),
            Provenance::Pushed,
            &audited(EventType::BlobMounted, t(3)),
        )
        .await,
        "mount over the quota",
    );
    assert_eq!(refusal(e, "mount").needs, 6);
    assert!(!super::exists(&s, &repo("q/c")).await, "no repository made");
    // Content already in the scope adds nothing and passes.
    upload(&s, &b, b"123456", t(4)).await;
    ok(
        s.mount_blob(
            &a,
            &repo("q/c"),
            &six.digest,
            t(4),
            Provenance::Pushed,
            &audited(EventType::BlobMounted, t(4)),
        )
        .await,
        "mount of content the namespace holds",
    );
    // A manifest whose bytes would pass it stores nothing.
    let m = image(&a, "too big for the rest", &[&six], t(5));
    let e = err_of(
        s.put_manifest(m.clone(), &pushed(&m)).await,
        "manifest over the quota",
    );
    assert_eq!(refusal(e, "manifest").needs, m.raw.len() as u64);
    assert!(!super::has_manifest(&s, &a, &m.digest).await, "no manifest");
    // Mirrored content is not charged.
    upload_as(&s, &b, b"mirrored bytes", t(6), Provenance::Mirrored).await;
    assert_eq!(
        used(&s, "q/").await,
        6 + 14,
        "mirrored content still counts as used"
    );
    // With a lowered limit, pushing what is there already passes.
    set(&s, "q/", 1).await;
    upload(&s, &a, b"123456", t(7)).await;
    // Both would be passed: the repository's own quota is asked first.
    set(&s, "q/", 21).await;
    set(&s, "q/a", 7).await;
    let x = session(&s, &a, t(8)).await;
    let e = err_of(
        s.complete_upload(
            &x.id,
            &info(b"12"),
            t(8),
            Provenance::Pushed,
            &audited(EventType::BlobUploaded, t(8)),
        )
        .await,
        "repository quota",
    );
    assert_eq!(refusal(e, "repository quota").scope.to_string(), "q/a");
}

pub(super) async fn concurrent_pushes_never_pass_a_quota(s: Store) {
    set(&s, "c/", 10).await;
    let names: Vec<RepoName> = (0..8).map(|i| repo(&format!("c/r{i}"))).collect();
    let mut sessions = Vec::new();
    for name in &names {
        sessions.push(session(&s, name, t(1)).await);
    }
    let blobs: Vec<_> = (0..8).map(|i| info(format!("ab{i}").as_bytes())).collect();
    let event = audited(EventType::BlobUploaded, t(2));
    let done = join_all(
        sessions
            .iter()
            .zip(&blobs)
            .map(|(x, b)| s.complete_upload(&x.id, b, t(2), Provenance::Pushed, &event)),
    )
    .await;
    let passed = done.iter().filter(|r| r.is_ok()).count();
    for r in done {
        if let Err(e) = r {
            refusal(e, "a concurrent upload");
        }
    }
    assert_eq!(passed, 3, "3 bytes each: three fit in 10");
    assert_eq!(used(&s, "c/").await, 9);
    // Manifests too.
    // Of one size, all different (the same bytes would count once).
    let manifests: Vec<NewManifest> = names
        .iter()
        .enumerate()
        .map(|(i, n)| image(n, &format!("size-{i}"), &[], t(3)))
        .collect();
    set(&s, "c/", 9 + manifests[0].raw.len() as u64).await;
    let events: Vec<_> = manifests.iter().map(pushed).collect();
    let done = join_all(
        manifests
            .iter()
            .zip(&events)
            .map(|(m, e)| s.put_manifest(m.clone(), e)),
    )
    .await;
    assert_eq!(
        done.iter().filter(|r| r.is_ok()).count(),
        1,
        "one manifest fits"
    );
}

/// A small deterministic generator, so every adapter sees the same
/// sequence.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

pub(super) async fn quota_use_equals_a_recomputation_after_any_changes(s: Store) {
    let names: Vec<RepoName> = ["n/a", "n/b", "n/x/c", "m"]
        .iter()
        .map(|n| repo(n))
        .collect();
    let scopes = ["n/", "n/x/", "n/a", "m"];
    for sc in scopes {
        set(&s, sc, 1 << 40).await;
    }
    let contents: Vec<Vec<u8>> = (0..6).map(|i| vec![b'z'; 3 + 7 * i]).collect();
    let mut rng = Lcg(15);
    let mut pushed_manifests: Vec<NewManifest> = Vec::new();
    for step in 0..60i64 {
        let r = &names[rng.below(names.len() as u64) as usize];
        let data = &contents[rng.below(contents.len() as u64) as usize];
        match rng.below(6) {
            0 | 1 => {
                upload(&s, r, data, t(step)).await;
            }
            2 => {
                let from = &names[rng.below(names.len() as u64) as usize];
                let d = info(data).digest;
                ok(
                    s.mount_blob(
                        from,
                        r,
                        &d,
                        t(step),
                        Provenance::Pushed,
                        &audited(EventType::BlobMounted, t(step)),
                    )
                    .await,
                    "mount",
                );
            }
            3 => {
                let m = image(r, &format!("m{}", rng.below(4)), &[], t(step));
                put(&s, &m).await;
                pushed_manifests.push(m);
            }
            4 => {
                ok(
                    s.unlink_blob(r, &info(data).digest, &crate::testing::blob_unlink())
                        .await,
                    "unlink",
                );
            }
            _ => {
                if let Some(m) = pushed_manifests.get(rng.below(8) as usize) {
                    let guard = crate::policy::TagGuard::open();
                    ok(
                        s.delete_manifest(
                            &m.repository,
                            &m.digest,
                            &guard,
                            crate::ports::ManifestDelete::WithTags,
                            &crate::testing::manifest_deletion(),
                        )
                        .await,
                        "delete",
                    );
                }
            }
        }
        let listed = listed(&s).await;
        let want: BTreeSet<String> = scopes.iter().map(|x| x.to_string()).collect();
        assert_eq!(
            listed
                .iter()
                .map(|q| q.quota.scope.to_string())
                .collect::<BTreeSet<_>>(),
            want
        );
        for q in listed {
            assert_eq!(
                q.used_bytes,
                recomputed(&s, &q.quota.scope).await,
                "{} after step {step}",
                q.quota.scope
            );
        }
    }
}
