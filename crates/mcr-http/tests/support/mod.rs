//! The harness every HTTP test uses: the real router over a real SQLite
//! database and a real blob directory in a temporary directory, with the
//! fake identity service (users `admin`, `user`, `guest`, `system`, all
//! with [`TEST_PASSWORD`]) and the real policy engine, driven in-process
//! with `tower::ServiceExt::oneshot`.
//!
//! Every response to a `/v2/…` request is checked for
//! `Docker-Distribution-API-Version: registry/2.0` as it comes back, so no
//! test has to remember to; the token endpoint is checked by its own test.
#![allow(dead_code)] // each test binary uses a different part of it

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use mcr_adapters::fs::FsBlobStore;
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::audit::{AuditEvent, AuditQuery, EventType};
use mcr_core::policy::Engine;
use mcr_core::registry::Registry;
use mcr_core::testing::{admin, guest, system, user, FakeIdentity, ManualClock, TEST_PASSWORD};
use mcr_http::{router, AppState, HttpConfig};
use serde_json::{json, Value};
use sha2::Digest as _;
use tower::ServiceExt;

/// The `Host` every request carries, so challenge realms are predictable.
pub const HOST: &str = "registry.test";
/// The realm of every challenge built from [`HOST`].
pub const REALM: &str = "http://registry.test/v2/token";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A registry behind the real router, over temporary storage.
pub struct Harness {
    pub app: axum::Router,
    pub registry: Arc<Registry>,
    pub identity: Arc<FakeIdentity>,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(HttpConfig::default())
    }

    pub fn with_config(config: HttpConfig) -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = Arc::new(ManualClock::default());
        let identity = Arc::new(FakeIdentity::new(clock.clone()));
        for caller in [admin(), user(), guest(), system()] {
            let name = caller.principal.subject.clone();
            identity.add_user(&name, TEST_PASSWORD, caller.principal);
        }
        let meta = SqliteMetaStore::open(&dir.path().join("mcr.db")).expect("the database opens");
        let blobs = FsBlobStore::open(dir.path().join("layers"), dir.path().join("uploads"))
            .expect("the blob store opens");
        let registry = Arc::new(
            Registry::new(
                Arc::new(meta),
                Arc::new(blobs),
                identity.clone(),
                Arc::new(Engine::new()),
            )
            .with_clock(clock.clone()),
        );
        let app = router(AppState::new(registry.clone(), config));
        Harness {
            app,
            registry,
            identity,
            clock,
            _dir: dir,
        }
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, uri: impl Into<String>) -> Call<'_> {
        Call {
            harness: self,
            method,
            uri: uri.into(),
            headers: vec![("host".to_string(), HOST.to_string())],
            body: Body::empty(),
        }
    }

    /// A request as `who` (one of the four test users), with HTTP Basic.
    pub fn as_(&self, who: &str, method: Method, uri: impl Into<String>) -> Call<'_> {
        self.anon(method, uri).basic(who, TEST_PASSWORD)
    }

    /// A request as `user`, the ordinary human with pull, push and delete.
    pub fn user(&self, method: Method, uri: impl Into<String>) -> Call<'_> {
        self.as_("user", method, uri)
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

    /// Uploads `data` monolithically into `repo`; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = self
            .user(
                Method::POST,
                format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .body(data.to_vec())
            .send()
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "push blob: {}", r.text());
        digest
    }

    /// Starts an upload session in `repo`; returns its `Location`.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .user(Method::POST, format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "start upload: {}", r.text());
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
        self.user(Method::PUT, format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(raw.to_vec())
            .send()
            .await
    }

    /// Pushes a config and one layer derived from `seed`, then an OCI image
    /// manifest naming them under `reference`.
    pub async fn push_image(&self, repo: &str, reference: &str, seed: &str) -> Image {
        let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
        let layer = format!("layer of {seed}").into_bytes();
        self.push_blob(repo, &config).await;
        self.push_blob(repo, &layer).await;
        let raw = to_bytes(&image_manifest(
            descriptor(OCI_CONFIG, &config),
            &[descriptor(OCI_LAYER, &layer)],
            json!({}),
        ));
        let r = self.put_manifest(repo, reference, OCI_MANIFEST, &raw).await;
        assert_eq!(r.status, StatusCode::CREATED, "push image: {}", r.text());
        Image {
            digest: sha256(&raw),
            raw,
            config: sha256(&config),
            layer: sha256(&layer),
        }
    }

    /// The catalog, as `admin`.
    pub async fn catalog(&self) -> Vec<String> {
        let r = self.as_("admin", Method::GET, "/v2/_catalog").send().await;
        assert_eq!(r.status, StatusCode::OK, "catalog: {}", r.text());
        strings(&r.json()["repositories"])
    }

    /// The tags of `repo`, as `admin`; `None` when the repository is unknown.
    pub async fn tags(&self, repo: &str) -> Option<Vec<String>> {
        let r = self
            .as_("admin", Method::GET, format!("/v2/{repo}/tags/list"))
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
        self.as_("admin", Method::HEAD, format!("/v2/{repo}/blobs/{digest}"))
            .send()
            .await
            .status
    }

    /// The status of `GET /v2/<repo>/manifests/<reference>`, as `admin`.
    pub async fn manifest_status(&self, repo: &str, reference: &str) -> StatusCode {
        self.as_(
            "admin",
            Method::GET,
            format!("/v2/{repo}/manifests/{reference}"),
        )
        .send()
        .await
        .status
    }

    /// The `Range` an upload session reports (`GET` on its location).
    pub async fn upload_range(&self, location: &str) -> String {
        let r = self.user(Method::GET, location).send().await;
        assert_eq!(
            r.status,
            StatusCode::NO_CONTENT,
            "upload status: {}",
            r.text()
        );
        r.header("range").expect("a Range").to_string()
    }

    /// Audit events of one type, newest first.
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

/// What [`Harness::push_image`] pushed.
pub struct Image {
    pub digest: String,
    pub raw: Vec<u8>,
    pub config: String,
    pub layer: String,
}

/// A request being built.
pub struct Call<'h> {
    harness: &'h Harness,
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Body,
}

impl Call<'_> {
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(k, _)| *k != name);
        self.headers.push((name, value.into()));
        self
    }

    pub fn basic(self, username: &str, password: &str) -> Self {
        self.header("authorization", basic(username, password))
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.body = body.into();
        self
    }

    pub async fn send(self) -> Reply {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(&self.uri);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let resp = self
            .harness
            .app
            .clone()
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
        let reply = Reply {
            method: self.method,
            uri: self.uri,
            status,
            headers,
            body,
        };
        if reply.uri.starts_with("/v2") && !reply.uri.starts_with("/v2/token") {
            assert_eq!(
                reply.header("docker-distribution-api-version"),
                Some("registry/2.0"),
                "{} {} answered {} without Docker-Distribution-API-Version; body {}",
                reply.method,
                reply.uri,
                reply.status,
                reply.text()
            );
        }
        reply
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

    /// The code of the (single) OCI error in the body.
    pub fn code(&self) -> String {
        let errors = self.json()["errors"].clone();
        let errors = errors.as_array().unwrap_or_else(|| {
            panic!(
                "{} {} ({}): no errors array: {}",
                self.method,
                self.uri,
                self.status,
                self.text()
            )
        });
        assert_eq!(errors.len(), 1, "one error: {}", self.text());
        errors[0]["code"].as_str().unwrap_or_default().to_string()
    }

    /// Asserts an OCI error: the status, the code, a message, and a JSON
    /// content type.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            self.status,
            status,
            "{} {}: {}",
            self.method,
            self.uri,
            self.text()
        );
        assert_eq!(
            self.code(),
            code,
            "{} {}: {}",
            self.method,
            self.uri,
            self.text()
        );
        assert!(
            self.json()["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "an error message: {}",
            self.text()
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
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
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// The `Authorization` value for `username:password`.
pub fn basic(username: &str, password: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {encoded}")
}

/// The challenge a request on `repo` asking for `actions` gets.
pub fn challenge(repo: &str, actions: &str) -> String {
    format!(r#"Bearer realm="{REALM}",service="mcr",scope="repository:{repo}:{actions}""#)
}

/// A descriptor of `data` with `media_type`.
pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

/// An OCI image manifest; the fields of `extra` are added at the top level.
pub fn image_manifest(config: Value, layers: &[Value], extra: Value) -> Value {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    merge(&mut m, extra);
    m
}

/// An OCI image index; the fields of `extra` are added at the top level.
pub fn image_index(manifests: &[Value], extra: Value) -> Value {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    merge(&mut m, extra);
    m
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        t.extend(e);
    }
}

pub fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON serialises")
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// The target of a `Link: <url>; rel="next"` header.
pub fn next_link(reply: &Reply) -> Option<String> {
    let link = reply.header("link")?;
    assert!(link.ends_with(r#">; rel="next""#), "Link {link:?}");
    let url = link.strip_prefix('<')?.split_once('>')?.0;
    Some(url.to_string())
}
