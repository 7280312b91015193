//! `/v1/policy`: rule CRUD and explain.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mcr_core::names::{RepoName, Tag};
use mcr_core::policy::{RuleDraft, RulePatch};
use mcr_core::principal::{AccountType, Action, Principal, Role};
use serde::Deserialize;
use serde_json::json;

use super::{AdminCaller, AdminPath, JsonBody};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /v1/policy/rules` → `{"rules": [...]}`: the built-in rules
/// (negative ids) and the stored ones, in the order they are considered.
pub async fn list(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<Response, ApiError> {
    let rules = state.registry.list_rules(&caller).await?;
    Ok(Json(json!({ "rules": rules })).into_response())
}

pub async fn create(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    JsonBody(draft): JsonBody<RuleDraft>,
) -> Result<Response, ApiError> {
    let rule = state.registry.create_rule(&caller, draft).await?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminPath(id): AdminPath<i64>,
) -> Result<Response, ApiError> {
    Ok(Json(state.registry.get_rule(&caller, id).await?).into_response())
}

pub async fn update(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminPath(id): AdminPath<i64>,
    JsonBody(patch): JsonBody<RulePatch>,
) -> Result<Response, ApiError> {
    Ok(Json(state.registry.update_rule(&caller, id, patch).await?).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminPath(id): AdminPath<i64>,
) -> Result<Response, ApiError> {
    state.registry.delete_rule(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainBody {
    subject: String,
    account_type: AccountType,
    #[serde(default)]
    roles: Vec<Role>,
    action: Action,
    repository: Option<String>,
    /// The tag a tag action is asked on.
    tag: Option<String>,
}

/// `POST /v1/policy/explain`: which rules match a subject, action,
/// repository and tag, and why the decision fell as it did.
pub async fn explain(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    JsonBody(body): JsonBody<ExplainBody>,
) -> Result<Response, ApiError> {
    let repo = body.repository.as_deref().map(RepoName::new).transpose()?;
    let tag = body.tag.as_deref().map(Tag::new).transpose()?;
    let principal = Principal::new(body.subject, body.account_type, body.roles);
    let e = state
        .registry
        .explain(
            &caller,
            &principal,
            body.action,
            repo.as_ref(),
            tag.as_ref(),
        )
        .await?;
    Ok(
        Json(json!({"decision": e.decision, "rules": e.rules, "text": e.to_string()}))
            .into_response(),
    )
}
