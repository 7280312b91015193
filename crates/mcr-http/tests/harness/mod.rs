//! The real router over a real SQLite database and blob directory in a
//! temporary directory, with the fake identity (users admin, user, guest,
//! system), driven in-process.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use mcr_adapters::fs::FsBlobStore;
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::policy::Engine;
use mcr_core::registry::Registry;
use mcr_core::testing::{admin, guest, system, user, FakeIdentity, ManualClock, TEST_PASSWORD};
use mcr_http::{router, AppState, HttpConfig};
use sha2::Digest as _;
use tower::ServiceExt;

pub struct Harness {
    pub app: axum::Router,
    pub identity: Arc<FakeIdentity>,
    pub registry: Arc<Registry>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The first OCI error code in the body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

pub fn basic(user: &str) -> String {
    let raw = format!("{user}:{TEST_PASSWORD}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

impl Harness {
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::default());
        let identity = Arc::new(FakeIdentity::new(clock.clone()));
        for c in [admin(), user(), guest(), system()] {
            identity.add_user(&c.principal.subject.clone(), TEST_PASSWORD, c.principal);
        }
        let registry = Arc::new(
            Registry::new(
                Arc::new(SqliteMetaStore::open(&dir.path().join("mcr.db")).expect("db")),
                Arc::new(
                    FsBlobStore::open(dir.path().join("layers"), dir.path().join("uploads"))
                        .expect("blobs"),
                ),
                identity.clone(),
                Arc::new(Engine::new()),
            )
            .with_clock(clock),
        );
        let app = router(AppState::new(registry.clone(), HttpConfig::default()));
        Harness {
            app,
            identity,
            registry,
            _dir: dir,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "registry.test");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body.into()).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// As `user` (Basic credentials), no extra headers.
    pub async fn as_user(&self, method: Method, uri: &str, body: impl Into<Body>) -> Reply {
        self.send(method, uri, Some(&basic("user")), &[], body)
            .await
    }

    /// Uploads a blob monolithically and returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha256(data);
        let r = self
            .as_user(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        d
    }

    /// Pushes a config and one layer, then a manifest under `reference`;
    /// returns (manifest digest, manifest bytes, layer digest).
    pub async fn push_image(
        &self,
        repo: &str,
        reference: &str,
        seed: &str,
    ) -> (String, String, String) {
        let config = format!("{{\"seed\":\"{seed}\"}}");
        let layer = format!("layer {seed}");
        let cd = self.push_blob(repo, config.as_bytes()).await;
        let ld = self.push_blob(repo, layer.as_bytes()).await;
        let manifest = image_manifest(&cd, config.len(), &[(&ld, layer.len())], "");
        let r = self
            .send(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                Some(&basic("user")),
                &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
                manifest.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        (sha256(manifest.as_bytes()), manifest, ld)
    }
}

pub fn image_manifest(
    config: &str,
    config_size: usize,
    layers: &[(&str, usize)],
    extra: &str,
) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s)| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{s}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{}]{extra}}}"#,
        layers.join(",")
    )
}
