//! A request ([`Call`]) sent through the router in-process, and its
//! response read whole ([`Reply`]) with the assertions the tests share.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A request being built.
pub struct Call {
    app: axum::Router,
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Body,
}

impl Call {
    /// A request without headers or body, to be sent to `app`.
    pub(super) fn new(app: axum::Router, method: Method, uri: String) -> Call {
        Call {
            app,
            method,
            uri,
            headers: Vec::new(),
            body: Body::empty(),
        }
    }

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

    /// A JSON body.
    pub fn json(self, v: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(v).expect("JSON serialises"))
    }

    /// Sends the request and hands back the response with its body
    /// unread, as a client that has not read it yet holds it.
    pub async fn send_unread(self) -> axum::response::Response {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(&self.uri);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        self.app
            .oneshot(req.body(self.body).expect("a valid request"))
            .await
            .expect("the router is infallible")
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

    /// Asserts a blob upload's success: 201 with the blob's `Location` in
    /// `repo` and its `Docker-Content-Digest`.
    #[track_caller]
    pub fn assert_blob_created(&self, repo: &str, digest: &str) {
        self.assert_status(StatusCode::CREATED);
        let location = format!("/v2/{repo}/blobs/{digest}");
        assert_eq!(self.header("location"), Some(location.as_str()));
        assert_eq!(self.header("docker-content-digest"), Some(digest));
    }

    /// Asserts an OCI error: the status, the code, a message, and a JSON
    /// content type.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        self.assert_status(status);
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

    /// Asserts an admin API error: the status, a JSON body that is exactly
    /// `{"error": "..."}`, and a message containing every one of `parts`.
    #[track_caller]
    pub fn assert_admin_error(&self, status: StatusCode, parts: &[&str]) {
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

/// The `Authorization` value for `username:password`.
pub fn basic(username: &str, password: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {encoded}")
}

/// The target of a `Link: <url>; rel="next"` header.
pub fn next_link(reply: &Reply) -> Option<String> {
    let link = reply.header("link")?;
    assert!(link.ends_with(r#">; rel="next""#), "Link {link:?}");
    let url = link.strip_prefix('<')?.split_once('>')?.0;
    Some(url.to_string())
}
