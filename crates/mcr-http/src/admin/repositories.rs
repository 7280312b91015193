//! `/v1/repositories`: listing with counts, detail, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mcr_core::names::RepoName;
use mcr_core::ports::RepoDetail;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminCaller, AdminPath, AdminQuery};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct PageParams {
    n: Option<usize>,
    last: Option<String>,
}

/// `GET /v1/repositories?n=&last=` → `{"repositories": [...], "next": last?}`.
pub async fn list(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminQuery(p): AdminQuery<PageParams>,
) -> Result<Response, ApiError> {
    let listing = state
        .registry
        .repository_summaries(&caller, p.last, p.n)
        .await?;
    let next = listing
        .more
        .then(|| listing.items.last().map(|r| r.name.to_string()))
        .flatten();
    Ok(Json(json!({"repositories": listing.items, "next": next})).into_response())
}

pub async fn detail(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminPath(name): AdminPath<String>,
) -> Result<Response, ApiError> {
    let repo = RepoName::new(&name)?;
    let detail = state.registry.repository_detail(&caller, &repo).await?;
    Ok(Json(detail_json(&detail)).into_response())
}

/// The detail as named fields rather than tuples.
pub fn detail_json(d: &RepoDetail) -> Value {
    json!({
        "name": d.summary.name,
        "tag_count": d.summary.tag_count,
        "manifest_count": d.summary.manifest_count,
        "total_size": d.summary.total_size,
        "created": d.summary.created,
        "tags": d.tags.iter().map(|(t, dg)| json!({"name": t, "digest": dg})).collect::<Vec<_>>(),
        "manifests": d.manifests.iter().map(|(dg, mt, size, created)| json!({
            "digest": dg, "media_type": mt, "size": size, "created": created,
        })).collect::<Vec<_>>(),
        "layers": d.blobs,
    })
}

pub async fn delete(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminPath(name): AdminPath<String>,
) -> Result<Response, ApiError> {
    let repo = RepoName::new(&name)?;
    state.registry.delete_repository(&caller, &repo).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
