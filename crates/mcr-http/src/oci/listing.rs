//! Content discovery: tag lists, the catalog and referrers.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use mcr_core::digest::Digest;
use mcr_core::media::{MediaType, OCI_IMAGE_INDEX};
use mcr_core::names::RepoName;
use mcr_core::Error;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::json;

use super::{respond, Ctx, OciResult, OCI_FILTERS_APPLIED};

/// `n` and `last` from the query; `n` must be a number.
fn page_params(ctx: &Ctx) -> Result<(Option<String>, Option<usize>), Error> {
    let q = ctx.query();
    let n = match q.get("n") {
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| Error::invalid("n", format!("{n:?} is not a count")))?,
        ),
        None => None,
    };
    Ok((q.get("last").cloned(), n))
}

/// The `Link` header to the next page, if there is one (`last`).
fn next_link(
    path: &str,
    n: Option<usize>,
    last: Option<&str>,
) -> Option<(header::HeaderName, String)> {
    let last = last?;
    let mut url = format!("{path}?");
    if let Some(n) = n {
        url.push_str(&format!("n={n}&"));
    }
    url.push_str(&format!(
        "last={}",
        utf8_percent_encode(last, NON_ALPHANUMERIC)
    ));
    Some((header::LINK, format!("<{url}>; rel=\"next\"")))
}

pub async fn tags(ctx: &Ctx, repo: &RepoName) -> OciResult {
    let (last, n) = page_params(ctx)?;
    let listing = ctx
        .state
        .registry
        .list_tags(&ctx.caller, repo, last, n)
        .await?;
    let link = next_link(&format!("/v2/{repo}/tags/list"), n, listing.next.as_deref());
    let mut resp = axum::Json(json!({"name": repo, "tags": listing.items})).into_response();
    if let Some((k, v)) = link {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    Ok(resp)
}

pub async fn catalog(ctx: &Ctx) -> OciResult {
    let (last, n) = page_params(ctx)?;
    let listing = ctx.state.registry.catalog(&ctx.caller, last, n).await?;
    let link = next_link("/v2/_catalog", n, listing.next.as_deref());
    let mut resp = axum::Json(json!({"repositories": listing.items})).into_response();
    if let Some((k, v)) = link {
        if let Ok(v) = v.parse() {
            resp.headers_mut().insert(k, v);
        }
    }
    Ok(resp)
}

pub async fn referrers(ctx: &Ctx, repo: &RepoName, subject: &Digest) -> OciResult {
    let filter = ctx
        .query()
        .get("artifactType")
        .map(|t| MediaType::new(t))
        .transpose()?;
    let manifests = ctx
        .state
        .registry
        .referrers(&ctx.caller, repo, subject, filter.as_ref())
        .await?;
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX,
        "manifests": manifests,
    });
    let mut headers = vec![(header::CONTENT_TYPE, OCI_IMAGE_INDEX.to_string())];
    if filter.is_some() {
        headers.push((OCI_FILTERS_APPLIED, "artifactType".to_string()));
    }
    let bytes = serde_json::to_vec(&body).map_err(|e| Error::storage("encoding a listing", e))?;
    Ok(respond(StatusCode::OK, &headers, Body::from(bytes)))
}
