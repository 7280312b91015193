//! The core's Coordination contract against `PostgresCoordination`: two
//! instances over one fresh database on a real PostgreSQL server, as two
//! replicas hold them.

use std::sync::{Arc, Mutex};

use mcr_adapters::postgres::testing::TestDatabase;
use mcr_adapters::postgres::PostgresCoordination;
use mcr_core::testing::contract::{run_coordination_contract, Replicas};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_meets_the_coordination_contract() {
    let databases = Arc::new(Mutex::new(Vec::new()));
    run_coordination_contract(|| {
        let databases = Arc::clone(&databases);
        async move {
            let db = TestDatabase::create().await;
            let replica = || async {
                let c = PostgresCoordination::connect(&db.config())
                    .await
                    .expect("connect");
                Arc::new(c) as Arc<dyn mcr_core::ports::Coordination>
            };
            let (a, b) = (replica().await, replica().await);
            databases.lock().expect("databases").push(db);
            Replicas { a, b }
        }
    })
    .await;
}
