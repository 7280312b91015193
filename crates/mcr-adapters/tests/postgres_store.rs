//! `PostgresMetaStore` beyond the contract suite: what only a server shared
//! by several replicas makes possible (migrations racing, steps racing GC's
//! sweep across connections) and how it fails when the server cannot be
//! used, each against a fresh database on a real PostgreSQL.

use std::sync::Arc;

use bytes::Bytes;
use mcr_adapters::postgres::testing::TestDatabase;
use mcr_adapters::postgres::{PostgresConfig, PostgresMetaStore, SCHEMA_VERSION};
use mcr_core::audit::EventType;
use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::media::{MediaType, OCI_IMAGE_MANIFEST};
use mcr_core::names::RepoName;
use mcr_core::policy::TagGuard;
use mcr_core::ports::prelude::*;
use mcr_core::ports::{
    BlobInfo, NewManifest, Provenance, Secret, UploadCaps, UploadSession, UploadState,
};
use mcr_core::testing::{audited, pushed};
use mcr_core::time::Timestamp;
use mcr_core::{Error, StorageErrorKind};
use tokio_postgres::NoTls;

/// A raw connection to the test database, to see what is stored.
async fn raw(db: &TestDatabase) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(db.url(), NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

fn repo(name: &str) -> RepoName {
    RepoName::new(name).unwrap()
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_millis(1_704_067_200_000 + secs * 1000)
}

/// `data` uploaded into `r` at `at`: its row and link are stamped `at`.
async fn upload(s: &PostgresMetaStore, r: &RepoName, data: &[u8], at: Timestamp) -> BlobInfo {
    let session = UploadSession {
        id: UploadId::generate().unwrap(),
        repository: r.clone(),
        state: UploadState::default(),
        active: at,
    };
    s.create_upload(&session, "test", &UploadCaps::NONE)
        .await
        .unwrap();
    let blob = BlobInfo {
        digest: Digest::sha256_of(data),
        size: data.len() as u64,
    };
    s.complete_upload(
        &session.id,
        &blob,
        at,
        Provenance::Pushed,
        &audited(EventType::BlobUploaded, at),
    )
    .await
    .unwrap();
    blob
}

fn manifest_of(r: &RepoName, name: &str, blob: &Digest, at: Timestamp) -> NewManifest {
    let raw = format!(r#"{{"schemaVersion":2,"annotations":{{"name":"{name}"}}}}"#);
    NewManifest {
        repository: r.clone(),
        digest: Digest::sha256_of(raw.as_bytes()),
        media_type: MediaType::new(OCI_IMAGE_MANIFEST).unwrap(),
        raw: Bytes::from(raw),
        subject: None,
        artifact_type: None,
        blobs: vec![blob.clone()],
        children: Vec::new(),
        tags: vec![],
        tag_guard: TagGuard::open(),
        created: at,
        provenance: Provenance::Pushed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let db = TestDatabase::create().await;
    let config = db.config();
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { PostgresMetaStore::connect(&config).await })
        })
        .collect();
    for start in starts {
        let store = start.await.unwrap().expect("every replica starts");
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    }
    let rows = raw(&db)
        .await
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_this_build_is_refused() {
    let db = TestDatabase::create().await;
    drop(db.store().await);
    raw(&db)
        .await
        .execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let e = PostgresMetaStore::connect(&db.config()).await.unwrap_err();
    let message = e.to_string();
    assert_eq!(kind(&e), StorageErrorKind::Permanent, "{e:?}");
    assert!(message.contains("newer than this build"), "{message}");
}

/// The kind of a storage error; panics on any other error.
fn kind(e: &Error) -> StorageErrorKind {
    e.as_storage()
        .unwrap_or_else(|| panic!("not a storage error: {e:?}"))
        .kind()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_and_named() {
    let port = closed_port();
    let config =
        PostgresConfig::from_url(&format!("postgres://mcr:pw@127.0.0.1:{port}/mcr")).unwrap();
    let e = PostgresMetaStore::connect(&config).await.unwrap_err();
    let message = e.to_string();
    assert_eq!(kind(&e), StorageErrorKind::Unavailable, "{e:?}");
    for part in [
        format!("127.0.0.1:{port}"),
        "database mcr".to_string(),
        "user mcr".to_string(),
        "refused".to_string(),
    ] {
        assert!(message.contains(&part), "{part:?} missing from {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_server_says_why_and_never_shows_the_password() {
    let db = TestDatabase::create().await;
    let wrong = Secret::new("not-the-password-4711");
    let config = db.config().password(&wrong);
    assert!(!format!("{config:?}").contains(wrong.expose()));
    let e = PostgresMetaStore::connect(&config).await.unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, Error::Storage(_)), "{e:?}");
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(!message.contains(wrong.expose()), "{message}");

    let url = db.url().replace("/mcr_test_", "/no_such_database_");
    let e = PostgresMetaStore::connect(&PostgresConfig::from_url(&url).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
    assert!(e.contains("database no_such_database_"), "{e}");
}

#[test]
fn a_bad_url_is_refused_without_repeating_it() {
    for url in [
        "postgres://mcr:secret-pw@",
        "mysql://mcr:secret-pw@h/db",
        "host=",
    ] {
        let e = PostgresConfig::from_url(url).unwrap_err().to_string();
        assert!(e.contains("database.url"), "{e}");
        assert!(!e.contains("secret-pw"), "{e}");
    }
}

/// How many times each race below is run: each round races two steps on
/// two connections, with fresh content.
const ROUNDS: usize = 25;

/// A manifest racing the sweep of its only blob either commits first (and
/// the blob is spared) or finds the blob gone: never a manifest whose blob
/// has no row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_racing_the_sweep_never_outlives_its_blob() {
    let db = TestDatabase::create().await;
    let store = Arc::new(db.store().await);
    let r = repo("race/manifest");
    for round in 0..ROUNDS {
        let blob = upload(&store, &r, format!("layer {round}").as_bytes(), t(0)).await;
        let m = manifest_of(&r, &format!("m{round}"), &blob.digest, t(100));
        let put = tokio::spawn({
            let (store, m) = (Arc::clone(&store), m.clone());
            async move { store.put_manifest(m.clone(), &pushed(&m)).await }
        });
        let sweep = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                store
                    .sweep_unreferenced_blobs(t(50), None, 1000)
                    .await
                    .map(|step| step.swept)
            }
        });
        let (put, swept) = (put.await.unwrap(), sweep.await.unwrap().unwrap());
        let row = store.blob_exists(&blob.digest).await.unwrap();
        match put {
            Ok(()) => {
                assert!(
                    row,
                    "round {round}: the manifest is stored, its blob row is gone"
                );
                assert!(swept.is_empty(), "round {round}: swept {swept:?}");
            }
            Err(Error::ManifestBlobUnknown(d)) => {
                assert_eq!(d, blob.digest);
                assert!(!row, "round {round}: refused, yet the blob row is there");
                assert_eq!(swept, vec![blob.clone()]);
            }
            Err(e) => panic!("round {round}: {e:?}"),
        }
    }
}

/// A mount racing the sweep of its blob either links it (and the blob is
/// spared) or finds nothing: never a link to a swept blob, never an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_racing_the_sweep_links_only_a_kept_blob() {
    let db = TestDatabase::create().await;
    let store = Arc::new(db.store().await);
    let (from, to) = (repo("race/from"), repo("race/to"));
    for round in 0..ROUNDS {
        let blob = upload(&store, &from, format!("mounted {round}").as_bytes(), t(0)).await;
        let mount = tokio::spawn({
            let (store, from, to, d) = (
                Arc::clone(&store),
                from.clone(),
                to.clone(),
                blob.digest.clone(),
            );
            async move {
                let event = audited(EventType::BlobMounted, t(100));
                store
                    .mount_blob(&from, &to, &d, t(100), Provenance::Pushed, &event)
                    .await
            }
        });
        let sweep = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                store
                    .sweep_unreferenced_blobs(t(50), None, 1000)
                    .await
                    .map(|step| step.swept)
            }
        });
        let mounted = mount.await.unwrap().expect("a mount never fails on a race");
        sweep.await.unwrap().unwrap();
        let row = store.blob_exists(&blob.digest).await.unwrap();
        let linked = store.blob_in_repository(&to, &blob.digest).await.unwrap();
        match mounted {
            Some(info) => {
                assert_eq!(info, blob);
                assert!(row && linked.is_some(), "round {round}: mounted but swept");
            }
            None => assert!(
                !row && linked.is_none(),
                "round {round}: not mounted, yet kept"
            ),
        }
    }
}

/// Waits until `n` sessions of the test database wait for a lock.
async fn until_blocked(raw: &tokio_postgres::Client, n: i64) {
    for _ in 0..3000 {
        let waiting: i64 = raw
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{n} sessions never blocked");
}

/// An upload of content whose old row is being swept completes, and
/// leaves the blob with a row and a link. The interleaving is forced: a
/// third session holds the old link, so the sweep stops with the blob row
/// locked, and the completion starts while it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_racing_the_sweep_of_its_content_completes() {
    let db = TestDatabase::create().await;
    let store = Arc::new(db.store().await);
    let (old, new) = (repo("race/old"), repo("race/new"));
    let blob = upload(&store, &old, b"uploaded again", t(0)).await;
    let session = UploadSession {
        id: UploadId::generate().unwrap(),
        repository: new.clone(),
        state: UploadState::default(),
        active: t(100),
    };
    store
        .create_upload(&session, "test", &UploadCaps::NONE)
        .await
        .unwrap();

    let mut holder = raw(&db).await;
    let hold = holder.transaction().await.unwrap();
    hold.execute(
        "SELECT 1 FROM repository_blobs WHERE digest = $1 FOR KEY SHARE",
        &[&blob.digest.to_string()],
    )
    .await
    .unwrap();
    let watcher = raw(&db).await;
    let sweep = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            store
                .sweep_unreferenced_blobs(t(50), None, 1000)
                .await
                .map(|step| step.swept)
        }
    });
    until_blocked(&watcher, 1).await;
    let complete = tokio::spawn({
        let (store, id, blob) = (Arc::clone(&store), session.id.clone(), blob.clone());
        async move {
            let event = audited(EventType::BlobUploaded, t(100));
            store
                .complete_upload(&id, &blob, t(100), Provenance::Pushed, &event)
                .await
        }
    });
    until_blocked(&watcher, 2).await;
    hold.commit().await.unwrap();

    assert_eq!(
        sweep.await.unwrap().unwrap(),
        vec![blob.clone()],
        "the old row is swept"
    );
    complete
        .await
        .unwrap()
        .expect("the upload completes after the sweep");
    assert!(
        store.blob_exists(&blob.digest).await.unwrap(),
        "the row is made again"
    );
    assert_eq!(
        store.blob_in_repository(&new, &blob.digest).await.unwrap(),
        Some(blob)
    );
}

/// A new upload session racing the prune of its (empty) repository is
/// never lost with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_racing_the_prune_of_its_repository_survives() {
    let db = TestDatabase::create().await;
    let store = Arc::new(db.store().await);
    for round in 0..ROUNDS {
        let r = repo(&format!("race/prune{round}"));
        let first = UploadSession {
            id: UploadId::generate().unwrap(),
            repository: r.clone(),
            state: UploadState::default(),
            active: t(0),
        };
        store
            .create_upload(&first, "test", &UploadCaps::NONE)
            .await
            .unwrap();
        store.delete_upload(&first.id).await.unwrap();
        let second = UploadSession {
            id: UploadId::generate().unwrap(),
            ..first.clone()
        };
        let create = tokio::spawn({
            let (store, s) = (Arc::clone(&store), second.clone());
            async move { store.create_upload(&s, "test", &UploadCaps::NONE).await }
        });
        let prune = tokio::spawn({
            let (store, r) = (Arc::clone(&store), r.clone());
            async move { store.prune_repository(&r).await }
        });
        create
            .await
            .unwrap()
            .expect("creating a session never fails on a race");
        prune.await.unwrap().unwrap();
        assert_eq!(
            store
                .get_upload(&second.id)
                .await
                .unwrap()
                .map(|s| s.repository),
            Some(r.clone()),
            "round {round}: the session was pruned with its repository"
        );
    }
}
