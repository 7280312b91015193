//! `HttpUpstream`: the `Upstream` port over the OCI distribution API, the
//! client a pull-through cache uses to reach the registry it mirrors.
//!
//! - reqwest on rustls (`ring`; TLS 1.3 and 1.2), the Mozilla roots plus an
//!   optional CA file; redirects followed (registries send blob downloads
//!   to object storage), no proxy from the environment;
//! - timeouts: connecting, and the gap between two reads of an answer, so
//!   a large blob may take as long as it needs while it keeps flowing;
//! - authentication as Docker clients do it (`auth`): anonymous first, then
//!   what the `401`'s challenge asks for — Basic with the credentials, or a
//!   bearer token from the challenge's realm (anonymous or with the
//!   credentials), cached per scope until it expires;
//! - retries: a request that could not be sent, or answered `429` or
//!   `5xx`, is tried again [`HttpUpstream::ATTEMPTS`] times in all, with a
//!   growing pause; bodies already streaming are not retried (the engine
//!   fails that fill and the next pull starts over). A tag's revalidation
//!   `HEAD` is not retried after a timeout: the engine serves the cached
//!   tag instead, and an upstream that black-holes would otherwise cost
//!   [`HttpUpstream::ATTEMPTS`] timeouts per pull.
//!
//! Every failure is `Error::Unavailable` naming the upstream's URL and what
//! was asked; the password and tokens never appear in one, nor in a log.

mod auth;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream;
use mcr_core::digest::Digest;
use mcr_core::display::redact_url;
use mcr_core::media::MediaType;
use mcr_core::names::{Reference, RepoName, Tag};
use mcr_core::ports::{Secret, Upstream, UpstreamBlob, UpstreamManifest};
use mcr_core::{Error, Result};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::http_client::{self, error_chain, read_at_most};
use auth::{Challenge, TokenAnswer, TokenCache};

/// The manifest types a pull accepts, as Docker and containers/image send
/// them.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Largest token endpoint answer read.
const MAX_TOKEN_ANSWER: usize = 64 << 10;

/// How to reach one upstream (one `[[proxy]]` table).
#[derive(Clone)]
pub struct UpstreamConfig {
    /// `https://host[:port]` (or `http://` for loopback tests), no path.
    pub url: String,
    /// Credentials for Basic challenges and token realms; anonymous when
    /// absent.
    pub credentials: Option<(String, Secret)>,
    /// Extra trusted CA certificates (PEM).
    pub ca_cert: Option<PathBuf>,
    /// Connecting, and each wait for more of an answer.
    pub timeout: Duration,
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("url", &self.url)
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .field("ca_cert", &self.ca_cert)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// An upstream registry spoken to over HTTP(S).
pub struct HttpUpstream {
    http: reqwest::Client,
    /// The URL without a trailing slash: what messages name.
    base: String,
    credentials: Option<(String, Secret)>,
    tokens: TokenCache,
    /// The upstream asked for Basic once: send the credentials up front
    /// from then on, rather than a refused request before each one.
    basic: AtomicBool,
}

impl fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What went wrong with one request, before it becomes an `Error`.
enum Failure {
    /// Worth another try: not sent, `429`, `5xx`.
    Transient(String),
    /// Connecting or reading timed out: worth another try unless the
    /// caller has a fallback (see [`Retry`]).
    TimedOut(String),
    Final(String),
}

impl HttpUpstream {
    /// Tries per request, the first included.
    pub const ATTEMPTS: u32 = 3;
    /// The pause before the second try; it doubles each time.
    const FIRST_PAUSE: Duration = Duration::from_millis(200);

    /// A client of `config.url`. Errors name the `proxy.*` field at fault.
    pub fn new(config: UpstreamConfig) -> Result<HttpUpstream> {
        let url = reqwest::Url::parse(config.url.trim()).map_err(|e| {
            Error::invalid(
                "proxy.upstream",
                format!("{:?} is not a URL: {e}", redact_url(&config.url)),
            )
        })?;
        if !matches!(url.scheme(), "https" | "http")
            || url.host_str().is_none()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(Error::invalid(
                "proxy.upstream",
                format!(
                    "{:?} must be an http(s) URL with a host and nothing else (no path, \
                     credentials, query or fragment; credentials go in username and password)",
                    redact_url(&config.url)
                ),
            ));
        }
        let base = url.as_str().trim_end_matches('/').to_string();
        let tls = http_client::config(
            "proxy.ca_cert",
            config.ca_cert.as_deref(),
            http_client::Versions::Tls13And12,
        )?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(config.timeout)
            .read_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .no_proxy()
            .user_agent(concat!("mcr/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::Unavailable(format!("cannot set up the HTTP client for {base}: {e}"))
            })?;
        Ok(HttpUpstream {
            http,
            base,
            credentials: config.credentials,
            tokens: TokenCache::default(),
            basic: AtomicBool::new(false),
        })
    }

    fn unavailable(&self, what: &str, why: impl fmt::Display) -> Error {
        Error::Unavailable(format!("upstream {}: {what}: {why}", self.base))
    }

    /// Sends `method` to `path` under `/v2/<name>/` with the answer to
    /// authentication challenges, retrying transient failures. Answers with
    /// any status the API defines (the caller reads `404` and the body).
    async fn request(
        &self,
        method: Method,
        name: &RepoName,
        path: &str,
        accept: Option<&str>,
        what: &str,
        retry: Retry,
    ) -> Result<reqwest::Response> {
        let url = format!("{}/v2/{name}/{path}", self.base);
        let scope = format!("repository:{name}:pull");
        let mut pause = Self::FIRST_PAUSE;
        let mut attempt = 1;
        loop {
            match self.authorized(&method, &url, &scope, accept).await {
                Ok(resp) => return Ok(resp),
                Err(Failure::Transient(why)) if attempt < Self::ATTEMPTS => {
                    tracing::debug!(upstream = %self.base, what, attempt, error = %why, "retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                Err(Failure::TimedOut(why))
                    if retry == Retry::Timeouts && attempt < Self::ATTEMPTS =>
                {
                    tracing::debug!(upstream = %self.base, what, attempt, error = %why, "retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                Err(Failure::Transient(why) | Failure::TimedOut(why) | Failure::Final(why)) => {
                    return Err(self.unavailable(what, why))
                }
            }
        }
    }

    /// One try: with a cached token if there is one; on `401`, answers the
    /// challenge and tries once more.
    async fn authorized(
        &self,
        method: &Method,
        url: &str,
        scope: &str,
        accept: Option<&str>,
    ) -> std::result::Result<reqwest::Response, Failure> {
        let cached = match &self.credentials {
            Some((user, password)) if self.basic.load(Ordering::Relaxed) => {
                Some(Authorization::Basic(user.clone(), password.clone()))
            }
            _ => self.tokens.get(scope).map(Authorization::Bearer),
        };
        let resp = self.send(method, url, accept, cached.as_ref()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        if cached.is_some() {
            self.tokens.forget(scope);
        }
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse)
            .ok_or_else(|| {
                Failure::Final("answered 401 without a challenge this client can answer".into())
            })?;
        let auth = match challenge {
            Challenge::Basic => match &self.credentials {
                Some((user, password)) => {
                    self.basic.store(true, Ordering::Relaxed);
                    Authorization::Basic(user.clone(), password.clone())
                }
                None => {
                    return Err(Failure::Final(
                        "asks for credentials; set username and password(_file)".into(),
                    ))
                }
            },
            Challenge::Bearer {
                realm,
                service,
                scope: asked,
            } => {
                let scope_asked = asked.unwrap_or_else(|| scope.to_string());
                let token = self
                    .fetch_token(&realm, service.as_deref(), &scope_asked)
                    .await?;
                self.tokens.put(scope, token.0.clone(), token.1);
                Authorization::Bearer(token.0)
            }
        };
        let resp = self.send(method, url, accept, Some(&auth)).await?;
        if matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            let whose = if self.credentials.is_some() {
                "the configured credentials"
            } else {
                "anonymous access (set username and password(_file))"
            };
            return Err(Failure::Final(format!(
                "refused {whose} ({})",
                resp.status()
            )));
        }
        Ok(resp)
    }

    /// `GET realm?service=…&scope=…`, with Basic credentials if configured.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> std::result::Result<(Secret, Duration), Failure> {
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| Failure::Final(format!("token realm {realm:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(Failure::Final(format!(
                "token realm {realm:?} is not http(s)"
            )));
        }
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        let mut req = self.http.get(url);
        if let Some((user, password)) = &self.credentials {
            req = req.basic_auth(user, Some(password.expose()));
        }
        let resp = req.send().await.map_err(transient)?;
        let status = resp.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Transient(format!(
                "token realm {realm} answered {status}"
            )));
        }
        if !status.is_success() {
            let whose = if self.credentials.is_some() {
                "the configured credentials"
            } else {
                "anonymous access"
            };
            return Err(Failure::Final(format!(
                "token realm {realm} refused {whose} ({status})"
            )));
        }
        let body = read_at_most(resp, MAX_TOKEN_ANSWER as u64)
            .await
            .map_err(|e| Failure::Transient(format!("reading a token from {realm}: {e}")))?;
        serde_json::from_slice::<TokenAnswer>(&body)
            .ok()
            .and_then(TokenAnswer::into_token)
            .ok_or_else(|| Failure::Final(format!("token realm {realm} answered no token")))
    }

    async fn send(
        &self,
        method: &Method,
        url: &str,
        accept: Option<&str>,
        auth: Option<&Authorization>,
    ) -> std::result::Result<reqwest::Response, Failure> {
        let mut req = self.http.request(method.clone(), url);
        if let Some(accept) = accept {
            req = req.header(header::ACCEPT, accept);
        }
        req = match auth {
            Some(Authorization::Bearer(token)) => req.bearer_auth(token.expose()),
            Some(Authorization::Basic(user, password)) => {
                req.basic_auth(user, Some(password.expose()))
            }
            None => req,
        };
        let resp = req.send().await.map_err(transient)?;
        let status = resp.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Transient(format!("answered {status}")));
        }
        Ok(resp)
    }

    /// The answer's status as this port reads it: success, `None` for
    /// `404`, an error for anything else.
    fn found(&self, resp: &reqwest::Response, what: &str) -> Result<bool> {
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(self.unavailable(what, format!("answered {s}"))),
        }
    }
}

/// Which failures of a request [`HttpUpstream::request`] tries again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Every transient failure, timeouts included: the caller has nothing
    /// to fall back on.
    Timeouts,
    /// Transient failures but timeouts: the caller answers from its cache
    /// when the upstream does not answer in time.
    NotTimeouts,
}

enum Authorization {
    Bearer(Secret),
    Basic(String, Secret),
}

fn transient(e: reqwest::Error) -> Failure {
    let timed_out = e.is_timeout();
    let why = error_chain(&e.without_url());
    if timed_out {
        Failure::TimedOut(why)
    } else {
        Failure::Transient(why)
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
}

#[async_trait]
impl Upstream for HttpUpstream {
    fn location(&self) -> &str {
        &self.base
    }

    async fn manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        limit: u64,
    ) -> Result<Option<UpstreamManifest>> {
        let what = format!("manifest {name}:{reference}");
        let resp = self
            .request(
                Method::GET,
                name,
                &format!("manifests/{reference}"),
                Some(ACCEPT),
                &what,
                Retry::Timeouts,
            )
            .await?;
        if !self.found(&resp, &what)? {
            return Ok(None);
        }
        let content_type = header_str(resp.headers(), "content-type")
            .ok_or_else(|| self.unavailable(&what, "answered without a Content-Type"))?;
        let media_type =
            MediaType::from_content_type(content_type).map_err(|e| self.unavailable(&what, e))?;
        let raw = read_at_most(resp, limit)
            .await
            .map_err(|e| self.unavailable(&what, e))?;
        Ok(Some(UpstreamManifest { media_type, raw }))
    }

    async fn manifest_digest(&self, name: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        let what = format!("manifest {name}:{tag}");
        let resp = self
            .request(
                Method::HEAD,
                name,
                &format!("manifests/{tag}"),
                Some(ACCEPT),
                &what,
                Retry::NotTimeouts,
            )
            .await?;
        if !self.found(&resp, &what)? {
            return Ok(None);
        }
        let digest = header_str(resp.headers(), "docker-content-digest").ok_or_else(|| {
            self.unavailable(&what, "answered HEAD without Docker-Content-Digest")
        })?;
        Digest::parse(digest)
            .map(Some)
            .map_err(|e| self.unavailable(&what, e))
    }

    async fn blob_size(&self, name: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let what = format!("blob {digest} of {name}");
        let resp = self
            .request(
                Method::HEAD,
                name,
                &format!("blobs/{digest}"),
                None,
                &what,
                Retry::Timeouts,
            )
            .await?;
        if !self.found(&resp, &what)? {
            return Ok(None);
        }
        content_length(&resp)
            .map(Some)
            .ok_or_else(|| self.unavailable(&what, "answered without a Content-Length"))
    }

    async fn blob(&self, name: &RepoName, digest: &Digest) -> Result<Option<UpstreamBlob>> {
        let what = format!("blob {digest} of {name}");
        let resp = self
            .request(
                Method::GET,
                name,
                &format!("blobs/{digest}"),
                None,
                &what,
                Retry::Timeouts,
            )
            .await?;
        if !self.found(&resp, &what)? {
            return Ok(None);
        }
        let size = content_length(&resp)
            .ok_or_else(|| self.unavailable(&what, "answered without a Content-Length"))?;
        let base = self.base.clone();
        let body = stream::unfold(Some(resp), move |resp| {
            let base = base.clone();
            async move {
                let mut resp = resp?;
                match resp.chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some(resp))),
                    Ok(None) => None,
                    Err(e) => Some((
                        Err(std::io::Error::other(format!(
                            "upstream {base}: {}",
                            error_chain(&e.without_url())
                        ))),
                        None,
                    )),
                }
            }
        });
        Ok(Some(UpstreamBlob {
            size,
            stream: Box::pin(body),
        }))
    }
}

/// The `Content-Length` header (reqwest's `content_length()` reports the
/// bytes left to read, which is 0 for a `HEAD`).
fn content_length(resp: &reqwest::Response) -> Option<u64> {
    header_str(resp.headers(), "content-length")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> UpstreamConfig {
        UpstreamConfig {
            url: url.into(),
            credentials: Some(("mirror".into(), Secret::new("hunter2"))),
            ca_cert: None,
            timeout: Duration::from_secs(1),
        }
    }

    /// Review of issue 13 (third round), D5: a password put in the URL
    /// is refused without being quoted back (stderr is the journal).
    #[test]
    fn a_url_with_credentials_is_refused_without_quoting_them() {
        for bad in [
            "http://bob:Hunter2pw@127.0.0.1:5150",
            "bob:Hunter2pw@127.0.0.1:5150",
            "https://bob:Hunter2pw@x/v2?q",
        ] {
            let e = HttpUpstream::new(config(bad)).unwrap_err().to_string();
            assert!(e.contains("proxy.upstream"), "{bad}: {e}");
            assert!(!e.contains("Hunter2pw") && !e.contains("bob"), "{e}");
        }
    }

    #[test]
    fn urls_are_checked_and_credentials_never_printed() {
        for bad in [
            "registry-1.docker.io",
            "ftp://x",
            "https://u:p@x",
            "https://x/v2",
            "https://x/?q",
        ] {
            let e = HttpUpstream::new(config(bad)).unwrap_err().to_string();
            assert!(e.contains("proxy.upstream"), "{bad}: {e}");
        }
        let up = HttpUpstream::new(config("https://registry-1.docker.io/")).unwrap();
        assert_eq!(up.location(), "https://registry-1.docker.io");
        let shown = format!("{:?} {:?}", config("https://x"), up);
        assert!(!shown.contains("hunter2"), "{shown}");
        let e = HttpUpstream::new(UpstreamConfig {
            ca_cert: Some("/nonexistent/ca.pem".into()),
            ..config("https://x")
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("proxy.ca_cert") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }

    /// Review r13, D2: an upstream that accepts and never answers costs a
    /// tag's revalidation one timeout, not one per attempt (the engine
    /// serves the cached tag), while a blob size is still retried.
    #[tokio::test]
    async fn a_revalidation_head_is_not_retried_after_a_timeout() {
        // Nobody accepts: the kernel completes each connection into the
        // backlog and nothing ever answers; counted by draining it after.
        let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        hole.set_nonblocking(true).unwrap();
        let port = hole.local_addr().unwrap().port();
        let up = HttpUpstream::new(UpstreamConfig {
            timeout: Duration::from_millis(200),
            ..config(&format!("http://127.0.0.1:{port}"))
        })
        .unwrap();
        let connections = || std::iter::from_fn(|| hole.accept().ok()).count();
        let name = RepoName::new("library/alpine").unwrap();
        let e = up
            .manifest_digest(&name, &Tag::new("3").unwrap())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("library/alpine:3"), "{e}");
        assert_eq!(connections(), 1);
        let digest = Digest::sha256_of(b"x");
        up.blob_size(&name, &digest).await.unwrap_err();
        assert_eq!(connections(), HttpUpstream::ATTEMPTS as usize);
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_named_in_the_error() {
        // A port nobody listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let up = HttpUpstream::new(config(&format!("http://127.0.0.1:{port}"))).unwrap();
        let e = up
            .manifest_digest(
                &RepoName::new("library/alpine").unwrap(),
                &Tag::new("3").unwrap(),
            )
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
        assert!(text.contains("library/alpine:3"), "{text}");
    }
}
