//! The repository listing (filtered, sorted and paged by `mcrsrv`'s
//! store; htmx swaps just the table) and one repository's tags,
//! manifests and layers.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use axum_extra::extract::WithRejection;
use mcr_core::ports::{RepoDetail, RepoSort, SortOrder};
use mcr_core::registry::{RepoListing, RepoPage};
use mcr_grpc::pb;
use serde::Deserialize;

use super::{href, manifest_href, render, repo_href, size, time, wants_fragment, Chrome};
use crate::backend::answer;
use crate::csrf::CsrfToken;
use crate::error::UiError;
use crate::session::LoggedIn;
use crate::state::Web;

/// Rows per page of the listing.
const PAGE_SIZE: usize = 50;

#[derive(Deserialize, Default)]
pub struct ListParams {
    #[serde(default)]
    q: String,
    sort: Option<String>,
    order: Option<String>,
    after: Option<String>,
}

pub struct Header {
    label: &'static str,
    href: String,
    /// ` ▲` or ` ▼` on the column the table is sorted by.
    arrow: &'static str,
    numeric: bool,
}

pub struct Row {
    name: String,
    href: String,
    tags: u64,
    manifests: u64,
    size: String,
    size_bytes: u64,
    last_push: String,
}

#[derive(Template)]
#[template(path = "repositories.html")]
struct ListPage {
    chrome: Chrome,
    q: String,
    sort: String,
    order: String,
    headers: Vec<Header>,
    rows: Vec<Row>,
    first_href: Option<String>,
    next_href: Option<String>,
}

/// The same page, the table alone (for htmx).
#[derive(Template)]
#[template(path = "repositories.html", block = "table")]
struct ListTable {
    q: String,
    headers: Vec<Header>,
    rows: Vec<Row>,
    first_href: Option<String>,
    next_href: Option<String>,
}

/// `GET /repositories?q=&sort=&order=&after=`.
pub async fn list(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
    Extension(csrf): Extension<CsrfToken>,
    headers: HeaderMap,
    WithRejection(Query(p), _): WithRejection<Query<ListParams>, UiError>,
) -> Result<Response, UiError> {
    let listing = RepoListing::from_params(
        Some(p.q.clone()),
        p.sort.as_deref().filter(|s| !s.is_empty()),
        p.order.as_deref().filter(|s| !s.is_empty()),
        p.after.clone().filter(|s| !s.is_empty()),
        Some(PAGE_SIZE),
    )
    .map_err(|e| UiError::Invalid(e.to_string()))?;
    let mut c = web.backend().clients(Some(&session))?;
    let page: RepoPage = answer(
        c.registry
            .list_repositories(pb::ListRepositoriesRequest::from(&listing))
            .await
            .map_err(|s| web.backend().failed(s))?
            .into_inner(),
    )?;
    let (sort, order) = (listing.sort.to_string(), listing.order.to_string());
    let link = |sort: &str, order: &str, after: &str| {
        href(
            "/repositories",
            &[
                ("q", &p.q),
                ("sort", sort),
                ("order", order),
                ("after", after),
            ],
        )
    };
    let headers_row = [
        ("Name", RepoSort::Name),
        ("Tags", RepoSort::Tags),
        ("Manifests", RepoSort::Manifests),
        ("Size", RepoSort::Size),
        ("Last push", RepoSort::LastPush),
    ]
    .into_iter()
    .map(|(label, s)| {
        let current = s == listing.sort;
        // A click on the sorted column turns the order; on another, the
        // numbers start with the largest, names with A.
        let next_order = match (current, listing.order, s) {
            (true, SortOrder::Asc, _) => SortOrder::Desc,
            (true, SortOrder::Desc, _) => SortOrder::Asc,
            (false, _, RepoSort::Name) => SortOrder::Asc,
            (false, _, _) => SortOrder::Desc,
        };
        Header {
            label,
            href: link(s.as_str(), next_order.as_str(), ""),
            arrow: match (current, listing.order) {
                (false, _) => "",
                (true, SortOrder::Asc) => " ▲",
                (true, SortOrder::Desc) => " ▼",
            },
            numeric: s != RepoSort::Name && s != RepoSort::LastPush,
        }
    })
    .collect();
    let rows = page
        .repositories
        .iter()
        .map(|r| Row {
            name: r.name.to_string(),
            href: repo_href(r.name.as_str()),
            tags: r.tag_count,
            manifests: r.manifest_count,
            size: size(r.total_size),
            size_bytes: r.total_size,
            last_push: r.last_push.map_or_else(|| "never".into(), time),
        })
        .collect();
    let first_href = listing.last.is_some().then(|| link(&sort, &order, ""));
    let next_href = page.next.as_deref().map(|n| link(&sort, &order, n));
    if wants_fragment(&headers, "repo-table") {
        return render(&ListTable {
            q: p.q,
            headers: headers_row,
            rows,
            first_href,
            next_href,
        });
    }
    render(&ListPage {
        chrome: Chrome::new(&session, &csrf, "repositories"),
        q: p.q,
        sort,
        order,
        headers: headers_row,
        rows,
        first_href,
        next_href,
    })
}

pub struct TagRow {
    name: String,
    digest: String,
    digest_short: String,
    href: String,
    pull: String,
}

pub struct ManifestRow {
    digest: String,
    digest_short: String,
    href: String,
    media_type: String,
    size: String,
    created: String,
    pull: String,
}

pub struct LayerRow {
    digest: String,
    size: String,
    size_bytes: u64,
}

#[derive(Template)]
#[template(path = "repository.html")]
struct RepositoryPage {
    chrome: Chrome,
    name: String,
    tag_count: u64,
    manifest_count: u64,
    total_size: String,
    total_size_bytes: u64,
    created: String,
    last_push: String,
    tags: Vec<TagRow>,
    manifests: Vec<ManifestRow>,
    layers: Vec<LayerRow>,
}

/// Separates a repository from a manifest reference in a path: no
/// repository name has a `-` component.
const MANIFEST_SEPARATOR: &str = "/-/manifests/";

/// `GET /repositories/{name}` and
/// `GET /repositories/{name}/-/manifests/{reference}`.
pub async fn detail(
    State(web): State<Web>,
    LoggedIn(session): LoggedIn,
    Extension(csrf): Extension<CsrfToken>,
    WithRejection(Path(path), _): WithRejection<Path<String>, UiError>,
) -> Result<Response, UiError> {
    if let Some((name, reference)) = path.split_once(MANIFEST_SEPARATOR) {
        return super::manifest::page(&web, &session, &csrf, name, reference).await;
    }
    let mut c = web.backend().clients(Some(&session))?;
    let d: RepoDetail = answer(
        c.registry
            .get_repository(pb::GetRepositoryRequest { name: path.clone() })
            .await
            .map_err(|s| web.backend().failed(s))?
            .into_inner(),
    )?;
    let name = d.summary.name.to_string();
    render(&RepositoryPage {
        chrome: Chrome::new(&session, &csrf, "repositories"),
        tag_count: d.summary.tag_count,
        manifest_count: d.summary.manifest_count,
        total_size: size(d.summary.total_size),
        total_size_bytes: d.summary.total_size,
        created: time(d.summary.created),
        last_push: d.summary.last_push.map_or_else(|| "never".into(), time),
        tags: d
            .tags
            .iter()
            .map(|t| TagRow {
                name: t.name.to_string(),
                digest: t.digest.to_string(),
                digest_short: t.digest.short(),
                href: manifest_href(&name, &t.digest.to_string()),
                pull: web.pull_ref(&name, &format!(":{}", t.name)),
            })
            .collect(),
        manifests: d
            .manifests
            .iter()
            .map(|m| ManifestRow {
                digest: m.digest.to_string(),
                digest_short: m.digest.short(),
                href: manifest_href(&name, &m.digest.to_string()),
                media_type: m.media_type.to_string(),
                size: size(m.size),
                created: time(m.created),
                pull: web.pull_ref(&name, &format!("@{}", m.digest)),
            })
            .collect(),
        layers: d
            .layers
            .iter()
            .map(|l| LayerRow {
                digest: l.digest.to_string(),
                size: size(l.size),
                size_bytes: l.size,
            })
            .collect(),
        name,
    })
}
