//! `FsBlobStore` against the `BlobStore` port contract of `mcr-core`: the
//! same checks the in-memory fake passes, each on a fresh store in its own
//! temporary directory.

use std::sync::Arc;

use mcr_adapters::fs::FsBlobStore;
use mcr_core::ports::BlobStore;
use mcr_core::testing::contract::run_blob_store_contract;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_blob_store_meets_the_blob_store_contract() {
    // The directories live until the suite is done; each check gets its own.
    let mut dirs = Vec::new();
    run_blob_store_contract(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = FsBlobStore::open(dir.path().join("layers"), dir.path().join("uploads"))
            .expect("opening the store");
        dirs.push(dir);
        async move { Arc::new(store) as Arc<dyn BlobStore> }
    })
    .await;
}
