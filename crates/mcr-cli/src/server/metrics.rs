//! Prometheus metrics: the recorder behind the `metrics` facade, and
//! `GET /metrics` (text exposition format) on a listener of its own,
//! `[server] metrics_addr`, so it is never served with the API by
//! accident.
//!
//! The crates record where things happen — `mcr_http::metrics` (requests,
//! bytes), `mcr_grpc::metrics` (calls), `mcr_adapters::metrics` (token
//! validations, MCIAS calls) and `mcr_core`'s GC — and this module adds
//! what a scrape reads from the stores:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `mcr_blobs_stored` | gauge | — |
//! | `mcr_blobs_stored_bytes` | gauge | — |
//! | `mcr_upload_sessions_open` | gauge | — |
//!
//! Histograms (every `_seconds` metric) have fixed buckets from 0.5 ms to
//! 2 min. Their samples wait in the recorder until a scrape or the upkeep
//! ([`Metrics::upkeep`], every few seconds) folds them in, so memory stays
//! bounded whether or not anything scrapes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use mcr_core::registry::Registry;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::tasks::Background;

/// Bucket bounds of every `_seconds` histogram: request latencies from
/// sub-millisecond manifest reads to blob transfers of minutes.
const SECONDS_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];
/// How often histogram samples are folded in without a scrape.
const UPKEEP: Duration = Duration::from_secs(5);
/// The exposition format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub const BLOBS_STORED: &str = "mcr_blobs_stored";
pub const BLOBS_STORED_BYTES: &str = "mcr_blobs_stored_bytes";
pub const UPLOAD_SESSIONS_OPEN: &str = "mcr_upload_sessions_open";

/// The installed Prometheus recorder.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// Installs the Prometheus recorder as the process's recorder. Call it
    /// once, before the adapters and routers are built: they make their
    /// handles as they are built, and handles made earlier record nothing.
    pub fn install() -> anyhow::Result<Metrics> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .context("histogram buckets")?
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder)
            .map_err(|_| anyhow::anyhow!("a metrics recorder is installed already"))?;
        metrics::describe_gauge!(BLOBS_STORED, "Blobs stored (rows in the database)");
        metrics::describe_gauge!(
            BLOBS_STORED_BYTES,
            metrics::Unit::Bytes,
            "Bytes of the blobs stored"
        );
        metrics::describe_gauge!(UPLOAD_SESSIONS_OPEN, "Upload sessions open");
        Ok(Metrics { handle })
    }

    /// `GET /metrics`, and 404 for anything else.
    pub fn router(&self, registry: Arc<Registry>) -> Router {
        Router::new()
            .route("/metrics", get(scrape))
            .with_state((self.handle.clone(), registry))
    }

    /// Folds histogram samples in every few seconds, until shutdown.
    pub fn upkeep(&self, background: &Background) {
        let handle = self.handle.clone();
        background.every("metrics upkeep", UPKEEP, move || {
            handle.run_upkeep();
            std::future::ready(())
        });
    }
}

/// Reads the stores' totals, then renders every metric.
async fn scrape(State((handle, registry)): State<(PrometheusHandle, Arc<Registry>)>) -> Response {
    match registry.store_totals().await {
        Ok(t) => {
            metrics::gauge!(BLOBS_STORED).set(t.blobs as f64);
            metrics::gauge!(BLOBS_STORED_BYTES).set(t.blob_bytes as f64);
            metrics::gauge!(UPLOAD_SESSIONS_OPEN).set(t.upload_sessions as f64);
        }
        // The gauges keep their last values; readiness says why.
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the stores' totals"),
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        handle.render(),
    )
        .into_response()
}
