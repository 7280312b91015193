//! `S3BlobStore` against the `BlobStore` port contract of `mcr-core`, on a
//! real Garage started by `scripts/garage.sh`: every check on a fresh,
//! empty bucket. Also: a store refuses to connect to a bucket it cannot
//! use, naming it; the engine's purge aborts a stale upload's S3
//! multipart upload and deletes its objects.

#[path = "support/garage.rs"]
mod garage;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, TryStreamExt};
use garage::Garage;
use mcr_adapters::s3::S3BlobStore;
use mcr_core::error::{Error, StorageErrorKind};
use mcr_core::names::RepoName;
use mcr_core::policy::{Engine, PolicyEngine};
use mcr_core::ports::{BlobStore, ByteStream};
use mcr_core::registry::{Registry, RegistryConfig};
use mcr_core::testing::contract::run_blob_store_contract;
use mcr_core::testing::{user, FakeIdentity, FakeMetaStore, ManualClock};
use object_store::aws::AmazonS3Builder;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_blob_store_meets_the_blob_store_contract_on_garage() {
    let garage = Garage::start();
    let mut n = 0;
    run_blob_store_contract(|| {
        n += 1;
        let bucket = format!("check-{n}");
        garage.bucket(&bucket);
        let config = garage.config(&bucket);
        async move {
            let store = S3BlobStore::connect(&config)
                .await
                .expect("connecting to a fresh bucket");
            Arc::new(store) as Arc<dyn BlobStore>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_fails_clearly_when_the_bucket_cannot_be_used() {
    let garage = Garage::start();
    S3BlobStore::connect(&garage.config("mcr"))
        .await
        .expect("the bucket garage.sh made");

    let missing = S3BlobStore::connect(&garage.config("no-such-bucket"))
        .await
        .expect_err("a bucket that does not exist");
    assert!(
        missing.to_string().contains("no-such-bucket"),
        "the error names the bucket: {missing}"
    );

    let mut wrong_key = garage.config("mcr");
    wrong_key.secret_access_key = Some("0".repeat(64));
    let refused = S3BlobStore::connect(&wrong_key)
        .await
        .expect_err("a wrong secret");
    assert!(matches!(refused, Error::Storage(_)), "got {refused:?}");

    // A key that may only read: pulls would work and every push fail, so
    // the store refuses it at once, naming the write that failed.
    let read_only = S3BlobStore::connect(&garage.read_only_config())
        .await
        .expect_err("a key that may only read");
    assert!(
        read_only.to_string().contains("writing a probe"),
        "the error says the write failed: {read_only}"
    );

    // A port nothing listens on: unreachable, which a retry may fix.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut nowhere = garage.config("mcr");
    nowhere.endpoint = format!("http://127.0.0.1:{port}");
    match S3BlobStore::connect(&nowhere).await {
        Err(Error::Storage(e)) => {
            assert_eq!(e.kind(), StorageErrorKind::Unavailable, "{e}");
            assert!(
                e.to_string().contains(&nowhere.endpoint),
                "names the endpoint: {e}"
            );
        }
        other => panic!("an endpoint nothing listens on: got {other:?}"),
    }
}

fn body(len: usize) -> ByteStream {
    let bytes = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    Box::pin(stream::iter([Ok(bytes)]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_aborts_a_stale_uploads_multipart_upload() {
    let garage = Garage::start();
    let config = garage.config("mcr");
    let blobs = Arc::new(S3BlobStore::connect(&config).await.unwrap());
    let clock = Arc::new(ManualClock::default());
    let policy = Arc::new(Engine::new());
    policy.set_rules(Vec::new());
    let registry = Registry::new(
        Arc::new(FakeMetaStore::new()),
        blobs.clone(),
        Arc::new(FakeIdentity::new(clock.clone())),
        policy,
    )
    .with_clock(clock.clone())
    .with_config(RegistryConfig {
        // The young session below never receives a byte: it must not go
        // as an unused one either.
        upload_max_age: Duration::from_secs(3600),
        unused_upload_max_age: Duration::from_secs(3600),
        ..RegistryConfig::default()
    });
    let app = RepoName::new("purge/app").unwrap();

    // 9 MiB: one 8 MiB multipart part and a tail piece, then silence.
    let stale = registry.start_upload(&user(), &app).await.unwrap();
    let offset = registry
        .upload_chunk(&user(), &app, &stale.id, Some(0), body(9 << 20))
        .await
        .unwrap();
    assert_eq!(offset, 9 << 20);
    // The bucket seen directly: the session object names the multipart
    // upload the first part went to.
    let s3 = AmazonS3Builder::new()
        .with_endpoint(&config.endpoint)
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_access_key_id(config.access_key_id.clone().unwrap())
        .with_secret_access_key(config.secret_access_key.clone().unwrap())
        .with_allow_http(true)
        .build()
        .unwrap();
    let dir = Path::from_iter(["uploads", stale.id.as_str()]);
    let multipart = s3
        .get(&dir.clone().join("session"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let multipart = String::from_utf8(multipart.to_vec()).unwrap();
    assert!(
        !multipart.is_empty(),
        "the session names its multipart upload"
    );

    clock.advance(Duration::from_secs(3000));
    let young = registry.start_upload(&user(), &app).await.unwrap();
    clock.advance(Duration::from_secs(1000));
    assert_eq!(registry.purge_stale_uploads().await.unwrap(), 1);

    // Aborted: S3 refuses a part for it (NoSuchUpload), and nothing of the
    // upload is left under its prefix; the young upload is untouched.
    let late = s3
        .put_part(
            &dir.clone().join("assembled"),
            &multipart,
            1,
            PutPayload::from_static(b"late"),
        )
        .await;
    assert!(
        matches!(late, Err(object_store::Error::NotFound { .. })),
        "a part for the purged upload's multipart upload: {late:?}"
    );
    let left: Vec<_> = s3.list(Some(&dir)).try_collect().await.unwrap();
    assert!(left.is_empty(), "objects of the purged upload: {left:?}");
    let sessions: Vec<_> = blobs.list_uploads().try_collect().await.unwrap();
    assert_eq!(sessions, vec![young.id]);
}
