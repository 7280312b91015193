//! The OCI Distribution API under `/v2/`.
//!
//! One dispatcher parses the path (repository names contain `/`),
//! authenticates before any body is read — so a request without valid
//! credentials changes nothing — and hands over to the handler for the
//! endpoint. Handlers call one use case each and map its result.

mod blobs;
mod body;
mod listing;
mod manifests;
mod range;
mod route;
mod uploads;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use mcr_core::registry::Caller;
use mcr_core::Error;

pub(crate) use body::{read_at_most, SmallBodyError, BODY_TOO_SLOW};
pub use range::{ContentRange, RangeSpec};
pub use route::{Endpoint, OciRoute};

use crate::auth::{authenticate, Challenge};
use crate::error::OciError;
use crate::state::AppState;

pub(crate) const DOCKER_CONTENT_DIGEST: HeaderName =
    HeaderName::from_static("docker-content-digest");
pub(crate) const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub(crate) const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub(crate) const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
pub(crate) const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// The `Range` value of an upload holding `size` bytes: `0-<last byte>`
/// (`0-0` when empty, as clients expect).
pub fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// What a handler gets: who calls, and the request's head.
pub(crate) struct Ctx {
    pub state: AppState,
    pub caller: Caller,
    pub headers: HeaderMap,
    pub uri: Uri,
}

impl Ctx {
    /// Query parameters (the last value wins for a repeated key).
    pub fn query(&self) -> HashMap<String, String> {
        self.uri
            .query()
            .map(|q| {
                url_decode_pairs(q)
                    .into_iter()
                    .collect::<HashMap<String, String>>()
            })
            .unwrap_or_default()
    }
}

impl Ctx {
    /// Every value of a repeated query parameter, in order.
    pub fn query_all(&self, key: &str) -> Vec<String> {
        self.uri
            .query()
            .map(url_decode_pairs)
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect()
    }
}

fn url_decode_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

pub(crate) type OciResult = Result<Response, OciError>;

/// `GET /v2/`: 200 `{}` for a caller the policy lets in, else a challenge.
pub async fn version_check(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let result = async {
        let caller = authenticate(&state, &parts.headers, &parts.extensions)
            .await
            .map_err(|e| auth_error(&state, &parts.headers, None, e))?;
        state.registry.version_check(&caller).await?;
        Ok::<_, OciError>(axum::Json(serde_json::json!({})).into_response())
    };
    with_api_version(result.await)
}

/// `GET /v2/_catalog`.
pub async fn catalog(State(state): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let result = async {
        let caller = authenticate(&state, &parts.headers, &parts.extensions)
            .await
            .map_err(|e| auth_error(&state, &parts.headers, None, e))?;
        let ctx = Ctx {
            state,
            caller,
            headers: parts.headers,
            uri: parts.uri,
        };
        listing::catalog(&ctx).await
    };
    with_api_version(result.await)
}

/// A method a fixed `/v2` endpoint does not have, answered in the OCI form.
pub async fn method_not_allowed(method: Method) -> Response {
    with_api_version(Err(OciError::unsupported(format!(
        "method {method} not allowed on this endpoint"
    ))))
}

/// Every other `/v2/<name>/...` endpoint.
pub async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path()
        .strip_prefix("/v2/")
        .unwrap_or_default()
        .to_string();
    let result = async {
        let reading = matches!(parts.method, Method::GET | Method::HEAD);
        let route = match OciRoute::parse(&path) {
            Ok(Some(route)) => route,
            Ok(None) => {
                return Err(OciError::new(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    format!("no such endpoint: /v2/{path}"),
                ))
            }
            Err(e) => {
                // Credentials first, so an anonymous client learns nothing
                // but how to authenticate.
                authenticate(&state, &parts.headers, &parts.extensions)
                    .await
                    .map_err(|e| auth_error(&state, &parts.headers, None, e))?;
                return Err(unparsable(e, reading, &path));
            }
        };
        let actions = if reading { "pull" } else { "pull,push" };
        let caller = authenticate(&state, &parts.headers, &parts.extensions)
            .await
            .map_err(|e| {
                auth_error(
                    &state,
                    &parts.headers,
                    Some((route.repository(), actions)),
                    e,
                )
            })?;
        let ctx = Ctx {
            state,
            caller,
            headers: parts.headers,
            uri: parts.uri,
        };
        route_request(&ctx, &parts.method, route, body).await
    };
    with_api_version(result.await)
}

async fn route_request(ctx: &Ctx, method: &Method, route: OciRoute, body: Body) -> OciResult {
    use OciRoute as R;
    match (method, route) {
        (&Method::GET, R::Manifest(repo, reference)) => {
            manifests::get(ctx, &repo, &reference, true).await
        }
        (&Method::HEAD, R::Manifest(repo, reference)) => {
            manifests::get(ctx, &repo, &reference, false).await
        }
        (&Method::PUT, R::Manifest(repo, reference)) => {
            manifests::put(ctx, &repo, &reference, body).await
        }
        (&Method::DELETE, R::Manifest(repo, reference)) => {
            manifests::delete(ctx, &repo, &reference).await
        }
        (&Method::GET, R::Blob(repo, digest)) => blobs::get(ctx, &repo, &digest).await,
        (&Method::HEAD, R::Blob(repo, digest)) => blobs::head(ctx, &repo, &digest).await,
        (&Method::DELETE, R::Blob(repo, digest)) => blobs::delete(ctx, &repo, &digest).await,
        (&Method::POST, R::UploadStart(repo)) => uploads::start(ctx, &repo, body).await,
        (&Method::PATCH, R::Upload(repo, id)) => uploads::patch(ctx, &repo, &id, body).await,
        (&Method::PUT, R::Upload(repo, id)) => uploads::put(ctx, &repo, &id, body).await,
        (&Method::GET, R::Upload(repo, id)) => uploads::status(ctx, &repo, &id).await,
        (&Method::DELETE, R::Upload(repo, id)) => uploads::cancel(ctx, &repo, &id).await,
        (&Method::GET, R::Tags(repo)) => listing::tags(ctx, &repo).await,
        (&Method::GET, R::Referrers(repo, digest)) => listing::referrers(ctx, &repo, &digest).await,
        (m, _) => Err(OciError::unsupported(format!(
            "method {m} not allowed on this endpoint"
        ))),
    }
}

/// A path that did not parse. Reading a manifest by a malformed reference
/// is a manifest that does not exist (404), as clients and the
/// conformance suite expect; anything else is the parse error itself.
fn unparsable(e: Error, reading: bool, path: &str) -> OciError {
    let reference_error = matches!(e, Error::TagInvalid(_) | Error::DigestInvalid(_));
    if reading && reference_error && path.contains("/manifests/") {
        return OciError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", e.to_string());
    }
    e.into()
}

/// An authentication failure: a 401 with a challenge, except when the
/// identity service is down (503), so clients don't prompt again.
fn auth_error(
    state: &AppState,
    headers: &HeaderMap,
    repo: Option<(&mcr_core::names::RepoName, &str)>,
    e: Error,
) -> OciError {
    match e {
        Error::Unauthenticated(reason) => OciError::unauthorized(
            format!("authentication required: {reason}"),
            Challenge::new(state, headers, repo),
        ),
        other => other.into(),
    }
}

pub(crate) fn with_api_version(result: OciResult) -> Response {
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    resp.headers_mut().insert(
        HeaderName::from_static("docker-distribution-api-version"),
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

pub(crate) fn peer_ip(req: &Request) -> Option<String> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// Builds a response with headers; values that can't be headers (they all
/// come from validated types) are skipped rather than panicking.
pub(crate) fn respond(
    status: StatusCode,
    headers: &[(HeaderName, String)],
    body: Body,
) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(name.clone(), v);
        }
    }
    resp
}

pub(crate) fn location(value: String) -> (HeaderName, String) {
    (header::LOCATION, value)
}
