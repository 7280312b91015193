//! The harness of the admin API and online GC tests: the real router over
//! a real SQLite database and a real blob directory in a temporary
//! directory, the fake identity service (users `admin`, `user`, `guest`,
//! `system`, all with [`TEST_PASSWORD`]), the real policy engine and a
//! manual clock, with a GC grace period each test chooses. Requests are
//! driven in-process with `tower::ServiceExt::oneshot`.
#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use mcr_adapters::fs::FsBlobStore;
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::policy::Engine;
use mcr_core::registry::{Caller, Registry, RegistryConfig};
use mcr_core::testing::{admin, guest, system, user, FakeIdentity, ManualClock, TEST_PASSWORD};
use mcr_http::{router, AppState, HttpConfig};
use serde_json::{json, Value};
use sha2::Digest as _;
use tower::ServiceExt;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Long enough that no token expires however far a test moves the clock.
const TOKEN_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A registry behind the real router, over temporary storage.
pub struct Harness {
    pub app: axum::Router,
    pub registry: Arc<Registry>,
    pub identity: Arc<FakeIdentity>,
    pub clock: Arc<ManualClock>,
    /// `<layers>`: blobs live in `<layers>/sha256/<2 hex>/<64 hex>`.
    pub layers: PathBuf,
    pub uploads: PathBuf,
    grace: Duration,
    tokens: BTreeMap<String, String>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A registry with the default grace period (one hour).
    pub fn new() -> Harness {
        Harness::with_grace(RegistryConfig::default().gc_grace_period)
    }

    /// A registry whose GC keeps unreferenced blobs for `grace`.
    pub fn with_grace(grace: Duration) -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = Arc::new(ManualClock::default());
        let identity = Arc::new(FakeIdentity::new(clock.clone()).with_ttl(TOKEN_TTL));
        let mut tokens = BTreeMap::new();
        for caller in [admin(), user(), guest(), system()] {
            let name = caller.principal.subject.clone();
            identity.add_user(&name, TEST_PASSWORD, caller.principal.clone());
            let issued = identity.issue(caller.principal).expect("a token");
            tokens.insert(name, issued.token.expose().to_string());
        }
        let (app, registry, layers, uploads) = open(dir.path(), &identity, &clock, grace);
        Harness {
            app,
            registry,
            identity,
            clock,
            layers,
            uploads,
            grace,
            tokens,
            _dir: dir,
        }
    }

    /// Opens the same database and blob directory again in a new registry,
    /// as a restarted daemon would; the identity service and clock stay.
    pub async fn restart(&mut self) {
        let (app, registry, ..) = open(self._dir.path(), &self.identity, &self.clock, self.grace);
        registry
            .reload_policy()
            .await
            .expect("the stored rules load");
        self.app = app;
        self.registry = registry;
    }

    /// The bearer token of one of the four test users.
    pub fn token(&self, who: &str) -> &str {
        self.tokens
            .get(who)
            .unwrap_or_else(|| panic!("no test user {who}"))
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, uri: impl Into<String>) -> Call {
        Call {
            app: self.app.clone(),
            method,
            uri: uri.into(),
            headers: vec![("host".into(), "registry.test".into())],
            body: Body::empty(),
        }
    }

    /// A request as `who` with that user's bearer token.
    pub fn as_(&self, who: &str, method: Method, uri: impl Into<String>) -> Call {
        self.anon(method, uri).bearer(self.token(who))
    }

    /// Uploads `data` into `repo` in one request, as `user`; its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = self
            .as_(
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

    /// Pushes `config` and `layers`, then the image manifest naming them
    /// under `reference`, as `user`.
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
        let raw = image_manifest(config, layers);
        let r = self
            .as_(
                "user",
                Method::PUT,
                format!("/v2/{repo}/manifests/{reference}"),
            )
            .header("content-type", OCI_MANIFEST)
            .body(raw.clone())
            .send()
            .await;
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

    /// Runs GC to the end through the use case, as `admin`.
    pub async fn gc(&self) -> mcr_core::registry::GcReport {
        self.registry
            .collect_garbage(&admin())
            .await
            .expect("GC runs")
    }

    /// Waits for the GC run `id` started over HTTP to be reported done.
    pub async fn wait_for_gc(&self, id: &str) -> Value {
        for _ in 0..5000 {
            let r = self.as_("admin", Method::GET, "/v1/gc/status").send().await;
            r.assert_status(StatusCode::OK);
            let status = r.json();
            if status["running"] == json!(false) && status["last_run"]["id"] == json!(id) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("GC run {id} did not finish");
    }

    /// Every blob file under `<layers>` with its size, checking on the way
    /// that the tree holds nothing else: no stray file, no empty prefix
    /// directory, and every file named by the SHA-256 of its bytes.
    pub fn blob_files(&self) -> BTreeMap<String, u64> {
        blob_files(&self.layers)
    }

    /// Files left in the uploads directory.
    pub fn upload_files(&self) -> Vec<String> {
        std::fs::read_dir(&self.uploads)
            .expect("the uploads directory reads")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

/// The router and registry over the stores in `dir`.
fn open(
    dir: &Path,
    identity: &Arc<FakeIdentity>,
    clock: &Arc<ManualClock>,
    grace: Duration,
) -> (axum::Router, Arc<Registry>, PathBuf, PathBuf) {
    let layers = dir.join("layers");
    let uploads = dir.join("uploads");
    let meta = SqliteMetaStore::open(&dir.join("mcr.db")).expect("the database opens");
    let blobs = FsBlobStore::open(layers.clone(), uploads.clone()).expect("the store opens");
    let config = RegistryConfig {
        gc_grace_period: grace,
        ..RegistryConfig::default()
    };
    let registry = Arc::new(
        Registry::new(
            Arc::new(meta),
            Arc::new(blobs),
            identity.clone(),
            Arc::new(Engine::new()),
        )
        .with_clock(clock.clone())
        .with_config(config),
    );
    let app = router(AppState::new(registry.clone(), HttpConfig::default()));
    (app, registry, layers, uploads)
}

/// See [`Harness::blob_files`].
pub fn blob_files(layers: &Path) -> BTreeMap<String, u64> {
    let mut found = BTreeMap::new();
    let top: Vec<_> = read_dir(layers);
    for entry in top {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(
            name,
            "sha256",
            "stray entry {:?} in the layers directory",
            entry.path()
        );
        for prefix in read_dir(&entry.path()) {
            let prefix_name = prefix.file_name().to_string_lossy().into_owned();
            assert!(
                prefix.file_type().expect("a file type").is_dir() && prefix_name.len() == 2,
                "stray entry {:?}",
                prefix.path()
            );
            let blobs = read_dir(&prefix.path());
            assert!(
                !blobs.is_empty(),
                "empty prefix directory {:?}",
                prefix.path()
            );
            for blob in blobs {
                let hex = blob.file_name().to_string_lossy().into_owned();
                assert!(
                    hex.len() == 64 && hex.starts_with(&prefix_name),
                    "stray file {:?}",
                    blob.path()
                );
                let bytes = std::fs::read(blob.path()).expect("the blob reads");
                let digest = format!("sha256:{hex}");
                assert_eq!(
                    sha256(&bytes),
                    digest,
                    "blob file {:?} is corrupt",
                    blob.path()
                );
                found.insert(digest, bytes.len() as u64);
            }
        }
    }
    found
}

fn read_dir(dir: &Path) -> Vec<std::fs::DirEntry> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.expect("a directory entry")).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("reading {dir:?}: {e}"),
    }
}

/// What [`Harness::push_image`] pushed.
#[derive(Debug, Clone)]
pub struct Image {
    pub digest: String,
    pub raw: Vec<u8>,
    /// Config then layers: (digest, size).
    pub blobs: Vec<(String, u64)>,
}

/// The raw bytes of an OCI image manifest over `config` and `layers`.
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let descriptor =
        |mt: &str, d: &[u8]| json!({"mediaType": mt, "digest": sha256(d), "size": d.len()});
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
    }))
    .expect("JSON serialises")
}

/// A request being built.
pub struct Call {
    app: axum::Router,
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Body,
}

impl Call {
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(k, _)| *k != name);
        self.headers.push((name, value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body.
    pub fn json(self, v: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(v).expect("JSON serialises"))
    }

    pub async fn send(self) -> Reply {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(&self.uri);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let resp = self
            .app
            .oneshot(req.body(self.body).expect("a valid request"))
            .await
            .expect("the router is infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("the body reads")
            .to_bytes();
        Reply {
            method: self.method,
            uri: self.uri,
            status,
            headers,
            body,
        }
    }
}

/// A response, read whole.
pub struct Reply {
    pub method: Method,
    pub uri: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} ({}): body is not JSON ({e}): {:?}",
                self.method,
                self.uri,
                self.status,
                self.text()
            )
        })
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn assert_status(&self, status: StatusCode) {
        assert_eq!(
            self.status,
            status,
            "{} {}: {}",
            self.method,
            self.uri,
            self.text()
        );
    }

    /// Asserts an admin API error: the status, a JSON body that is exactly
    /// `{"error": "..."}`, and a message containing every one of `parts`.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, parts: &[&str]) {
        self.assert_status(status);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{} {}: {:?}",
            self.method,
            self.uri,
            self.text()
        );
        let body = self.json();
        let fields: Vec<&String> = body
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(fields, ["error"], "{} {}: {body}", self.method, self.uri);
        let message = body["error"].as_str().unwrap_or_default();
        for part in parts {
            assert!(
                message.contains(part),
                "{} {}: error {message:?} does not mention {part:?}",
                self.method,
                self.uri
            );
        }
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// The caller of each test user, by name.
pub fn caller(who: &str) -> Caller {
    match who {
        "admin" => admin(),
        "user" => user(),
        "guest" => guest(),
        "system" => system(),
        other => panic!("no test user {other}"),
    }
}
