//! The [`MetaStore`] contract: repositories, manifests and tags, blob rows
//! and links, upload sessions, GC's sweep, policy rules and the audit log.
//!
//! Where the port's docs leave a choice open, these checks pin the answer
//! (and [`crate::testing::FakeMetaStore`] gives it):
//! - a repository's `created` is the time passed with its first write
//!   (`session.active`, `at` or `manifest.created`); reads, a mount that
//!   finds nothing and a failed `put_manifest` create no repository;
//! - pages resume strictly after `last` in byte order, `last` need not
//!   exist, and `limit: 0` gives nothing;
//! - `put_manifest` checks blobs before children, in the order given (the
//!   use case sorts them); a re-put keeps the stored record (`created`,
//!   bytes) and only moves the tag;
//! - `referrers` and `list_blobs` come by digest; `repository_detail`'s
//!   manifests newest first;
//! - the sweep's comparisons are strict: a row or link made exactly at the
//!   cutoff protects the blob; re-uploading or re-mounting re-stamps a link;
//! - retention policies list by id, and their ids are never reused;
//!   `manifest_graph` lists manifests by digest (children by digest) and
//!   tags by name, with the time each tag was last set;
//! - `list_rules` returns disabled rules too, and rule ids are positive,
//!   increasing and never reused (SQLite: `AUTOINCREMENT`);
//! - the audit log is newest first by event time, events of the same time
//!   last-recorded first; `since`/`until` are inclusive
//!   ([`crate::audit::AuditQuery::matches`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::TryStreamExt;

use super::support::{collect, err_of, new_id, ok, repo, sha256, sorted, t, tag};
use super::{checks, run_suite, Check};
use crate::audit::{AuditQuery, EventType, NewAuditEvent};
use crate::digest::Digest;
use crate::error::Error;
use crate::ids::UploadId;
use crate::media::{MediaType, OCI_IMAGE_INDEX, OCI_IMAGE_MANIFEST};
use crate::names::{Reference, RepoName};
use crate::policy::{
    Effect, Engine, PolicyEngine, PolicyInput, RepoPattern, Rule, RuleDraft, TagGuard, TagPattern,
};
use crate::ports::{
    BlobInfo, ManifestSummary, MetaStore, NewManifest, Page, Provenance, RepoCursor, RepoQuery,
    RepoSort, RepoSummary, Revocation, SortOrder, StoreTotals, TagRef, UploadCaps, UploadSession,
    UploadState,
};
use crate::principal::{AccountType, Action, Principal, Role};
use crate::retention::{GraphManifest, GraphTag, ManifestGraph, RetentionSpec};
use crate::testing::{audited, pushed};
use crate::time::Timestamp;

mod events;
mod quotas;

use events::{
    delivery_states_and_pruning, events_exist_exactly_for_committed_changes,
    tag_deletions_name_their_digest_and_event_ids_are_distinct_and_stable,
};
use quotas::{
    concurrent_pushes_never_pass_a_quota, pushes_over_a_quota_are_refused_and_change_nothing,
    quota_use_counts_each_blob_and_manifest_once_per_scope,
    quota_use_equals_a_recomputation_after_any_changes, quotas_crud,
};

type Store = Arc<dyn MetaStore>;

/// Every check of the suite, in the order [`run_meta_store_contract`] runs
/// them.
pub const META_STORE_CHECKS: &[Check<dyn MetaStore>] = checks![dyn MetaStore =>
    repositories_come_into_being_on_first_write,
    pruning_removes_only_an_empty_repository,
    repositories_list_in_lexical_pages,
    manifests_by_tag_and_by_digest,
    tags_list_in_lexical_pages,
    a_tag_moves_to_the_latest_put,
    several_tags_move_in_one_step,
    re_putting_a_manifest_only_moves_the_tag,
    put_manifest_with_a_missing_blob_stores_nothing,
    put_manifest_with_a_missing_child_stores_nothing,
    a_mirrored_manifest_needs_no_blobs_yet_and_protects_them_once_there,
    deleting_a_manifest_deletes_its_tags,
    a_tag_guard_is_asked_inside_the_step,
    concurrent_pushes_never_move_a_guarded_tag,
    delete_tag_removes_only_the_tag,
    planned_deletes_keep_what_changed,
    referrers_by_subject,
    a_completed_upload_is_visible_at_once,
    completing_a_known_blob_adds_a_link,
    upload_sessions,
    open_sessions_are_capped_per_owner_and_per_repository,
    concurrent_opens_never_pass_a_cap,
    mount_links_a_blob_the_source_holds,
    mount_from_a_repository_without_the_blob_changes_nothing,
    a_blob_names_the_repositories_holding_it,
    unlink_keeps_the_blob_row,
    sweep_respects_the_cutoff,
    sweep_reads_every_link_time,
    sweep_spares_blobs_referenced_in_any_repository,
    sweep_goes_a_batch_at_a_time,
    sweep_goes_on_past_windows_with_no_garbage,
    long_listings_come_whole_in_order_while_they_change,
    delete_repository_returns_its_uploads_and_keeps_blob_rows,
    empty_repository_keeps_its_sessions_and_blob_rows,
    repository_summaries_and_detail,
    repository_sizes_follow_every_change,
    repository_listing_filters_sorts_and_pages,
    policy_rules_crud,
    retention_policies_crud,
    manifest_graph_shows_tags_children_and_subjects,
    revocations_last_until_the_token_expires,
    audit_filters_order_and_window,
    pushed_repositories_are_those_under_a_prefix_with_a_pushed_manifest,
    pushed_repositories_include_those_with_pushed_blob_links_alone,
    changes_record_their_event_in_the_same_step,
    concurrent_puts_to_one_tag_leave_it_on_one,
    concurrent_completions_of_one_blob,
    totals_count_blob_rows_once_and_open_sessions,
    probe_passes_and_changes_nothing,
    quotas_crud,
    quota_use_counts_each_blob_and_manifest_once_per_scope,
    pushes_over_a_quota_are_refused_and_change_nothing,
    concurrent_pushes_never_pass_a_quota,
    quota_use_equals_a_recomputation_after_any_changes,
    events_exist_exactly_for_committed_changes,
    tag_deletions_name_their_digest_and_event_ids_are_distinct_and_stable,
    delivery_states_and_pruning,
];

/// Runs every [`MetaStore`] check, each on a fresh empty store from
/// `make`; panics naming the first check that fails.
pub async fn run_meta_store_contract<F, Fut>(make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn MetaStore>>,
{
    run_suite("MetaStore", META_STORE_CHECKS, make).await;
}

// ---- helpers ---------------------------------------------------------

fn page(last: Option<&str>, limit: usize) -> Page {
    Page {
        last: last.map(str::to_string),
        limit,
    }
}

const ALL: usize = 1000;

pub(super) fn info(data: &[u8]) -> BlobInfo {
    BlobInfo {
        digest: sha256(data),
        size: data.len() as u64,
    }
}

fn media(s: &str) -> MediaType {
    MediaType::new(s).expect("the contract uses valid media types")
}

/// An upload session in `r` opened at `at`, created in the store.
async fn session(s: &Store, r: &RepoName, at: Timestamp) -> UploadSession {
    let session = UploadSession {
        id: new_id(),
        repository: r.clone(),
        state: UploadState::default(),
        active: at,
    };
    ok(
        s.create_upload(&session, "contract", &UploadCaps::NONE)
            .await,
        "create_upload",
    );
    session
}

/// Uploads `data` into `r` at `at` (a session, then its completion).
pub(super) async fn upload(s: &Store, r: &RepoName, data: &[u8], at: Timestamp) -> BlobInfo {
    upload_as(s, r, data, at, Provenance::Pushed).await
}

/// Uploads `data` into `r` at `at` as `provenance` says: a client's
/// upload, or a pull-through cache's fill.
async fn upload_as(
    s: &Store,
    r: &RepoName,
    data: &[u8],
    at: Timestamp,
    provenance: Provenance,
) -> BlobInfo {
    let session = session(s, r, at).await;
    let blob = info(data);
    let event = match provenance {
        Provenance::Pushed => EventType::BlobUploaded,
        Provenance::Mirrored => EventType::ProxyFetched,
    };
    ok(
        s.complete_upload(&session.id, &blob, at, provenance, &audited(event, at))
            .await,
        "complete_upload",
    );
    blob
}

/// An image manifest in `r` named `name` (the name makes its bytes
/// unique), referencing `blobs`, created at `at`.
pub(super) fn image(r: &RepoName, name: &str, blobs: &[&BlobInfo], at: Timestamp) -> NewManifest {
    let raw = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_IMAGE_MANIFEST}","annotations":{{"name":"{name}"}}}}"#
    );
    NewManifest {
        repository: r.clone(),
        digest: sha256(raw.as_bytes()),
        media_type: media(OCI_IMAGE_MANIFEST),
        raw: Bytes::from(raw),
        subject: None,
        artifact_type: None,
        blobs: sorted(blobs.iter().map(|b| b.digest.clone()).collect()),
        children: Vec::new(),
        tags: Vec::new(),
        tag_guard: TagGuard::open(),
        created: at,
        provenance: Provenance::Pushed,
    }
}

/// An index in `r` over `children`.
fn index(r: &RepoName, name: &str, children: Vec<Digest>, at: Timestamp) -> NewManifest {
    let raw = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_IMAGE_INDEX}","annotations":{{"name":"{name}"}}}}"#
    );
    NewManifest {
        repository: r.clone(),
        digest: sha256(raw.as_bytes()),
        media_type: media(OCI_IMAGE_INDEX),
        raw: Bytes::from(raw),
        subject: None,
        artifact_type: None,
        blobs: Vec::new(),
        children,
        tags: Vec::new(),
        tag_guard: TagGuard::open(),
        created: at,
        provenance: Provenance::Pushed,
    }
}

pub(super) fn tagged(mut m: NewManifest, name: &str) -> NewManifest {
    m.tags = vec![tag(name)];
    m
}

fn at_time(mut m: NewManifest, at: Timestamp) -> NewManifest {
    m.created = at;
    m
}

pub(super) async fn put(s: &Store, m: &NewManifest) {
    ok(
        s.put_manifest(m.clone(), &pushed(m)).await,
        &format!("put_manifest {}", m.digest),
    );
}

async fn by_tag(s: &Store, r: &RepoName, name: &str) -> Option<Digest> {
    ok(
        s.get_manifest(r, &Reference::Tag(tag(name))).await,
        "get_manifest by tag",
    )
    .map(|m| m.digest)
}

async fn has_manifest(s: &Store, r: &RepoName, d: &Digest) -> bool {
    ok(
        s.get_manifest(r, &Reference::Digest(d.clone())).await,
        "get_manifest by digest",
    )
    .is_some()
}

async fn tags(s: &Store, r: &RepoName) -> Vec<String> {
    ok(s.list_tags(r, &page(None, ALL)).await, "list_tags")
        .into_iter()
        .map(|t| t.to_string())
        .collect()
}

async fn repos(s: &Store, p: Page) -> Vec<String> {
    ok(s.list_repositories(&p).await, "list_repositories")
        .into_iter()
        .map(|r| r.to_string())
        .collect()
}

async fn exists(s: &Store, r: &RepoName) -> bool {
    ok(s.repository_exists(r).await, "repository_exists")
}

async fn linked(s: &Store, r: &RepoName, d: &Digest) -> Option<BlobInfo> {
    ok(s.blob_in_repository(r, d).await, "blob_in_repository")
}

async fn has_row(s: &Store, d: &Digest) -> bool {
    ok(s.blob_exists(d).await, "blob_exists")
}

/// A whole GC phase one, in one step (the contract's stores hold far
/// fewer than 1000 rows).
async fn sweep(s: &Store, cutoff: Timestamp) -> Vec<BlobInfo> {
    let step = ok(
        s.sweep_unreferenced_blobs(cutoff, None, 1000).await,
        "sweep_unreferenced_blobs",
    );
    assert_eq!(step.next, None, "one step looked at every row");
    let mut swept = step.swept;
    swept.sort_by(|a, b| a.digest.cmp(&b.digest));
    swept
}

fn infos(mut v: Vec<BlobInfo>) -> Vec<BlobInfo> {
    v.sort_by(|a, b| a.digest.cmp(&b.digest));
    v
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---- repositories ----------------------------------------------------

async fn pruning_removes_only_an_empty_repository(s: Store) {
    let r = repo("prune/me");
    let sess = session(&s, &r, t(1)).await;
    assert!(
        !ok(s.prune_repository(&r).await, "prune_repository"),
        "a repository with an upload session was pruned"
    );
    ok(s.delete_upload(&sess.id).await, "delete_upload");
    assert!(ok(s.prune_repository(&r).await, "prune_repository"));
    assert!(!exists(&s, &r).await, "the empty repository is still there");
    assert!(
        !ok(s.prune_repository(&r).await, "prune_repository"),
        "pruning an absent repository reported a deletion"
    );
    let kept = repo("prune/kept");
    let sess = session(&s, &kept, t(2)).await;
    ok(
        s.complete_upload(
            &sess.id,
            &info(b"kept"),
            t(3),
            Provenance::Pushed,
            &audited(EventType::BlobUploaded, t(3)),
        )
        .await,
        "complete_upload",
    );
    assert!(
        !ok(s.prune_repository(&kept).await, "prune_repository"),
        "a repository with a blob link was pruned"
    );
    assert!(exists(&s, &kept).await);
}

async fn repositories_come_into_being_on_first_write(s: Store) {
    assert!(
        repos(&s, page(None, ALL)).await.is_empty(),
        "a new store lists repositories"
    );
    let ghost = repo("ghost");
    assert!(!exists(&s, &ghost).await);
    // Reads create nothing.
    ok(
        s.get_manifest(&ghost, &Reference::Tag(tag("latest"))).await,
        "get_manifest",
    );
    ok(s.list_tags(&ghost, &page(None, ALL)).await, "list_tags");
    ok(
        s.blob_in_repository(&ghost, &sha256(b"x")).await,
        "blob_in_repository",
    );
    ok(s.referrers(&ghost, &sha256(b"x")).await, "referrers");
    assert_eq!(
        ok(s.repository_detail(&ghost).await, "repository_detail"),
        None
    );
    assert!(!exists(&s, &ghost).await, "a read created a repository");

    let up = repo("up");
    let session = session(&s, &up, t(1)).await;
    assert!(
        !exists(&s, &up).await,
        "an upload session alone made the repository exist"
    );
    assert!(
        repos(&s, page(None, ALL)).await.is_empty(),
        "an upload session alone made the repository listed"
    );
    ok(
        s.complete_upload(
            &session.id,
            &info(b"layer"),
            t(2),
            Provenance::Pushed,
            &audited(EventType::BlobUploaded, t(2)),
        )
        .await,
        "complete_upload",
    );
    assert!(exists(&s, &up).await, "a completed upload's link made none");

    let mnt = repo("mnt");
    let mounted = s
        .mount_blob(
            &up,
            &mnt,
            &sha256(b"layer"),
            t(3),
            Provenance::Pushed,
            &audited(EventType::BlobMounted, t(3)),
        )
        .await;
    assert!(ok(mounted, "mount_blob").is_some());
    assert!(exists(&s, &mnt).await, "a mount creates its target");

    let man = repo("man");
    put(&s, &image(&man, "m", &[], t(4))).await;
    assert!(
        exists(&s, &man).await,
        "put_manifest creates the repository"
    );

    let (no_mount, no_put) = (repo("no-mount"), repo("no-put"));
    let missing = s
        .mount_blob(
            &up,
            &no_mount,
            &sha256(b"other"),
            t(5),
            Provenance::Pushed,
            &audited(EventType::BlobMounted, t(5)),
        )
        .await;
    assert!(ok(missing, "mount_blob of a blob the source lacks").is_none());
    let m = image(&no_put, "m", &[&info(b"absent")], t(6));
    let failed = s.put_manifest(m.clone(), &pushed(&m)).await;
    err_of(failed, "put_manifest with an absent blob");
    assert!(
        !exists(&s, &no_mount).await,
        "a failed mount created its target"
    );
    assert!(
        !exists(&s, &no_put).await,
        "a failed put_manifest created the repository"
    );
    assert_eq!(
        repos(&s, page(None, ALL)).await,
        strings(&["man", "mnt", "up"])
    );

    // The last content going takes the repository out of every listing.
    let gone = s
        .unlink_blob(&mnt, &sha256(b"layer"), &crate::testing::blob_unlink())
        .await;
    assert!(ok(gone, "unlink_blob"));
    assert!(
        !exists(&s, &mnt).await,
        "a repository without content exists"
    );
    assert_eq!(
        repos(&s, page(None, ALL)).await,
        strings(&["man", "up"]),
        "a repository whose last link went is still listed"
    );
}

async fn repositories_list_in_lexical_pages(s: Store) {
    for name in ["b", "a/b", "ab", "a-b", "a", "a/b/c", "a0"] {
        upload(&s, &repo(name), name.as_bytes(), t(1)).await;
    }
    // Rows without content are skipped, wherever they fall in a page.
    for name in ["a/a", "aa", "c"] {
        session(&s, &repo(name), t(1)).await;
    }
    // Byte order: '-' < '/' < '0' < 'b'.
    let all = strings(&["a", "a-b", "a/b", "a/b/c", "a0", "ab", "b"]);
    assert_eq!(
        repos(&s, page(None, ALL)).await,
        all,
        "repositories in lexical order"
    );
    assert_eq!(repos(&s, page(None, 3)).await, all[..3]);
    assert_eq!(
        repos(&s, page(Some("a/b"), 3)).await,
        all[3..6],
        "resume after `last`"
    );
    assert_eq!(
        repos(&s, page(Some("ab"), 3)).await,
        all[6..],
        "a short last page"
    );
    assert!(
        repos(&s, page(Some("b"), 3)).await.is_empty(),
        "after the last one"
    );
    assert!(
        repos(&s, page(Some("zzz"), 3)).await.is_empty(),
        "`last` past the end"
    );
    assert_eq!(
        repos(&s, page(Some("a/a"), 2)).await,
        all[2..4],
        "`last` need not exist"
    );
    assert!(repos(&s, page(None, 0)).await.is_empty(), "limit 0");
    assert!(
        repos(&s, page(Some("a"), 0)).await.is_empty(),
        "limit 0 after `last`"
    );
}

// ---- manifests and tags ----------------------------------------------

async fn manifests_by_tag_and_by_digest(s: Store) {
    let r = repo("app");
    let layer = upload(&s, &r, b"layer", t(1)).await;
    let subject = sha256(b"some subject manifest");
    let mut m = tagged(image(&r, "app", &[&layer], t(2)), "v1");
    m.subject = Some(subject.clone());
    m.artifact_type = Some(media("application/vnd.example.sbom"));
    put(&s, &m).await;

    let by_digest = ok(
        s.get_manifest(&r, &Reference::Digest(m.digest.clone()))
            .await,
        "get by digest",
    )
    .expect("the manifest is there by digest");
    assert_eq!(by_digest.repository, r);
    assert_eq!(by_digest.digest, m.digest);
    assert_eq!(by_digest.media_type, m.media_type);
    assert_eq!(
        by_digest.raw, m.raw,
        "raw bytes come back exactly as stored"
    );
    assert_eq!(by_digest.subject, Some(subject));
    assert_eq!(by_digest.artifact_type, m.artifact_type);
    assert_eq!(by_digest.created, t(2));
    let via_tag = ok(
        s.get_manifest(&r, &Reference::Tag(tag("v1"))).await,
        "get by tag",
    );
    assert_eq!(
        via_tag,
        Some(by_digest),
        "by tag and by digest give the same record"
    );

    assert_eq!(by_tag(&s, &r, "v2").await, None, "unknown tag");
    assert!(
        !has_manifest(&s, &r, &sha256(b"unknown")).await,
        "unknown digest"
    );
    let other = repo("other");
    session(&s, &other, t(3)).await;
    assert!(
        !has_manifest(&s, &other, &m.digest).await,
        "a manifest is per repository"
    );
    assert_eq!(
        by_tag(&s, &other, "v1").await,
        None,
        "a tag is per repository"
    );
}

async fn tags_list_in_lexical_pages(s: Store) {
    let r = repo("app");
    let m = image(&r, "m", &[], t(1));
    for name in ["v1", "v10", "v2", "latest", "A", "_x"] {
        put(&s, &tagged(m.clone(), name)).await;
    }
    let all = strings(&["A", "_x", "latest", "v1", "v10", "v2"]);
    let list = |last: Option<&'static str>, limit| {
        let s = s.clone();
        let r = r.clone();
        async move {
            ok(s.list_tags(&r, &page(last, limit)).await, "list_tags")
                .into_iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(None, ALL).await, all, "tags in lexical (byte) order");
    assert_eq!(list(None, 2).await, all[..2]);
    assert_eq!(list(Some("_x"), 2).await, all[2..4]);
    assert_eq!(list(Some("v1"), 2).await, all[4..]);
    assert!(list(Some("v2"), 2).await.is_empty(), "after the last one");
    assert!(list(Some("zzz"), 2).await.is_empty(), "`last` past the end");
    assert_eq!(list(Some("b"), 1).await, all[2..3], "`last` need not exist");
    assert!(list(None, 0).await.is_empty(), "limit 0");
    assert!(
        tags(&s, &repo("ghost")).await.is_empty(),
        "an unknown repository has no tags"
    );
}

async fn a_tag_moves_to_the_latest_put(s: Store) {
    let r = repo("app");
    let m1 = tagged(image(&r, "one", &[], t(1)), "latest");
    let m2 = tagged(image(&r, "two", &[], t(2)), "latest");
    put(&s, &m1).await;
    assert_eq!(by_tag(&s, &r, "latest").await, Some(m1.digest.clone()));
    put(&s, &m2).await;
    assert_eq!(
        by_tag(&s, &r, "latest").await,
        Some(m2.digest.clone()),
        "the tag moved"
    );
    assert!(
        has_manifest(&s, &r, &m1.digest).await,
        "the old manifest stays by digest"
    );
    assert_eq!(tags(&s, &r).await, strings(&["latest"]));
}

async fn several_tags_move_in_one_step(s: Store) {
    let r = repo("app");
    let layer = upload(&s, &r, b"layer", t(1)).await;
    let m1 = tagged(image(&r, "one", &[], t(2)), "a");
    put(&s, &m1).await;
    let mut m2 = image(&r, "two", &[], t(3));
    m2.tags = vec![tag("a"), tag("b"), tag("c")];
    put(&s, &m2).await;
    for name in ["a", "b", "c"] {
        assert_eq!(
            by_tag(&s, &r, name).await,
            Some(m2.digest.clone()),
            "{name}"
        );
    }
    // A put that fails moves none of its tags.
    let mut m3 = image(&r, "three", &[&layer, &info(b"absent")], t(4));
    m3.tags = vec![tag("a"), tag("d")];
    err_of(
        s.put_manifest(m3.clone(), &pushed(&m3)).await,
        "put_manifest with an absent blob",
    );
    assert_eq!(by_tag(&s, &r, "a").await, Some(m2.digest.clone()));
    assert_eq!(tags(&s, &r).await, strings(&["a", "b", "c"]));
}

async fn re_putting_a_manifest_only_moves_the_tag(s: Store) {
    let r = repo("app");
    let m1 = image(&r, "one", &[], t(1));
    let m2 = image(&r, "two", &[], t(2));
    put(&s, &tagged(m1.clone(), "a")).await;
    put(&s, &at_time(tagged(m1.clone(), "b"), t(5))).await;
    assert_eq!(by_tag(&s, &r, "a").await, Some(m1.digest.clone()));
    assert_eq!(by_tag(&s, &r, "b").await, Some(m1.digest.clone()));
    let stored = ok(
        s.get_manifest(&r, &Reference::Digest(m1.digest.clone()))
            .await,
        "get",
    )
    .expect("m1 is stored");
    assert_eq!(
        stored.created,
        t(1),
        "a re-put replaced the stored manifest"
    );
    put(&s, &at_time(m1.clone(), t(6))).await;
    assert_eq!(
        tags(&s, &r).await,
        strings(&["a", "b"]),
        "a re-put without a tag changed tags"
    );

    put(&s, &tagged(m2.clone(), "a")).await;
    assert_eq!(by_tag(&s, &r, "a").await, Some(m2.digest.clone()));
    put(&s, &at_time(tagged(m1.clone(), "a"), t(7))).await;
    assert_eq!(
        by_tag(&s, &r, "a").await,
        Some(m1.digest.clone()),
        "re-put moves the tag back"
    );
    let detail = ok(s.repository_detail(&r).await, "repository_detail").expect("repo exists");
    assert_eq!(
        detail.summary.manifest_count, 2,
        "a re-put stored a second copy"
    );
}

async fn put_manifest_with_a_missing_blob_stores_nothing(s: Store) {
    let r = repo("app");
    let present = upload(&s, &r, b"present", t(1)).await;
    // Linked in another repository only: still missing here.
    let elsewhere = upload(&s, &repo("elsewhere"), b"elsewhere", t(1)).await;
    let absent = info(b"absent");
    let mut missing = sorted(vec![elsewhere.digest.clone(), absent.digest.clone()]);
    let m = tagged(image(&r, "m", &[&present, &elsewhere, &absent], t(2)), "v1");
    match err_of(
        s.put_manifest(m.clone(), &pushed(&m)).await,
        "put_manifest with missing blobs",
    ) {
        Error::ManifestBlobUnknown(d) => {
            assert_eq!(
                d,
                missing.remove(0),
                "ManifestBlobUnknown names the first missing blob"
            )
        }
        e => panic!("expected ManifestBlobUnknown, got {e:?}"),
    }
    assert!(
        !has_manifest(&s, &r, &m.digest).await,
        "the manifest was stored"
    );
    assert!(tags(&s, &r).await.is_empty(), "the tag was stored");
    let detail = ok(s.repository_detail(&r).await, "repository_detail").expect("repo exists");
    assert_eq!(detail.summary.manifest_count, 0);

    // Nothing was recorded as referenced either: the present blob can go.
    assert_eq!(
        sweep(&s, t(100)).await,
        infos(vec![present.clone(), elsewhere.clone()])
    );

    // After uploading the missing blobs the same push succeeds.
    let present = upload(&s, &r, b"present", t(200)).await;
    upload(&s, &r, b"elsewhere", t(200)).await;
    upload(&s, &r, b"absent", t(200)).await;
    put(
        &s,
        &image(&r, "m", &[&present, &elsewhere, &absent], t(201)),
    )
    .await;
    assert!(has_manifest(&s, &r, &m.digest).await);
}

async fn put_manifest_with_a_missing_child_stores_nothing(s: Store) {
    let r = repo("app");
    let child = image(&r, "child", &[], t(1));
    put(&s, &child).await;
    let other = repo("other");
    let foreign = image(&other, "foreign", &[], t(1));
    put(&s, &foreign).await;
    let absent = sha256(b"no such manifest");
    let mut missing = sorted(vec![foreign.digest.clone(), absent.clone()]);
    let children = sorted(vec![child.digest.clone(), foreign.digest.clone(), absent]);
    let idx = tagged(index(&r, "idx", children, t(2)), "multi");
    match err_of(
        s.put_manifest(idx.clone(), &pushed(&idx)).await,
        "put_manifest of an index with missing children",
    ) {
        Error::ManifestChildUnknown(d) => {
            assert_eq!(
                d,
                missing.remove(0),
                "ManifestChildUnknown names the first missing child"
            )
        }
        e => panic!("expected ManifestChildUnknown, got {e:?}"),
    }
    assert!(
        !has_manifest(&s, &r, &idx.digest).await,
        "the index was stored"
    );
    assert_eq!(by_tag(&s, &r, "multi").await, None, "the tag was stored");

    let good = tagged(index(&r, "good", vec![child.digest.clone()], t(3)), "multi");
    put(&s, &good).await;
    let stored = ok(
        s.get_manifest(&r, &Reference::Tag(tag("multi"))).await,
        "get index",
    )
    .expect("the index is stored");
    assert_eq!(stored.media_type, media(OCI_IMAGE_INDEX));
    assert_eq!(stored.digest, good.digest);
}

/// A pull-through cache stores an upstream manifest before any of its
/// blobs or children: nothing is required, the references are recorded,
/// and a blob cached later is safe from GC through them.
async fn a_mirrored_manifest_needs_no_blobs_yet_and_protects_them_once_there(s: Store) {
    let r = repo("hub/library/alpine");
    let layer = info(b"mirrored layer");
    let mut m = tagged(image(&r, "mirrored", &[&layer], t(1)), "latest");
    m.provenance = Provenance::Mirrored;
    put(&s, &m).await;
    assert_eq!(by_tag(&s, &r, "latest").await, Some(m.digest.clone()));
    let mut idx = index(
        &r,
        "mirrored-index",
        vec![sha256(b"a child never fetched")],
        t(1),
    );
    idx.provenance = Provenance::Mirrored;
    put(&s, &idx).await;
    assert!(has_manifest(&s, &r, &idx.digest).await);

    upload(&s, &r, b"mirrored layer", t(2)).await;
    assert!(
        sweep(&s, t(1000)).await.is_empty(),
        "swept a blob a mirrored manifest references"
    );
    assert_eq!(linked(&s, &r, &layer.digest).await, Some(layer));
}

/// A guard denying both tag actions on tags `v*` to everyone, in `r`.
pub(super) fn immutable_v_tags(r: &RepoName, action: Action) -> TagGuard {
    let engine = Engine::new();
    engine.set_rules(vec![RuleDraft {
        priority: 1,
        description: "v tags are immutable".into(),
        effect: Effect::Deny,
        actions: Action::TAG_ACTIONS.to_vec(),
        roles: vec![],
        account_types: vec![],
        subject: None,
        repositories: vec![],
        tags: vec![TagPattern::new("v*").expect("a valid pattern")],
        enabled: true,
    }
    .into_rule(1)]);
    let who = Principal::new("contract", AccountType::Human, vec![Role::Admin]);
    engine.tag_guard(&PolicyInput {
        principal: &who,
        action,
        repository: Some(r),
        tag: None,
    })
}

fn assert_tag_refused(e: Error, want_tag: &str, what: &str) {
    match e {
        Error::TagRefused(refusal) => {
            assert_eq!(refusal.tag.as_str(), want_tag, "{what}: the refused tag");
            assert_eq!(refusal.rule.map(|(id, _)| id), Some(1), "{what}: the rule");
        }
        e => panic!("{what}: expected TagRefused, got {e:?}"),
    }
}

/// A put, manifest delete and repository delete ask their guard about
/// each tag they would move or delete, and a refusal changes nothing.
/// Re-putting the manifest a guarded tag names, and creating a tag, are
/// not asked.
async fn a_tag_guard_is_asked_inside_the_step(s: Store) {
    let r = repo("guarded");
    let overwrite = immutable_v_tags(&r, Action::TagOverwrite);
    let delete = immutable_v_tags(&r, Action::TagDelete);
    let guarded = |mut m: NewManifest, tags: &[&str]| {
        m.tags = tags.iter().map(|t| tag(t)).collect();
        m.tag_guard = overwrite.clone();
        m
    };
    let m1 = guarded(image(&r, "one", &[], t(1)), &["v1"]);
    put(&s, &m1).await;
    put(&s, &m1).await;
    let m2 = guarded(image(&r, "two", &[], t(2)), &["new", "v1"]);
    assert_tag_refused(
        err_of(s.put_manifest(m2.clone(), &pushed(&m2)).await, "moving v1"),
        "v1",
        "moving v1",
    );
    assert_eq!(
        by_tag(&s, &r, "v1").await,
        Some(m1.digest.clone()),
        "v1 moved"
    );
    assert_eq!(by_tag(&s, &r, "new").await, None, "a refused push tagged");
    assert!(
        !has_manifest(&s, &r, &m2.digest).await,
        "a refused push stored"
    );

    let m2 = guarded(image(&r, "two", &[], t(2)), &["new", "v2"]);
    put(&s, &m2).await;
    assert_eq!(by_tag(&s, &r, "v2").await, Some(m2.digest.clone()));
    let m3 = guarded(image(&r, "three", &[], t(3)), &["new"]);
    put(&s, &m3).await;
    assert_eq!(
        by_tag(&s, &r, "new").await,
        Some(m3.digest.clone()),
        "new did not move"
    );

    assert_tag_refused(
        err_of(
            s.delete_manifest(
                &r,
                &m1.digest,
                &delete,
                crate::ports::ManifestDelete::WithTags,
                &crate::testing::manifest_deletion(),
            )
            .await,
            "deleting m1",
        ),
        "v1",
        "deleting the manifest v1 names",
    );
    assert!(has_manifest(&s, &r, &m1.digest).await, "m1 was deleted");
    assert!(
        ok(
            s.delete_manifest(
                &r,
                &m3.digest,
                &delete,
                crate::ports::ManifestDelete::WithTags,
                &crate::testing::manifest_deletion()
            )
            .await,
            "deleting m3"
        ),
        "a manifest whose tags are not guarded is deleted"
    );
    assert_tag_refused(
        err_of(
            s.delete_repository(&r, &delete, &crate::testing::repo_deletion())
                .await,
            "deleting the repository",
        ),
        "v1",
        "deleting the repository",
    );
    assert_eq!(
        by_tag(&s, &r, "v2").await,
        Some(m2.digest.clone()),
        "v2 went"
    );
    assert!(ok(
        s.delete_repository(&r, &TagGuard::open(), &crate::testing::repo_deletion())
            .await,
        "delete"
    )
    .is_some());
}

/// Pushes of different manifests under one guarded tag, all at once: one
/// creates the tag, every other is refused (none saw "no tag yet" and
/// moved it after the first), whether or not the repository existed.
async fn concurrent_pushes_never_move_a_guarded_tag(s: Store) {
    for (r, name) in [(repo("race/new"), "v1"), (repo("race/old"), "v2")] {
        if name == "v2" {
            put(&s, &tagged(image(&r, "seed", &[], t(1)), "latest")).await;
        }
        let guard = immutable_v_tags(&r, Action::TagOverwrite);
        let pushes: Vec<NewManifest> = (0..8)
            .map(|i| {
                let mut m = tagged(image(&r, &format!("racer {i}"), &[], t(2)), name);
                m.tag_guard = guard.clone();
                m
            })
            .collect();
        let results = join_all(pushes.iter().map(|m| {
            let s = s.clone();
            async move { s.put_manifest(m.clone(), &pushed(m)).await }
        }))
        .await;
        let winners: Vec<&NewManifest> = pushes
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(m, _)| m)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "{name}: {} pushes stored it",
            winners.len()
        );
        for e in results.into_iter().filter_map(Result::err) {
            assert_tag_refused(e, name, "a racing push");
        }
        assert_eq!(by_tag(&s, &r, name).await, Some(winners[0].digest.clone()));
    }
}

async fn deleting_a_manifest_deletes_its_tags(s: Store) {
    let r = repo("app");
    let m1 = image(&r, "one", &[], t(1));
    let m2 = tagged(image(&r, "two", &[], t(2)), "c");
    put(&s, &tagged(m1.clone(), "a")).await;
    put(&s, &tagged(m1.clone(), "b")).await;
    put(&s, &m2).await;
    assert!(
        ok(
            s.delete_manifest(
                &r,
                &m1.digest,
                &TagGuard::open(),
                crate::ports::ManifestDelete::WithTags,
                &crate::testing::manifest_deletion()
            )
            .await,
            "delete_manifest"
        ),
        "reports the manifest"
    );
    assert!(
        !has_manifest(&s, &r, &m1.digest).await,
        "the manifest is still there"
    );
    assert_eq!(
        by_tag(&s, &r, "a").await,
        None,
        "a tag outlived its manifest"
    );
    assert_eq!(
        tags(&s, &r).await,
        strings(&["c"]),
        "only the other manifest's tag stays"
    );
    assert!(has_manifest(&s, &r, &m2.digest).await);
    assert!(
        !ok(
            s.delete_manifest(
                &r,
                &m1.digest,
                &TagGuard::open(),
                crate::ports::ManifestDelete::WithTags,
                &crate::testing::manifest_deletion()
            )
            .await,
            "delete again"
        ),
        "second delete"
    );
    assert!(!ok(
        s.delete_manifest(
            &repo("ghost"),
            &m2.digest,
            &TagGuard::open(),
            crate::ports::ManifestDelete::WithTags,
            &crate::testing::manifest_deletion()
        )
        .await,
        "delete in unknown repo"
    ));
    let other = repo("other");
    session(&s, &other, t(3)).await;
    assert!(!ok(
        s.delete_manifest(
            &other,
            &m2.digest,
            &TagGuard::open(),
            crate::ports::ManifestDelete::WithTags,
            &crate::testing::manifest_deletion()
        )
        .await,
        "delete in another repo"
    ));
    assert!(
        has_manifest(&s, &r, &m2.digest).await,
        "a delete elsewhere removed it here"
    );
    assert!(
        exists(&s, &r).await,
        "deleting manifests keeps the repository"
    );
}

async fn delete_tag_removes_only_the_tag(s: Store) {
    let r = repo("app");
    let m = image(&r, "one", &[], t(1));
    put(&s, &tagged(m.clone(), "a")).await;
    put(&s, &tagged(m.clone(), "b")).await;
    assert!(
        ok(
            s.delete_tag(&r, &tag("a"), None, &crate::testing::tag_deletion())
                .await,
            "delete_tag"
        ),
        "reports the tag"
    );
    assert_eq!(tags(&s, &r).await, strings(&["b"]));
    assert!(
        has_manifest(&s, &r, &m.digest).await,
        "deleting a tag deleted the manifest"
    );
    assert!(!ok(
        s.delete_tag(&r, &tag("a"), None, &crate::testing::tag_deletion())
            .await,
        "delete_tag again"
    ));
    assert!(!ok(
        s.delete_tag(
            &repo("ghost"),
            &tag("b"),
            None,
            &crate::testing::tag_deletion()
        )
        .await,
        "delete_tag in unknown repo"
    ));
    assert!(ok(
        s.delete_tag(&r, &tag("b"), None, &crate::testing::tag_deletion())
            .await,
        "delete the last tag"
    ));
    assert!(tags(&s, &r).await.is_empty());
    assert!(
        has_manifest(&s, &r, &m.digest).await,
        "an untagged manifest stays"
    );
}

/// Retention's conditional deletes: a tag only while it points at the
/// planned digest, a manifest only while nothing refers to it, decided
/// in the store's step; what changed stays and `Conflict` says what.
async fn planned_deletes_keep_what_changed(s: Store) {
    use crate::ports::ManifestDelete::IfUnreferenced;
    let r = repo("app");
    let (m1, m2, m3) = (
        image(&r, "one", &[], t(1)),
        image(&r, "two", &[], t(1)),
        image(&r, "three", &[], t(1)),
    );
    put(&s, &tagged(m1.clone(), "a")).await;
    put(&s, &tagged(m2.clone(), "a")).await;
    put(&s, &m3).await;
    let deletion = crate::testing::tag_deletion;
    let moved = s
        .delete_tag(&r, &tag("a"), Some(&m1.digest), &deletion())
        .await;
    assert!(
        matches!(&moved, Err(Error::Conflict(m)) if m.contains(&m2.digest.to_string())),
        "a tag moved since the plan: {moved:?}"
    );
    assert_eq!(
        by_tag(&s, &r, "a").await,
        Some(m2.digest.clone()),
        "the moved tag stays"
    );
    assert!(ok(
        s.delete_tag(&r, &tag("a"), Some(&m2.digest), &deletion())
            .await,
        "delete_tag where planned"
    ));
    assert_eq!(by_tag(&s, &r, "a").await, None);
    assert!(!ok(
        s.delete_tag(&r, &tag("a"), Some(&m2.digest), &deletion())
            .await,
        "delete_tag of a gone tag"
    ));

    let manifest_deletion = crate::testing::manifest_deletion;
    let open = TagGuard::open();
    // Tagged since the plan.
    put(&s, &tagged(m1.clone(), "b")).await;
    kept_as_referenced(&s, &r, &m1.digest, "\"b\"").await;
    assert_eq!(
        by_tag(&s, &r, "b").await,
        Some(m1.digest.clone()),
        "its tag was deleted"
    );
    ok(
        s.delete_tag(&r, &tag("b"), None, &deletion()).await,
        "untag",
    );
    // A child of an index pushed since the plan.
    let idx = index(&r, "idx", vec![m1.digest.clone()], t(2));
    put(&s, &idx).await;
    kept_as_referenced(&s, &r, &m1.digest, &idx.digest.to_string()).await;
    // The subject of a referrer pushed since the plan.
    let mut sig = image(&r, "sig", &[], t(2));
    sig.subject = Some(m2.digest.clone());
    put(&s, &sig).await;
    kept_as_referenced(&s, &r, &m2.digest, &sig.digest.to_string()).await;
    // Nothing refers to it: deleted; then gone.
    assert!(ok(
        s.delete_manifest(&r, &m3.digest, &open, IfUnreferenced, &manifest_deletion())
            .await,
        "delete an unreferenced manifest"
    ));
    assert!(!has_manifest(&s, &r, &m3.digest).await);
    assert!(!ok(
        s.delete_manifest(&r, &m3.digest, &open, IfUnreferenced, &manifest_deletion())
            .await,
        "delete a gone manifest"
    ));
    // Once its referrers are gone, the index's child goes too.
    for d in [&idx.digest, &sig.digest, &m1.digest, &m2.digest] {
        assert!(ok(
            s.delete_manifest(&r, d, &open, IfUnreferenced, &manifest_deletion())
                .await,
            "delete in referrers-first order"
        ));
    }
}

/// A delete `IfUnreferenced` of `d` keeps it, and `Conflict` names `by`.
async fn kept_as_referenced(s: &Store, r: &RepoName, d: &Digest, by: &str) {
    let kept = s
        .delete_manifest(
            r,
            d,
            &TagGuard::open(),
            crate::ports::ManifestDelete::IfUnreferenced,
            &crate::testing::manifest_deletion(),
        )
        .await;
    assert!(
        matches!(&kept, Err(Error::Conflict(m)) if m.contains(by)),
        "{d} referred to by {by}: {kept:?}"
    );
    assert!(has_manifest(s, r, d).await, "{d} was deleted");
}

async fn referrers_by_subject(s: Store) {
    let r = repo("app");
    let subject = image(&r, "subject", &[], t(1));
    let sd = subject.digest.clone();
    // A referrer may arrive before its subject.
    let mut early = image(&r, "early", &[], t(1));
    early.subject = Some(sd.clone());
    put(&s, &early).await;
    put(&s, &subject).await;
    let mut sbom = image(&r, "sbom", &[], t(2));
    sbom.subject = Some(sd.clone());
    sbom.artifact_type = Some(media("application/vnd.example.sbom"));
    put(&s, &sbom).await;
    let mut unrelated = image(&r, "unrelated", &[], t(3));
    unrelated.subject = Some(sha256(b"another subject"));
    put(&s, &unrelated).await;
    let other = repo("other");
    let mut elsewhere = image(&other, "elsewhere", &[], t(4));
    elsewhere.subject = Some(sd.clone());
    put(&s, &elsewhere).await;

    let got = ok(s.referrers(&r, &sd).await, "referrers");
    let mut want = Vec::new();
    for m in sorted(vec![early.digest.clone(), sbom.digest.clone()]) {
        let rec = ok(s.get_manifest(&r, &Reference::Digest(m)).await, "get").expect("stored");
        want.push(rec);
    }
    assert_eq!(
        got, want,
        "referrers: the full records of this repository's referrers, by digest"
    );
    let theirs = ok(s.referrers(&other, &sd).await, "referrers in other");
    assert_eq!(theirs.len(), 1, "referrers are per repository");
    assert_eq!(theirs[0].digest, elsewhere.digest);
    assert!(ok(s.referrers(&r, &sha256(b"nobody")).await, "referrers").is_empty());
    assert!(ok(
        s.referrers(&repo("ghost"), &sd).await,
        "referrers in unknown repo"
    )
    .is_empty());
    ok(
        s.delete_manifest(
            &r,
            &sbom.digest,
            &TagGuard::open(),
            crate::ports::ManifestDelete::WithTags,
            &crate::testing::manifest_deletion(),
        )
        .await,
        "delete a referrer",
    );
    let left: Vec<Digest> = ok(s.referrers(&r, &sd).await, "referrers")
        .into_iter()
        .map(|m| m.digest)
        .collect();
    assert_eq!(
        left,
        vec![early.digest],
        "a deleted referrer is still listed"
    );
}

// ---- blobs and uploads -------------------------------------------------

async fn a_completed_upload_is_visible_at_once(s: Store) {
    let r = repo("app");
    let session = session(&s, &r, t(1)).await;
    let blob = info(b"the layer");
    assert_eq!(linked(&s, &r, &blob.digest).await, None);
    assert!(!has_row(&s, &blob.digest).await);
    ok(
        s.complete_upload(
            &session.id,
            &blob,
            t(2),
            Provenance::Pushed,
            &audited(EventType::BlobUploaded, t(2)),
        )
        .await,
        "complete_upload",
    );
    assert_eq!(
        linked(&s, &r, &blob.digest).await,
        Some(blob.clone()),
        "visible at once"
    );
    assert!(
        has_row(&s, &blob.digest).await,
        "complete_upload records the row"
    );
    assert_eq!(
        ok(s.get_upload(&session.id).await, "get_upload"),
        None,
        "the session is gone"
    );
    assert_eq!(
        ok(collect(s.list_blobs()).await, "list_blobs"),
        vec![blob.clone()]
    );
    let other = repo("other");
    session_in(&s, &other).await;
    assert_eq!(
        linked(&s, &other, &blob.digest).await,
        None,
        "visible in another repository"
    );

    let e = err_of(
        s.complete_upload(
            &session.id,
            &blob,
            t(3),
            Provenance::Pushed,
            &audited(EventType::BlobUploaded, t(3)),
        )
        .await,
        "complete_upload of a finished session",
    );
    assert!(
        matches!(e, Error::UploadUnknown(_)),
        "expected UploadUnknown, got {e:?}"
    );
    let e = err_of(
        s.complete_upload(
            &new_id(),
            &info(b"other"),
            t(3),
            Provenance::Pushed,
            &audited(EventType::BlobUploaded, t(3)),
        )
        .await,
        "complete_upload of an unknown session",
    );
    assert!(
        matches!(e, Error::UploadUnknown(_)),
        "expected UploadUnknown, got {e:?}"
    );
    assert!(
        !has_row(&s, &sha256(b"other")).await,
        "a failed completion recorded a row"
    );
}

async fn session_in(s: &Store, r: &RepoName) -> UploadSession {
    session(s, r, t(0)).await
}

async fn completing_a_known_blob_adds_a_link(s: Store) {
    let (a, b) = (repo("a"), repo("b"));
    let blob = upload(&s, &a, b"shared", t(1)).await;
    upload(&s, &b, b"shared", t(2)).await;
    assert_eq!(
        ok(collect(s.list_blobs()).await, "list_blobs"),
        vec![blob.clone()],
        "one row"
    );
    assert_eq!(linked(&s, &a, &blob.digest).await, Some(blob.clone()));
    assert_eq!(linked(&s, &b, &blob.digest).await, Some(blob.clone()));
    let second = upload(&s, &a, b"second", t(3)).await;
    assert_eq!(
        infos(ok(collect(s.list_blobs()).await, "list_blobs")),
        infos(vec![blob, second])
    );
}

/// Opens a session of `owner` in `r` under `caps`.
async fn open_capped(
    s: &Store,
    owner: &str,
    r: &str,
    caps: &UploadCaps,
) -> crate::error::Result<UploadSession> {
    let session = UploadSession {
        id: new_id(),
        repository: repo(r),
        state: UploadState::default(),
        active: t(1),
    };
    s.create_upload(&session, owner, caps)
        .await
        .map(|()| session)
}

async fn open_sessions_are_capped_per_owner_and_per_repository(s: Store) {
    let caps = UploadCaps {
        per_owner: 2,
        per_repository: 3,
        retry_after: std::time::Duration::from_secs(7),
    };
    let first = ok(open_capped(&s, "ann", "a", &caps).await, "ann's first");
    ok(open_capped(&s, "ann", "b", &caps).await, "ann's second");
    match err_of(open_capped(&s, "ann", "c", &caps).await, "ann's third") {
        Error::TooManyRequests { retry_after, what } => {
            assert_eq!(retry_after, caps.retry_after);
            assert!(what.contains("ann"), "the refusal names the owner: {what}");
        }
        e => panic!("expected TooManyRequests, got {e:?}"),
    }
    ok(
        open_capped(&s, "bob", "a", &caps).await,
        "another owner has room",
    );
    ok(
        open_capped(&s, "cat", "a", &caps).await,
        "the repository's third",
    );
    match err_of(open_capped(&s, "dan", "a", &caps).await, "a's fourth") {
        Error::TooManyRequests { what, .. } => {
            assert!(
                what.contains("in a "),
                "the refusal names the repository: {what}"
            );
        }
        e => panic!("expected TooManyRequests, got {e:?}"),
    }
    // Ending a session frees its slot.
    assert!(ok(s.delete_upload(&first.id).await, "delete_upload"));
    ok(
        open_capped(&s, "ann", "c", &caps).await,
        "ann has room again",
    );
}

/// Replicas open sessions at the same moment: the count and the insert
/// are one step, so the last slot goes to one of them only.
async fn concurrent_opens_never_pass_a_cap(s: Store) {
    let caps = UploadCaps {
        per_owner: 1,
        per_repository: 1,
        retry_after: std::time::Duration::from_secs(1),
    };
    let by_owner = join_all((0..8).map(|i| {
        let s = s.clone();
        async move { open_capped(&s, "eve", &format!("e{i}"), &caps).await }
    }))
    .await;
    let opened = by_owner.iter().filter(|r| r.is_ok()).count();
    assert_eq!(opened, 1, "one owner's cap of 1 let {opened} sessions open");
    let in_repo = join_all((0..8).map(|i| {
        let s = s.clone();
        async move { open_capped(&s, &format!("f{i}"), "shared", &caps).await }
    }))
    .await;
    let opened = in_repo.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        opened, 1,
        "a repository's cap of 1 let {opened} sessions open"
    );
}

async fn upload_sessions(s: Store) {
    let (a, b) = (repo("a"), repo("b"));
    let s1 = session(&s, &a, t(10)).await;
    let s2 = session(&s, &b, t(5)).await;
    let s3 = session(&s, &a, t(20)).await;
    assert_eq!(
        ok(s.get_upload(&s1.id).await, "get_upload"),
        Some(s1.clone())
    );
    assert_eq!(
        ok(s.get_upload(&new_id()).await, "get_upload unknown"),
        None
    );

    // The blob store's record comes back byte for byte.
    let progress = UploadState {
        size: 1234,
        data: Bytes::from_static(b"\x00opaque \xff record"),
    };
    ok(
        s.save_upload_state(&s1.id, 0, &progress, t(10)).await,
        "save_upload_state",
    );
    let moved = ok(s.get_upload(&s1.id).await, "get_upload").expect("s1 exists");
    assert_eq!(moved.state, progress, "the state was not recorded");
    assert_eq!((moved.repository, moved.active), (a.clone(), t(10)));
    // A writer that started from an older size lost a race: refused, and
    // nothing changes.
    let stale = UploadState {
        size: 99,
        data: Bytes::from_static(b"stale"),
    };
    let e = err_of(
        s.save_upload_state(&s1.id, 0, &stale, t(11)).await,
        "save_upload_state from a stale size",
    );
    assert!(
        matches!(e, Error::Conflict(_)),
        "expected Conflict, got {e:?}"
    );
    let e = err_of(
        s.save_upload_state(&new_id(), 0, &stale, t(11)).await,
        "save_upload_state of an unknown session",
    );
    assert!(matches!(e, Error::UploadUnknown(_)), "got {e:?}");
    let kept = ok(s.get_upload(&s1.id).await, "get_upload").expect("s1 exists");
    assert_eq!((kept.state, kept.active), (progress, t(10)));
    assert_eq!(
        ok(s.get_upload(&s3.id).await, "get_upload"),
        Some(s3.clone()),
        "s3 changed"
    );

    let before = |at: Timestamp| {
        let s = s.clone();
        async move {
            ok(
                collect(s.uploads_idle_since(at)).await,
                "uploads_idle_since",
            )
            .into_iter()
            .map(|x| x.id)
            .collect::<Vec<UploadId>>()
        }
    };
    assert_eq!(
        before(t(20)).await,
        vec![s2.id.clone(), s1.id.clone()],
        "oldest first, strictly before"
    );
    assert_eq!(
        before(t(100)).await,
        vec![s2.id.clone(), s1.id.clone(), s3.id.clone()]
    );
    assert!(before(t(5)).await.is_empty());

    // Receiving bytes makes the oldest session the most recently active.
    let one = UploadState {
        size: 1,
        data: Bytes::new(),
    };
    ok(
        s.save_upload_state(&s2.id, 0, &one, t(30)).await,
        "save_upload_state",
    );
    assert_eq!(
        before(t(20)).await,
        vec![s1.id.clone()],
        "a session that just received bytes is not idle"
    );
    assert_eq!(
        before(t(100)).await,
        vec![s1.id.clone(), s3.id.clone(), s2.id.clone()],
        "longest idle first"
    );

    assert!(
        ok(s.delete_upload(&s2.id).await, "delete_upload"),
        "reports the session"
    );
    assert!(!ok(s.delete_upload(&s2.id).await, "delete_upload again"));
    assert_eq!(ok(s.get_upload(&s2.id).await, "get_upload"), None);
    assert_eq!(before(t(100)).await, vec![s1.id.clone(), s3.id.clone()]);
    assert!(
        !exists(&s, &b).await,
        "an upload session alone made a repository (issue 16, case 2)"
    );
}

async fn mount_links_a_blob_the_source_holds(s: Store) {
    let (a, b) = (repo("a"), repo("b"));
    let blob = upload(&s, &a, b"layer", t(1)).await;
    let got = ok(
        s.mount_blob(
            &a,
            &b,
            &blob.digest,
            t(2),
            Provenance::Pushed,
            &audited(EventType::BlobMounted, t(2)),
        )
        .await,
        "mount_blob",
    );
    assert_eq!(got, Some(blob.clone()), "mount returns the blob");
    assert_eq!(
        linked(&s, &b, &blob.digest).await,
        Some(blob.clone()),
        "visible in the target"
    );
    assert_eq!(
        linked(&s, &a, &blob.digest).await,
        Some(blob.clone()),
        "still in the source"
    );
    let again = ok(
        s.mount_blob(
            &a,
            &b,
            &blob.digest,
            t(3),
            Provenance::Pushed,
            &audited(EventType::BlobMounted, t(3)),
        )
        .await,
        "mount again",
    );
    assert_eq!(again, Some(blob.clone()), "mounting twice is fine");
    assert_eq!(
        ok(collect(s.list_blobs()).await, "list_blobs"),
        vec![blob.clone()],
        "a mount adds no row"
    );
    // A mounted link lets the target push a manifest over the blob.
    put(&s, &image(&b, "m", &[&blob], t(4))).await;
}

async fn mount_from_a_repository_without_the_blob_changes_nothing(s: Store) {
    let (a, b, d) = (repo("a"), repo("b"), repo("d"));
    let x = upload(&s, &a, b"x", t(1)).await;
    let y = upload(&s, &d, b"y", t(1)).await;
    session_in(&s, &b).await;
    let cases = [
        (
            &a,
            &repo("c1"),
            &y.digest,
            "a blob with a row the source does not hold",
        ),
        (&repo("ghost"), &repo("c2"), &x.digest, "an unknown source"),
        (&a, &b, &y.digest, "an existing target"),
        (&a, &repo("c3"), &sha256(b"nowhere"), "a blob with no row"),
    ];
    for (from, to, digest, what) in cases {
        let got = ok(
            s.mount_blob(
                from,
                to,
                digest,
                t(2),
                Provenance::Pushed,
                &audited(EventType::BlobMounted, t(2)),
            )
            .await,
            what,
        );
        assert_eq!(got, None, "mount from {what}: expected None");
        assert_eq!(
            linked(&s, to, digest).await,
            None,
            "mount from {what} linked the blob"
        );
    }
    for name in ["c1", "c2", "c3"] {
        assert!(
            !exists(&s, &repo(name)).await,
            "a failed mount created {name}"
        );
    }
    ok(
        s.unlink_blob(&a, &x.digest, &crate::testing::blob_unlink())
            .await,
        "unlink",
    );
    let got = ok(
        s.mount_blob(
            &a,
            &b,
            &x.digest,
            t(3),
            Provenance::Pushed,
            &audited(EventType::BlobMounted, t(3)),
        )
        .await,
        "mount after unlink",
    );
    assert_eq!(
        got, None,
        "a source whose link was removed no longer holds the blob"
    );
}

async fn a_blob_names_the_repositories_holding_it(s: Store) {
    let blob = info(b"shared");
    for name in ["b", "a/b", "c"] {
        upload(&s, &repo(name), b"shared", t(1)).await;
    }
    upload(&s, &repo("other"), b"other", t(1)).await;
    session_in(&s, &repo("a")).await;
    let holders = |last: Option<&str>, limit: usize, digest: Digest| {
        let s = s.clone();
        let p = page(last, limit);
        async move {
            ok(s.blob_holders(&digest, &p).await, "blob_holders")
                .into_iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        holders(None, ALL, blob.digest.clone()).await,
        strings(&["a/b", "b", "c"]),
        "every repository linking the blob, by name"
    );
    assert_eq!(
        holders(Some("a/b"), 1, blob.digest.clone()).await,
        strings(&["b"]),
        "a page resumes after `last`"
    );
    assert!(holders(None, ALL, sha256(b"nowhere")).await.is_empty());
    ok(
        s.unlink_blob(&repo("b"), &blob.digest, &crate::testing::blob_unlink())
            .await,
        "unlink",
    );
    assert_eq!(
        holders(None, ALL, blob.digest.clone()).await,
        strings(&["a/b", "c"]),
        "an unlinked repository no longer holds it"
    );
}

async fn unlink_keeps_the_blob_row(s: Store) {
    let (a, b) = (repo("a"), repo("b"));
    let blob = upload(&s, &a, b"layer", t(1)).await;
    upload(&s, &b, b"layer", t(1)).await;
    assert!(
        ok(
            s.unlink_blob(&a, &blob.digest, &crate::testing::blob_unlink())
                .await,
            "unlink"
        ),
        "reports the link"
    );
    assert_eq!(
        linked(&s, &a, &blob.digest).await,
        None,
        "still visible after unlink"
    );
    assert_eq!(
        linked(&s, &b, &blob.digest).await,
        Some(blob.clone()),
        "unlink reached b"
    );
    assert!(has_row(&s, &blob.digest).await, "unlink removed the row");
    assert!(!ok(
        s.unlink_blob(&a, &blob.digest, &crate::testing::blob_unlink())
            .await,
        "unlink again"
    ));
    assert!(!ok(
        s.unlink_blob(&repo("ghost"), &blob.digest, &crate::testing::blob_unlink())
            .await,
        "unlink in unknown repo"
    ));
    ok(
        s.unlink_blob(&b, &blob.digest, &crate::testing::blob_unlink())
            .await,
        "unlink from b",
    );
    assert_eq!(
        ok(collect(s.list_blobs()).await, "list_blobs"),
        vec![blob.clone()],
        "rows stay for GC"
    );
    let m = image(&a, "m", &[&blob], t(2));
    let e = err_of(
        s.put_manifest(m.clone(), &pushed(&m)).await,
        "put_manifest over an unlinked blob",
    );
    assert!(
        matches!(&e, Error::ManifestBlobUnknown(d) if d == &blob.digest),
        "expected ManifestBlobUnknown, got {e:?}"
    );
}

// ---- garbage collection ------------------------------------------------

async fn sweep_respects_the_cutoff(s: Store) {
    let r = repo("app");
    let u = upload(&s, &r, b"unreferenced", t(100)).await;
    assert!(
        sweep(&s, t(50)).await.is_empty(),
        "swept a blob newer than the cutoff"
    );
    assert!(
        sweep(&s, t(100)).await.is_empty(),
        "swept a blob made exactly at the cutoff"
    );
    assert_eq!(
        sweep(&s, t(101)).await,
        vec![u.clone()],
        "the blob is older than the cutoff"
    );
    assert!(!has_row(&s, &u.digest).await, "the row survived the sweep");
    assert_eq!(
        linked(&s, &r, &u.digest).await,
        None,
        "the link survived the sweep"
    );
    assert!(ok(collect(s.list_blobs()).await, "list_blobs").is_empty());
    assert!(
        sweep(&s, t(1000)).await.is_empty(),
        "a second sweep found it again"
    );

    // A row with no links at all goes by its creation time.
    let v = upload(&s, &r, b"unlinked", t(200)).await;
    ok(
        s.unlink_blob(&r, &v.digest, &crate::testing::blob_unlink())
            .await,
        "unlink",
    );
    assert!(sweep(&s, t(200)).await.is_empty());
    assert_eq!(sweep(&s, t(201)).await, vec![v]);
    assert!(
        !exists(&s, &r).await,
        "a repository whose last content was swept still shows (issue 16, case 2)"
    );
}

async fn sweep_goes_a_batch_at_a_time(s: Store) {
    let r = repo("app");
    let mut all = Vec::new();
    for i in 0..5u8 {
        all.push(upload(&s, &r, &[b'b', i], t(10)).await);
    }
    let kept = upload(&s, &r, b"recent", t(500)).await;
    // Six rows, windows of two, in digest order: three full windows, then
    // one that finds the end.
    let mut digests: Vec<Digest> = all.iter().map(|b| b.digest.clone()).collect();
    digests.push(kept.digest.clone());
    digests.sort();
    let mut swept = Vec::new();
    let mut after: Option<Digest> = None;
    for (step_no, want_next) in [Some(1), Some(3), Some(5), None].into_iter().enumerate() {
        let step = ok(
            s.sweep_unreferenced_blobs(t(100), after.as_ref(), 2).await,
            "sweep_unreferenced_blobs with a limit",
        );
        assert_eq!(
            step.next,
            want_next.map(|i: usize| digests[i].clone()),
            "step {step_no} goes on after the last row it looked at"
        );
        let window = &digests[2 * step_no..(2 * step_no + 2).min(digests.len())];
        assert!(
            step.swept.iter().all(|b| window.contains(&b.digest)),
            "step {step_no} swept only its own window"
        );
        swept.extend(step.swept);
        after = step.next;
    }
    assert_eq!(infos(swept), infos(all), "each blob swept once");
    assert!(has_row(&s, &kept.digest).await);
    // Phase two's lookup: of the swept and the kept, only the kept has a
    // row; an upload of a swept digest brings its row back.
    assert_eq!(
        ok(s.blobs_with_rows(&digests).await, "blobs_with_rows"),
        vec![kept.digest.clone()]
    );
    let back = upload(&s, &r, &[b'b', 0], t(600)).await;
    let mut present = ok(s.blobs_with_rows(&digests).await, "blobs_with_rows");
    present.sort();
    let mut want = vec![kept.digest.clone(), back.digest.clone()];
    want.sort();
    assert_eq!(present, want, "a re-created row shows again");
    assert_eq!(
        ok(s.blobs_with_rows(&[]).await, "blobs_with_rows of nothing"),
        Vec::<Digest>::new()
    );
    let nothing = ok(
        s.sweep_unreferenced_blobs(t(100), None, 0).await,
        "sweep_unreferenced_blobs with limit 0",
    );
    assert_eq!(nothing.swept, Vec::new());
    assert_eq!(nothing.next, None);
}

/// A window of rows that are all kept sweeps nothing yet says where to
/// go on: the walk ends at the end of the rows, not at the first window
/// without garbage.
async fn sweep_goes_on_past_windows_with_no_garbage(s: Store) {
    let r = repo("app");
    let mut rows = Vec::new();
    for i in 0..4u8 {
        // Alternately garbage (old) and kept (recent).
        let at = if i % 2 == 0 { t(10) } else { t(500) };
        rows.push((upload(&s, &r, &[b'w', i], at).await, at == t(10)));
    }
    rows.sort_by(|a, b| a.0.digest.cmp(&b.0.digest));
    let mut after: Option<Digest> = None;
    for (blob, garbage) in &rows {
        let step = ok(
            s.sweep_unreferenced_blobs(t(100), after.as_ref(), 1).await,
            "sweep_unreferenced_blobs, windows of one",
        );
        let want = if *garbage {
            vec![blob.clone()]
        } else {
            Vec::new()
        };
        assert_eq!(step.swept, want, "the window of {}", blob.digest);
        assert_eq!(step.next.as_ref(), Some(&blob.digest), "goes on after it");
        after = step.next;
    }
    let end = ok(
        s.sweep_unreferenced_blobs(t(100), after.as_ref(), 1).await,
        "sweep_unreferenced_blobs past the last row",
    );
    assert_eq!((end.swept, end.next), (Vec::new(), None));
    for (blob, garbage) in &rows {
        assert_eq!(has_row(&s, &blob.digest).await, !garbage);
    }
}

async fn sweep_reads_every_link_time(s: Store) {
    let (a, b) = (repo("a"), repo("b"));
    // Row and first link at 100, mounted elsewhere at 500.
    let w = upload(&s, &a, b"mounted later", t(100)).await;
    ok(
        s.mount_blob(
            &a,
            &b,
            &w.digest,
            t(500),
            Provenance::Pushed,
            &audited(EventType::BlobMounted, t(500)),
        )
        .await,
        "mount",
    );
    // Row at 100, uploaded again into the same repository at 400.
    let x = upload(&s, &a, b"uploaded again", t(100)).await;
    upload(&s, &a, b"uploaded again", t(400)).await;
    // Row at 100, mounted into the repository that holds it at 450.
    let y = upload(&s, &b, b"mounted again", t(100)).await;
    ok(
        s.mount_blob(
            &b,
            &b,
            &y.digest,
            t(450),
            Provenance::Pushed,
            &audited(EventType::BlobMounted, t(450)),
        )
        .await,
        "re-mount",
    );

    assert!(
        sweep(&s, t(300)).await.is_empty(),
        "a newer link must protect the blob"
    );
    assert!(
        sweep(&s, t(400)).await.is_empty(),
        "a link made exactly at the cutoff protects"
    );
    assert_eq!(
        sweep(&s, t(401)).await,
        vec![x.clone()],
        "re-upload stamped the link at 400"
    );
    assert_eq!(
        sweep(&s, t(451)).await,
        vec![y.clone()],
        "re-mount stamped the link at 450"
    );
    assert_eq!(linked(&s, &a, &w.digest).await, Some(w.clone()));
    assert_eq!(sweep(&s, t(501)).await, vec![w.clone()]);
    assert_eq!(
        linked(&s, &a, &w.digest).await,
        None,
        "a link in a survived"
    );
    assert_eq!(
        linked(&s, &b, &w.digest).await,
        None,
        "a link in b survived"
    );
}

async fn sweep_spares_blobs_referenced_in_any_repository(s: Store) {
    let (a, b) = (repo("a"), repo("b"));
    let config = upload(&s, &a, b"config", t(1)).await;
    let layer = upload(&s, &a, b"layer", t(1)).await;
    let m = image(&a, "m", &[&config, &layer], t(2));
    put(&s, &m).await;
    // Referenced by a manifest in b, then unlinked from b: still referenced.
    let shared = upload(&s, &b, b"shared", t(1)).await;
    put(&s, &image(&b, "uses-shared", &[&shared], t(2))).await;
    ok(
        s.unlink_blob(&b, &shared.digest, &crate::testing::blob_unlink())
            .await,
        "unlink",
    );
    // Referenced from two repositories.
    let both = upload(&s, &a, b"both", t(1)).await;
    upload(&s, &b, b"both", t(1)).await;
    let ma = image(&a, "both-a", &[&both], t(2));
    let mb = image(&b, "both-b", &[&both], t(2));
    put(&s, &ma).await;
    put(&s, &mb).await;
    // An index does not reference its children's blobs itself, but the
    // children do.
    let idx = index(&a, "idx", vec![m.digest.clone()], t(2));
    put(&s, &idx).await;

    assert!(
        sweep(&s, t(1000)).await.is_empty(),
        "swept a referenced blob"
    );
    assert_eq!(linked(&s, &a, &layer.digest).await, Some(layer.clone()));
    assert!(has_row(&s, &shared.digest).await);

    ok(
        s.delete_manifest(
            &a,
            &ma.digest,
            &TagGuard::open(),
            crate::ports::ManifestDelete::WithTags,
            &crate::testing::manifest_deletion(),
        )
        .await,
        "delete in a",
    );
    assert!(
        sweep(&s, t(1000)).await.is_empty(),
        "swept a blob still referenced in b"
    );
    ok(
        s.delete_manifest(
            &b,
            &mb.digest,
            &TagGuard::open(),
            crate::ports::ManifestDelete::WithTags,
            &crate::testing::manifest_deletion(),
        )
        .await,
        "delete in b",
    );
    assert_eq!(
        sweep(&s, t(1000)).await,
        vec![both],
        "deleting every reference frees it"
    );
    ok(
        s.delete_manifest(
            &a,
            &idx.digest,
            &TagGuard::open(),
            crate::ports::ManifestDelete::WithTags,
            &crate::testing::manifest_deletion(),
        )
        .await,
        "delete the index",
    );
    assert!(
        sweep(&s, t(1000)).await.is_empty(),
        "swept blobs of a manifest still stored"
    );
    ok(
        s.delete_manifest(
            &a,
            &m.digest,
            &TagGuard::open(),
            crate::ports::ManifestDelete::WithTags,
            &crate::testing::manifest_deletion(),
        )
        .await,
        "delete m",
    );
    assert_eq!(sweep(&s, t(1000)).await, infos(vec![config, layer]));
    ok(
        s.delete_repository(&b, &TagGuard::open(), &crate::testing::repo_deletion())
            .await,
        "delete_repository b",
    );
    assert_eq!(
        sweep(&s, t(1000)).await,
        vec![shared],
        "a deleted repository references nothing"
    );
}

async fn delete_repository_returns_its_uploads_and_keeps_blob_rows(s: Store) {
    let (a, b) = (repo("a"), repo("a/b"));
    let layer = upload(&s, &a, b"layer", t(1)).await;
    put(&s, &tagged(image(&a, "m", &[&layer], t(2)), "v1")).await;
    let s1 = session(&s, &a, t(3)).await;
    let s2 = session(&s, &a, t(4)).await;
    let keep = session(&s, &b, t(5)).await;
    upload(&s, &b, b"layer", t(5)).await;

    let ids = ok(
        s.delete_repository(&a, &TagGuard::open(), &crate::testing::repo_deletion())
            .await,
        "delete_repository",
    )
    .expect("a existed");
    assert_eq!(
        sorted(ids),
        sorted(vec![s1.id.clone(), s2.id.clone()]),
        "the repository's sessions"
    );
    assert!(!exists(&s, &a).await, "the repository is still there");
    assert_eq!(
        repos(&s, page(None, ALL)).await,
        strings(&["a/b"]),
        "a nested name was deleted"
    );
    assert_eq!(by_tag(&s, &a, "v1").await, None, "a tag survived");
    assert!(tags(&s, &a).await.is_empty());
    assert_eq!(linked(&s, &a, &layer.digest).await, None, "a link survived");
    assert_eq!(
        ok(s.get_upload(&s1.id).await, "get_upload"),
        None,
        "a session survived"
    );
    assert_eq!(
        ok(s.get_upload(&keep.id).await, "get_upload"),
        Some(keep),
        "another repo's session"
    );
    assert!(has_row(&s, &layer.digest).await, "blob rows stay for GC");
    assert_eq!(
        linked(&s, &b, &layer.digest).await,
        Some(layer.clone()),
        "another repo's link"
    );
    assert_eq!(
        ok(
            s.delete_repository(&a, &TagGuard::open(), &crate::testing::repo_deletion())
                .await,
            "delete again"
        ),
        None
    );
    assert_eq!(
        ok(
            s.delete_repository(
                &repo("ghost"),
                &TagGuard::open(),
                &crate::testing::repo_deletion()
            )
            .await,
            "delete unknown"
        ),
        None
    );

    // The name can be used again, from scratch.
    session(&s, &a, t(10)).await;
    assert_eq!(
        ok(s.repository_detail(&a).await, "detail"),
        None,
        "a session alone"
    );
    let fresh = upload(&s, &a, b"fresh", t(11)).await;
    assert!(tags(&s, &a).await.is_empty());
    let detail = ok(s.repository_detail(&a).await, "detail").expect("recreated");
    assert_eq!(detail.summary.manifest_count, 0);
    assert_eq!(detail.layers, vec![fresh]);
}

async fn empty_repository_keeps_its_sessions_and_blob_rows(s: Store) {
    let (a, c) = (repo("a"), repo("c"));
    let layer = upload(&s, &a, b"layer", t(1)).await;
    let m = tagged(image(&a, "m", &[&layer], t(2)), "v1");
    put(&s, &m).await;
    let fill = session(&s, &a, t(3)).await;
    upload(&s, &c, b"other", t(4)).await;

    assert!(ok(s.empty_repository(&a).await, "empty_repository"));
    assert_eq!(by_tag(&s, &a, "v1").await, None, "a tag survived");
    assert!(
        !has_manifest(&s, &a, &m.digest).await,
        "a manifest survived"
    );
    assert_eq!(linked(&s, &a, &layer.digest).await, None, "a link survived");
    assert!(!exists(&s, &a).await, "an emptied repository holds nothing");
    assert!(has_row(&s, &layer.digest).await, "blob rows stay for GC");
    assert_eq!(
        sweep(&s, t(4)).await,
        vec![layer.clone()],
        "the manifest no longer protects its blobs"
    );
    assert_eq!(
        ok(s.get_upload(&fill.id).await, "get_upload").map(|u| u.id),
        Some(fill.id.clone()),
        "an upload in progress is kept"
    );
    let filled = info(b"filled");
    ok(
        s.complete_upload(
            &fill.id,
            &filled,
            t(5),
            Provenance::Pushed,
            &audited(EventType::BlobUploaded, t(5)),
        )
        .await,
        "complete_upload after emptying",
    );
    assert_eq!(linked(&s, &a, &filled.digest).await, Some(filled.clone()));
    assert_eq!(
        repos(&s, page(None, ALL)).await,
        strings(&["a", "c"]),
        "the finished upload's repository"
    );
    let created = |name: &'static str| {
        let s = &s;
        async move {
            ok(
                s.repository_summaries(&RepoQuery {
                    limit: ALL,
                    ..RepoQuery::default()
                })
                .await,
                "summaries",
            )
            .into_iter()
            .find(|r| r.name.as_str() == name)
            .map(|r| r.created)
        }
    };
    assert_eq!(
        created("a").await,
        Some(t(1)),
        "kept while a session was open"
    );

    // Without a session the repository goes whole: a new one is new.
    assert!(ok(s.empty_repository(&c).await, "empty_repository c"));
    upload(&s, &c, b"again", t(20)).await;
    assert_eq!(created("c").await, Some(t(20)), "c was made again");

    assert!(ok(s.empty_repository(&c).await, "empty c again"));
    assert!(
        !ok(s.empty_repository(&c).await, "empty an emptied one"),
        "nothing was held"
    );
    assert!(!ok(
        s.empty_repository(&repo("ghost")).await,
        "empty unknown"
    ));
}

async fn repository_summaries_and_detail(s: Store) {
    let (app, base) = (repo("app"), repo("base"));
    session(&s, &app, t(1)).await;
    let x = upload(&s, &app, &[1u8; 10], t(2)).await;
    let y = upload(&s, &app, &[2u8; 20], t(3)).await;
    let m1 = image(&app, "one", &[&x, &y], t(4));
    let m2 = image(&app, "two", &[&x], t(6));
    put(&s, &tagged(m1.clone(), "v1")).await;
    put(&s, &at_time(tagged(m1.clone(), "latest"), t(5))).await;
    put(&s, &m2).await;
    let base_layer = upload(&s, &base, b"base", t(7)).await;
    // Listed nowhere: it holds only a session.
    session(&s, &repo("b-empty"), t(8)).await;

    let app_summary = RepoSummary {
        name: app.clone(),
        tag_count: 2,
        manifest_count: 2,
        total_size: m1.raw.len() as u64 + m2.raw.len() as u64 + 30,
        created: t(1),
        last_push: Some(t(6)),
    };
    let base_summary = RepoSummary {
        name: base.clone(),
        tag_count: 0,
        manifest_count: 0,
        total_size: 4,
        created: t(7),
        last_push: None,
    };
    let summaries = |p: Page| {
        let s = s.clone();
        let q = RepoQuery {
            after: p.last.map(|name| RepoCursor { key: None, name }),
            limit: p.limit,
            ..RepoQuery::default()
        };
        async move { ok(s.repository_summaries(&q).await, "repository_summaries") }
    };
    assert_eq!(
        summaries(page(None, ALL)).await,
        vec![app_summary.clone(), base_summary.clone()],
        "summaries: counts, size (manifests plus distinct linked blobs), first-write time"
    );
    assert_eq!(
        summaries(page(Some("app"), 5)).await,
        vec![base_summary.clone()]
    );
    assert_eq!(summaries(page(None, 1)).await, vec![app_summary.clone()]);
    assert!(summaries(page(None, 0)).await.is_empty(), "limit 0");
    assert!(
        summaries(page(Some("base"), 5)).await.is_empty(),
        "after the last one"
    );

    let detail = ok(s.repository_detail(&app).await, "repository_detail").expect("app exists");
    assert_eq!(detail.summary, app_summary);
    assert_eq!(
        detail.tags,
        vec![
            TagRef {
                name: tag("latest"),
                digest: m1.digest.clone()
            },
            TagRef {
                name: tag("v1"),
                digest: m1.digest.clone()
            },
        ],
        "tags by name"
    );
    let mt = media(OCI_IMAGE_MANIFEST);
    assert_eq!(
        detail.manifests,
        vec![
            ManifestSummary {
                digest: m2.digest.clone(),
                media_type: mt.clone(),
                size: m2.raw.len() as u64,
                created: t(6),
            },
            ManifestSummary {
                digest: m1.digest.clone(),
                media_type: mt,
                size: m1.raw.len() as u64,
                created: t(4),
            },
        ],
        "manifests newest first"
    );
    assert_eq!(detail.layers, infos(vec![x, y]), "linked blobs by digest");
    let empty = ok(s.repository_detail(&base).await, "detail").expect("base exists");
    assert_eq!(
        (empty.summary, empty.tags, empty.manifests, empty.layers),
        (base_summary, vec![], vec![], vec![base_layer])
    );
    assert_eq!(
        ok(s.repository_detail(&repo("b-empty")).await, "detail"),
        None,
        "the detail of a repository holding only a session"
    );
    assert_eq!(
        ok(
            s.repository_detail(&repo("ghost")).await,
            "detail of unknown"
        ),
        None
    );
}

/// The size a listing shows and sorts by follows every change that adds
/// or removes a manifest or a blob link, whichever step makes it: a store
/// that keeps sizes up to date, rather than summing them per listing,
/// must agree with the sum.
async fn repository_sizes_follow_every_change(s: Store) {
    let (a, b) = (repo("size/a"), repo("size/b"));
    let sizes = || {
        let s = s.clone();
        async move {
            let q = RepoQuery {
                sort: RepoSort::Size,
                order: SortOrder::Desc,
                limit: ALL,
                ..RepoQuery::default()
            };
            ok(s.repository_summaries(&q).await, "repository_summaries")
                .into_iter()
                .map(|r| (r.name.to_string(), r.total_size))
                .collect::<Vec<_>>()
        }
    };
    let x = upload(&s, &a, &[1u8; 100], t(1)).await;
    let y = upload(&s, &a, &[2u8; 1000], t(2)).await;
    upload(&s, &a, &[1u8; 100], t(3)).await;
    ok(
        s.mount_blob(
            &a,
            &b,
            &x.digest,
            t(4),
            Provenance::Pushed,
            &audited(EventType::BlobMounted, t(4)),
        )
        .await,
        "mount_blob",
    );
    assert_eq!(
        sizes().await,
        [("size/a".to_string(), 1100), ("size/b".to_string(), 100)],
        "a blob linked twice counts once; a mount counts in its target"
    );
    let m = image(&a, "m", &[&x, &y], t(5));
    put(&s, &m).await;
    put(&s, &tagged(m.clone(), "v1")).await;
    let n = image(&b, "n", &[&x], t(6));
    put(&s, &n).await;
    let (m_len, n_len) = (m.raw.len() as u64, n.raw.len() as u64);
    assert_eq!(
        sizes().await,
        [
            ("size/a".to_string(), 1100 + m_len),
            ("size/b".to_string(), 100 + n_len)
        ],
        "a manifest stored twice counts once"
    );
    assert!(ok(
        s.delete_manifest(
            &a,
            &m.digest,
            &TagGuard::open(),
            crate::ports::ManifestDelete::WithTags,
            &crate::testing::manifest_deletion()
        )
        .await,
        "delete_manifest"
    ));
    assert!(ok(
        s.unlink_blob(&a, &y.digest, &crate::testing::blob_unlink())
            .await,
        "unlink_blob"
    ));
    assert_eq!(
        sizes().await,
        [
            ("size/b".to_string(), 100 + n_len),
            ("size/a".to_string(), 100)
        ],
        "deletes and unlinks take their bytes off"
    );
    upload(&s, &a, &[2u8; 1000], t(7)).await;
    assert_eq!(
        sizes().await,
        [
            ("size/a".to_string(), 1100),
            ("size/b".to_string(), 100 + n_len)
        ],
        "a blob linked again counts again"
    );
    ok(
        s.delete_repository(&a, &TagGuard::open(), &crate::testing::repo_deletion())
            .await,
        "delete_repository",
    );
    assert_eq!(
        sizes().await,
        [("size/b".to_string(), 100 + n_len)],
        "another repository's deletion leaves a size alone"
    );
}

async fn repository_listing_filters_sorts_and_pages(s: Store) {
    // Four repositories that each sort differently: by name, tag count,
    // manifest count, size and last push.
    let names = ["team/app", "team/base", "tools/cli", "web"];
    for (i, name) in names.iter().enumerate() {
        let r = repo(name);
        let i = i as i64;
        let layer = upload(&s, &r, &vec![i as u8; 10 * (4 - i as usize)], t(1)).await;
        let mut last = None;
        for m in 0..=i {
            let img = image(&r, &format!("{name}-{m}"), &[&layer], t(10 - i + m));
            put(&s, &img).await;
            last = Some(img);
        }
        let last = last.expect("one manifest at least");
        for k in 0..3 - i {
            put(&s, &tagged(last.clone(), &format!("v{k}"))).await;
        }
    }
    // Listed by no order: it holds only a session.
    session(&s, &repo("team/empty"), t(1)).await;
    let list = |q: RepoQuery| {
        let s = s.clone();
        async move {
            ok(s.repository_summaries(&q).await, "repository_summaries")
                .into_iter()
                .map(|r| r.name.to_string())
                .collect::<Vec<_>>()
        }
    };
    let by = |sort: RepoSort, order: SortOrder| RepoQuery {
        sort,
        order,
        limit: ALL,
        ..RepoQuery::default()
    };
    let all = ok(
        s.repository_summaries(&by(RepoSort::Name, SortOrder::Asc))
            .await,
        "all",
    );
    for sort in RepoSort::ALL {
        for order in [SortOrder::Asc, SortOrder::Desc] {
            let q = by(sort, order);
            let mut want = all.clone();
            q.sort(&mut want);
            let want: Vec<String> = want.iter().map(|r| r.name.to_string()).collect();
            assert_eq!(list(q.clone()).await, want, "sorted by {sort} {order}");
            // Page by page, two at a time, through the cursor.
            let mut paged = Vec::new();
            let mut after = None;
            loop {
                let page = ok(
                    s.repository_summaries(&RepoQuery {
                        after: after.clone(),
                        limit: 2,
                        ..q.clone()
                    })
                    .await,
                    "a page",
                );
                let Some(last) = page.last() else { break };
                after = Some(RepoCursor::after(sort, last));
                paged.extend(page.iter().map(|r| r.name.to_string()));
            }
            assert_eq!(paged, want, "paged by {sort} {order}");
        }
    }
    let mut tags_desc = by(RepoSort::Tags, SortOrder::Desc);
    assert_eq!(
        list(tags_desc.clone()).await,
        ["team/app", "team/base", "tools/cli", "web"],
        "tag counts 3, 2, 1, 0"
    );
    tags_desc.filter = Some("team".into());
    assert_eq!(list(tags_desc.clone()).await, ["team/app", "team/base"]);
    tags_desc.filter = Some("o".into());
    assert_eq!(list(tags_desc).await, ["tools/cli"]);
    let pushed = by(RepoSort::LastPush, SortOrder::Desc);
    assert_eq!(
        list(pushed).await,
        ["web", "tools/cli", "team/base", "team/app"],
        "last pushes all t(10): the tie falls to the name, descending too"
    );
    assert_eq!(
        list(by(RepoSort::Size, SortOrder::Asc)).await.len(),
        4,
        "sizes"
    );
    assert_eq!(
        all.iter().map(|r| r.manifest_count).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
}

// ---- policy rules ------------------------------------------------------

fn rule_draft(priority: u32, effect: Effect, actions: Vec<Action>, enabled: bool) -> RuleDraft {
    RuleDraft {
        priority,
        description: format!("contract rule at priority {priority}"),
        effect,
        actions,
        roles: vec![Role::Guest],
        account_types: vec![AccountType::Human],
        subject: None,
        repositories: ["team/*", "shared/**"]
            .into_iter()
            .map(|p| RepoPattern::new(p).expect("the contract uses valid patterns"))
            .collect(),
        tags: vec![],
        enabled,
    }
}

fn assert_rule_is(rule: &Rule, draft: &RuleDraft, what: &str) {
    assert_eq!(rule.priority, draft.priority, "{what}: priority");
    assert_eq!(rule.description, draft.description, "{what}: description");
    assert_eq!(rule.effect, draft.effect, "{what}: effect");
    assert_eq!(rule.actions, draft.actions, "{what}: actions");
    assert_eq!(rule.roles, draft.roles, "{what}: roles");
    assert_eq!(
        rule.account_types, draft.account_types,
        "{what}: account_types"
    );
    assert_eq!(rule.subject, draft.subject, "{what}: subject");
    assert_eq!(
        rule.repositories, draft.repositories,
        "{what}: repositories"
    );
    assert_eq!(rule.tags, draft.tags, "{what}: tags");
    assert_eq!(rule.enabled, draft.enabled, "{what}: enabled");
}

/// The stored rules and their generation.
async fn rules(s: &Store) -> (u64, Vec<Rule>) {
    let stored = ok(s.list_rules().await, "list_rules");
    assert_eq!(
        ok(s.rule_generation().await, "rule_generation"),
        stored.generation,
        "rule_generation disagrees with list_rules"
    );
    (stored.generation, stored.rules)
}

fn retention_spec(json: &str) -> RetentionSpec {
    serde_json::from_str(json).expect("the contract uses valid retention policies")
}

async fn retention_policies_crud(s: Store) {
    let keep = retention_spec(
        r#"{"repositories":["app/*"],"keep_last":3,"delete_tags_older_than":"30d"}"#,
    );
    let untagged = retention_spec(
        r#"{"repositories":["*"],"enabled":false,"delete_untagged_older_than":"7d","keep_tags":["v*"]}"#,
    );
    let a = ok(
        s.create_retention_policy(&keep, t(1)).await,
        "create_retention_policy",
    );
    let b = ok(
        s.create_retention_policy(&untagged, t(2)).await,
        "create_retention_policy",
    );
    assert!(a.id > 0 && b.id > a.id, "ids grow: {} then {}", a.id, b.id);
    assert_eq!((a.created, a.updated, &a.spec), (t(1), t(1), &keep));
    let listed = ok(s.list_retention_policies().await, "list_retention_policies");
    assert_eq!(listed, vec![a.clone(), b.clone()]);
    assert_eq!(
        ok(s.get_retention_policy(b.id).await, "get_retention_policy"),
        Some(b.clone()),
        "a disabled policy reads back as stored"
    );
    let replaced = ok(
        s.replace_retention_policy(a.id, &untagged, t(5)).await,
        "replace_retention_policy",
    )
    .expect("the policy exists");
    assert_eq!(
        (
            replaced.id,
            replaced.created,
            replaced.updated,
            &replaced.spec
        ),
        (a.id, t(1), t(5), &untagged),
        "a replacement keeps the id and creation time"
    );
    assert_eq!(
        ok(s.get_retention_policy(a.id).await, "get_retention_policy"),
        Some(replaced)
    );
    assert_eq!(
        ok(
            s.replace_retention_policy(b.id + 100, &keep, t(6)).await,
            "replace_retention_policy"
        ),
        None,
        "replacing a missing policy"
    );
    assert!(ok(
        s.delete_retention_policy(b.id).await,
        "delete_retention_policy"
    ));
    assert!(
        !ok(
            s.delete_retention_policy(b.id).await,
            "delete_retention_policy"
        ),
        "a second delete reported a deletion"
    );
    assert_eq!(
        ok(s.get_retention_policy(b.id).await, "get_retention_policy"),
        None
    );
    let c = ok(
        s.create_retention_policy(&keep, t(7)).await,
        "create_retention_policy",
    );
    assert!(c.id > b.id, "id {} was reused after a delete", c.id);
}

async fn manifest_graph_shows_tags_children_and_subjects(s: Store) {
    let r = repo("graph/app");
    let layer = upload(&s, &r, b"graph layer", t(1)).await;
    let a = tagged(image(&r, "a", &[&layer], t(1)), "v1");
    let b = image(&r, "b", &[&layer], t(2));
    put(&s, &a).await;
    put(&s, &b).await;
    let children = sorted(vec![a.digest.clone(), b.digest.clone()]);
    let idx = tagged(index(&r, "idx", children.clone(), t(3)), "latest");
    put(&s, &idx).await;
    let mut sig = image(&r, "sig", &[&layer], t(4));
    sig.subject = Some(a.digest.clone());
    put(&s, &sig).await;
    // Moving v2 onto b at t(6): the tag's time is its last push.
    put(&s, &tagged(at_time(b.clone(), t(5)), "v2")).await;
    put(&s, &tagged(at_time(b.clone(), t(6)), "v2")).await;
    // Another repository's content stays out.
    let other = repo("graph/other");
    let other_layer = upload(&s, &other, b"other layer", t(1)).await;
    put(&s, &tagged(image(&other, "o", &[&other_layer], t(1)), "v1")).await;

    let graph = ok(s.manifest_graph(&r).await, "manifest_graph");
    let mut want = vec![
        GraphManifest {
            digest: a.digest.clone(),
            created: t(1),
            subject: None,
            children: vec![],
        },
        GraphManifest {
            digest: b.digest.clone(),
            created: t(2),
            subject: None,
            children: vec![],
        },
        GraphManifest {
            digest: idx.digest.clone(),
            created: t(3),
            subject: None,
            children,
        },
        GraphManifest {
            digest: sig.digest.clone(),
            created: t(4),
            subject: Some(a.digest.clone()),
            children: vec![],
        },
    ];
    want.sort_by(|x, y| x.digest.cmp(&y.digest));
    assert_eq!(graph.manifests, want, "the manifests by digest");
    let tag_of = |name: &str, d: &Digest, at| GraphTag {
        name: tag(name),
        digest: d.clone(),
        updated: at,
    };
    assert_eq!(
        graph.tags,
        vec![
            tag_of("latest", &idx.digest, t(3)),
            tag_of("v1", &a.digest, t(1)),
            tag_of("v2", &b.digest, t(6)),
        ],
        "the tags by name, each with its last push"
    );
    assert_eq!(
        ok(
            s.manifest_graph(&repo("graph/none")).await,
            "manifest_graph"
        ),
        ManifestGraph::default(),
        "an unknown repository's graph is empty"
    );
}

async fn policy_rules_crud(s: Store) {
    let (first, none) = rules(&s).await;
    assert!(none.is_empty(), "a new store has stored rules");
    let d1 = rule_draft(10, Effect::Allow, vec![Action::Pull, Action::Catalog], true);
    let mut d2 = rule_draft(5, Effect::Deny, vec![Action::Push], false);
    d2.subject = Some("0b9a7f3e-subject".to_string());
    let r1 = ok(s.create_rule(&d1).await, "create_rule");
    let r2 = ok(s.create_rule(&d2).await, "create_rule");
    assert!(
        r1.id > 0 && r2.id > r1.id,
        "ids are positive and increasing: {} then {}",
        r1.id,
        r2.id
    );
    assert_rule_is(&r1, &d1, "created rule");
    assert_rule_is(&r2, &d2, "created rule with a subject, disabled");
    assert_eq!(ok(s.get_rule(r1.id).await, "get_rule"), Some(r1.clone()));
    let (created, mut listed) = rules(&s).await;
    assert!(
        created >= first + 2,
        "two creations advanced the generation from {first} to {created}"
    );
    listed.sort_by_key(|r| r.id);
    assert_eq!(
        listed,
        vec![r1.clone(), r2.clone()],
        "list_rules returns disabled rules too"
    );

    let mut changed = r1.clone();
    changed.priority = r2.priority;
    changed.description = "changed".to_string();
    changed.effect = Effect::Deny;
    changed.actions = Action::TAG_ACTIONS.to_vec();
    changed.roles = vec![Role::User, Role::Admin];
    changed.account_types = vec![AccountType::System];
    changed.repositories = Vec::new();
    changed.tags = ["v*", "release-[0-9]*"]
        .into_iter()
        .map(|p| TagPattern::new(p).expect("the contract uses valid patterns"))
        .collect();
    changed.enabled = false;
    ok(s.update_rule(&r1, &changed).await, "update_rule");
    let (updated, _) = rules(&s).await;
    assert!(updated > created, "an update advanced no generation");
    // An update from a rule read before that change: refused, unchanged.
    let mut stale = r1.clone();
    stale.description = "lost update".to_string();
    let e = err_of(
        s.update_rule(&r1, &stale).await,
        "update_rule from a stale read",
    );
    assert!(
        matches!(e, Error::Conflict(_)),
        "expected Conflict, got {e:?}"
    );
    assert_eq!(
        rules(&s).await.0,
        updated,
        "a refused update advanced the generation"
    );
    assert_eq!(
        ok(s.get_rule(r1.id).await, "get_rule"),
        Some(changed.clone()),
        "update replaces"
    );
    assert_eq!(
        ok(s.get_rule(r2.id).await, "get_rule"),
        Some(r2.clone()),
        "update touched another"
    );

    let mut ghost = changed.clone();
    ghost.id = r2.id + 1000;
    let e = err_of(
        s.update_rule(&ghost, &ghost).await,
        "update_rule of an unknown id",
    );
    assert!(
        matches!(e, Error::NotFound { .. }),
        "expected NotFound, got {e:?}"
    );
    assert_eq!(
        ok(s.get_rule(ghost.id).await, "get_rule"),
        None,
        "update created a rule"
    );

    assert!(
        ok(s.delete_rule(r2.id).await, "delete_rule"),
        "reports the rule"
    );
    let (deleted, _) = rules(&s).await;
    assert!(deleted > updated, "a delete advanced no generation");
    assert!(!ok(s.delete_rule(r2.id).await, "delete_rule again"));
    assert_eq!(
        rules(&s).await,
        (deleted, vec![changed]),
        "deleting nothing changed the set"
    );
    assert_eq!(ok(s.get_rule(r2.id).await, "get_rule"), None);
    let r3 = ok(s.create_rule(&d1).await, "create_rule after a delete");
    assert!(r3.id > r2.id, "an id was reused: {} after {}", r3.id, r2.id);
    assert_eq!(
        ok(s.get_rule(-1).await, "get_rule of a built-in id"),
        None,
        "built-ins are not stored"
    );
}

// ---- revoked tokens ----------------------------------------------------

async fn revocations_last_until_the_token_expires(s: Store) {
    let revocation = |id: &str, expires: i64| Revocation {
        token_id: id.to_string(),
        expires: t(expires),
    };
    let live = |at: i64| {
        let s = s.clone();
        async move { ok(s.live_revocations(t(at)).await, "live_revocations") }
    };
    let revoke = |id: &'static str, expires: i64, at: i64| {
        let s = s.clone();
        async move {
            ok(
                s.revoke_token(&revocation(id, expires), t(at)).await,
                "revoke_token",
            )
        }
    };
    assert!(live(0).await.is_empty(), "a new store has revocations");
    revoke("b", 20, 1).await;
    revoke("a", 10, 1).await;
    revoke("a", 10, 2).await;
    assert_eq!(
        live(5).await,
        vec![revocation("a", 10), revocation("b", 20)],
        "by token id, a token revoked twice once"
    );
    assert_eq!(
        live(10).await,
        vec![revocation("b", 20)],
        "a revocation ends when its token expires"
    );
    assert_eq!(
        live(5).await,
        vec![revocation("a", 10), revocation("b", 20)],
        "listing changes nothing"
    );
    revoke("c", 30, 15).await;
    assert_eq!(
        live(5).await,
        vec![revocation("b", 20), revocation("c", 30)],
        "a revocation drops those that ended by its time"
    );
}

// ---- audit -------------------------------------------------------------

fn event(
    secs: i64,
    event_type: EventType,
    actor: Option<&str>,
    repository: Option<&str>,
) -> NewAuditEvent {
    NewAuditEvent {
        time: t(secs),
        event_type,
        actor_id: actor.map(str::to_string),
        repository: repository.map(repo),
        digest: None,
        ip: None,
        details: BTreeMap::new(),
    }
}

/// `complete_upload`, `mount_blob` and `put_manifest` record their event
/// with the change; one that changes nothing records nothing. (A push
/// whose event cannot be written stores nothing: `scripts/faults.sh` fills
/// the database's disk for that.)
async fn changes_record_their_event_in_the_same_step(s: Store) {
    let recorded = || async {
        let all = AuditQuery {
            limit: ALL,
            ..AuditQuery::default()
        };
        let mut events: Vec<NewAuditEvent> = ok(s.query_audit(&all).await, "query_audit")
            .into_iter()
            .map(|e| e.event)
            .collect();
        events.reverse();
        events
    };
    let (a, b) = (repo("audited/a"), repo("audited/b"));
    let blob = upload(&s, &a, b"audited layer", t(1)).await;
    let uploaded = audited(EventType::BlobUploaded, t(1));
    assert_eq!(recorded().await, vec![uploaded.clone()]);

    let mounted = audited(EventType::BlobMounted, t(2));
    ok(
        s.mount_blob(&a, &b, &blob.digest, t(2), Provenance::Pushed, &mounted)
            .await,
        "mount_blob",
    );
    let absent = sha256(b"not in a");
    let none = s
        .mount_blob(
            &a,
            &b,
            &absent,
            t(3),
            Provenance::Pushed,
            &audited(EventType::BlobMounted, t(3)),
        )
        .await;
    assert!(ok(none, "mount_blob of an absent blob").is_none());

    let m = image(&a, "audited", &[&blob], t(4));
    ok(s.put_manifest(m.clone(), &pushed(&m)).await, "put_manifest");
    let missing = image(&a, "missing", &[&info(b"never uploaded")], t(5));
    err_of(
        s.put_manifest(missing.clone(), &pushed(&missing)).await,
        "put_manifest with an absent blob",
    );
    err_of(
        s.complete_upload(
            &new_id(),
            &blob,
            t(6),
            Provenance::Pushed,
            &audited(EventType::BlobUploaded, t(6)),
        )
        .await,
        "complete_upload of an unknown session",
    );
    assert_eq!(
        recorded().await,
        vec![uploaded, mounted, pushed(&m)],
        "only the changes that happened are recorded, each once"
    );
}

async fn pushed_repositories_are_those_under_a_prefix_with_a_pushed_manifest(s: Store) {
    for (name, provenance) in [
        ("hub", Provenance::Pushed),
        ("hub/a", Provenance::Pushed),
        ("hub/b/c", Provenance::Pushed),
        ("hub/cached", Provenance::Mirrored),
        ("hub-x/d", Provenance::Pushed),
        ("hub0", Provenance::Pushed),
        ("hubble/e", Provenance::Pushed),
        ("other/f", Provenance::Pushed),
    ] {
        let r = repo(name);
        let b = upload_as(&s, &r, b"shared layer", t(1), provenance).await;
        let mut m = image(&r, name, &[&b], t(2));
        m.provenance = provenance;
        ok(s.put_manifest(m.clone(), &pushed(&m)).await, "put_manifest");
    }
    let names = |v: Vec<RepoName>| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    let got = ok(
        s.pushed_repositories(&repo("hub"), ALL).await,
        "pushed_repositories",
    );
    assert_eq!(names(got), ["hub", "hub/a", "hub/b/c"]);
    let got = ok(
        s.pushed_repositories(&repo("hub"), 2).await,
        "pushed_repositories",
    );
    assert_eq!(names(got), ["hub", "hub/a"], "at most `limit`");
    let got = ok(
        s.pushed_repositories(&repo("hub/b"), ALL).await,
        "pushed_repositories",
    );
    assert_eq!(names(got), ["hub/b/c"]);
    let got = ok(
        s.pushed_repositories(&repo("none"), ALL).await,
        "pushed_repositories",
    );
    assert!(got.is_empty());
}

/// A link made by a client's upload or mount counts as pushed content
/// without a manifest (review of issue 13, D3); one a pull-through fill
/// made does not; making a link again keeps it pushed if either was a
/// push, and unlinking forgets it.
async fn pushed_repositories_include_those_with_pushed_blob_links_alone(s: Store) {
    let mount = |from: &'static str, to: &'static str, digest: Digest, p: Provenance| {
        let s = s.clone();
        async move {
            let got = s
                .mount_blob(
                    &repo(from),
                    &repo(to),
                    &digest,
                    t(3),
                    p,
                    &audited(EventType::BlobMounted, t(3)),
                )
                .await;
            assert!(ok(got, "mount_blob").is_some(), "{from} holds the blob");
        }
    };
    let layer = upload(&s, &repo("other/src"), b"layer", t(1)).await;
    upload(&s, &repo("hub/uploaded"), b"uploaded", t(1)).await;
    mount(
        "other/src",
        "hub/mounted",
        layer.digest.clone(),
        Provenance::Pushed,
    )
    .await;
    upload_as(
        &s,
        &repo("hub/filled"),
        b"filled",
        t(1),
        Provenance::Mirrored,
    )
    .await;
    mount(
        "other/src",
        "hub/linked",
        layer.digest.clone(),
        Provenance::Mirrored,
    )
    .await;
    // Filled, then uploaded by a client: pushed.
    upload_as(
        &s,
        &repo("hub/filled-then-pushed"),
        b"f",
        t(1),
        Provenance::Mirrored,
    )
    .await;
    upload(&s, &repo("hub/filled-then-pushed"), b"f", t(2)).await;
    // Uploaded, then linked by a fill: still pushed.
    upload(&s, &repo("hub/pushed-then-linked"), b"layer", t(1)).await;
    mount(
        "other/src",
        "hub/pushed-then-linked",
        layer.digest.clone(),
        Provenance::Mirrored,
    )
    .await;
    // Uploaded, unlinked, then filled: not pushed any more.
    let gone = upload(&s, &repo("hub/unlinked"), b"gone", t(1)).await;
    ok(
        s.unlink_blob(
            &repo("hub/unlinked"),
            &gone.digest,
            &crate::testing::blob_unlink(),
        )
        .await,
        "unlink",
    );
    upload_as(
        &s,
        &repo("hub/unlinked"),
        b"gone",
        t(2),
        Provenance::Mirrored,
    )
    .await;
    // Emptied, then filled: not pushed any more.
    upload(&s, &repo("hub/emptied"), b"emptied", t(1)).await;
    ok(s.empty_repository(&repo("hub/emptied")).await, "empty");
    upload_as(
        &s,
        &repo("hub/emptied"),
        b"emptied",
        t(2),
        Provenance::Mirrored,
    )
    .await;

    let got = ok(
        s.pushed_repositories(&repo("hub"), ALL).await,
        "pushed_repositories",
    );
    let names: Vec<String> = got.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "hub/filled-then-pushed",
            "hub/mounted",
            "hub/pushed-then-linked",
            "hub/uploaded"
        ]
    );
}

async fn audit_filters_order_and_window(s: Store) {
    let mut e1 = event(10, EventType::ManifestPushed, Some("alice"), Some("a"));
    e1.digest = Some(sha256(b"manifest"));
    e1.ip = Some("192.0.2.7".to_string());
    e1.details.insert("tag".to_string(), "v1".to_string());
    e1.details
        .insert("note".to_string(), "quotes \" and unicode ✓".to_string());
    let e2 = event(20, EventType::ManifestPulled, Some("bob"), Some("a"));
    let e3 = event(20, EventType::ManifestPulled, Some("alice"), Some("b"));
    let e4 = event(30, EventType::Login, Some("alice"), None);
    let e5 = event(40, EventType::PolicyDeny, None, Some("a"));
    // Recorded out of time order: "newest" is by event time. Some one by
    // one, some in batches: a batch keeps its order (e3 after e2, both at
    // 20 s) like single records do.
    ok(s.record_audit(&e1).await, "record_audit");
    ok(
        s.record_audits(&[e2.clone(), e3.clone()]).await,
        "record_audits",
    );
    ok(s.record_audits(&[]).await, "record_audits of nothing");
    ok(s.record_audit(&e5).await, "record_audit");
    ok(
        s.record_audits(std::slice::from_ref(&e4)).await,
        "record_audits",
    );
    let query = |q: AuditQuery| {
        let s = s.clone();
        async move { ok(s.query_audit(&q).await, "query_audit") }
    };
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        };
        f(&mut q);
        q
    };

    let all = query(q(|_| {})).await;
    let mut ids: Vec<i64> = all.iter().map(|e| e.id).collect();
    assert!(
        ids.iter().all(|&id| id > 0),
        "audit ids are positive: {ids:?}"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "audit ids are distinct");
    let events =
        |v: Vec<crate::audit::AuditEvent>| v.into_iter().map(|e| e.event).collect::<Vec<_>>();
    assert_eq!(
        events(all),
        vec![e5.clone(), e4.clone(), e3.clone(), e2.clone(), e1.clone()],
        "newest first (by time; equal times, last recorded first), every field kept"
    );
    let cases: Vec<(&str, AuditQuery, Vec<&NewAuditEvent>)> = vec![
        (
            "event_type",
            q(|q| q.event_type = Some(EventType::ManifestPulled)),
            vec![&e3, &e2],
        ),
        (
            "actor_id",
            q(|q| q.actor_id = Some("alice".into())),
            vec![&e4, &e3, &e1],
        ),
        (
            "repository",
            q(|q| q.repository = Some(repo("a"))),
            vec![&e5, &e2, &e1],
        ),
        (
            "since..until (inclusive)",
            q(|q| (q.since, q.until) = (Some(t(20)), Some(t(30)))),
            vec![&e4, &e3, &e2],
        ),
        ("since", q(|q| q.since = Some(t(31))), vec![&e5]),
        ("until", q(|q| q.until = Some(t(10))), vec![&e1]),
        (
            "actor and repository",
            q(|q| {
                q.actor_id = Some("alice".into());
                q.repository = Some(repo("a"));
            }),
            vec![&e1],
        ),
        (
            "no match",
            q(|q| q.event_type = Some(EventType::GcCompleted)),
            vec![],
        ),
        ("limit", q(|q| q.limit = 2), vec![&e5, &e4]),
        (
            "limit and offset",
            q(|q| (q.limit, q.offset) = (2, 2)),
            vec![&e3, &e2],
        ),
        ("offset near the end", q(|q| q.offset = 4), vec![&e1]),
        ("offset past the end", q(|q| q.offset = 5), vec![]),
        (
            "filter and window",
            q(|q| {
                q.actor_id = Some("alice".into());
                q.limit = 1;
                q.offset = 1;
            }),
            vec![&e3],
        ),
    ];
    for (what, q, want) in cases {
        for e in &want {
            assert!(
                q.matches(e),
                "{what}: the contract disagrees with AuditQuery::matches"
            );
        }
        let want: Vec<NewAuditEvent> = want.into_iter().cloned().collect();
        assert_eq!(events(query(q).await), want, "audit query by {what}");
    }
}

// ---- long listings -----------------------------------------------------
// ---- readiness and metrics -----------------------------------------------

async fn totals_count_blob_rows_once_and_open_sessions(s: Store) {
    let totals = |t: StoreTotals| (t.blobs, t.blob_bytes, t.upload_sessions);
    assert_eq!(totals(ok(s.totals().await, "totals")), (0, 0, 0));
    let (a, b) = (repo("totals/a"), repo("totals/b"));
    let one = upload(&s, &a, b"one blob", t(1)).await;
    // The same content in a second repository is one more link, not a
    // second row.
    upload(&s, &b, b"one blob", t(2)).await;
    let two = upload(&s, &b, b"another blob, longer", t(3)).await;
    let open = session(&s, &a, t(4)).await;
    assert_eq!(
        totals(ok(s.totals().await, "totals")),
        (2, one.size + two.size, 1)
    );
    ok(s.delete_upload(&open.id).await, "delete_upload");
    sweep(&s, t(100)).await;
    assert_eq!(totals(ok(s.totals().await, "totals")), (0, 0, 0));
}

async fn probe_passes_and_changes_nothing(s: Store) {
    ok(s.probe().await, "probe on an empty store");
    let r = repo("probe/app");
    upload(&s, &r, b"kept", t(1)).await;
    ok(s.probe().await, "probe");
    assert_eq!(
        ok(
            s.list_repositories(&page(None, ALL)).await,
            "list_repositories"
        ),
        vec![r]
    );
    assert!(ok(s.query_audit(&AuditQuery::default()).await, "query_audit").is_empty());
}

/// More entries than an adapter reads in one page (adapters page by a few
/// hundred at most), so paging is exercised.
const LONG: u32 = 300;

async fn long_listings_come_whole_in_order_while_they_change(s: Store) {
    let r = repo("many");
    let mut opened = Vec::new();
    for i in 0..LONG {
        opened.push(session(&s, &r, t(i64::from(i))).await);
    }
    // The purge's pattern: every idle session is handled (here completed
    // into a blob row, which removes the session) while the listing runs;
    // none may be skipped or repeated.
    let mut idle = s.uploads_idle_since(t(i64::from(LONG)));
    let mut seen = Vec::new();
    while let Some(session) = ok(idle.try_next().await, "uploads_idle_since") {
        let blob = info(format!("blob {}", session.active.as_millis()).as_bytes());
        ok(
            s.complete_upload(
                &session.id,
                &blob,
                t(1000),
                Provenance::Pushed,
                &audited(EventType::BlobUploaded, t(1000)),
            )
            .await,
            "complete_upload while listing",
        );
        seen.push(session.id);
    }
    let expected: Vec<UploadId> = opened.iter().map(|o| o.id.clone()).collect();
    assert_eq!(seen, expected, "longest idle first, each once");

    let rows = ok(collect(s.list_blobs()).await, "list_blobs");
    assert_eq!(rows.len(), LONG as usize);
    assert!(
        rows.windows(2).all(|w| w[0].digest < w[1].digest),
        "list_blobs is in ascending digest order"
    );
}

// ---- concurrency -------------------------------------------------------

async fn concurrent_puts_to_one_tag_leave_it_on_one(s: Store) {
    let r = repo("race");
    let manifests: Vec<NewManifest> = (0..16)
        .map(|i| tagged(image(&r, &format!("racer-{i}"), &[], t(i)), "latest"))
        .collect();
    let events: Vec<NewAuditEvent> = manifests.iter().map(pushed).collect();
    let results = join_all(
        manifests
            .iter()
            .zip(&events)
            .map(|(m, e)| s.put_manifest(m.clone(), e)),
    )
    .await;
    for r in results {
        ok(r, "concurrent put_manifest");
    }
    let winner = by_tag(&s, &r, "latest").await.expect("the tag exists");
    assert!(
        manifests.iter().any(|m| m.digest == winner),
        "the tag points at none of the puts"
    );
    assert_eq!(tags(&s, &r).await, strings(&["latest"]));
    for m in &manifests {
        assert!(
            has_manifest(&s, &r, &m.digest).await,
            "a concurrent put was lost"
        );
    }
    let detail = ok(s.repository_detail(&r).await, "detail").expect("race exists");
    assert_eq!(detail.summary.manifest_count, 16);
}

async fn concurrent_completions_of_one_blob(s: Store) {
    let blob = info(b"everyone pushes this layer");
    let names: Vec<RepoName> = (0..4).map(|i| repo(&format!("repo{i}"))).collect();
    let mut sessions = Vec::new();
    for i in 0..8 {
        sessions.push(session(&s, &names[i % 4], t(1)).await);
    }
    let event = audited(EventType::BlobUploaded, t(2));
    let done = join_all(
        sessions
            .iter()
            .map(|x| s.complete_upload(&x.id, &blob, t(2), Provenance::Pushed, &event)),
    )
    .await;
    for r in done {
        ok(r, "concurrent complete_upload");
    }
    assert_eq!(
        ok(collect(s.list_blobs()).await, "list_blobs"),
        vec![blob.clone()],
        "one row"
    );
    for name in &names {
        assert_eq!(
            linked(&s, name, &blob.digest).await,
            Some(blob.clone()),
            "linked in {name}"
        );
    }
    for x in &sessions {
        assert_eq!(
            ok(s.get_upload(&x.id).await, "get_upload"),
            None,
            "a session survived"
        );
    }
}
