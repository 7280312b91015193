//! The dashboard: repository count, stored bytes, the last pushes, and
//! garbage collection's state for admins (`RegistryService.GetDashboard`).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use mcr_core::registry::{Dashboard, GcStatus};
use mcr_grpc::pb;

use super::{manifest_href, render, repo_href, size, time, Chrome};
use crate::backend::answer;
use crate::csrf::CsrfToken;
use crate::error::UiError;
use crate::session::LoggedIn;
use crate::state::Web;

pub struct PushRow {
    time: String,
    repository: String,
    repo_href: String,
    tags: String,
    digest: String,
    digest_short: String,
    manifest_href: String,
    actor: String,
}

pub struct RunView {
    pub id: String,
    pub started: String,
    pub completed: String,
    pub blobs: u64,
    pub freed: String,
}

impl RunView {
    pub fn of(r: &mcr_core::registry::GcReport) -> RunView {
        RunView {
            id: r.id.clone(),
            started: time(r.started_at),
            completed: time(r.completed_at),
            blobs: r.blobs_removed,
            freed: size(r.bytes_freed),
        }
    }
}

pub struct GcView {
    running: bool,
    last_run: Option<RunView>,
}

impl GcView {
    fn of(s: &GcStatus) -> GcView {
        GcView {
            running: s.running,
            last_run: s.last_run.as_ref().map(RunView::of),
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    repositories: u64,
    stored: String,
    stored_bytes: u64,
    pushes: Vec<PushRow>,
    gc: Option<GcView>,
}

/// `GET /`.
pub async fn page(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
    Extension(csrf): Extension<CsrfToken>,
) -> Result<Response, UiError> {
    let mut c = web.backend().clients(Some(&session))?;
    let d: Dashboard = answer(
        c.registry
            .get_dashboard(pb::GetDashboardRequest {})
            .await
            .map_err(|s| web.backend().failed(s))?
            .into_inner(),
    )?;
    render(&DashboardPage {
        chrome: Chrome::new(&session, &csrf, "dashboard"),
        repositories: d.repositories,
        stored: size(d.stored_bytes),
        stored_bytes: d.stored_bytes,
        pushes: d
            .recent_pushes
            .iter()
            .map(|p| {
                let name = p.repository.as_str();
                PushRow {
                    time: time(p.time),
                    repository: name.to_string(),
                    repo_href: repo_href(name),
                    tags: if p.tags.is_empty() {
                        "-".into()
                    } else {
                        p.tags.join(", ")
                    },
                    digest: p.digest.to_string(),
                    digest_short: p.digest.short(),
                    manifest_href: manifest_href(name, &p.digest.to_string()),
                    actor: p.actor.clone().unwrap_or_else(|| "-".into()),
                }
            })
            .collect(),
        gc: d.gc.as_ref().map(GcView::of),
    })
}
