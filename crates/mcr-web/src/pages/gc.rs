//! Garbage collection (admin): its state, the last runs, and a button
//! that starts one.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use mcr_core::registry::{GcReport, GcStatus};
use mcr_grpc::pb;

use super::dashboard::RunView;
use super::{render, require_admin, Chrome};
use crate::backend::answer;
use crate::csrf::CsrfToken;
use crate::error::UiError;
use crate::session::LoggedIn;
use crate::state::Web;

/// How many past runs the page lists.
const RUNS: u32 = 10;

#[derive(Template)]
#[template(path = "gc.html")]
struct GcPage {
    chrome: Chrome,
    running: bool,
    last_run: Option<RunView>,
    runs: Vec<RunView>,
}

/// `GET /gc`.
pub async fn page(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
    Extension(csrf): Extension<CsrfToken>,
) -> Result<Response, UiError> {
    require_admin(&session)?;
    let mut c = web.backend().clients(Some(&session))?;
    let failed = |s| web.backend().failed(s);
    let status: GcStatus = answer(
        c.registry
            .get_gc_status(pb::GetGcStatusRequest {})
            .await
            .map_err(failed)?
            .into_inner(),
    )?;
    let runs = c
        .registry
        .list_gc_runs(pb::ListGcRunsRequest { n: RUNS })
        .await
        .map_err(failed)?
        .into_inner()
        .runs
        .into_iter()
        .map(answer)
        .collect::<Result<Vec<GcReport>, _>>()?;
    let mut chrome = Chrome::new(&session, &csrf, "gc");
    if status.running {
        chrome.notice = Some("A run is under way; reload to see how it went.".into());
    }
    render(&GcPage {
        chrome,
        running: status.running,
        last_run: status.last_run.as_ref().map(RunView::of),
        runs: runs.iter().map(RunView::of).collect(),
    })
}

/// `POST /gc`: starts a run; a run already under way is a 409 page.
pub async fn start(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
) -> Result<Response, UiError> {
    require_admin(&session)?;
    let mut c = web.backend().clients(Some(&session))?;
    c.registry
        .garbage_collect(pb::GarbageCollectRequest {})
        .await
        .map_err(|s| web.backend().failed(s))?;
    Ok(Redirect::to("/gc").into_response())
}
