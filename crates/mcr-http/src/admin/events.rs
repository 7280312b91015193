//! `/v1/events`: the webhooks' delivery state and the outbox's events
//! (admin only).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mcr_core::registry::DEFAULT_EVENTS_LISTED;
use serde::Deserialize;
use serde_json::json;

use super::{AdminCaller, AdminQuery};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /v1/events/webhooks` → `{"webhooks": [{"url", "events",
/// "repositories", "delivered", "pending", "attempts", "last_attempt",
/// "last_error", "next_attempt"}]}`, in configuration order; URLs without
/// credentials, secrets never.
pub async fn webhooks(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
) -> Result<Response, ApiError> {
    let webhooks = state.registry.webhook_status(&caller).await?;
    Ok(Json(json!({ "webhooks": webhooks })).into_response())
}

/// The query of `GET /v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    /// Events with an id after this one (default 0: from the oldest kept).
    #[serde(default)]
    after: i64,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

/// `GET /v1/events?after=&limit=` → `{"events": [{"id", "event_id",
/// "time", "type", "repository", "data"}]}`, oldest first: the outbox as
/// kept (delivered events stay a day); `id` is the outbox position,
/// `event_id` the CloudEvents `id` sent.
pub async fn list(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminQuery(p): AdminQuery<EventsParams>,
) -> Result<Response, ApiError> {
    let events = state
        .registry
        .list_events(&caller, p.after, p.limit.unwrap_or(DEFAULT_EVENTS_LISTED))
        .await?;
    Ok(Json(json!({ "events": events })).into_response())
}
