//! `/v1/quotas`: the quotas with what each scope uses, setting one and
//! deleting one (admin only).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mcr_core::quota::QuotaDraft;
use serde_json::json;

use super::{AdminCaller, AdminPath, JsonBody};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /v1/quotas` → `{"quotas": [{"id", "scope", "limit_bytes",
/// "used_bytes"}]}`, by scope.
pub async fn list(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<Response, ApiError> {
    let quotas = state.registry.quotas(&caller).await?;
    Ok(Json(json!({ "quotas": quotas })).into_response())
}

/// `POST /v1/quotas` with `{"scope": "team-a/", "limit_bytes": N}`: sets
/// the scope's quota (a new one, or a new limit for its existing one) →
/// the quota.
pub async fn set(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    JsonBody(draft): JsonBody<QuotaDraft>,
) -> Result<Response, ApiError> {
    Ok(Json(state.registry.set_quota(&caller, &draft).await?).into_response())
}

/// `DELETE /v1/quotas/{id}` → 204; 404 if there is no such quota.
pub async fn delete(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminPath(id): AdminPath<i64>,
) -> Result<Response, ApiError> {
    state.registry.delete_quota(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
