//! A pull-through fill on the real stores (SQLite, `FsBlobStore`, whose
//! appends read their body on a task of their own), run on a spawner as
//! `mcrsrv` runs it: the first chunk reaches the client while the
//! upstream still sends, and a client leaving mid-way leaves a committed
//! blob (review of issue 13, D1 and D3). The engine's own tests
//! (`mcr-core/tests/proxy_fill.rs`) cover joins, lag and bad answers.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mcr_adapters::fs::FsBlobStore;
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::names::RepoName;
use mcr_core::policy::{Engine, PolicyEngine};
use mcr_core::ports::prelude::*;
use mcr_core::ports::{BlobStore, Spawn, Task};
use mcr_core::proxy::ProxyConfig;
use mcr_core::registry::Registry;
use mcr_core::testing::{user, FakeIdentity, GatedUpstream, ManualClock};

const CHUNK: usize = 256 << 10;

/// `mcrsrv`'s tracker, reduced to spawning.
struct Spawner;

impl Spawn for Spawner {
    fn spawn(&self, task: Task) {
        tokio::spawn(task);
    }
}

/// Turns a hang (a regression) into a failure; nothing here is timed.
async fn guard<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the step never happened")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_blob_streams_from_the_fs_store_and_outlives_its_client() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..8 * CHUNK).map(|i| (i % 251) as u8).collect();
    let up = Arc::new(GatedUpstream::new(&data));
    let meta = Arc::new(SqliteMetaStore::open(&dir.path().join("mcr.db")).unwrap());
    let blobs =
        Arc::new(FsBlobStore::open(dir.path().join("layers"), dir.path().join("uploads")).unwrap());
    let clock = Arc::new(ManualClock::default());
    let policy = Arc::new(Engine::new());
    policy.set_rules(Vec::new());
    let registry = Registry::new(
        meta.clone(),
        blobs.clone(),
        Arc::new(FakeIdentity::new(clock.clone())),
        policy,
    )
    .with_clock(clock)
    .with_proxies(vec![ProxyConfig {
        prefix: RepoName::new("hub").unwrap(),
        upstream: up.clone(),
        tag_ttl: Duration::from_secs(300),
        offline: true,
        docker_hub: false,
        max_size: None,
    }])
    .unwrap()
    .with_spawner(Arc::new(Spawner));
    let repo = RepoName::new("hub/lib/app").unwrap();

    let mut body = registry
        .get_blob(&user(), &repo, up.digest(), None)
        .await
        .unwrap();
    up.send(0, &data[..CHUNK]);
    // One chunk of eight was sent: this returns only if it is streamed.
    let mut got = Vec::new();
    while got.len() < CHUNK {
        got.extend_from_slice(&guard(body.stream.next()).await.unwrap().unwrap());
    }
    assert_eq!(got, data[..CHUNK]);
    drop(body);
    for chunk in data[CHUNK..].chunks(CHUNK) {
        up.send(0, chunk);
    }
    up.end(0);

    // A second pull joins the fill (or finds it committed) and ends only
    // after the commit.
    let again = registry
        .get_blob(&user(), &repo, up.digest(), None)
        .await
        .unwrap();
    let mut all = Vec::new();
    let mut stream = again.stream;
    while let Some(chunk) = guard(stream.next()).await {
        all.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(all, data);
    assert_eq!(up.gets(), 1, "the fill went on after its client left");
    assert!(meta
        .blob_in_repository(&repo, up.digest())
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        blobs.stat(up.digest()).await.unwrap(),
        Some(data.len() as u64)
    );
}
