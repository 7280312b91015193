//! The audit log (admin): filters by event type, actor, repository and
//! time range, newest first, a page at a time; htmx swaps just the table.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use axum_extra::extract::WithRejection;
use mcr_core::audit::{AuditEvent, EventType};
use mcr_core::time::Timestamp;
use mcr_grpc::convert::timestamp;
use mcr_grpc::pb;
use serde::Deserialize;

use super::{choices, href, render, require_admin, time, wants_fragment, Choice, Chrome};
use crate::backend::answer;
use crate::csrf::CsrfToken;
use crate::error::UiError;
use crate::session::LoggedIn;
use crate::state::Web;

/// Events per page.
const PAGE_SIZE: usize = 50;

#[derive(Deserialize, Default, Clone)]
pub struct Filters {
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    repository: String,
    /// `YYYY-MM-DDTHH:MM[:SS]` as a `datetime-local` input sends it, UTC.
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    offset: usize,
}

pub struct Row {
    id: i64,
    time: String,
    event_type: String,
    actor: String,
    repository: String,
    digest: String,
    digest_short: String,
    ip: String,
    details: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    filters: Filters,
    event_choices: Vec<Choice>,
    error: Option<String>,
    rows: Vec<Row>,
    prev_href: Option<String>,
    next_href: Option<String>,
}

#[derive(Template)]
#[template(path = "audit.html", block = "table")]
struct AuditTable {
    error: Option<String>,
    rows: Vec<Row>,
    prev_href: Option<String>,
    next_href: Option<String>,
}

/// A time as the form sent it (UTC, seconds optional, or full RFC 3339).
fn when(field: &str, s: &str) -> Result<Option<Timestamp>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let full = match s.len() {
        16 => format!("{s}:00Z"),
        19 => format!("{s}Z"),
        _ => s.to_string(),
    };
    Timestamp::parse_rfc3339(&full)
        .map(Some)
        .map_err(|_| format!("{field}: {s:?} is not a time like 2024-05-01T12:00"))
}

fn row(e: &AuditEvent) -> Row {
    let ev = &e.event;
    let dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
    Row {
        id: e.id,
        time: time(ev.time),
        event_type: ev.event_type.to_string(),
        actor: dash(ev.actor_id.clone()),
        repository: dash(ev.repository.as_ref().map(ToString::to_string)),
        digest: dash(ev.digest.as_ref().map(ToString::to_string)),
        digest_short: dash(ev.digest.as_ref().map(mcr_core::digest::Digest::short)),
        ip: dash(ev.ip.clone()),
        details: ev
            .details
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `GET /audit?event_type=&actor=&repository=&since=&until=&offset=`.
pub async fn page(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
    Extension(csrf): Extension<CsrfToken>,
    headers: HeaderMap,
    WithRejection(Query(f), _): WithRejection<Query<Filters>, UiError>,
) -> Result<Response, UiError> {
    require_admin(&session)?;
    let times = when("From", &f.since).and_then(|s| Ok((s, when("To", &f.until)?)));
    let (rows, more, error) = match times {
        Err(e) => (Vec::new(), false, Some(e)),
        Ok((since, until)) => {
            let request = pb::ListAuditEventsRequest {
                event_type: Some(f.event_type.clone()).filter(|s| !s.is_empty()),
                actor_id: Some(f.actor.trim().to_string()).filter(|s| !s.is_empty()),
                repository: Some(f.repository.trim().to_string()).filter(|s| !s.is_empty()),
                since: since.map(timestamp),
                until: until.map(timestamp),
                // One more than shown, to know whether older ones exist.
                n: (PAGE_SIZE + 1) as u32,
                offset: u32::try_from(f.offset).unwrap_or(u32::MAX),
            };
            let mut c = web.backend().clients(Some(&session))?;
            match c.audit.list_audit_events(request).await {
                Ok(r) => {
                    let events = r
                        .into_inner()
                        .events
                        .into_iter()
                        .map(answer)
                        .collect::<Result<Vec<AuditEvent>, _>>()?;
                    let more = events.len() > PAGE_SIZE;
                    let rows = events.iter().take(PAGE_SIZE).map(row).collect();
                    (rows, more, None)
                }
                Err(s) => match web.backend().failed(s) {
                    UiError::Invalid(m) => (Vec::new(), false, Some(m)),
                    other => return Err(other),
                },
            }
        }
    };
    let link = |offset: usize| {
        let offset = offset.to_string();
        href(
            "/audit",
            &[
                ("event_type", &f.event_type),
                ("actor", &f.actor),
                ("repository", &f.repository),
                ("since", &f.since),
                ("until", &f.until),
                ("offset", if offset == "0" { "" } else { &offset }),
            ],
        )
    };
    let prev_href = (f.offset > 0).then(|| link(f.offset.saturating_sub(PAGE_SIZE)));
    let next_href = more.then(|| link(f.offset + PAGE_SIZE));
    if wants_fragment(&headers, "audit-table") {
        return render(&AuditTable {
            error,
            rows,
            prev_href,
            next_href,
        });
    }
    let names: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
    render(&AuditPage {
        chrome: Chrome::new(&session, &csrf, "audit"),
        event_choices: choices(&names, std::slice::from_ref(&f.event_type)),
        filters: f,
        error,
        rows,
        prev_href,
        next_href,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_the_form_are_utc() {
        let t = when("From", "2024-05-01T12:00").unwrap().unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T12:00:00.000Z");
        assert!(when("From", "").unwrap().is_none());
        assert!(when("From", "yesterday").unwrap_err().contains("From"));
    }
}
