//! Cross-site request forgery protection: a signed double-submit token.
//!
//! Every browser gets a random token in the `mcr_csrf` cookie, signed
//! with HMAC-SHA256 by `axum-extra`'s [`SignedCookieJar`] so no other site
//! (nor a sibling subdomain) can plant one of its choosing. Every page
//! puts the same token into its forms (a hidden `csrf` field) and into
//! htmx requests (the `X-CSRF-Token` header). A request that changes
//! anything — any method but GET, HEAD and OPTIONS — must carry a token
//! equal to the cookie's, compared in constant time, or it is refused
//! with 403 before any handler runs — unless the refusal only means the
//! page is older than the session: a login or logout form, or any form
//! of a browser whose session has ended, is sent to the login page
//! instead (a fresh token comes with it). Logging in replaces the token.
//!
//! The body is read here, within [`MAX_BODY`], to find the form field;
//! a larger body is refused (413) before it is read whole.

use axum::body::{to_bytes, Body};
use axum::extract::{FromRef, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SignedCookieJar};
use subtle::ConstantTimeEq;

use crate::error::UiError;
use crate::session::{base_cookie, to_login, Session};
use crate::state::Web;

/// The CSRF cookie's name.
pub const CSRF_COOKIE: &str = "mcr_csrf";
/// The header htmx requests carry the token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Largest request body the UI accepts, in bytes: its forms are small.
pub const MAX_BODY: usize = 64 * 1024;

/// The token of this browser, for the page to put in its forms.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

/// A new random token (32 bytes, hex).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the system has randomness");
    hex::encode(bytes)
}

/// The cookie that carries `token`.
pub fn cookie(token: String, secure: bool) -> Cookie<'static> {
    base_cookie(CSRF_COOKIE, token, secure)
}

/// The middleware: hands the token to the handlers, sets the cookie when
/// the browser has none, and refuses a state change without the token.
pub async fn protect(State(web): State<Web>, mut req: Request, next: Next) -> Response {
    let jar = SignedCookieJar::<Key>::from_headers(req.headers(), Key::from_ref(&web));
    let existing = jar
        .get(CSRF_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|t| t.len() == 64);
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let Some(expected) = &existing else {
            return refused(&web, &req);
        };
        let header = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (parts, body) = req.into_parts();
        let bytes = match to_bytes(body, MAX_BODY).await {
            Ok(b) => b,
            Err(_) => return UiError::TooLarge.into_response(),
        };
        let field = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        let sent = header.or(field).unwrap_or_default();
        if !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
            tracing::warn!(path = %parts.uri.path(), "refused a request without the CSRF token");
            return refused(&web, &Request::from_parts(parts, Body::empty()));
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let (token, fresh) = match existing {
        Some(t) => (t, false),
        None => (new_token(), true),
    };
    req.extensions_mut().insert(CsrfToken(token.clone()));
    let resp = next.run(req).await;
    // A handler that set its own token (login) wins.
    let set_by_handler = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.as_bytes().starts_with(CSRF_COOKIE.as_bytes()));
    if fresh && !set_by_handler {
        // The jar signs the value as it writes the Set-Cookie header.
        let jar = SignedCookieJar::<Key>::new(Key::from_ref(&web))
            .add(cookie(token, web.secure_cookies()));
        return (jar, resp).into_response();
    }
    resp
}

/// The answer to a state change without a valid token: the login page
/// for a login or logout form (a stale form: the key or the session
/// changed since it was served, and reloading would send the same token
/// again) and for a browser with no live session (whatever it sent, it
/// must log in first); otherwise 403.
fn refused(web: &Web, req: &Request) -> Response {
    let path = req.uri().path();
    let jar = PrivateCookieJar::<Key>::from_headers(req.headers(), Key::from_ref(web));
    if matches!(path, "/login" | "/logout") || Session::from_jar(&jar, web.now()).is_none() {
        return to_login(req.headers().contains_key("hx-request"));
    }
    UiError::Csrf.into_response()
}
