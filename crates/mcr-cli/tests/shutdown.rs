//! Shutdown drains the daemon's background work (issue 16, case 10): a
//! GC run an admin started is finished and records `gc_completed`, and
//! the upload purge is not cut off mid-call.
//!
//! Deterministic: the blob store is the in-memory fake behind a gate that
//! holds GC's phase two (`BlobStore::delete`) and the purge's
//! `cancel_upload` until the test opens it. Shutdown is requested while
//! the work is held; its future is polled once and must still be pending
//! (it waits for the work), then finishes once the gate opens.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures_util::{FutureExt, TryStreamExt};
use mcr_cli::server::tasks::Background;
use mcr_cli::server::{listen, run};
use mcr_core::audit::EventType;
use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::policy::Engine;
use mcr_core::ports::{BlobBody, BlobStore, ByteRange, ListStream, UploadState, UploadWriter};
use mcr_core::registry::{Registry, RegistryConfig};
use mcr_core::testing::{admin, user, FakeBlobStore, FakeIdentity, FakeMetaStore, ManualClock};
use mcr_core::Result;
use mcr_http::{AppState, HttpConfig};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

/// Long enough never to run out in a test: the drain must end because the
/// work did, not because time did.
const DRAIN: Duration = Duration::from_secs(3600);

/// The fake blob store, with `delete` and `cancel_upload` held at a gate.
struct Gated {
    inner: FakeBlobStore,
    /// Told each time a call reaches the gate.
    reached: Notify,
    open: watch::Sender<bool>,
}

impl Gated {
    fn new() -> Gated {
        Gated {
            inner: FakeBlobStore::new(),
            reached: Notify::new(),
            open: watch::channel(false).0,
        }
    }

    async fn pass(&self) {
        self.reached.notify_one();
        let mut open = self.open.subscribe();
        // The sender lives as long as `self`.
        let _ = open.wait_for(|o| *o).await;
    }

    fn release(&self) {
        self.open.send_replace(true);
    }
}

#[async_trait]
impl BlobStore for Gated {
    async fn begin_upload(&self, id: &UploadId) -> Result<()> {
        self.inner.begin_upload(id).await
    }
    async fn resume_upload(
        &self,
        id: &UploadId,
        state: &UploadState,
    ) -> Result<Box<dyn UploadWriter>> {
        self.inner.resume_upload(id, state).await
    }
    async fn cancel_upload(&self, id: &UploadId) -> Result<()> {
        self.pass().await;
        self.inner.cancel_upload(id).await
    }
    fn list_uploads(&self) -> ListStream<UploadId> {
        self.inner.list_uploads()
    }
    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobBody> {
        self.inner.read(digest, range).await
    }
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.inner.stat(digest).await
    }
    async fn delete(&self, digest: &Digest) -> Result<bool> {
        self.pass().await;
        self.inner.delete(digest).await
    }
    fn list(&self) -> ListStream<Digest> {
        self.inner.list()
    }
    async fn probe(&self) -> Result<()> {
        self.inner.probe().await
    }
}

/// A registry over the fakes and the gated blob store, the HTTP router
/// whose background work goes to `background`, and bearer tokens.
struct Daemon {
    registry: Arc<Registry>,
    meta: Arc<FakeMetaStore>,
    blobs: Arc<Gated>,
    clock: Arc<ManualClock>,
    app: axum::Router,
    admin_token: String,
    user_token: String,
}

impl Daemon {
    fn new(background: &Background) -> Daemon {
        let clock = Arc::new(ManualClock::default());
        let meta = Arc::new(FakeMetaStore::new());
        let blobs = Arc::new(Gated::new());
        // Tokens outlive every clock move of a test.
        let identity =
            Arc::new(FakeIdentity::new(clock.clone()).with_ttl(Duration::from_secs(365 * 86_400)));
        let token = |p| {
            identity
                .issue(p)
                .expect("a token")
                .token
                .expose()
                .to_string()
        };
        let (admin_token, user_token) = (token(admin().principal), token(user().principal));
        let registry = Arc::new(
            Registry::new(
                meta.clone(),
                blobs.clone(),
                identity.clone(),
                Arc::new(Engine::new()),
            )
            .with_clock(clock.clone())
            .with_config(RegistryConfig {
                gc_grace_period: Duration::from_secs(60),
                upload_max_age: Duration::from_secs(60),
                ..RegistryConfig::default()
            }),
        );
        let app = mcr_http::router(AppState::new(
            registry.clone(),
            HttpConfig::default(),
            background.tracker(),
        ));
        Daemon {
            registry,
            meta,
            blobs,
            clock,
            app,
            admin_token,
            user_token,
        }
    }

    async fn call(&self, method: Method, uri: &str, token: &str, body: &[u8]) -> StatusCode {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body.to_vec()))
            .expect("a request");
        self.app
            .clone()
            .oneshot(req)
            .await
            .expect("an answer")
            .status()
    }

    fn audited(&self, event: EventType) -> usize {
        self.meta
            .audit_log()
            .iter()
            .filter(|e| e.event.event_type == event)
            .count()
    }
}

#[tokio::test]
async fn shutdown_lets_a_gc_run_held_in_phase_two_finish_and_record_gc_completed() {
    let background = Background::new();
    let d = Daemon::new(&background);
    let data = b"a layer no manifest references";
    let digest = Digest::sha256_of(data);
    let status = d
        .call(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={digest}"),
            &d.user_token,
            data,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    d.clock.advance(Duration::from_secs(3600));

    let status = d.call(Method::POST, "/v1/gc", &d.admin_token, b"").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    d.blobs.reached.notified().await;
    assert_eq!(d.audited(EventType::GcStarted), 1);

    // SIGTERM now: the run is in phase two, its blob's row already gone.
    let mut drain = std::pin::pin!(background.shutdown(DRAIN));
    assert!(
        drain.as_mut().now_or_never().is_none(),
        "shutdown finished while a GC run was still held in phase two"
    );
    assert_eq!(d.audited(EventType::GcCompleted), 0);

    d.blobs.release();
    assert!(drain.await, "every background task finished");
    assert_eq!(d.audited(EventType::GcCompleted), 1);
    assert_eq!(d.blobs.inner.contents(&digest), None, "the file went too");
    let status = d
        .registry
        .gc_status(&admin())
        .await
        .expect("the status reads");
    assert!(!status.running);
    assert_eq!(status.last_run.expect("a report").blobs_removed, 1);
}

#[tokio::test]
async fn shutdown_lets_an_upload_purge_in_progress_finish() {
    let background = Background::new();
    let d = Daemon::new(&background);
    let status = d
        .call(Method::POST, "/v2/app/blobs/uploads/", &d.user_token, b"")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        d.blobs
            .inner
            .list_uploads()
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len(),
        1
    );
    d.clock.advance(Duration::from_secs(3600));

    // The first purge runs at once, and is held removing the session's data.
    background.purge_uploads(d.registry.clone(), Duration::from_secs(3600));
    d.blobs.reached.notified().await;

    let mut drain = std::pin::pin!(background.shutdown(DRAIN));
    assert!(
        drain.as_mut().now_or_never().is_none(),
        "shutdown finished while the purge was still held mid-call"
    );
    d.blobs.release();
    assert!(drain.await, "every background task finished");
    assert!(d
        .blobs
        .inner
        .list_uploads()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .is_empty());
    assert_eq!(d.audited(EventType::UploadsPurged), 1);
}

/// The same through the daemon's `serve`, over TCP: after the signal it
/// stops accepting, and returns only once the held GC run has finished.
#[tokio::test]
async fn serve_returns_after_the_signal_only_once_the_gc_run_finished() {
    let background = Background::new();
    let d = Daemon::new(&background);
    let state = AppState::new(
        d.registry.clone(),
        HttpConfig::default(),
        background.tracker(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let mut serving = tokio::spawn(run::serve(
        state,
        background,
        listener,
        run::Extra {
            grpc: None,
            metrics: None,
            limits: listen::ConnLimits::default(),
            event_poll: Duration::from_secs(1),
        },
        None,
        DRAIN,
        async {
            let _ = signalled.await;
        },
    ));
    // No kept-alive connections: a request after the signal must need a
    // new one.
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let data = b"a layer no manifest references";
    let digest = Digest::sha256_of(data);
    let pushed = http
        .post(format!("{base}/v2/app/blobs/uploads/?digest={digest}"))
        .bearer_auth(&d.user_token)
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    d.clock.advance(Duration::from_secs(3600));
    let started = http
        .post(format!("{base}/v1/gc"))
        .bearer_auth(&d.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    d.blobs.reached.notified().await;

    signal.send(()).unwrap();
    // Stopped accepting...
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/v1/health")).send().await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...but still draining: the run is held, so this wait can only run
    // out (a bound on how long to look, not on how long anything takes).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut serving)
            .await
            .is_err(),
        "serve returned while a GC run was held in phase two"
    );
    d.blobs.release();
    serving.await.unwrap().unwrap();
    assert_eq!(d.audited(EventType::GcCompleted), 1);
}

#[tokio::test]
async fn idle_periodic_tasks_stop_at_once_on_shutdown() {
    let background = Background::new();
    let d = Daemon::new(&background);
    background.purge_uploads(d.registry.clone(), Duration::from_secs(3600));
    background.every("a task that waits", Duration::from_secs(3600), || async {});
    assert!(background.shutdown(DRAIN).await);
}
