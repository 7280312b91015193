//! `/v1/proxies`: the pull-through cache's mirrors, and dropping one
//! repository's cache.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mcr_core::names::RepoName;
use serde_json::json;

use super::{AdminCaller, AdminPath};
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

/// `DELETE /v1/proxies/cache/{name}` (`name` the repository's whole name,
/// `hub/library/alpine`) → 204: drops that mirrored repository's cached
/// tags, manifests and blob links; the next GC frees the blobs, the next
/// pull fetches again (admin). 404 naming the repository if it is not
/// under a `[[proxy]]` prefix or nothing of it is cached.
pub async fn drop_cache(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminPath(name): AdminPath<String>,
) -> Result<Response, ApiError> {
    let repo = RepoName::new(&name)?;
    state.registry.drop_proxy_cache(&caller, &repo).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
