//! Who is calling: bearer tokens and HTTP Basic credentials, and the
//! challenge that tells a client how to get a token.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, Extensions, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use mcr_core::names::RepoName;
use mcr_core::ports::Secret;
use mcr_core::registry::{Caller, RequestSlot};
use mcr_core::Error;

use crate::state::AppState;

/// Longest `Authorization` header accepted; anything longer is refused
/// before it is decoded.
const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;

/// Credentials found in a request.
pub enum Credentials {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

impl Credentials {
    /// Reads the `Authorization` header; `Ok(None)` when there is none.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Credentials>, Error> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        if value.len() > MAX_AUTHORIZATION_LEN {
            return Err(Error::Unauthenticated(
                "authorization header too long".into(),
            ));
        }
        let value = value
            .to_str()
            .map_err(|_| Error::Unauthenticated("authorization header is not text".into()))?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Ok(Some(Credentials::Bearer(Secret::new(rest))));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Error::Unauthenticated("malformed basic credentials".into()))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| Error::Unauthenticated("malformed basic credentials".into()))?;
            return Ok(Some(Credentials::Basic {
                username: username.to_string(),
                password: Secret::new(password),
            }));
        }
        Err(Error::Unauthenticated(
            "unsupported authorization scheme (use Bearer or Basic)".into(),
        ))
    }
}

/// Where a request keeps its principal's in-flight slot
/// ([`mcr_core::registry::Registry::begin_request`]): put in its
/// extensions by [`hold_slots`], filled by [`authenticate`].
#[derive(Clone, Default)]
pub(crate) struct SlotHolder(Arc<OnceLock<RequestSlot>>);

/// Middleware: a request counts as in flight for its principal from the
/// moment it is authenticated until its response body has been sent (or
/// dropped), so a principal that reads its downloads slowly holds no more
/// connections than its cap allows either.
pub(crate) async fn hold_slots(mut request: Request, next: Next) -> Response {
    let held = SlotHolder::default();
    request.extensions_mut().insert(held.clone());
    let response = next.run(request).await;
    if held.0.get().is_none() {
        return response;
    }
    response.map(|body| Body::new(Holding { body, _held: held }))
}

/// A response body that keeps its request's in-flight slot until it is
/// dropped: after its last frame was sent, or when the connection ends.
struct Holding {
    body: Body,
    _held: SlotHolder,
}

impl http_body::Body for Holding {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Establishes the caller of a request with these headers and
/// extensions (the peer's address, the [`SlotHolder`]), or says why not:
/// bad credentials, or `Error::TooManyRequests` past the principal's rate
/// or requests in flight. The principal's subject is recorded on the
/// request's log span; credentials never are.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<Caller, Error> {
    let ip = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let principal = match Credentials::from_headers(headers)? {
        None => return Err(Error::Unauthenticated("no credentials".into())),
        Some(Credentials::Bearer(token)) => state.registry.authenticate(&token).await?,
        Some(Credentials::Basic { username, password }) => {
            state
                .registry
                .authenticate_password(&username, &password, ip.clone())
                .await?
        }
    };
    tracing::Span::current().record("subject", principal.subject.as_str());
    if let Some(SlotHolder(slot)) = extensions.get::<SlotHolder>() {
        // Once per request, however many times it is authenticated.
        if slot.get().is_none() {
            let _ = slot.set(state.registry.begin_request(&principal)?);
        }
    }
    Ok(Caller { principal, ip })
}

/// A `WWW-Authenticate: Bearer` challenge.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub realm: String,
    pub service: String,
    pub scope: Option<String>,
}

impl Challenge {
    /// The challenge for a request on `repo` (if any), asking for `actions`.
    pub fn new(
        state: &AppState,
        headers: &HeaderMap,
        repo: Option<(&RepoName, &str)>,
    ) -> Challenge {
        Challenge {
            realm: format!("{}/v2/token", state.base_url(headers)),
            service: state.config.service_name.clone(),
            scope: repo.map(|(r, actions)| format!("repository:{r}:{actions}")),
        }
    }

    pub fn header_value(&self) -> String {
        let mut v = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            quote_safe(&self.realm),
            quote_safe(&self.service)
        );
        if let Some(scope) = &self.scope {
            v.push_str(&format!(",scope=\"{}\"", quote_safe(scope)));
        }
        v
    }
}

/// Keeps a value from breaking out of its quoted-string.
fn quote_safe(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert!(matches!(
            Credentials::from_headers(&h).unwrap(),
            Some(Credentials::Bearer(t)) if t.expose() == "abc"
        ));
        h.insert(header::AUTHORIZATION, "Basic YWRtaW46cDpx".parse().unwrap());
        assert!(matches!(
            Credentials::from_headers(&h).unwrap(),
            Some(Credentials::Basic { username, password }) if username == "admin" && password.expose() == "p:q"
        ));
        h.insert(header::AUTHORIZATION, "Digest x".parse().unwrap());
        assert!(Credentials::from_headers(&h).is_err());
        assert!(Credentials::from_headers(&HeaderMap::new())
            .unwrap()
            .is_none());
    }

    #[test]
    fn challenge_quotes_every_parameter() {
        let c = Challenge {
            realm: "http://127.0.0.1:5000/v2/token".into(),
            service: "mcr".into(),
            scope: Some("repository:a/b:pull,push".into()),
        };
        assert_eq!(
            c.header_value(),
            "Bearer realm=\"http://127.0.0.1:5000/v2/token\",service=\"mcr\",scope=\"repository:a/b:pull,push\""
        );
    }
}
