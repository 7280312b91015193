//! `/v1/proxies`: the pull-through cache's mirrors.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AdminCaller;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /v1/proxies` → `{"proxies": [{"prefix", "upstream", "hits",
/// "misses", "repositories", "cache_size"}]}` (admin; `cache_size` in
/// bytes), in configuration order.
pub async fn list(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<Response, ApiError> {
    let proxies = state.registry.proxies(&caller).await?;
    Ok(Json(json!({ "proxies": proxies })).into_response())
}
