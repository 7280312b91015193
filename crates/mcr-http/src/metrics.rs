//! Request metrics, through the `metrics` facade: the program that serves
//! the router installs the recorder (mcrsrv: Prometheus), or none.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `mcr_http_requests_total` | counter | `route`, `method`, `code` |
//! | `mcr_http_request_duration_seconds` | histogram | `route`, `method` |
//! | `mcr_http_received_bytes_total` | counter | `route` |
//! | `mcr_http_sent_bytes_total` | counter | `route` |
//!
//! `route` is the route's template in the distribution-spec's notation
//! (`/v2/<name>/blobs/<digest>`, `/v1/repositories/<name>`), never the
//! path: repository names, digests
//! and ids never become label values, and a path no route matches is
//! `unmatched`. `method` is one of the methods the API has, or `other`.
//! A request is counted, and its duration taken, when its response head
//! is ready (as most HTTP servers measure it). A streamed body's bytes
//! are counted as they stream, so a long download shows in the bytes
//! sent; a body of known size (a manifest, an error's JSON) is already in
//! memory and is counted whole with the head. Bytes are body bytes as
//! they cross the edge, headers left out: a body the transport does not
//! send (the answer to a HEAD, a 204, a 304) counts nothing.
//!
//! Recording rides on the request log's middleware ([`crate::log`]), so
//! it adds no layer of its own (each axum layer costs a few allocations
//! per request). The handles of a route are made once and kept; those of
//! the OCI endpoints, which nearly all requests take, in a table indexed
//! by [`Endpoint`], so their requests are recorded with no hashing, no
//! lock (for the statuses the API answers) and no allocation beyond a
//! wrapper around a streamed body.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use metrics::{Counter, Histogram, Label, SharedString};

use crate::oci::{Endpoint, OciRoute};
use crate::FileBody;

pub const REQUESTS: &str = "mcr_http_requests_total";
pub const DURATION: &str = "mcr_http_request_duration_seconds";
pub const RECEIVED: &str = "mcr_http_received_bytes_total";
pub const SENT: &str = "mcr_http_sent_bytes_total";

/// The `route` of a request no route matched.
const UNMATCHED: &str = "unmatched";
/// The catch-all route the OCI dispatcher sits behind; its requests are
/// labelled with the OCI endpoint's template instead.
const OCI_CATCH_ALL: &str = "/v2/{*path}";

/// The methods the API answers, by label; anything else is `other`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "other",
];

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::PUT => 2,
        Method::POST => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The slot of `unmatched` in [`HttpMetrics::fixed`], after the OCI
/// endpoints'.
const UNMATCHED_SLOT: usize = Endpoint::COUNT;

/// The handles of every route seen so far.
#[derive(Default)]
pub struct HttpMetrics {
    /// The OCI endpoints' handles by `Endpoint as usize`, then
    /// `unmatched`'s: found by index, where a lookup by template would
    /// hash it (SipHash) under a lock for every request.
    fixed: [OnceLock<RouteMetrics>; Endpoint::COUNT + 1],
    /// Every other route's (`/v2/`, `/v2/token`, `/v1/...`), by template.
    others: RwLock<HashMap<String, Arc<RouteMetrics>>>,
}

impl HttpMetrics {
    /// Describes the metrics to the installed recorder (their `# HELP`).
    pub fn new() -> HttpMetrics {
        metrics::describe_counter!(
            REQUESTS,
            "HTTP requests answered, by route template, method and status code"
        );
        metrics::describe_histogram!(
            DURATION,
            metrics::Unit::Seconds,
            "Time from a request's arrival to its response head"
        );
        metrics::describe_counter!(
            RECEIVED,
            metrics::Unit::Bytes,
            "Request body bytes received"
        );
        metrics::describe_counter!(SENT, metrics::Unit::Bytes, "Response body bytes sent");
        HttpMetrics::default()
    }

    /// The handles of the request's route: by the OCI dispatcher's
    /// endpoint, or by the template axum matched.
    fn route(&self, req: &Request) -> RouteRef<'_> {
        let Some(matched) = req.extensions().get::<MatchedPath>() else {
            return self.fixed(UNMATCHED_SLOT, UNMATCHED);
        };
        match matched.as_str() {
            OCI_CATCH_ALL => match req
                .uri()
                .path()
                .strip_prefix("/v2/")
                .and_then(OciRoute::endpoint)
            {
                Some(e) => self.fixed(e as usize, e.template()),
                None => self.fixed(UNMATCHED_SLOT, UNMATCHED),
            },
            // A nested router's fallback.
            t if t.contains("__private__") => self.fixed(UNMATCHED_SLOT, UNMATCHED),
            t => self.other(t),
        }
    }

    fn fixed(&self, slot: usize, template: &str) -> RouteRef<'_> {
        RouteRef::Fixed(self.fixed[slot].get_or_init(|| RouteMetrics::new(template)))
    }

    fn other(&self, template: &str) -> RouteRef<'_> {
        let routes = self.others.read().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = routes.get(template) {
            return RouteRef::Other(Arc::clone(r));
        }
        drop(routes);
        let mut routes = self.others.write().unwrap_or_else(|p| p.into_inner());
        RouteRef::Other(Arc::clone(
            routes
                .entry(template.to_string())
                .or_insert_with(|| Arc::new(RouteMetrics::new(template))),
        ))
    }
}

/// A route's handles as a request holds them: the OCI endpoints' by
/// reference into [`HttpMetrics::fixed`], since an `Arc` clone and drop
/// per request are two atomic writes to one cache line that every core
/// recording a request of the route takes in turn.
enum RouteRef<'a> {
    Fixed(&'a RouteMetrics),
    Other(Arc<RouteMetrics>),
}

impl std::ops::Deref for RouteRef<'_> {
    type Target = RouteMetrics;

    fn deref(&self) -> &RouteMetrics {
        match self {
            RouteRef::Fixed(r) => r,
            RouteRef::Other(r) => r,
        }
    }
}

/// One route's handles; the per-method ones are made on first use, so a
/// route shows only the methods it was asked with.
struct RouteMetrics {
    route: SharedString,
    received: Counter,
    sent: Counter,
    methods: [OnceLock<MethodMetrics>; METHODS.len()],
}

/// The statuses the API answers, each with a slot of its own in
/// [`MethodMetrics::common`]: found without taking a lock, whose every
/// read-lock is an atomic write all cores share. Any other status goes
/// through the locked list.
const COMMON_STATUSES: [u16; 18] = [
    200, 201, 202, 204, 206, 400, 401, 403, 404, 405, 408, 409, 413, 416, 429, 500, 501, 503,
];

struct MethodMetrics {
    duration: Histogram,
    /// Requests by status, for [`COMMON_STATUSES`] in their order.
    common: [OnceLock<Counter>; COMMON_STATUSES.len()],
    /// Any other status; a route answers few, so a short list scanned in
    /// order beats hashing.
    requests: RwLock<Vec<(StatusCode, Counter)>>,
}

impl RouteMetrics {
    fn new(route: &str) -> RouteMetrics {
        // axum's `{id}` and `{*name}` in the spec's `<id>`: braces in a
        // label value trip some exposition-format parsers.
        let route =
            SharedString::from(route.replace("{*", "<").replace('{', "<").replace('}', ">"));
        let label = Label::new("route", route.clone());
        RouteMetrics {
            received: metrics::counter!(RECEIVED, vec![label.clone()]),
            sent: metrics::counter!(SENT, vec![label]),
            route,
            methods: Default::default(),
        }
    }

    fn method(&self, method: usize) -> &MethodMetrics {
        self.methods[method].get_or_init(|| MethodMetrics {
            duration: metrics::histogram!(
                DURATION,
                vec![
                    Label::new("route", self.route.clone()),
                    Label::new("method", METHODS[method]),
                ]
            ),
            common: Default::default(),
            requests: RwLock::default(),
        })
    }

    fn requests(&self, method: usize, status: StatusCode) -> Counter {
        metrics::counter!(
            REQUESTS,
            vec![
                Label::new("route", self.route.clone()),
                Label::new("method", METHODS[method]),
                Label::new("code", status.as_str().to_string()),
            ]
        )
    }

    fn record(&self, method: usize, status: StatusCode, elapsed: Duration) {
        let m = self.method(method);
        m.duration.record(elapsed.as_secs_f64());
        if let Some(slot) = COMMON_STATUSES.iter().position(|&c| c == status.as_u16()) {
            m.common[slot]
                .get_or_init(|| self.requests(method, status))
                .increment(1);
            return;
        }
        let requests = m.requests.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = requests.iter().find(|(s, _)| *s == status) {
            c.increment(1);
            return;
        }
        drop(requests);
        let mut requests = m.requests.write().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = requests.iter().find(|(s, _)| *s == status) {
            c.increment(1);
            return;
        }
        let c = self.requests(method, status);
        c.increment(1);
        requests.push((status, c));
    }
}

impl HttpMetrics {
    /// Starts recording `req`: its body's bytes are counted as they are
    /// read (a body known to be empty, as a GET's is, is left unwrapped).
    /// Called by the request middleware ([`crate::log`]), which finishes
    /// with [`Recording::end`].
    pub(crate) fn begin(&self, req: Request) -> (Request, Recording<'_>) {
        let route = self.route(&req);
        let method = method_index(req.method());
        let head = req.method() == Method::HEAD;
        let req = if req.body().is_end_stream() {
            req
        } else {
            let received = route.received.clone();
            req.map(|body| Body::new(Counted::new(body, received)))
        };
        (
            req,
            Recording {
                route,
                method,
                head,
            },
        )
    }
}

/// A request being recorded: its route's handles and method.
pub(crate) struct Recording<'a> {
    route: RouteRef<'a>,
    method: usize,
    /// A HEAD: its answer's body is never sent.
    head: bool,
}

impl Recording<'_> {
    /// Counts the request with its status and `elapsed` since its arrival
    /// now that its response head is ready, and counts the bytes sent: a
    /// body of known size at once, a streamed one as it streams.
    pub(crate) fn end(self, mut resp: Response, elapsed: Duration) -> Response {
        let Recording {
            route,
            method,
            head,
        } = self;
        let status = resp.status();
        route.record(method, status, elapsed);
        if resp.extensions().get::<FileBody>().is_some() {
            // A transport that sends the file region instead of the body
            // (mcrsrv's sendfile path) counts its bytes with this.
            resp.extensions_mut().insert(SentBytes(route.sent.clone()));
        } else if let Some(len) = resp.body().size_hint().exact() {
            // Counted now rather than by a wrapper: the wrapper's
            // allocation and its call per frame were most of what
            // recording cost a manifest GET. The transport sends no body
            // for these (RFC 9110), whatever the response holds.
            let sent = !(head
                || status.is_informational()
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED);
            if sent {
                route.sent.increment(len);
            }
            return resp;
        }
        resp.map(|body| Body::new(Counted::new(body, route.sent.clone())))
    }
}

/// Beside a [`FileBody`]: the counter of the bytes sent for the request's
/// route. A transport that sends the file region and drops the body
/// unpolled adds the region's length with [`SentBytes::add`].
#[derive(Clone)]
pub struct SentBytes(Counter);

impl SentBytes {
    pub fn add(&self, bytes: u64) {
        self.0.increment(bytes);
    }
}

/// A body that adds the bytes of each data frame to a counter.
struct Counted {
    inner: Body,
    bytes: Counter,
}

impl Counted {
    fn new(inner: Body, bytes: Counter) -> Counted {
        Counted { inner, bytes }
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes.increment(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::any;
    use axum::Router;
    use http_body_util::BodyExt;
    use mcr_core::testing::Counters;
    use tower::ServiceExt;

    use super::*;

    const MANIFEST: &str = "/v2/<name>/manifests/<reference>";
    const BLOB: &str = "/v2/<name>/blobs/<digest>";
    const TAGS: &str = "/v2/<name>/tags/list";

    /// A manifest's body is known-size (10 bytes), a blob's streams (3 ×
    /// 4 bytes), a tag list answers 204 with a body it must not send, and
    /// `…/teapot` answers 418 (no common status), anything else is not
    /// found.
    async fn answer(req: Request) -> Response {
        let path = req.uri().path();
        if path.contains("/manifests/") {
            Response::new(Body::from("0123456789"))
        } else if path.contains("/blobs/") {
            let chunks = (0..3).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(b"blob")));
            Response::new(Body::from_stream(futures_util::stream::iter(chunks)))
        } else if path.ends_with("/teapot") {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::IM_A_TEAPOT;
            resp
        } else if path.ends_with("/tags/list") {
            let mut resp = Response::new(Body::from("ignored"));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        } else {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    }

    #[test]
    fn known_size_bodies_count_with_the_head_and_streamed_ones_as_they_stream() {
        let counters = Counters::default();
        metrics::with_local_recorder(&counters, || {
            let app = Router::new().route("/v2/{*path}", any(answer)).layer(
                axum::middleware::from_fn_with_state(
                    Some(Arc::new(HttpMetrics::new())),
                    crate::log::log_request,
                ),
            );
            let send = |method: &str, path: &str| {
                let req = Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .unwrap();
                app.clone().oneshot(req)
            };
            let sent = |route| counters.get(SENT, &[("route", route)]);
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                // Counted whole as the head is ready, before any is read.
                let resp = send("GET", "/v2/a/b/manifests/latest").await.unwrap();
                assert_eq!(sent(MANIFEST), 10);
                assert_eq!(
                    resp.into_body().collect().await.unwrap().to_bytes().len(),
                    10
                );
                assert_eq!(sent(MANIFEST), 10);
                // A HEAD's answer and a 204's send no body.
                send("HEAD", "/v2/a/manifests/latest").await.unwrap();
                assert_eq!(sent(MANIFEST), 10);
                send("GET", "/v2/a/tags/list").await.unwrap();
                assert_eq!(sent(TAGS), 0);
                // A streamed body counts what was read of it.
                let resp = send("GET", "/v2/a/blobs/sha256:00").await.unwrap();
                assert_eq!(sent(BLOB), 0);
                resp.into_body().collect().await.unwrap();
                assert_eq!(sent(BLOB), 12);
                send("GET", "/v2/a/other").await.unwrap();
                // A status outside the common ones, twice: its counter is
                // made once and found again.
                for _ in 0..2 {
                    send("GET", "/v2/a/teapot").await.unwrap();
                }
            });
            for (route, method, code, n) in [
                (MANIFEST, "GET", "200", 1),
                (MANIFEST, "HEAD", "200", 1),
                (TAGS, "GET", "204", 1),
                (BLOB, "GET", "200", 1),
                (UNMATCHED, "GET", "404", 1),
                (UNMATCHED, "GET", "418", 2),
            ] {
                let labels = [("route", route), ("method", method), ("code", code)];
                assert_eq!(counters.get(REQUESTS, &labels), n, "{labels:?}");
            }
        });
    }
}
