//! The harness every HTTP test uses: the real router over a real SQLite
//! database and a real blob directory in a temporary directory, with the
//! fake identity service (users `admin`, `user`, `guest`, `system`, all
//! with [`TEST_PASSWORD`]), the real policy engine and a manual clock,
//! driven in-process with `tower::ServiceExt::oneshot`.
//!
//! A test sends a request as a test user with HTTP Basic
//! ([`Harness::as_`]) or with the bearer token issued to that user when
//! the harness started ([`Harness::bearer_as`]); the helpers that act for
//! a test user ([`Harness::push_image`] and the rest) use whichever the
//! [`Setup`] names.
//!
//! Every response to a `/v2/…` request is checked for
//! `Docker-Distribution-API-Version: registry/2.0` as it comes back, so no
//! test has to remember to; the token endpoint is checked by its own test.
//!
//! - `call`: [`Call`] and [`Reply`].
//! - `oci`: media types, digests, descriptors and manifests; [`Image`].
//! - `gc`: running GC and walking the blob and upload directories.
#![allow(dead_code)] // each test binary uses a different part of it

mod call;
mod gc;
mod oci;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use mcr_adapters::fs::FsBlobStore;
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::audit::{AuditEvent, AuditQuery, EventType};
use mcr_core::policy::Engine;
use mcr_core::ports::{BlobStore, MetaStore, SnapshotStore};
use mcr_core::registry::{LoginLimit, RateLimit, Registry, RegistryConfig};
use mcr_core::testing::{
    admin, guest, system, user, FakeBlobStore, FakeIdentity, FakeMetaStore, Faults,
    FaultyBlobStore, ManualClock, TEST_PASSWORD,
};
use mcr_http::{router, AppState, HttpConfig};
use tokio_util::task::TaskTracker;

pub use call::*;
pub use oci::*;

/// The `Host` every request carries, so challenge realms are predictable.
pub const HOST: &str = "registry.test";
/// The realm of every challenge built from [`HOST`].
pub const REALM: &str = "http://registry.test/v2/token";

/// The database's file name in the harness's directory.
const DB_FILE: &str = "mcr.db";

/// Long enough that no token expires however far a test moves the clock.
const LASTING_TOKEN_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What a test chooses about its registry.
pub struct Setup {
    pub http: HttpConfig,
    /// How long GC keeps an unreferenced blob.
    pub gc_grace: Duration,
    /// The largest blob the engine takes.
    pub max_blob_size: u64,
    /// Blob rows per GC sweep step.
    pub gc_sweep_window: NonZeroUsize,
    pub login: Login,
    /// Each principal's request rate; none by default.
    pub rate_limit: Option<RateLimit>,
    /// Upload sessions one principal may hold open.
    pub max_uploads_per_principal: u64,
    /// Requests one principal may have in flight; no limit by default.
    pub max_requests_in_flight: Option<NonZeroUsize>,
    /// Failed logins allowed; no limit by default.
    pub login_limit: Option<LoginLimit>,
    /// The in-memory stores of mcr-core's `testing`, with their pause
    /// points and refusals, in place of SQLite and the blob directory;
    /// none by default. For races a test must interleave
    /// deterministically (`tests/races.rs`).
    pub fakes: Option<Fakes>,
}

/// The fake metadata and blob stores a [`Setup`] may put under the router.
#[derive(Clone, Default)]
pub struct Fakes {
    pub meta: Arc<FakeMetaStore>,
    pub blobs: Arc<FakeBlobStore>,
}

impl Default for Setup {
    /// The default HTTP settings and grace period; helpers use HTTP Basic.
    fn default() -> Setup {
        Setup {
            http: HttpConfig::default(),
            gc_grace: RegistryConfig::default().gc_grace_period,
            max_blob_size: RegistryConfig::default().max_blob_size,
            gc_sweep_window: RegistryConfig::default().gc_sweep_window,
            login: Login::Basic,
            rate_limit: None,
            max_uploads_per_principal: RegistryConfig::default().max_uploads_per_principal,
            max_requests_in_flight: None,
            login_limit: None,
            fakes: None,
        }
    }
}

impl Setup {
    /// The default setup, but with helpers sending bearer tokens.
    pub fn bearer() -> Setup {
        Setup {
            login: Login::Bearer,
            ..Setup::default()
        }
    }
}

/// How the harness's helpers authenticate as a test user, and so how long
/// tokens live: a helper's token must outlive every clock move of a test,
/// while the token endpoint's own tests check the identity service's
/// ordinary lifetime.
#[derive(Clone, Copy, Debug)]
pub enum Login {
    /// HTTP Basic; tokens live [`FakeIdentity::DEFAULT_TTL`].
    Basic,
    /// The user's pre-issued bearer token; every token lives a century.
    Bearer,
}

/// A registry behind the real router, over temporary storage.
pub struct Harness {
    pub app: axum::Router,
    pub registry: Arc<Registry>,
    pub identity: Arc<FakeIdentity>,
    pub clock: Arc<ManualClock>,
    /// Blobs live in `<layers>/sha256/<2 hex>/<64 hex>`.
    pub layers: PathBuf,
    pub uploads: PathBuf,
    /// `EIO`s to inject into the blob store (`tests/faults.rs`); none
    /// unless a test arms one.
    pub faults: Faults,
    setup: Setup,
    /// Each test user's bearer token, by name.
    tokens: BTreeMap<String, String>,
    dir: tempfile::TempDir,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(Setup::default())
    }

    pub fn with_config(http: HttpConfig) -> Harness {
        Harness::with(Setup {
            http,
            ..Setup::default()
        })
    }

    pub fn with(setup: Setup) -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = Arc::new(ManualClock::default());
        let ttl = match setup.login {
            Login::Basic => FakeIdentity::DEFAULT_TTL,
            Login::Bearer => LASTING_TOKEN_TTL,
        };
        let identity = Arc::new(FakeIdentity::new(clock.clone()).with_ttl(ttl));
        let mut tokens = BTreeMap::new();
        for caller in [admin(), user(), guest(), system()] {
            let name = caller.principal.subject.clone();
            identity.add_user(&name, TEST_PASSWORD, caller.principal.clone());
            let issued = identity.issue(caller.principal).expect("a token");
            tokens.insert(name, issued.token.expose().to_string());
        }
        let faults = Faults::default();
        let (app, registry, layers, uploads) = open(dir.path(), &identity, &clock, &faults, &setup);
        Harness {
            app,
            registry,
            identity,
            clock,
            layers,
            uploads,
            faults,
            setup,
            tokens,
            dir,
        }
    }

    /// Opens the same database and blob directory again in a new registry,
    /// as a restarted daemon would; the identity service and clock stay.
    pub async fn restart(&mut self) {
        let (app, registry, ..) = open(
            self.dir.path(),
            &self.identity,
            &self.clock,
            &self.faults,
            &self.setup,
        );
        registry
            .reload_policy()
            .await
            .expect("the stored rules load");
        self.app = app;
        self.registry = registry;
    }

    /// The database file, as the registry's store opened it.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join(DB_FILE)
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, uri: impl Into<String>) -> Call {
        Call::new(self.app.clone(), method, uri.into()).header("host", HOST)
    }

    /// A request as `who` (one of the four test users), with HTTP Basic.
    pub fn as_(&self, who: &str, method: Method, uri: impl Into<String>) -> Call {
        self.anon(method, uri).basic(who, TEST_PASSWORD)
    }

    /// A request as `user`, the ordinary human with pull, push and delete.
    pub fn user(&self, method: Method, uri: impl Into<String>) -> Call {
        self.as_("user", method, uri)
    }

    /// A request as `who` with the bearer token issued to that user when
    /// the harness started; it lives as long as [`Login`] says.
    pub fn bearer_as(&self, who: &str, method: Method, uri: impl Into<String>) -> Call {
        let token = self
            .tokens
            .get(who)
            .unwrap_or_else(|| panic!("no test user {who}"));
        self.anon(method, uri).bearer(token)
    }

    /// A request from a helper as `who`, authenticated as [`Setup::login`]
    /// says.
    fn helper_call(&self, who: &str, method: Method, uri: impl Into<String>) -> Call {
        match self.setup.login {
            Login::Basic => self.as_(who, method, uri),
            Login::Bearer => self.bearer_as(who, method, uri),
        }
    }

    /// A bearer token for `who` from the token endpoint.
    pub async fn token(&self, who: &str) -> String {
        let r = self.as_(who, Method::GET, "/v2/token").send().await;
        assert_eq!(r.status, StatusCode::OK, "token for {who}: {}", r.text());
        r.json()["token"]
            .as_str()
            .expect("a token string")
            .to_string()
    }

    /// Uploads `data` monolithically into `repo`, as `user`; its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = self
            .helper_call(
                "user",
                Method::POST,
                format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .body(data.to_vec())
            .send()
            .await;
        r.assert_status(StatusCode::CREATED);
        digest
    }

    /// Starts an upload session in `repo`, as `user`; its `Location`.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .helper_call("user", Method::POST, format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await;
        r.assert_status(StatusCode::ACCEPTED);
        r.header("location").expect("a Location").to_string()
    }

    /// PUTs a manifest as `user`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        raw: &[u8],
    ) -> Reply {
        self.helper_call(
            "user",
            Method::PUT,
            format!("/v2/{repo}/manifests/{reference}"),
        )
        .header("content-type", media_type)
        .body(raw.to_vec())
        .send()
        .await
    }

    /// Pushes `config` and `layers`, then the OCI image manifest naming
    /// them under `reference`, as `user`.
    pub async fn push_image(
        &self,
        repo: &str,
        reference: &str,
        config: &[u8],
        layers: &[&[u8]],
    ) -> Image {
        self.push_blob(repo, config).await;
        for layer in layers {
            self.push_blob(repo, layer).await;
        }
        let raw = raw_image_manifest(config, layers);
        let r = self.put_manifest(repo, reference, OCI_MANIFEST, &raw).await;
        r.assert_status(StatusCode::CREATED);
        Image {
            digest: sha256(&raw),
            raw,
            blobs: std::iter::once(config)
                .chain(layers.iter().copied())
                .map(|b| (sha256(b), b.len() as u64))
                .collect(),
        }
    }

    /// [`Harness::push_image`] of a config and one layer made from `seed`,
    /// so that different seeds give different images.
    pub async fn push_seeded_image(&self, repo: &str, reference: &str, seed: &str) -> Image {
        let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
        let layer = format!("layer of {seed}").into_bytes();
        self.push_image(repo, reference, &config, &[&layer]).await
    }

    /// The catalog, as `admin`.
    pub async fn catalog(&self) -> Vec<String> {
        let r = self
            .helper_call("admin", Method::GET, "/v2/_catalog")
            .send()
            .await;
        r.assert_status(StatusCode::OK);
        strings(&r.json()["repositories"])
    }

    /// The tags of `repo`, as `admin`; `None` when the repository is unknown.
    pub async fn tags(&self, repo: &str) -> Option<Vec<String>> {
        let r = self
            .helper_call("admin", Method::GET, format!("/v2/{repo}/tags/list"))
            .send()
            .await;
        match r.status {
            StatusCode::OK => Some(strings(&r.json()["tags"])),
            StatusCode::NOT_FOUND => {
                assert_eq!(r.code(), "NAME_UNKNOWN");
                None
            }
            other => panic!("tags of {repo}: {other} {}", r.text()),
        }
    }

    /// The status of `HEAD /v2/<repo>/blobs/<digest>`, as `admin`.
    pub async fn blob_status(&self, repo: &str, digest: &str) -> StatusCode {
        self.helper_call("admin", Method::HEAD, format!("/v2/{repo}/blobs/{digest}"))
            .send()
            .await
            .status
    }

    /// The status of `GET /v2/<repo>/manifests/<reference>`, as `admin`.
    pub async fn manifest_status(&self, repo: &str, reference: &str) -> StatusCode {
        self.helper_call(
            "admin",
            Method::GET,
            format!("/v2/{repo}/manifests/{reference}"),
        )
        .send()
        .await
        .status
    }

    /// The `Range` an upload session reports (`GET` on its location), as
    /// `user`.
    pub async fn upload_range(&self, location: &str) -> String {
        let r = self.helper_call("user", Method::GET, location).send().await;
        r.assert_status(StatusCode::NO_CONTENT);
        r.header("range").expect("a Range").to_string()
    }

    /// Audit events of one type, newest first, through the use case.
    pub async fn audit(&self, event_type: EventType) -> Vec<AuditEvent> {
        self.registry
            .audit_events(
                &admin(),
                AuditQuery {
                    event_type: Some(event_type),
                    limit: 1000,
                    ..AuditQuery::default()
                },
            )
            .await
            .expect("the audit log reads")
    }
}

/// The router and registry over the stores in `dir`, and the blob and
/// upload directories.
fn open(
    dir: &Path,
    identity: &Arc<FakeIdentity>,
    clock: &Arc<ManualClock>,
    faults: &Faults,
    setup: &Setup,
) -> (axum::Router, Arc<Registry>, PathBuf, PathBuf) {
    let layers = dir.join("layers");
    let uploads = dir.join("uploads");
    type Stores = (
        Arc<dyn MetaStore>,
        Arc<dyn SnapshotStore>,
        Arc<dyn BlobStore>,
    );
    let (meta, snapshots, blobs): Stores = match &setup.fakes {
        Some(fakes) => (fakes.meta.clone(), fakes.meta.clone(), fakes.blobs.clone()),
        None => {
            let meta =
                Arc::new(SqliteMetaStore::open(&dir.join(DB_FILE)).expect("the database opens"));
            (
                meta.clone(),
                meta,
                Arc::new(FaultyBlobStore::new(
                    FsBlobStore::open(layers.clone(), uploads.clone())
                        .expect("the blob store opens"),
                    faults.clone(),
                )),
            )
        }
    };
    let config = RegistryConfig {
        gc_grace_period: setup.gc_grace,
        max_blob_size: setup.max_blob_size,
        gc_sweep_window: setup.gc_sweep_window,
        rate_limit: setup.rate_limit,
        max_uploads_per_principal: setup.max_uploads_per_principal,
        max_requests_in_flight: setup.max_requests_in_flight,
        login_limit: setup.login_limit,
        ..RegistryConfig::default()
    };
    let registry = Arc::new(
        Registry::new(
            meta.clone(),
            blobs,
            identity.clone(),
            Arc::new(Engine::new()),
        )
        .with_snapshots(snapshots)
        .with_clock(clock.clone())
        .with_config(config),
    );
    let app = router(AppState::new(
        registry.clone(),
        setup.http.clone(),
        TaskTracker::new(),
    ));
    (app, registry, layers, uploads)
}

/// The challenge a request on `repo` asking for `actions` gets.
pub fn challenge(repo: &str, actions: &str) -> String {
    format!(r#"Bearer realm="{REALM}",service="mcr",scope="repository:{repo}:{actions}""#)
}
