//! `/v1/snapshot`: a consistent copy of the metadata database.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AdminCaller;
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v1/snapshot` → 201 `{"location", "taken_at"}`; 409 if a snapshot
/// of the same second exists.
pub async fn take(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<Response, ApiError> {
    let snapshot = state.registry.snapshot(&caller).await?;
    Ok((StatusCode::CREATED, Json(snapshot)).into_response())
}
