//! The pages: one module per page, each a handler that calls `mcrsrv`
//! and fills a template struct with display-ready strings. Templates hold
//! no logic beyond loops and conditions; askama escapes every value.

pub mod audit;
pub mod dashboard;
pub mod gc;
pub mod login;
pub mod manifest;
pub mod policy;
pub mod repositories;

use askama::Template;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use mcr_core::time::Timestamp;

use crate::csrf::CsrfToken;
use crate::error::UiError;
use crate::session::Session;

/// What the page frame shows: who is logged in, the menu, the CSRF token
/// for its forms, and a one-line notice after a change.
pub struct Chrome {
    pub user: String,
    pub admin: bool,
    pub csrf: String,
    /// The menu entry to highlight.
    pub active: &'static str,
    pub notice: Option<String>,
}

impl Chrome {
    pub fn new(session: &Session, csrf: &CsrfToken, active: &'static str) -> Chrome {
        Chrome {
            user: session.name().to_string(),
            admin: session.is_admin(),
            csrf: csrf.0.clone(),
            active,
            notice: None,
        }
    }
}

/// Renders a template as an HTML answer.
pub fn render(t: &impl Template) -> Result<Response, UiError> {
    t.render()
        .map(|html| Html(html).into_response())
        .map_err(|e| UiError::Server(format!("cannot render the page: {e}")))
}

/// Whether the request is htmx asking for the element `id` alone.
pub fn wants_fragment(headers: &HeaderMap, id: &str) -> bool {
    headers.contains_key("hx-request")
        && headers
            .get("hx-target")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t == id)
}

/// Admin pages answer "not allowed" before asking `mcrsrv` (which would
/// refuse too), so a non-admin sees why rather than a broken page.
pub fn require_admin(session: &Session) -> Result<(), UiError> {
    if session.is_admin() {
        Ok(())
    } else {
        Err(UiError::NotAllowed(
            "this page is for administrators (the admin role)".into(),
        ))
    }
}

pub use mcr_core::display::size;

/// `2024-05-01 12:00:00 UTC`.
pub fn time(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    let (date, rest) = s.split_once('T').unwrap_or((&s, ""));
    let clock = rest.get(..8).unwrap_or(rest);
    format!("{date} {clock} UTC")
}

/// The repository page of `name`.
pub fn repo_href(name: &str) -> String {
    format!("/repositories/{name}")
}

/// The page of manifest `reference` in `name`.
pub fn manifest_href(name: &str, reference: &str) -> String {
    format!("/repositories/{name}/-/manifests/{reference}")
}

/// `path?k=v&…` with the values form-encoded; empty values left out.
pub fn href(path: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(k, v);
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// A checkbox or option of a form: a value and whether it is chosen.
pub struct Choice {
    pub value: String,
    pub checked: bool,
}

/// One choice per name in `all`, checked when `chosen` holds it.
pub fn choices<T: ToString>(all: &[T], chosen: &[String]) -> Vec<Choice> {
    all.iter()
        .map(|v| {
            let value = v.to_string();
            Choice {
                checked: chosen.contains(&value),
                value,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_links_read_well() {
        assert_eq!(
            time(Timestamp::parse_rfc3339("2024-05-01T12:00:00.123Z").unwrap()),
            "2024-05-01 12:00:00 UTC"
        );
        assert_eq!(
            href(
                "/repositories",
                &[("q", "a b&c"), ("sort", ""), ("order", "desc")]
            ),
            "/repositories?q=a+b%26c&order=desc"
        );
        assert_eq!(href("/audit", &[("q", "")]), "/audit");
    }
}
