//! The core's MetaStore contract suite against `PostgresMetaStore`, a
//! fresh database on a real PostgreSQL server for every check (started by
//! `scripts/postgres.sh`, or the one `MCR_TEST_POSTGRES_URL` names).

use std::sync::{Arc, Mutex};

use mcr_adapters::postgres::testing::TestDatabase;
use mcr_core::ports::MetaStore;
use mcr_core::testing::contract::run_meta_store_contract;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_meets_the_meta_store_contract() {
    let databases = Arc::new(Mutex::new(Vec::new()));
    run_meta_store_contract(|| {
        let databases = Arc::clone(&databases);
        async move {
            let db = TestDatabase::create().await;
            let store = db.store().await;
            databases.lock().expect("databases").push(db);
            Arc::new(store) as Arc<dyn MetaStore>
        }
    })
    .await;
}
