//! The MCIAS identity: the `TokenValidator` port over MCIAS's HTTP API.
//!
//! MCIAS is the identity service of the platform MCR runs on. Logins,
//! token validation and logout are one JSON `POST` each (the wire contract
//! is in `docs/mcias.md` and the `wire` module). This module owns:
//!
//! - the HTTP client: reqwest on rustls with the `ring` provider, TLS 1.3
//!   only, the Mozilla roots plus an optional CA file, a 10 s timeout, no
//!   redirects and no proxy;
//! - the validation cache (the `cache` module): valid answers for 30 s,
//!   keyed by the SHA-256 of the token, bounded;
//! - the error mapping: bad credentials and invalid tokens are
//!   `Error::Unauthenticated`; MCIAS unreachable, slow, failing or
//!   answering nonsense is `Error::Unavailable` (a 503 at the edge, never a
//!   401), with a `tracing::warn!` saying why.
//!
//! Tokens and passwords stay `Secret`s: they appear in request bodies and
//! one header, never in a log line, an error message or the cache.
//!
//! With the `fake-mcias` feature, `fake::FakeMcias` is an in-process MCIAS
//! for tests.

mod cache;
#[cfg(feature = "fake-mcias")]
pub mod fake;
mod wire;

use crate::http_client::{self, error_chain, read_at_most, ReadError};

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mcr_core::ports::{IssuedToken, Secret, TokenValidator};
use mcr_core::principal::Principal;
use mcr_core::time::Clock;
use mcr_core::{Error, Result};
use reqwest::StatusCode;

use crate::metrics::{MciasMetrics, TokenMetrics};
use cache::{token_hash, ValidationCache};
use wire::{describe_json_error, parse_time, LoginRequest, LoginResponse, ValidateRequest};

const LOGIN_PATH: &str = "/v1/auth/login";
const VALIDATE_PATH: &str = "/v1/token/validate";
const LOGOUT_PATH: &str = "/v1/auth/logout";

/// Largest MCIAS answer read; anything longer is a broken answer.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest token sent to MCIAS; longer ones are refused unasked.
const MAX_TOKEN_LEN: usize = 4096;

/// Where MCIAS is and how MCR introduces itself: the `[mcias]` section of
/// the daemon's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MciasConfig {
    /// Base URL, e.g. `https://mcias.example.net:8443` (a path prefix is
    /// kept; a trailing `/` is ignored).
    pub server_url: String,
    /// A PEM file of CA certificates trusted in addition to the built-in
    /// (Mozilla) roots, for an MCIAS behind a private CA.
    pub ca_cert: Option<PathBuf>,
    /// Sent with every login; MCIAS uses it to decide who may log in here.
    pub service_name: String,
    /// Sent with every login, e.g. `env:restricted`.
    pub tags: Vec<String>,
}

/// The `TokenValidator` backed by MCIAS.
pub struct MciasTokenValidator {
    http: reqwest::Client,
    /// `server_url` without a trailing `/`.
    base: String,
    service_name: String,
    tags: Vec<String>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    cache: ValidationCache,
    tokens: TokenMetrics,
    calls: MciasMetrics,
}

impl fmt::Debug for MciasTokenValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MciasTokenValidator")
            .field("server_url", &self.base)
            .field("service_name", &self.service_name)
            .field("tags", &self.tags)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl MciasTokenValidator {
    /// How long one request to MCIAS may take, connection included.
    pub const TIMEOUT: Duration = Duration::from_secs(10);
    /// How long a valid answer is reused.
    pub const CACHE_TTL: Duration = Duration::from_secs(30);
    /// Most cached validations.
    pub const CACHE_CAPACITY: usize = 10_000;

    /// A validator for the MCIAS at `config.server_url`. Reads the CA file
    /// now; errors name the config field and the file. `clock` drives the
    /// cache's expiry.
    pub fn new(config: MciasConfig, clock: Arc<dyn Clock>) -> Result<MciasTokenValidator> {
        MciasTokenValidator::with_timeout(config, clock, MciasTokenValidator::TIMEOUT)
    }

    /// As [`MciasTokenValidator::new`], with another request timeout (tests
    /// use a short one).
    pub fn with_timeout(
        config: MciasConfig,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Result<MciasTokenValidator> {
        let url = reqwest::Url::parse(config.server_url.trim()).map_err(|e| {
            Error::invalid(
                "mcias.server_url",
                format!("{:?} is not a URL: {e}", config.server_url),
            )
        })?;
        if !matches!(url.scheme(), "https" | "http")
            || url.host_str().is_none()
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(Error::invalid(
                "mcias.server_url",
                format!(
                    "{:?} must be an http(s) URL with a host and no credentials, query or fragment",
                    config.server_url
                ),
            ));
        }
        if config.service_name.trim().is_empty() {
            return Err(Error::invalid("mcias.service_name", "must not be empty"));
        }
        let base = url.as_str().trim_end_matches('/').to_string();
        if url.scheme() == "http" {
            tracing::warn!(
                mcias = %base,
                "MCIAS server_url is plain http: passwords and tokens cross the network unencrypted"
            );
        }
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(http_client::config(
                "mcias.ca_cert",
                config.ca_cert.as_deref(),
                http_client::Versions::Tls13,
            )?)
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("mcr/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::Unavailable(format!("cannot set up the HTTP client for MCIAS: {e}"))
            })?;
        Ok(MciasTokenValidator {
            http,
            base,
            service_name: config.service_name,
            tags: config.tags,
            timeout,
            clock,
            cache: ValidationCache::new(
                MciasTokenValidator::CACHE_TTL,
                MciasTokenValidator::CACHE_CAPACITY,
            ),
            tokens: TokenMetrics::new(),
            calls: MciasMetrics::new(),
        })
    }

    /// The base URL requests go to.
    pub fn server_url(&self) -> &str {
        &self.base
    }

    /// Sends one request and reads the answer, mapping every way of not
    /// getting one to `Error::Unavailable`.
    async fn send(
        &self,
        op: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Bytes)> {
        let start = std::time::Instant::now();
        let resp = req.send().await.map_err(|e| self.transport_error(op, e))?;
        let status = resp.status();
        let body = read_at_most(resp, MAX_RESPONSE_BYTES as u64)
            .await
            .map_err(|e| match e {
                ReadError::Transport(e) => self.transport_error(op, e),
                ReadError::TooLong { .. } => {
                    self.unavailable(op, format!("answer is over {MAX_RESPONSE_BYTES} bytes"))
                }
            })?;
        self.calls.answered(op, start.elapsed());
        Ok((status, body))
    }

    fn transport_error(&self, op: &'static str, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            return self.unavailable(op, format!("no answer within {:?}", self.timeout));
        }
        let what = if e.is_connect() {
            "unreachable"
        } else {
            "request failed"
        };
        let mut reason = format!("{what}: {}", error_chain(&e.without_url()));
        if reason.contains("certificate") {
            reason.push_str(" (is mcias.ca_cert set to the CA that signed MCIAS's certificate?)");
        }
        self.unavailable(op, reason)
    }

    /// The answer status was not one the contract allows here.
    fn bad_status(&self, op: &'static str, status: StatusCode) -> Error {
        if status.is_server_error() {
            self.unavailable(op, format!("answered HTTP {status}"))
        } else {
            self.unavailable(op, format!("unexpected HTTP {status}"))
        }
    }

    /// Logs why MCIAS could not answer, and says so to the caller.
    fn unavailable(&self, op: &'static str, reason: String) -> Error {
        self.calls.failed(op);
        tracing::warn!(mcias = %self.base, op, %reason, "MCIAS unavailable");
        Error::Unavailable(format!("MCIAS at {} ({op}): {reason}", self.base))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl MciasTokenValidator {
    /// [`TokenValidator::validate`], before its outcome is counted.
    async fn check(&self, token: &Secret) -> Result<Principal> {
        check_token(token)?;
        let key = token_hash(token);
        let now = self.clock.now();
        if let Some(p) = self.cache.get(&key, now) {
            self.tokens.cache_hit();
            tracing::trace!(subject = %p.subject, "MCIAS validation from the cache");
            return Ok(p);
        }
        let op = "token validation";
        let req = self
            .http
            .post(self.url(VALIDATE_PATH))
            .json(&ValidateRequest {
                token: token.expose(),
            });
        let (status, body) = self.send(op, req).await?;
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(token_invalid()),
            s => return Err(self.bad_status(op, s)),
        }
        let answer: wire::ValidateResponse = serde_json::from_slice(&body).map_err(|e| {
            self.unavailable(
                op,
                format!("unreadable answer: {}", describe_json_error(&e)),
            )
        })?;
        if !answer.valid {
            tracing::debug!("MCIAS says the token is not valid");
            return Err(token_invalid());
        }
        let v = answer
            .into_validated()
            .map_err(|reason| self.unavailable(op, format!("unusable answer: {reason}")))?;
        // Cached from the time the question was asked, not answered: the
        // entry never outlives what MCIAS vouched for.
        self.cache
            .insert(key, v.principal.clone(), now, v.expires_at);
        tracing::debug!(subject = %v.principal.subject, "MCIAS validated a token");
        Ok(v.principal)
    }
}

#[async_trait]
impl TokenValidator for MciasTokenValidator {
    async fn validate(&self, token: &Secret) -> Result<Principal> {
        self.tokens.record(self.check(token).await)
    }

    async fn login(&self, username: &str, password: &Secret) -> Result<IssuedToken> {
        let op = "login";
        let req = self.http.post(self.url(LOGIN_PATH)).json(&LoginRequest {
            username,
            password: password.expose(),
            service_name: &self.service_name,
            tags: &self.tags,
        });
        let (status, body) = self.send(op, req).await?;
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                tracing::debug!(username, %status, "MCIAS refused the login");
                return Err(Error::Unauthenticated(
                    "invalid username or password".into(),
                ));
            }
            s => return Err(self.bad_status(op, s)),
        }
        let answer: LoginResponse = serde_json::from_slice(&body).map_err(|e| {
            self.unavailable(
                op,
                format!("unreadable answer: {}", describe_json_error(&e)),
            )
        })?;
        let token = Secret::new(answer.token);
        if check_token(&token).is_err() {
            return Err(self.unavailable(op, "the token in the answer is malformed".into()));
        }
        let expires_at = parse_time(&answer.expires_at)
            .map_err(|e| self.unavailable(op, format!("unusable answer: expires_at: {e}")))?;
        tracing::debug!(username, %expires_at, "MCIAS login succeeded");
        Ok(IssuedToken { token, expires_at })
    }

    async fn logout(&self, token: &Secret) -> Result<()> {
        check_token(token)?;
        // Forget it here first: whatever MCIAS answers, this process no
        // longer vouches for the token.
        self.cache.remove(&token_hash(token));
        let op = "logout";
        let req = self
            .http
            .post(self.url(LOGOUT_PATH))
            .bearer_auth(token.expose());
        let (status, _) = self.send(op, req).await?;
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => {
                tracing::debug!(mcias = %self.base, "MCIAS has no logout endpoint; token left to expire");
                Ok(())
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(token_invalid()),
            s => Err(self.bad_status(op, s)),
        }
    }
}

fn token_invalid() -> Error {
    Error::Unauthenticated("token is not valid (unknown, expired or revoked)".into())
}

/// Refuses, without asking MCIAS, what cannot be a token: empty, too long,
/// or not printable ASCII (it must fit an `Authorization` header).
fn check_token(token: &Secret) -> Result<()> {
    let t = token.expose();
    if t.is_empty() || t.len() > MAX_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Unauthenticated("malformed token".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_core::time::SystemClock;

    fn config(url: &str) -> MciasConfig {
        MciasConfig {
            server_url: url.into(),
            ca_cert: None,
            service_name: "mcr".into(),
            tags: vec![],
        }
    }

    #[test]
    fn server_urls_are_checked() {
        let ok =
            MciasTokenValidator::new(config("https://id.example/mcias/"), Arc::new(SystemClock))
                .unwrap();
        assert_eq!(ok.server_url(), "https://id.example/mcias");
        for bad in [
            "id.example",
            "ftp://id.example",
            "https://u:p@id.example",
            "https://id.example/?x=1",
        ] {
            let err = MciasTokenValidator::new(config(bad), Arc::new(SystemClock))
                .unwrap_err()
                .to_string();
            assert!(err.contains("mcias.server_url"), "{bad}: {err}");
        }
        let mut c = config("https://id.example");
        c.service_name = " ".into();
        let err = MciasTokenValidator::new(c, Arc::new(SystemClock))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mcias.service_name"), "{err}");
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for path in [missing, garbage, broken] {
            let mut c = config("https://id.example");
            c.ca_cert = Some(path.clone());
            let err = MciasTokenValidator::new(c, Arc::new(SystemClock))
                .unwrap_err()
                .to_string();
            assert!(err.contains("mcias.ca_cert"), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
    }

    #[test]
    fn malformed_tokens_are_refused_unasked() {
        for t in ["", "has space", "new\nline", "ünïcode"] {
            assert!(
                matches!(check_token(&Secret::new(t)), Err(Error::Unauthenticated(_))),
                "{t:?}"
            );
        }
        assert!(check_token(&Secret::new("x".repeat(MAX_TOKEN_LEN + 1))).is_err());
        assert!(check_token(&Secret::new("abc.DEF-123_~")).is_ok());
    }

    #[test]
    fn debug_shows_no_secrets_and_the_url() {
        let v =
            MciasTokenValidator::new(config("https://id.example"), Arc::new(SystemClock)).unwrap();
        let d = format!("{v:?}");
        assert!(d.contains("https://id.example"), "{d}");
    }
}
