//! A pull-through fill as `mcrsrv` runs it: a task of its own on a
//! spawner, over a blob store whose append reads the body from another
//! task (as `FsBlobStore`'s does) and an upstream that sends its body one
//! chunk at a time when the test says so. Nothing here depends on timing:
//! each step waits for what it needs, and `guard` only turns a hang (a
//! regression) into a failure.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use futures_util::StreamExt;
use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::policy::{Engine, PolicyEngine};
use mcr_core::ports::prelude::*;
use mcr_core::ports::{
    BlobBody, BlobStore, ByteRange, ByteStream, ListStream, Spawn, Task, UploadState, UploadWriter,
};
use mcr_core::proxy::ProxyConfig;
use mcr_core::registry::{Registry, RegistryConfig};
use mcr_core::testing::{
    user, FakeBlobStore, FakeIdentity, FakeMetaStore, GatedUpstream, ManualClock,
};
use support::repo;

const CHUNK: usize = 64 << 10;

/// Fails a test that waits forever instead of hanging the suite.
async fn guard<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("the step never happened")
}

/// Spawns onto the test's tokio runtime, as `mcrsrv`'s tracker does.
struct Tokio;

impl Spawn for Tokio {
    fn spawn(&self, task: Task) {
        tokio::spawn(task);
    }
}

/// `FakeBlobStore` whose appends read their body on a task of their own
/// and go on if the caller gives up, as `FsBlobStore`'s do.
struct TaskStore(Arc<FakeBlobStore>);

struct TaskWriter(Option<Box<dyn UploadWriter>>);

#[async_trait]
impl UploadWriter for TaskWriter {
    fn state(&self) -> &UploadState {
        self.0.as_ref().expect("a writer between appends").state()
    }

    async fn append(&mut self, body: ByteStream) -> mcr_core::Result<()> {
        let mut writer = self.0.take().expect("one append at a time");
        let (writer, outcome) = tokio::spawn(async move {
            let outcome = writer.append(body).await;
            (writer, outcome)
        })
        .await
        .expect("the append task ran");
        self.0 = Some(writer);
        outcome
    }

    async fn finish(self: Box<Self>, expected: &Digest) -> mcr_core::Result<u64> {
        self.0.expect("a writer").finish(expected).await
    }
}

#[async_trait]
impl BlobStore for TaskStore {
    async fn begin_upload(&self, id: &UploadId) -> mcr_core::Result<()> {
        self.0.begin_upload(id).await
    }
    async fn resume_upload(
        &self,
        id: &UploadId,
        state: &UploadState,
    ) -> mcr_core::Result<Box<dyn UploadWriter>> {
        let inner = self.0.resume_upload(id, state).await?;
        Ok(Box::new(TaskWriter(Some(inner))))
    }
    async fn cancel_upload(&self, id: &UploadId) -> mcr_core::Result<()> {
        self.0.cancel_upload(id).await
    }
    fn list_uploads(&self) -> ListStream<UploadId> {
        self.0.list_uploads()
    }
    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> mcr_core::Result<BlobBody> {
        self.0.read(digest, range).await
    }
    async fn stat(&self, digest: &Digest) -> mcr_core::Result<Option<u64>> {
        self.0.stat(digest).await
    }
    async fn delete(&self, digest: &Digest) -> mcr_core::Result<bool> {
        self.0.delete(digest).await
    }
    fn list(&self) -> ListStream<Digest> {
        self.0.list()
    }
    async fn probe(&self) -> mcr_core::Result<()> {
        self.0.probe().await
    }
}

struct Setup {
    registry: Registry,
    meta: Arc<FakeMetaStore>,
    blobs: Arc<FakeBlobStore>,
    up: Arc<GatedUpstream>,
}

fn setup(data: &[u8]) -> Setup {
    let clock = Arc::new(ManualClock::default());
    let meta = Arc::new(FakeMetaStore::new());
    let blobs = Arc::new(FakeBlobStore::new());
    let policy = Arc::new(Engine::new());
    policy.set_rules(Vec::new());
    let up = Arc::new(GatedUpstream::new(data));
    let registry = Registry::new(
        meta.clone(),
        Arc::new(TaskStore(blobs.clone())),
        Arc::new(FakeIdentity::new(clock.clone())),
        policy,
    )
    .with_clock(clock)
    .with_config(RegistryConfig::default())
    .with_proxies(vec![ProxyConfig {
        prefix: repo("hub"),
        upstream: up.clone(),
        tag_ttl: Duration::from_secs(300),
        offline: true,
        docker_hub: false,
        max_size: None,
    }])
    .expect("one proxy")
    .with_spawner(Arc::new(Tokio));
    Setup {
        registry,
        meta,
        blobs,
        up,
    }
}

/// A blob of `n` chunks, each byte telling its place.
fn blob(n: usize) -> Vec<u8> {
    (0..n * CHUNK).map(|i| (i % 251) as u8).collect()
}

fn send_chunks(up: &GatedUpstream, get: usize, data: &[u8], chunks: std::ops::Range<usize>) {
    for i in chunks {
        up.send(get, &data[i * CHUNK..data.len().min((i + 1) * CHUNK)]);
    }
}

async fn get(s: &Setup) -> BlobBody {
    s.registry
        .get_blob(&user(), &repo("hub/lib/app"), s.up.digest(), None)
        .await
        .expect("the pull starts")
}

/// Reads `len` bytes from the start of `body`.
async fn take(body: &mut BlobBody, len: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < len {
        let chunk = body
            .stream
            .next()
            .await
            .expect("more bytes")
            .expect("good bytes");
        got.extend_from_slice(&chunk);
    }
    got
}

async fn rest(body: BlobBody) -> Result<Vec<u8>, std::io::Error> {
    let mut got = Vec::new();
    let mut stream = body.stream;
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk?);
    }
    Ok(got)
}

async fn committed(s: &Setup) -> bool {
    s.meta
        .blob_in_repository(&repo("hub/lib/app"), s.up.digest())
        .await
        .unwrap()
        .is_some()
}

/// Review of issue 13, D1: the first chunk reached the client only after
/// the whole upstream body had been stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_chunk_reaches_the_client_before_the_upstream_finishes() {
    let data = blob(4);
    let s = setup(&data);
    let mut body = get(&s).await;
    assert_eq!(body.len, data.len() as u64);
    send_chunks(&s.up, 0, &data, 0..1);
    // Only one chunk was sent: this returns only if it is streamed.
    assert_eq!(guard(take(&mut body, CHUNK)).await, data[..CHUNK]);
    send_chunks(&s.up, 0, &data, 1..4);
    s.up.end(0);
    let tail = guard(rest(body)).await.unwrap();
    assert_eq!(tail, data[CHUNK..]);
    assert!(committed(&s).await);
    assert_eq!(s.blobs.contents(s.up.digest()).unwrap(), data);
}

/// Review of issue 13, D3: a client that went away threw its complete
/// download away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_way_does_not_abort_the_fill() {
    let data = blob(4);
    let s = setup(&data);
    let mut body = get(&s).await;
    send_chunks(&s.up, 0, &data, 0..1);
    guard(take(&mut body, CHUNK)).await;
    drop(body);
    send_chunks(&s.up, 0, &data, 1..4);
    s.up.end(0);
    // Joins the fill if it still runs (it ends only at the commit), or
    // reads the stored blob.
    assert_eq!(guard(rest(get(&s).await)).await.unwrap(), data);
    assert!(committed(&s).await);
    assert_eq!(s.up.gets(), 1, "one upstream GET: the fill went on");
    assert_eq!(guard(rest(get(&s).await)).await.unwrap(), data);
    assert_eq!(s.up.gets(), 1, "a hit");
}

/// Review of issue 13, D3: a second pull waited for the first one's whole
/// fill on its lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pull_joins_the_running_fill_and_gets_the_same_bytes() {
    let data = blob(4);
    let s = setup(&data);
    let mut first = get(&s).await;
    send_chunks(&s.up, 0, &data, 0..1);
    let mut got = guard(take(&mut first, CHUNK)).await;
    // The fill is running: this pull joins it, and gets its first bytes
    // before the upstream sends any more.
    let mut second = guard(get(&s)).await;
    assert_eq!(guard(take(&mut second, CHUNK)).await, data[..CHUNK]);
    send_chunks(&s.up, 0, &data, 1..4);
    s.up.end(0);
    got.extend(guard(rest(first)).await.unwrap());
    let mut joined = data[..CHUNK].to_vec();
    joined.extend(guard(rest(second)).await.unwrap());
    assert_eq!(got, data);
    assert_eq!(joined, data);
    assert_eq!(s.up.gets(), 1);
}

/// A reader far behind does not hold the fill back nor make it keep what
/// it has not read: the fill commits while the reader sits on its first
/// chunk, and the reader gets the rest from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_left_behind_reads_the_rest_from_the_store() {
    // Several times the window the readers share.
    let data = blob(160);
    let s = setup(&data);
    let mut slow = get(&s).await;
    send_chunks(&s.up, 0, &data, 0..1);
    let mut got = guard(take(&mut slow, CHUNK)).await;
    send_chunks(&s.up, 0, &data, 1..160);
    s.up.end(0);
    // The fill ends without the slow reader reading: a joining pull's
    // stream ends only at its commit.
    assert_eq!(guard(rest(get(&s).await)).await.unwrap(), data);
    assert!(committed(&s).await);
    got.extend(guard(rest(slow)).await.unwrap());
    assert_eq!(got, data);
}

/// A body that does not hash to its digest: every reader ends in an
/// error without the whole of it, nothing is stored, and the next pull
/// asks the upstream again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_upstream_answer_fails_every_reader_and_stores_nothing() {
    let data = blob(4);
    let s = setup(&data);
    let mut wrong = data.clone();
    wrong[3 * CHUNK] ^= 1;
    let mut first = get(&s).await;
    send_chunks(&s.up, 0, &wrong, 0..1);
    guard(take(&mut first, CHUNK)).await;
    let second = guard(get(&s)).await;
    send_chunks(&s.up, 0, &wrong, 1..4);
    s.up.end(0);
    for body in [first, second] {
        let mut stream = body.stream;
        let mut ok = 0;
        let mut failed = None;
        while let Some(chunk) = guard(stream.next()).await {
            match chunk {
                Ok(chunk) => ok += chunk.len(),
                Err(e) => failed = Some(e.to_string()),
            }
        }
        assert!(ok < data.len(), "never the whole bad blob");
        let failed = failed.expect("the stream ends in an error");
        assert!(failed.contains("gated.example"), "{failed}");
    }
    assert!(!committed(&s).await);
    assert!(s.blobs.contents(s.up.digest()).is_none());
    let next = guard(get(&s)).await;
    assert_eq!(s.up.gets(), 2, "fetched again");
    send_chunks(&s.up, 1, &data, 0..4);
    s.up.end(1);
    assert_eq!(guard(rest(next)).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_body_longer_than_announced_is_cut_and_stores_nothing() {
    let data = blob(2);
    let s = setup(&data);
    let body = get(&s).await;
    send_chunks(&s.up, 0, &data, 0..2);
    s.up.send(0, b"more");
    s.up.end(0);
    let e = guard(rest(body)).await.unwrap_err().to_string();
    assert!(e.contains("announced"), "{e}");
    assert!(!committed(&s).await);
}
