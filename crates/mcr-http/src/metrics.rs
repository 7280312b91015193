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
//! is ready (as most HTTP servers measure it); the body's bytes are
//! counted as they stream, so a long download shows in the bytes sent.
//! Bytes are body bytes as they cross the edge, headers left out.
//!
//! Recording rides on the request log's middleware ([`crate::log`]), so
//! it adds no layer of its own (each axum layer costs a few allocations
//! per request). The handles of a route are made once and kept, so
//! recording costs an extension lookup, a read-locked map lookup and a
//! few atomic additions; the only allocations per request are the body
//! wrappers (one for a bodiless request).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use metrics::{Counter, Histogram, Label, SharedString};

use crate::oci::OciRoute;
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

/// The handles of every route seen so far.
#[derive(Default)]
pub struct HttpMetrics {
    routes: RwLock<HashMap<String, Arc<RouteMetrics>>>,
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

    fn route(&self, template: &str) -> Arc<RouteMetrics> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = routes.get(template) {
            return Arc::clone(r);
        }
        drop(routes);
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            routes
                .entry(template.to_string())
                .or_insert_with(|| Arc::new(RouteMetrics::new(template))),
        )
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

struct MethodMetrics {
    duration: Histogram,
    /// By status code; a route answers few distinct ones, so a short list
    /// scanned in order beats hashing.
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
            requests: RwLock::default(),
        })
    }

    fn record(&self, method: usize, status: StatusCode, start: Instant) {
        let m = self.method(method);
        m.duration.record(start.elapsed().as_secs_f64());
        let known = m
            .requests
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, c)| c.clone());
        let counter = known.unwrap_or_else(|| {
            let mut requests = m.requests.write().unwrap_or_else(|p| p.into_inner());
            if let Some((_, c)) = requests.iter().find(|(s, _)| *s == status) {
                return c.clone();
            }
            let c = metrics::counter!(
                REQUESTS,
                vec![
                    Label::new("route", self.route.clone()),
                    Label::new("method", METHODS[method]),
                    Label::new("code", status.as_str().to_string()),
                ]
            );
            requests.push((status, c.clone()));
            c
        });
        counter.increment(1);
    }
}

impl HttpMetrics {
    /// Starts recording `req`, which arrived at `start`: its body's bytes
    /// are counted as they are read (a body known to be empty, as a GET's
    /// is, is left unwrapped). Called by the request middleware
    /// ([`crate::log`]), which finishes with [`Recording::end`].
    pub(crate) fn begin(&self, req: Request, start: Instant) -> (Request, Recording) {
        let route = self.route(template(&req));
        let method = method_index(req.method());
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
                start,
            },
        )
    }
}

/// A request being recorded: its route's handles, method and arrival.
pub(crate) struct Recording {
    route: Arc<RouteMetrics>,
    method: usize,
    start: Instant,
}

impl Recording {
    /// Counts the request with its status and duration now that its
    /// response head is ready, and wraps the body to count the bytes sent.
    pub(crate) fn end(self, mut resp: Response) -> Response {
        let Recording {
            route,
            method,
            start,
        } = self;
        route.record(method, resp.status(), start);
        // A transport that sends the file region instead of the body
        // (mcrsrv's sendfile path) counts its bytes with this.
        if resp.extensions().get::<FileBody>().is_some() {
            resp.extensions_mut().insert(SentBytes(route.sent.clone()));
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

/// The request's route template.
fn template(req: &Request) -> &str {
    let Some(matched) = req.extensions().get::<MatchedPath>() else {
        return UNMATCHED;
    };
    match matched.as_str() {
        OCI_CATCH_ALL => req
            .uri()
            .path()
            .strip_prefix("/v2/")
            .and_then(OciRoute::template)
            .unwrap_or(UNMATCHED),
        // A nested router's fallback.
        t if t.contains("__private__") => UNMATCHED,
        t => t,
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
