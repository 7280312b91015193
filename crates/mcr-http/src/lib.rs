//! # mcr-http: the HTTP edge of MCR
//!
//! The axum router: the OCI Distribution API under `/v2/` ([`oci`]), the
//! token endpoint `GET /v2/token` ([`token`]), the admin REST API under
//! `/v1/` ([`admin`]), request logging, and request metrics ([`metrics`])
//! when [`HttpConfig::metrics`] asks for them.
//! Handlers extract, call one [`mcr_core::registry::Registry`] use case and
//! map its result ([`error`] holds the one mapping from engine errors to
//! HTTP); no business rule lives here. Bodies stream: a blob is never held
//! whole in memory.

pub mod admin;
pub mod auth;
pub mod error;
mod file_body;
mod log;
pub mod metrics;
pub mod oci;
mod pace;
pub mod state;
pub mod token;

use std::sync::Arc;

use axum::routing::{any, get};
use axum::Router;

pub use file_body::FileBody;
pub use state::{AppState, HttpConfig};

/// The whole HTTP API. With [`HttpConfig::metrics`], every request is
/// recorded through the `metrics` facade: build the router after the
/// program installed its recorder, since the handles are made here.
pub fn router(state: AppState) -> Router {
    let metrics = state
        .config
        .metrics
        .then(|| Arc::new(metrics::HttpMetrics::new()));
    let pace = pace::Pace {
        timeout: state.config.body_timeout,
        min_rate: state.config.min_body_rate,
    };
    let router = Router::new()
        .route(
            "/v2",
            get(oci::version_check).fallback(oci::method_not_allowed),
        )
        .route(
            "/v2/",
            get(oci::version_check).fallback(oci::method_not_allowed),
        )
        .route(
            "/v2/token",
            get(token::token).fallback(oci::method_not_allowed),
        )
        .route(
            "/v2/_catalog",
            get(oci::catalog).fallback(oci::method_not_allowed),
        )
        .route("/v2/{*path}", any(oci::dispatch))
        .nest("/v1", admin::router())
        // A client that stops sending a body, or trickles it, must not
        // hold its request (and an upload's half-written chunk) for ever.
        .layer(axum::middleware::from_fn(move |request, next| {
            pace::pace_bodies(pace, request, next)
        }))
        .layer(axum::middleware::from_fn(auth::hold_slots))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            log::log_request,
        ));
    router.with_state(state)
}
