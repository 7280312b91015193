//! What the SQLite store promises beyond the port contract: its file,
//! pragmas, migrations, indexes, snapshots, cascades, and atomicity under
//! contention. The database is opened behind the store's back with a plain
//! rusqlite connection to see exactly what is on disk.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mcr_adapters::sqlite::{backup_path, SqliteMetaStore, SCHEMA_VERSION};
use mcr_core::audit::EventType;
use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::media::MediaType;
use mcr_core::names::{Reference, RepoName, Tag};
use mcr_core::policy::TagGuard;
use mcr_core::policy::{Effect, RuleDraft};
use mcr_core::ports::prelude::*;
use mcr_core::ports::{BlobInfo, NewManifest, Provenance, UploadCaps, UploadSession, UploadState};
use mcr_core::principal::Action;
use mcr_core::testing::{audited, pushed};
use mcr_core::time::Timestamp;
use mcr_core::Error;
use rusqlite::types::Value;
use rusqlite::Connection;

fn repo() -> RepoName {
    RepoName::new("team/app").unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn fresh() -> (tempfile::TempDir, SqliteMetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetaStore::open(&dir.path().join("mcr.db")).unwrap();
    (dir, store)
}

/// Uploads `data` into `repo` and returns its digest.
async fn blob_in(store: &SqliteMetaStore, repo: &RepoName, data: &[u8]) -> Digest {
    let id = UploadId::generate().unwrap();
    let at = Timestamp::from_millis(1_000);
    store
        .create_upload(
            &UploadSession {
                id: id.clone(),
                repository: repo.clone(),
                state: UploadState::default(),
                active: at,
            },
            "test",
            &UploadCaps::NONE,
        )
        .await
        .unwrap();
    let digest = Digest::sha256_of(data);
    let blob = BlobInfo {
        digest: digest.clone(),
        size: data.len() as u64,
    };
    let event = audited(EventType::BlobUploaded, at);
    store
        .complete_upload(&id, &blob, at, Provenance::Pushed, &event)
        .await
        .unwrap();
    digest
}

/// Stores `m` with its `manifest_pushed` event.
async fn put(store: &SqliteMetaStore, m: NewManifest) -> mcr_core::Result<()> {
    let event = pushed(&m);
    store.put_manifest(m, &event).await
}

fn manifest(n: usize, blob: &Digest, tag: &str) -> NewManifest {
    let raw = format!("{{\"n\":{n},\"blob\":\"{blob}\"}}");
    NewManifest {
        repository: repo(),
        digest: Digest::sha256_of(raw.as_bytes()),
        media_type: MediaType::new("application/vnd.oci.image.manifest.v1+json").unwrap(),
        raw: Bytes::from(raw),
        subject: None,
        artifact_type: None,
        blobs: vec![blob.clone()],
        children: vec![],
        tags: vec![Tag::new(tag).unwrap()],
        tag_guard: TagGuard::open(),
        created: Timestamp::from_millis(2_000 + n as i64),
        provenance: Provenance::Pushed,
    }
}

fn strings(c: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = c.prepare(sql).unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

fn count(c: &Connection, table: &str) -> i64 {
    c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Every table's rows, in a stable order.
fn dump(path: &Path) -> BTreeMap<String, Vec<Vec<Value>>> {
    let c = Connection::open(path).unwrap();
    let tables = strings(
        &c,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    );
    tables
        .into_iter()
        .map(|t| {
            let mut stmt = c
                .prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2"))
                .unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
                .unwrap()
                .collect::<Result<Vec<Vec<Value>>, _>>()
                .unwrap();
            (t, rows)
        })
        .collect()
}

/// The schema as SQLite records it, and the migrations as recorded.
fn schema_and_migrations(path: &Path) -> (Vec<String>, Vec<(i64, i64)>) {
    let c = Connection::open(path).unwrap();
    let schema = strings(
        &c,
        "SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master ORDER BY name",
    );
    let mut stmt = c
        .prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        .unwrap();
    let migrations = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (schema, migrations)
}

#[tokio::test]
async fn a_new_file_is_private_and_in_wal_mode() {
    let (dir, store) = fresh();
    let path = dir.path().join("mcr.db");
    blob_in(&store, &repo(), b"layer").await;
    assert_eq!(mode(&path), 0o600);
    // SQLite gives its side files the main file's mode.
    for side in ["mcr.db-wal", "mcr.db-shm"] {
        let p = dir.path().join(side);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{side}");
        }
    }
    let c = Connection::open(&path).unwrap();
    let journal: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal", "WAL is recorded in the file itself");
}

#[tokio::test]
async fn an_existing_file_is_tightened_to_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcr.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    SqliteMetaStore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test]
async fn migrations_are_recorded_once_and_reopening_changes_nothing() {
    let (dir, store) = fresh();
    let path = dir.path().join("mcr.db");
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    drop(store);
    let (schema, migrations) = schema_and_migrations(&path);
    assert_eq!(
        migrations.iter().map(|m| m.0).collect::<Vec<_>>(),
        (1..=SCHEMA_VERSION).collect::<Vec<_>>(),
        "each migration recorded once, in order"
    );
    assert!(migrations.iter().all(|m| m.1 > 0), "applied_at is stamped");

    SqliteMetaStore::open(&path).unwrap();
    SqliteMetaStore::open(&path).unwrap();
    assert_eq!(
        schema_and_migrations(&path),
        (schema, migrations),
        "opening again re-ran a migration"
    );
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused() {
    let (dir, store) = fresh();
    drop(store);
    let path = dir.path().join("mcr.db");
    Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 1)",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
    let e = SqliteMetaStore::open(&path).unwrap_err();
    assert!(
        matches!(&e, Error::Storage(s) if s.to_string().contains("newer")),
        "{e}"
    );
}

#[test]
fn a_file_that_cannot_be_created_is_a_storage_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = SqliteMetaStore::open(&dir.path().join("missing/mcr.db")).unwrap_err();
    assert!(
        matches!(&e, Error::Storage(s) if s.to_string().contains("missing")),
        "{e}"
    );
}

#[tokio::test]
async fn every_table_and_lookup_index_exists() {
    let (dir, _store) = fresh();
    let c = Connection::open(dir.path().join("mcr.db")).unwrap();
    let tables = strings(&c, "SELECT name FROM sqlite_master WHERE type = 'table'");
    for t in [
        "audit_log",
        "blobs",
        "manifest_references",
        "manifests",
        "policy_rules",
        "repositories",
        "repository_blobs",
        "schema_migrations",
        "tags",
        "uploads",
    ] {
        assert!(
            tables.iter().any(|x| x == t),
            "table {t} missing: {tables:?}"
        );
    }
    let indexes = strings(
        &c,
        "SELECT name || ' ON ' || tbl_name FROM sqlite_master WHERE type = 'index'",
    );
    for i in [
        "manifests_by_subject ON manifests",
        "tags_by_manifest ON tags",
        "manifest_references_by_digest ON manifest_references",
        "repository_blobs_by_digest ON repository_blobs",
        "uploads_by_active ON uploads",
        "uploads_by_repository ON uploads",
        "audit_by_time ON audit_log",
        "audit_by_type ON audit_log",
        "audit_by_actor ON audit_log",
        "audit_by_repository ON audit_log",
    ] {
        assert!(
            indexes.iter().any(|x| x == i),
            "index {i} missing: {indexes:?}"
        );
    }
}

#[tokio::test]
async fn deleting_a_manifest_cascades_to_its_tags_and_references() {
    let (dir, store) = fresh();
    let blob = blob_in(&store, &repo(), b"layer").await;
    let m = manifest(1, &blob, "v1");
    put(&store, m.clone()).await.unwrap();
    put(
        &store,
        NewManifest {
            tags: vec![Tag::new("v1-alias").unwrap()],
            tag_guard: TagGuard::open(),
            ..m.clone()
        },
    )
    .await
    .unwrap();
    assert!(store
        .delete_manifest(
            &repo(),
            &m.digest,
            &TagGuard::open(),
            mcr_core::ports::ManifestDelete::WithTags,
            &mcr_core::testing::manifest_deletion()
        )
        .await
        .unwrap());
    // Only foreign keys, which SQLite enforces per connection and only
    // when asked, can have done this.
    let c = Connection::open(dir.path().join("mcr.db")).unwrap();
    assert_eq!(count(&c, "tags"), 0);
    assert_eq!(count(&c, "manifest_references"), 0);
    assert_eq!(count(&c, "repository_blobs"), 1, "the link stays");
    assert_eq!(count(&c, "blobs"), 1, "the row stays for GC");
}

#[tokio::test]
async fn deleting_a_repository_cascades_to_everything_but_blob_rows() {
    let (dir, store) = fresh();
    let blob = blob_in(&store, &repo(), b"layer").await;
    put(&store, manifest(1, &blob, "v1")).await.unwrap();
    let pending = UploadId::generate().unwrap();
    store
        .create_upload(
            &UploadSession {
                id: pending.clone(),
                repository: repo(),
                state: UploadState {
                    size: 7,
                    data: bytes::Bytes::from_static(b"state"),
                },
                active: Timestamp::from_millis(3_000),
            },
            "test",
            &UploadCaps::NONE,
        )
        .await
        .unwrap();
    let other = RepoName::new("team/other").unwrap();
    let kept = blob_in(&store, &other, b"other layer").await;

    assert_eq!(
        store
            .delete_repository(
                &repo(),
                &TagGuard::open(),
                &mcr_core::testing::repo_deletion()
            )
            .await
            .unwrap(),
        Some(vec![pending])
    );
    let c = Connection::open(dir.path().join("mcr.db")).unwrap();
    for table in ["manifests", "tags", "manifest_references", "uploads"] {
        assert_eq!(count(&c, table), 0, "{table}");
    }
    assert_eq!(count(&c, "repository_blobs"), 1, "only the other's link");
    assert_eq!(count(&c, "blobs"), 2, "blob rows stay for GC");
    assert!(store
        .blob_in_repository(&other, &kept)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .delete_repository(
                &repo(),
                &TagGuard::open(),
                &mcr_core::testing::repo_deletion()
            )
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_snapshot_is_a_private_copy_with_the_same_rows_in_backups() {
    let (dir, store) = fresh();
    let blob = blob_in(&store, &repo(), b"layer").await;
    put(&store, manifest(1, &blob, "v1")).await.unwrap();
    store
        .create_rule(&RuleDraft {
            priority: 5,
            description: "readers".into(),
            effect: Effect::Allow,
            actions: vec![Action::Pull],
            roles: vec![],
            account_types: vec![],
            subject: None,
            repositories: vec![],
            tags: vec![],
            enabled: true,
        })
        .await
        .unwrap();
    let at = Timestamp::from_millis(1_700_000_000_123);
    let dest = PathBuf::from(store.snapshot(at).await.unwrap());
    assert_eq!(
        dest,
        dir.path().join("backups").join("mcr-20231114-221320.db")
    );
    assert_eq!(dest, backup_path(store.path(), at));
    assert_eq!(mode(&dir.path().join("backups")), 0o700);
    assert_eq!(mode(&dest), 0o600);
    assert_eq!(dump(&dest), dump(&dir.path().join("mcr.db")));
    let c = Connection::open(&dest).unwrap();
    assert_eq!(count(&c, "manifests"), 1);
    assert_eq!(count(&c, "policy_rules"), 1);

    // And the copy opens as a store.
    let copy = SqliteMetaStore::open(&dest).unwrap();
    let m = copy
        .get_manifest(&repo(), &Reference::Tag(Tag::new("v1").unwrap()))
        .await
        .unwrap();
    assert_eq!(m.map(|m| m.digest), Some(manifest(1, &blob, "v1").digest));
}

/// A restored snapshot numbers new outbox rows from its last one again,
/// but the events' CloudEvents ids are drawn anew: a receiver that saw
/// the events written after the snapshot drops none of the new ones.
#[tokio::test]
async fn events_after_a_restored_snapshot_carry_ids_never_seen_before() {
    let (dir, store) = fresh();
    let blob = blob_in(&store, &repo(), b"layer").await;
    put(&store, manifest(1, &blob, "v1")).await.unwrap();
    let snapshot = PathBuf::from(
        store
            .snapshot(Timestamp::from_millis(1_700_000_000_000))
            .await
            .unwrap(),
    );
    for n in 2..=4 {
        put(&store, manifest(n, &blob, "v1")).await.unwrap();
    }
    let delivered = store.outbox_after(0, 100).await.unwrap();
    let seen: std::collections::BTreeSet<String> =
        delivered.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(seen.len(), delivered.len());
    drop(store);

    let restored_path = dir.path().join("restored.db");
    std::fs::copy(&snapshot, &restored_path).unwrap();
    let restored = SqliteMetaStore::open(&restored_path).unwrap();
    for n in 5..=7 {
        put(&restored, manifest(n, &blob, "v1")).await.unwrap();
    }
    let after = restored.outbox_after(0, 100).await.unwrap();
    let new: Vec<_> = after
        .iter()
        .filter(|e| !seen.contains(&e.event_id.to_string()))
        .collect();
    assert!(
        new.iter().any(|e| delivered.iter().any(|d| d.id == e.id)),
        "the restore rolled the row numbers back: {after:?}"
    );
    assert_eq!(
        after.len() - new.len(),
        1,
        "only the snapshot's own event is one seen before"
    );
    assert!(new.len() >= 3, "{new:?}");
}

#[tokio::test]
async fn a_snapshot_never_overwrites_a_file() {
    let (dir, store) = fresh();
    let at = Timestamp::from_millis(1_700_000_000_000);
    let dest = backup_path(store.path(), at);
    std::fs::create_dir(dir.path().join("backups")).unwrap();
    std::fs::write(&dest, b"precious").unwrap();
    let e = store.snapshot(at).await.unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_taken_during_pushes_is_consistent() {
    let (_dir, store) = fresh();
    let store = Arc::new(store);
    let blob = blob_in(&store, &repo(), b"layer").await;
    let pushes: Vec<_> = (0..64)
        .map(|n| {
            let store = Arc::clone(&store);
            let m = manifest(n, &blob, &format!("t{n}"));
            tokio::spawn(async move { put(&store, m).await })
        })
        .collect();
    let snap = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.snapshot(Timestamp::from_millis(2_000)).await })
    };
    for p in pushes {
        p.await.unwrap().unwrap();
    }
    let dest = snap.await.unwrap().unwrap();

    let c = Connection::open(&dest).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    assert!(strings(&c, "PRAGMA foreign_key_check").is_empty());
    // Whatever the copy caught, it caught whole: each manifest with its
    // reference and its tag.
    let (manifests, refs, tags) = (
        count(&c, "manifests"),
        count(&c, "manifest_references"),
        count(&c, "tags"),
    );
    assert_eq!((refs, tags), (manifests, manifests));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_to_one_tag_leave_it_on_one_whole_manifest() {
    let (dir, store) = fresh();
    let store = Arc::new(store);
    let blob = blob_in(&store, &repo(), b"shared").await;
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let store = Arc::clone(&store);
            let m = manifest(n, &blob, "latest");
            tokio::spawn(async move { put(&store, m).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let digests: Vec<Digest> = (0..16)
        .map(|n| manifest(n, &blob, "latest").digest)
        .collect();
    let tagged = store
        .get_manifest(&repo(), &Reference::Tag(Tag::new("latest").unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert!(digests.contains(&tagged.digest));

    let c = Connection::open(dir.path().join("mcr.db")).unwrap();
    assert_eq!(count(&c, "tags"), 1);
    let incomplete = strings(
        &c,
        "SELECT m.digest FROM manifests m WHERE NOT EXISTS (
             SELECT 1 FROM manifest_references r WHERE r.manifest_id = m.id AND r.kind = 'blob')",
    );
    assert!(
        incomplete.is_empty(),
        "manifests without references: {incomplete:?}"
    );
    let refs = strings(&c, "SELECT DISTINCT digest FROM manifest_references");
    assert_eq!(refs, vec![blob.to_string()]);
    assert_eq!(
        (count(&c, "manifests"), count(&c, "manifest_references")),
        (16, 16)
    );
}

#[tokio::test]
async fn a_push_missing_a_blob_leaves_nothing_behind() {
    let (dir, store) = fresh();
    // A repository that does not exist yet: not even it may appear.
    let fresh_repo = RepoName::new("team/new").unwrap();
    let absent = Digest::sha256_of(b"absent");
    let mut m = manifest(1, &absent, "v1");
    m.repository = fresh_repo.clone();
    let e = put(&store, m).await.unwrap_err();
    assert!(
        matches!(&e, Error::ManifestBlobUnknown(d) if *d == absent),
        "{e}"
    );
    assert!(!store.repository_exists(&fresh_repo).await.unwrap());

    // A repository that exists, with one blob of two.
    let present = blob_in(&store, &repo(), b"present").await;
    let mut m = manifest(2, &present, "v2");
    m.blobs.push(absent.clone());
    let e = put(&store, m).await.unwrap_err();
    assert!(
        matches!(&e, Error::ManifestBlobUnknown(d) if *d == absent),
        "{e}"
    );

    let c = Connection::open(dir.path().join("mcr.db")).unwrap();
    for table in ["manifests", "tags", "manifest_references"] {
        assert_eq!(count(&c, table), 0, "{table}");
    }
    assert_eq!(count(&c, "repositories"), 1);
}

#[tokio::test]
async fn an_index_missing_a_child_leaves_nothing_behind() {
    let (dir, store) = fresh();
    let blob = blob_in(&store, &repo(), b"layer").await;
    let child = manifest(1, &blob, "child");
    put(&store, child.clone()).await.unwrap();
    let absent = Digest::sha256_of(b"absent child");
    let raw = Bytes::from_static(b"{\"manifests\":[]}");
    let index = NewManifest {
        repository: repo(),
        digest: Digest::sha256_of(&raw),
        media_type: MediaType::new("application/vnd.oci.image.index.v1+json").unwrap(),
        raw,
        subject: None,
        artifact_type: None,
        blobs: vec![],
        children: vec![child.digest.clone(), absent.clone()],
        tags: vec![Tag::new("child").unwrap()],
        tag_guard: TagGuard::open(),
        created: Timestamp::from_millis(9_000),
        provenance: Provenance::Pushed,
    };
    let e = put(&store, index).await.unwrap_err();
    assert!(
        matches!(&e, Error::ManifestChildUnknown(d) if *d == absent),
        "{e}"
    );

    let c = Connection::open(dir.path().join("mcr.db")).unwrap();
    assert_eq!(count(&c, "manifests"), 1, "only the child");
    assert_eq!(count(&c, "manifest_references"), 1, "only the child's");
    let tagged = store
        .get_manifest(&repo(), &Reference::Tag(Tag::new("child").unwrap()))
        .await
        .unwrap()
        .map(|m| m.digest);
    assert_eq!(tagged, Some(child.digest), "the tag did not move");
}

#[tokio::test]
async fn rules_record_when_they_were_made_and_changed() {
    let (dir, store) = fresh();
    let draft = RuleDraft {
        priority: 3,
        description: String::new(),
        effect: Effect::Deny,
        actions: vec![Action::Push],
        roles: vec![],
        account_types: vec![],
        subject: None,
        repositories: vec![],
        tags: vec![],
        enabled: true,
    };
    let mut rule = store.create_rule(&draft).await.unwrap();
    let c = Connection::open(dir.path().join("mcr.db")).unwrap();
    let stamps = |c: &Connection| -> (i64, i64) {
        c.query_row("SELECT created, updated FROM policy_rules", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    let (created, updated) = stamps(&c);
    assert!(created > 0 && updated == created);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let current = rule.clone();
    rule.priority = 4;
    store.update_rule(&current, &rule).await.unwrap();
    let (created_after, updated_after) = stamps(&c);
    assert_eq!(created_after, created);
    assert!(updated_after > updated);
    let priority: i64 = c
        .query_row("SELECT priority FROM policy_rules", [], |r| r.get(0))
        .unwrap();
    assert_eq!(priority, 4, "the sort column follows the JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_locked_out_past_the_busy_timeout_gets_a_storage_error() {
    let (dir, store) = fresh();
    let path = dir.path().join("mcr.db");
    // Another process holding the write lock for longer than the 5 s the
    // store waits.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let mut c = Connection::open(&path).unwrap();
        let tx = c
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(7));
        tx.rollback().unwrap();
    });
    locked_rx.recv().unwrap();
    let e = store
        .create_upload(
            &UploadSession {
                id: UploadId::generate().unwrap(),
                repository: repo(),
                state: UploadState::default(),
                active: Timestamp::from_millis(1),
            },
            "test",
            &UploadCaps::NONE,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Storage(s) if s.op().contains("creating an upload session")
            && s.op().contains("locked")
            && s.kind() == mcr_core::StorageErrorKind::Unavailable),
        "{e}"
    );
    // Readers are not blocked by a writer under WAL.
    assert!(!store.repository_exists(&repo()).await.unwrap());
    holder.join().unwrap();
}

#[tokio::test]
async fn no_write_commits_while_the_database_directory_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("db");
    std::fs::create_dir(&home).unwrap();
    let store = SqliteMetaStore::open(&home.join("mcr.db")).unwrap();
    let kept = blob_in(&store, &repo(), b"before").await;
    let start_upload = || async {
        store
            .create_upload(
                &UploadSession {
                    id: UploadId::generate().unwrap(),
                    repository: repo(),
                    state: UploadState::default(),
                    active: Timestamp::from_millis(1),
                },
                "test",
                &UploadCaps::NONE,
            )
            .await
    };
    let refused = |r: mcr_core::Result<()>| {
        let e = r.unwrap_err();
        assert!(
            matches!(&e, Error::Storage(s) if s.kind() == mcr_core::StorageErrorKind::Unavailable),
            "{e}"
        );
        assert!(e.to_string().contains("is not the one opened"), "{e}");
    };
    // SQLite would go on writing through its open descriptors into a file
    // no later start opens: the commit is refused instead.
    let away = dir.path().join("moved-away");
    std::fs::rename(&home, &away).unwrap();
    refused(start_upload().await);
    assert!(store.blob_exists(&kept).await.unwrap(), "reads go on");
    // Another file in its place is not the one opened either.
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join("mcr.db"), b"").unwrap();
    refused(start_upload().await);
    // Put back, the same store writes again, and nothing was committed
    // meanwhile.
    std::fs::remove_dir_all(&home).unwrap();
    std::fs::rename(&away, &home).unwrap();
    start_upload().await.unwrap();
    drop(store);
    let reopened = SqliteMetaStore::open(&home.join("mcr.db")).unwrap();
    assert!(reopened.blob_exists(&kept).await.unwrap());
    let sessions: i64 = Connection::open(home.join("mcr.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM uploads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sessions, 1, "only the session made after it came back");
}

/// Rules are stored as JSON, so the `tags` field needed no migration: a
/// rule written before it existed reads as "every tag", and a rule with
/// tags keeps them.
#[tokio::test]
async fn a_rule_stored_before_tags_existed_reads_as_every_tag() {
    let (dir, store) = fresh();
    let c = Connection::open(dir.path().join("mcr.db")).unwrap();
    c.execute(
        "INSERT INTO policy_rules (priority, enabled, rule_json) VALUES (5, 1, ?1)",
        [r#"{"id":1,"priority":5,"description":"old","effect":"deny","actions":["registry:push"],"roles":[],"account_types":[],"subject":null,"repositories":[],"enabled":true}"#],
    )
    .unwrap();
    let rules = store.list_rules().await.unwrap().rules;
    assert_eq!(rules.len(), 1);
    assert!(rules[0].tags.is_empty(), "{:?}", rules[0]);

    let tagged = store
        .create_rule(&RuleDraft {
            priority: 6,
            description: "immutable".into(),
            effect: Effect::Deny,
            actions: Action::TAG_ACTIONS.to_vec(),
            roles: vec![],
            account_types: vec![],
            subject: None,
            repositories: vec![],
            tags: vec!["v*".parse().unwrap()],
            enabled: true,
        })
        .await
        .unwrap();
    assert_eq!(store.get_rule(tagged.id).await.unwrap(), Some(tagged));
}
