//! `/v1/retention`: retention policy CRUD, runs (dry or real) and the
//! run status.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mcr_core::registry::RetentionRequest;
use mcr_core::retention::RetentionSpec;
use serde_json::json;

use super::{AdminCaller, AdminPath, JsonBody};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /v1/retention` → `{"policies": [...]}`, by id.
pub async fn list(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<Response, ApiError> {
    let policies = state.registry.list_retention_policies(&caller).await?;
    Ok(Json(json!({ "policies": policies })).into_response())
}

/// `POST /v1/retention` with a policy body → 201 with the stored policy.
pub async fn create(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    JsonBody(spec): JsonBody<RetentionSpec>,
) -> Result<Response, ApiError> {
    let policy = state
        .registry
        .create_retention_policy(&caller, spec)
        .await?;
    Ok((StatusCode::CREATED, Json(policy)).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminPath(id): AdminPath<i64>,
) -> Result<Response, ApiError> {
    Ok(Json(state.registry.get_retention_policy(&caller, id).await?).into_response())
}

/// `PUT /v1/retention/{id}` with a whole policy body → the policy.
pub async fn replace(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminPath(id): AdminPath<i64>,
    JsonBody(spec): JsonBody<RetentionSpec>,
) -> Result<Response, ApiError> {
    let policy = state
        .registry
        .replace_retention_policy(&caller, id, spec)
        .await?;
    Ok(Json(policy).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminPath(id): AdminPath<i64>,
) -> Result<Response, ApiError> {
    state.registry.delete_retention_policy(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/retention/run` `{"dry_run", "policy"}` → the run's report:
/// each deletion (repository, digest, tags, reason, outcome) and the
/// totals. 409 while another real run is under way.
pub async fn run(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    JsonBody(request): JsonBody<RetentionRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(state.registry.run_retention(&caller, request).await?).into_response())
}

/// `GET /v1/retention/status` → `{"running", "last_run", "next_run"}`.
pub async fn status(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<Response, ApiError> {
    Ok(Json(state.registry.retention_status(&caller).await?).into_response())
}
