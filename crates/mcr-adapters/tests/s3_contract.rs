//! `S3BlobStore` against the `BlobStore` port contract of `mcr-core`, on a
//! real Garage started by `scripts/garage.sh`: every check on a fresh,
//! empty bucket. Also: a store refuses to connect to a bucket it cannot
//! use, naming it.

#[path = "support/garage.rs"]
mod garage;

use std::sync::Arc;

use garage::Garage;
use mcr_adapters::s3::S3BlobStore;
use mcr_core::error::{Error, StorageErrorKind};
use mcr_core::ports::BlobStore;
use mcr_core::testing::contract::run_blob_store_contract;

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
