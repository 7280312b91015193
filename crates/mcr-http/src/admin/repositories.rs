//! `/v1/repositories`: listing with counts, detail, a manifest in detail,
//! delete; and `/v1/dashboard`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mcr_core::names::{Reference, RepoName};
use mcr_core::registry::RepoListing;
use serde::Deserialize;

use super::{AdminCaller, AdminPath, AdminQuery};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct ListParams {
    n: Option<usize>,
    last: Option<String>,
    filter: Option<String>,
    sort: Option<String>,
    order: Option<String>,
}

/// `GET /v1/repositories?filter=&sort=&order=&n=&last=` →
/// `{"repositories": [...], "next": cursor?}` (`RepoPage`).
pub async fn list(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminQuery(p): AdminQuery<ListParams>,
) -> Result<Response, ApiError> {
    let listing =
        RepoListing::from_params(p.filter, p.sort.as_deref(), p.order.as_deref(), p.last, p.n)?;
    let page = state
        .registry
        .repository_summaries(&caller, listing)
        .await?;
    Ok(Json(page).into_response())
}

/// Separates a repository name from the manifest reference in
/// `/v1/repositories/<name>/-/manifests/<reference>`: no name component
/// can be `-`, so the split is never ambiguous.
const MANIFEST_SEPARATOR: &str = "/-/manifests/";

/// `GET /v1/repositories/{name}` → the `RepoDetail` as JSON;
/// `GET /v1/repositories/{name}/-/manifests/{reference}` → the
/// `ManifestDetail`.
pub async fn detail(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminPath(path): AdminPath<String>,
) -> Result<Response, ApiError> {
    if let Some((name, reference)) = path.split_once(MANIFEST_SEPARATOR) {
        let repo = RepoName::new(name)?;
        let reference = Reference::parse(reference)?;
        let detail = state
            .registry
            .manifest_detail(&caller, &repo, &reference)
            .await?;
        return Ok(Json(detail).into_response());
    }
    let repo = RepoName::new(&path)?;
    let detail = state.registry.repository_detail(&caller, &repo).await?;
    Ok(Json(detail).into_response())
}

/// `GET /v1/dashboard` → the `Dashboard`.
pub async fn dashboard(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<Response, ApiError> {
    Ok(Json(state.registry.dashboard(&caller).await?).into_response())
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
