//! `GET /v2/token`: HTTP Basic credentials in, a bearer token out, in the
//! shape Docker-style clients expect.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mcr_core::Error;
use serde_json::json;

use crate::auth::Credentials;
use crate::error::OciError;
use crate::oci::peer_ip;
use crate::state::AppState;

pub async fn token(State(state): State<AppState>, req: Request) -> Response {
    let ip = peer_ip(&req);
    let headers = req.headers().clone();
    let resp = match issue(&state, &headers, ip).await {
        Ok(resp) => resp,
        Err(e) => {
            let mut resp = e.into_response();
            if resp.status() == StatusCode::UNAUTHORIZED {
                let realm = format!(
                    "Basic realm=\"{}\"",
                    state.config.service_name.replace('"', "")
                );
                if let Ok(v) = HeaderValue::from_str(&realm) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
            resp
        }
    };
    crate::oci::with_api_version(Ok(resp))
}

async fn issue(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<String>,
) -> Result<Response, OciError> {
    let (username, password) = match Credentials::from_headers(headers)? {
        Some(Credentials::Basic { username, password }) => (username, password),
        Some(Credentials::Bearer(_)) | None => {
            return Err(Error::Unauthenticated(
                "send a username and password with HTTP Basic".into(),
            )
            .into())
        }
    };
    let (issued, principal) = state.registry.login(&username, &password, ip).await?;
    tracing::Span::current().record("subject", principal.subject.as_str());
    let now = state.registry.clock().now();
    let expires_in = (issued.expires_at.as_millis() - now.as_millis()).max(0) / 1000;
    Ok(axum::Json(json!({
        "token": issued.token.expose(),
        "access_token": issued.token.expose(),
        "expires_in": expires_in,
        "issued_at": now.to_rfc3339(),
    }))
    .into_response())
}
