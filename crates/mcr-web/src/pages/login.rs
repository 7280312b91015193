//! Logging in and out.
//!
//! Login exchanges the username and password for a token through
//! `AdminService.Login`; the answer says who logged in, and an account
//! with no role beyond `guest` is refused here (its token revoked at
//! once), since guests may do nothing the UI offers. Logging out revokes
//! the token and clears both cookies.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use axum_extra::extract::cookie::{Key, PrivateCookieJar, SignedCookieJar};
use axum_extra::extract::WithRejection;
use mcr_core::principal::{Principal, Role};
use mcr_grpc::convert::from_timestamp;
use mcr_grpc::pb;
use serde::Deserialize;

use super::render;
use crate::backend::answer;
use crate::csrf::{self, CsrfToken, CSRF_COOKIE};
use crate::error::UiError;
use crate::session::{removal, Session, SESSION_COOKIE};
use crate::state::Web;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    username: String,
    error: Option<String>,
}

/// `GET /login`: the form, or the dashboard if already logged in.
pub async fn form(
    State(web): State<Web>,
    jar: PrivateCookieJar<Key>,
    Extension(csrf): Extension<CsrfToken>,
) -> Result<Response, UiError> {
    if Session::from_jar(&jar, web.now()).is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    render(&LoginPage {
        csrf: csrf.0,
        username: String::new(),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

/// Why an account may not use the UI, if it may not.
fn refusal(principal: &Principal) -> Option<&'static str> {
    let usable = principal
        .roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::User));
    match (usable, principal.roles.contains(&Role::Guest)) {
        (true, _) => None,
        (false, true) => Some(
            "This account has only the guest role, which cannot use the web UI. \
             Ask an administrator for the user role.",
        ),
        (false, false) => Some(
            "This account has no role that may use the web UI (it needs user or admin). \
             Ask an administrator.",
        ),
    }
}

/// `POST /login`.
pub async fn submit(
    State(web): State<Web>,
    private: PrivateCookieJar<Key>,
    signed: SignedCookieJar<Key>,
    Extension(csrf): Extension<CsrfToken>,
    WithRejection(Form(c), _): WithRejection<Form<Credentials>, UiError>,
) -> Result<Response, UiError> {
    let again = |status: StatusCode, error: String| -> Result<Response, UiError> {
        Ok((
            status,
            render(&LoginPage {
                csrf: csrf.0.clone(),
                username: c.username.clone(),
                error: Some(error),
            })?,
        )
            .into_response())
    };
    let mut clients = web.backend().clients(None)?;
    let login = match clients
        .admin
        .login(pb::LoginRequest {
            username: c.username.clone(),
            password: c.password.clone(),
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::Unauthenticated => {
            return again(
                StatusCode::UNAUTHORIZED,
                "Wrong username or password.".into(),
            )
        }
        Err(s) => {
            let e = web.backend().failed(s);
            return again(e.status(), e.message());
        }
    };
    let principal: Principal = answer(login.principal.unwrap_or_default())?;
    let expires_at = login
        .expires_at
        .as_ref()
        .map(from_timestamp)
        .ok_or_else(|| UiError::Server("mcrsrv's login answer has no expiry".into()))?;
    let session = Session::new(login.token, expires_at, &principal);
    if let Some(why) = refusal(&principal) {
        // The token must not outlive the refusal.
        if let Ok(mut c) = web.backend().clients(Some(&session)) {
            if let Err(e) = c.admin.logout(pb::LogoutRequest {}).await {
                tracing::warn!(error = %e.message(), "could not revoke a refused guest's token");
            }
        }
        tracing::info!(subject = %principal.subject, "refused a login without a usable role");
        return again(StatusCode::FORBIDDEN, why.into());
    }
    tracing::info!(subject = %principal.subject, "logged in");
    let secure = web.secure_cookies();
    // A new session gets a new CSRF token.
    let private = private.add(session.cookie(secure, web.now()));
    let signed = signed.add(csrf::cookie(csrf::new_token(), secure));
    Ok((private, signed, Redirect::to("/")).into_response())
}

/// `POST /logout`: revokes the token and clears the cookies.
pub async fn logout(
    State(web): State<Web>,
    private: PrivateCookieJar<Key>,
    signed: SignedCookieJar<Key>,
) -> Response {
    if let Some(session) = Session::from_jar(&private, web.now()) {
        if let Ok(mut c) = web.backend().clients(Some(&session)) {
            if let Err(e) = c.admin.logout(pb::LogoutRequest {}).await {
                tracing::warn!(error = %e.message(), "could not revoke the token at logout");
            }
        }
    }
    let private = private.remove(removal(SESSION_COOKIE));
    let signed = signed.remove(removal(CSRF_COOKIE));
    (private, signed, Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_core::principal::AccountType;

    #[test]
    fn only_users_and_admins_get_in() {
        let p = |roles| Principal::new("x", AccountType::Human, roles);
        assert!(refusal(&p(vec![Role::Guest]))
            .unwrap()
            .contains("only the guest"));
        assert!(refusal(&p(vec![])).is_some());
        assert!(refusal(&p(vec![Role::Guest, Role::User])).is_none());
        assert!(refusal(&p(vec![Role::Admin])).is_none());
    }
}
