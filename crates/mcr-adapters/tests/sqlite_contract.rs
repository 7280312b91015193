//! The core's MetaStore contract suite against `SqliteMetaStore`, a fresh
//! database in a temporary directory for every check.

use std::sync::{Arc, Mutex};

use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::ports::MetaStore;
use mcr_core::testing::contract::{run_meta_store_contract, run_snapshot_store_contract};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_meets_the_meta_store_contract() {
    let dirs = Arc::new(Mutex::new(Vec::new()));
    run_meta_store_contract(|| {
        let dirs = Arc::clone(&dirs);
        async move {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = SqliteMetaStore::open(&dir.path().join("mcr.db")).expect("open");
            dirs.lock().expect("dirs").push(dir);
            Arc::new(store) as Arc<dyn MetaStore>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_meets_the_snapshot_store_contract() {
    let dirs = Arc::new(Mutex::new(Vec::new()));
    run_snapshot_store_contract(|| {
        let dirs = Arc::clone(&dirs);
        async move {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = SqliteMetaStore::open(&dir.path().join("mcr.db")).expect("open");
            dirs.lock().expect("dirs").push(dir);
            Arc::new(store)
        }
    })
    .await;
}
