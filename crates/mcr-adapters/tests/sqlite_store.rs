//! What the SQLite store promises beyond the port contract: its file,
//! pragmas, migrations, indexes, snapshots and atomicity under contention.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use bytes::Bytes;
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::media::MediaType;
use mcr_core::names::{Reference, RepoName, Tag};
use mcr_core::ports::{BlobInfo, MetaStore, NewManifest, UploadSession};
use mcr_core::time::Timestamp;
use rusqlite::Connection;

fn repo() -> RepoName {
    RepoName::new("team/app").unwrap()
}

async fn with_blob(store: &SqliteMetaStore, data: &[u8]) -> Digest {
    let id = UploadId::generate().unwrap();
    let at = Timestamp::from_millis(1_000);
    store
        .create_upload(&UploadSession {
            id: id.clone(),
            repository: repo(),
            offset: 0,
            started: at,
        })
        .await
        .unwrap();
    let digest = Digest::sha256_of(data);
    store
        .complete_upload(
            &id,
            &BlobInfo {
                digest: digest.clone(),
                size: data.len() as u64,
            },
            at,
        )
        .await
        .unwrap();
    digest
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
        tag: Some(Tag::new(tag).unwrap()),
        created: Timestamp::from_millis(2_000 + n as i64),
    }
}

#[tokio::test]
async fn the_file_is_private_and_configured_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcr.db");
    let store = SqliteMetaStore::open(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(store);
    SqliteMetaStore::open(&path).unwrap();

    let c = Connection::open(&path).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let versions: Vec<i64> = c
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, vec![1, 2], "each migration recorded once");
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
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
            tables.contains(&t.to_string()),
            "table {t} missing from {tables:?}"
        );
    }
    let indexes: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for i in [
        "manifests_by_subject",
        "tags_by_manifest",
        "manifest_references_by_digest",
        "repository_blobs_by_digest",
        "uploads_by_started",
        "audit_by_time",
        "audit_by_type",
        "audit_by_actor",
        "audit_by_repository",
    ] {
        assert!(
            indexes.contains(&i.to_string()),
            "index {i} missing from {indexes:?}"
        );
    }
}

#[tokio::test]
async fn an_existing_file_is_tightened_to_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcr.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    SqliteMetaStore::open(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn foreign_keys_are_enforced_on_pooled_connections() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetaStore::open(&dir.path().join("mcr.db")).unwrap();
    let blob = with_blob(&store, b"layer").await;
    store.put_manifest(manifest(1, &blob, "v1")).await.unwrap();
    // Deleting the manifest cascades to its tag and references.
    let m = store
        .get_manifest(&repo(), &Reference::Tag(Tag::new("v1").unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert!(store.delete_manifest(&repo(), &m.digest).await.unwrap());
    assert!(store
        .list_tags(&repo(), &Default::default())
        .await
        .unwrap()
        .is_empty());
    let c = Connection::open(dir.path().join("mcr.db")).unwrap();
    let refs: i64 = c
        .query_row("SELECT COUNT(*) FROM manifest_references", [], |r| r.get(0))
        .unwrap();
    assert_eq!(refs, 0);
}

#[tokio::test]
async fn a_snapshot_is_a_readable_private_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetaStore::open(&dir.path().join("mcr.db")).unwrap();
    let blob = with_blob(&store, b"layer").await;
    store.put_manifest(manifest(1, &blob, "v1")).await.unwrap();
    let dest = dir.path().join("backup.db");
    store.snapshot(&dest).unwrap();
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let copy = SqliteMetaStore::open(&dest).unwrap();
    let m = copy
        .get_manifest(&repo(), &Reference::Tag(Tag::new("v1").unwrap()))
        .await
        .unwrap();
    assert!(m.is_some());
    assert_eq!(copy.list_blobs().await.unwrap().len(), 1);
    assert!(
        store.snapshot(&dest).is_err(),
        "an existing file is never overwritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_to_one_tag_leave_it_on_one_whole_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteMetaStore::open(&dir.path().join("mcr.db")).unwrap());
    let blob = with_blob(&store, b"shared").await;
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let store = Arc::clone(&store);
            let m = manifest(n, &blob, "latest");
            tokio::spawn(async move { store.put_manifest(m).await })
        })
        .collect();
    let mut digests = Vec::new();
    for (n, t) in tasks.into_iter().enumerate() {
        t.await.unwrap().unwrap();
        digests.push(manifest(n, &blob, "latest").digest);
    }
    let tagged = store
        .get_manifest(&repo(), &Reference::Tag(Tag::new("latest").unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert!(digests.contains(&tagged.digest));
    let c = Connection::open(dir.path().join("mcr.db")).unwrap();
    let (manifests, refs): (i64, i64) = c
        .query_row(
            "SELECT (SELECT COUNT(*) FROM manifests), (SELECT COUNT(*) FROM manifest_references)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (manifests, refs),
        (16, 16),
        "every manifest whole, with its reference"
    );
}

#[tokio::test]
async fn a_failed_push_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMetaStore::open(&dir.path().join("mcr.db")).unwrap();
    let blob = with_blob(&store, b"present").await;
    let mut m = manifest(1, &blob, "v1");
    m.blobs.push(Digest::sha256_of(b"absent"));
    assert!(store.put_manifest(m).await.is_err());
    let c = Connection::open(dir.path().join("mcr.db")).unwrap();
    let (manifests, tags, refs): (i64, i64, i64) = c
        .query_row(
            "SELECT (SELECT COUNT(*) FROM manifests), (SELECT COUNT(*) FROM tags), (SELECT COUNT(*) FROM manifest_references)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((manifests, tags, refs), (0, 0, 0));
}
