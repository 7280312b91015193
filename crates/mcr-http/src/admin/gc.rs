//! `/v1/gc`: start a run (in the background, a task the program's
//! tracker owns), its status, past runs, reconcile.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use mcr_core::registry::GC_RUNS_DEFAULT;
use serde::Deserialize;

use super::{AdminCaller, AdminQuery};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v1/gc` → 202 `{"id"}`; 409 while a run is under way.
pub async fn start(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<Response, ApiError> {
    let run = state.registry.start_gc(&caller).await?;
    let id = run.id().to_string();
    // The run logs, audits and records its own outcome; the tracker's
    // owner waits for it on shutdown.
    state.tasks.spawn(run.run());
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

/// `GET /v1/gc/status` → `{"running", "last_run"}`.
pub async fn status(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<Response, ApiError> {
    Ok(Json(state.registry.gc_status(&caller).await?).into_response())
}

#[derive(Deserialize)]
pub struct RunsParams {
    n: Option<usize>,
}

/// `GET /v1/gc/runs?n=` → `{"runs": [...]}`, the last completed runs,
/// newest first (10 unless `n` says).
pub async fn runs(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminQuery(p): AdminQuery<RunsParams>,
) -> Result<Response, ApiError> {
    let n = p.n.unwrap_or(GC_RUNS_DEFAULT);
    let runs = state.registry.gc_runs(&caller, n).await?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

/// `POST /v1/gc/reconcile` → what reconcile removed and found missing.
pub async fn reconcile(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<Response, ApiError> {
    Ok(Json(state.registry.reconcile(&caller).await?).into_response())
}
