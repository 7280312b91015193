//! # mcr-web: the web UI of MCR
//!
//! Server-rendered HTML pages (askama templates, checked at compile time
//! and escaping every value) with htmx for the few swaps that need no
//! full page: the repository table, the audit table, a policy rule's row.
//! Every page works as plain links and forms without JavaScript.
//!
//! The UI holds no business rule and no storage: every page is one or two
//! calls to `mcrsrv`'s gRPC services ([`backend`]), as the logged-in user,
//! whose token travels encrypted in the session cookie ([`session`]).
//! What it may see and do is what `mcrsrv` answers.
//!
//! Security: a signed double-submit CSRF token on every state-changing
//! request ([`csrf`]); `HttpOnly`, `SameSite=Strict`, `Secure` cookies; a
//! Content-Security-Policy that allows scripts only from the UI itself
//! (htmx and `app.js` are embedded in the binary, no CDN) and no inline
//! script or style; request bodies capped at [`csrf::MAX_BODY`]; no token
//! in a URL or a log.
//!
//! [`app`] builds the router. The `mcr-web` binary (in `mcr-cli`, beside
//! `mcrsrv`, so both serve through the same hardened listener) reads the
//! `[web]` section ([`config`]) and serves it; `mcrsrv dev` serves the
//! same UI on the next free loopback port.

mod assets;
pub mod backend;
pub mod config;
pub mod csrf;
pub mod error;
mod pages;
pub mod session;
mod state;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

pub use state::{Web, WebOptions};

/// The Content-Security-Policy of every answer: everything from the UI
/// itself, nothing inline, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The UI's routes with their middleware.
pub fn app(web: Web) -> Router {
    Router::new()
        .route("/", get(pages::dashboard::page))
        .route("/login", get(pages::login::form).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route("/repositories", get(pages::repositories::list))
        .route("/repositories/{*path}", get(pages::repositories::detail))
        .route("/policy", get(pages::policy::page))
        .route("/policy/rules", post(pages::policy::create))
        .route("/policy/rules/{id}", post(pages::policy::edit))
        .route(
            "/policy/rules/{id}/enabled",
            post(pages::policy::set_enabled),
        )
        .route(
            "/policy/rules/{id}/delete",
            get(pages::policy::confirm_delete).post(pages::policy::delete),
        )
        .route("/policy/explain", get(pages::policy::explain))
        .route("/audit", get(pages::audit::page))
        .route("/gc", get(pages::gc::page).post(pages::gc::start))
        .route("/static/{file}", get(assets::file))
        .fallback(not_found)
        .layer(middleware::from_fn(session::htmx_login))
        .layer(middleware::from_fn_with_state(web.clone(), csrf::protect))
        .layer(DefaultBodyLimit::max(csrf::MAX_BODY))
        .layer(middleware::from_fn(headers_and_log))
        .with_state(web)
}

async fn not_found() -> error::UiError {
    error::UiError::NotFound("there is no such page".into())
}

/// Security headers on every answer, and one log line per request:
/// method, path (never the query, which holds filters, not secrets, but
/// need not be kept), status and time taken.
async fn headers_and_log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let start = Instant::now();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        // Pages show one user's view of the registry.
        set(h, header::CACHE_CONTROL, "no-store");
    }
    tracing::info!(
        %method,
        %path,
        status = resp.status().as_u16(),
        duration_ms = start.elapsed().as_secs_f64() * 1000.0,
        "web request"
    );
    resp
}
