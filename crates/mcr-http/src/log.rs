//! The request middleware: one log line per request — id, method, path,
//! status, duration and the principal's subject; never a header value, so
//! never a credential, and no query string — and, when metrics are on,
//! the request's metrics ([`crate::metrics`]), in the same layer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics::HttpMetrics;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Logs the request and, with `metrics`, records it.
pub async fn log_request(
    State(metrics): State<Option<Arc<HttpMetrics>>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        "request",
        id,
        method = %req.method(),
        path = %req.uri().path(),
        subject = tracing::field::Empty,
    );
    let (req, recording) = match &metrics {
        Some(m) => {
            let (req, recording) = m.begin(req);
            (req, Some(recording))
        }
        None => (req, None),
    };
    async move {
        let resp = next.run(req).await;
        // One reading of the clock for the log line and the metrics.
        let elapsed = start.elapsed();
        tracing::info!(
            status = resp.status().as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request done"
        );
        match recording {
            Some(r) => r.end(resp, elapsed),
            None => resp,
        }
    }
    .instrument(span)
    .await
}
