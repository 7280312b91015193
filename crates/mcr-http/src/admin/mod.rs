//! The admin REST API under `/v1`: health and readiness, login and logout,
//! repositories, policy rules, the audit log, garbage collection,
//! retention policies and runs, database snapshots, the pull-through
//! cache's mirrors, quotas, and webhook events with their delivery
//! state.
//!
//! Errors are `{"error": "..."}` with the status the engine error maps to
//! (`crate::error::ApiError`). Every handler authenticates, calls one use
//! case, and shapes its answer as JSON.

mod events;
mod gc;
mod policy;
mod proxies;
mod quotas;
mod repositories;
mod retention;
mod snapshot;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use mcr_core::ports::Secret;
use mcr_core::registry::Caller;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{authenticate, Credentials};
use crate::error::ApiError;
use crate::oci::{peer_ip, SmallBodyError};
use crate::state::AppState;

/// The `/v1` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/dashboard", get(repositories::dashboard))
        .route("/repositories", get(repositories::list))
        .route(
            "/repositories/{*name}",
            get(repositories::detail).delete(repositories::delete),
        )
        .route("/policy/rules", get(policy::list).post(policy::create))
        .route(
            "/policy/rules/{id}",
            get(policy::get)
                .patch(policy::update)
                .delete(policy::delete),
        )
        .route("/policy/explain", post(policy::explain))
        .route("/audit", get(audit))
        .route("/gc", post(gc::start))
        .route("/gc/status", get(gc::status))
        .route("/gc/runs", get(gc::runs))
        .route("/gc/reconcile", post(gc::reconcile))
        .route("/retention", get(retention::list).post(retention::create))
        .route("/retention/run", post(retention::run))
        .route("/retention/status", get(retention::status))
        .route(
            "/retention/{id}",
            get(retention::get)
                .put(retention::replace)
                .delete(retention::delete),
        )
        .route("/snapshot", post(snapshot::take))
        .route("/proxies", get(proxies::list))
        .route("/proxies/cache/{*name}", delete(proxies::drop_cache))
        .route("/quotas", get(quotas::list).post(quotas::set))
        .route("/quotas/{id}", delete(quotas::delete))
        .route("/events", get(events::list))
        .route("/events/webhooks", get(events::webhooks))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such admin endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this admin endpoint",
    )
}

/// Query parameters, refused in the admin API's error form.
pub struct AdminQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AdminQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| AdminQuery(q.0))
            .map_err(|e| ApiError::new(e.status(), e.body_text()))
    }
}

/// Path parameters, refused in the admin API's error form.
pub struct AdminPath<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AdminPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| AdminPath(p.0))
            .map_err(|e| ApiError::new(e.status(), e.body_text()))
    }
}

/// The authenticated caller of an admin request.
pub struct AdminCaller(pub Caller);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(state, &parts.headers, &parts.extensions)
            .await
            .map(AdminCaller)
            .map_err(ApiError::from)
    }
}

/// A JSON body with the admin API's size limit and an error that says what
/// was wrong with it.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.max_json_body;
        let bytes = crate::oci::read_at_most(req.into_body(), limit)
            .await
            .map_err(|e| match e {
                SmallBodyError::Stalled => {
                    ApiError::new(StatusCode::REQUEST_TIMEOUT, crate::oci::BODY_TOO_SLOW)
                }
                SmallBodyError::TooLarge => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body is over {limit} bytes"),
                ),
                SmallBodyError::Broken(e) => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("the request body broke off: {e}"),
                ),
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
    }
}

/// `GET /v1/health`: no authentication.
async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /v1/ready`: no authentication. 200 `{"status": "ready",
/// "database": null, "storage": null}` when both stores are usable, else
/// 503 with `"status": "not ready"`, each store's problem (or `null`) and
/// `"error"` saying what is wrong, as every admin error does.
async fn ready(State(state): State<AppState>) -> Response {
    let readiness = state.registry.readiness().await;
    match readiness.reason() {
        None => Json(json!({
            "status": "ready",
            "database": readiness.database,
            "storage": readiness.storage,
        }))
        .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not ready",
                "error": format!("not ready: {reason}"),
                "database": readiness.database,
                "storage": readiness.storage,
            })),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

/// `POST /v1/auth/login` `{"username","password"}` →
/// `{"token","expires_at","principal"}`.
async fn login(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let ip = peer_ip(&req);
    let JsonBody(body) =
        <JsonBody<LoginBody> as axum::extract::FromRequest<AppState>>::from_request(req, &state)
            .await?;
    let (issued, principal) = state
        .registry
        .login(&body.username, &Secret::new(body.password), ip)
        .await?;
    Ok(Json(json!({
        "token": issued.token.expose(),
        "expires_at": issued.expires_at,
        "principal": principal,
    }))
    .into_response())
}

/// `POST /v1/auth/logout`: revokes the bearer token it is called with.
async fn logout(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    req: Request,
) -> Result<Response, ApiError> {
    match Credentials::from_headers(req.headers())? {
        Some(Credentials::Bearer(token)) => {
            state.registry.logout(&caller, &token).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "logout needs the bearer token to revoke",
        )),
    }
}

#[derive(Deserialize)]
struct AuditParams {
    event_type: Option<String>,
    actor_id: Option<String>,
    repository: Option<String>,
    since: Option<String>,
    until: Option<String>,
    n: Option<usize>,
    offset: Option<usize>,
}

/// `GET /v1/audit` with filters; newest first.
async fn audit(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    AdminQuery(p): AdminQuery<AuditParams>,
) -> Result<Response, ApiError> {
    use mcr_core::audit::AuditQuery;
    use mcr_core::names::RepoName;
    use mcr_core::time::Timestamp;
    let query = AuditQuery {
        event_type: p.event_type.as_deref().map(str::parse).transpose()?,
        actor_id: p.actor_id,
        repository: p.repository.as_deref().map(RepoName::new).transpose()?,
        since: p
            .since
            .as_deref()
            .map(Timestamp::parse_rfc3339)
            .transpose()?,
        until: p
            .until
            .as_deref()
            .map(Timestamp::parse_rfc3339)
            .transpose()?,
        limit: p.n.unwrap_or(0),
        offset: p.offset.unwrap_or(0),
    };
    let events = state.registry.audit_events(&caller, query).await?;
    Ok(Json(json!({ "events": events })).into_response())
}
