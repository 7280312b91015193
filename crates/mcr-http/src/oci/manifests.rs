//! `/v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{header, StatusCode};
use mcr_core::media::MediaType;
use mcr_core::names::{Reference, RepoName, Tag};
use mcr_core::Error;

use super::body::{check_content_length, discard, read_small, DRAIN_MAX};
use super::{location, respond, Ctx, OciResult, DOCKER_CONTENT_DIGEST, OCI_SUBJECT, OCI_TAG};
use crate::error::OciError;

/// GET (with the body) or HEAD (headers only).
pub async fn get(ctx: &Ctx, repo: &RepoName, reference: &Reference, with_body: bool) -> OciResult {
    let m = ctx
        .state
        .registry
        .get_manifest(&ctx.caller, repo, reference)
        .await?;
    let headers = [
        (header::CONTENT_TYPE, m.media_type.to_string()),
        (header::CONTENT_LENGTH, m.raw.len().to_string()),
        (DOCKER_CONTENT_DIGEST, m.digest.to_string()),
        (header::ETAG, format!("\"{}\"", m.digest)),
    ];
    let body = if with_body {
        Body::from(m.raw)
    } else {
        Body::empty()
    };
    Ok(respond(StatusCode::OK, &headers, body))
}

pub async fn put(ctx: &Ctx, repo: &RepoName, reference: &Reference, body: Body) -> OciResult {
    let limit = ctx.state.registry.config().max_manifest_size;
    let too_large = |size: u64| OciError::from(Error::ManifestTooLarge { size, limit });
    if let Some(len) = check_content_length(&ctx.headers, u64::MAX)? {
        if len > limit {
            if len <= DRAIN_MAX {
                discard(body.into_data_stream(), len).await;
            }
            return Err(too_large(len));
        }
    }
    let content_type = match ctx.headers.get(header::CONTENT_TYPE) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| Error::ManifestInvalid("Content-Type is not text".into()))
                .and_then(MediaType::from_content_type)
                .map_err(|e| Error::ManifestInvalid(e.to_string()))?,
        ),
        None => None,
    };
    let tags = ctx
        .query_all("tag")
        .iter()
        .map(|t| Tag::new(t))
        .collect::<Result<Vec<_>, _>>()?;
    let raw = read_small(body, limit as usize, "MANIFEST_INVALID", || {
        too_large(limit + 1)
    })
    .await?;
    let pushed = ctx
        .state
        .registry
        .put_manifest_tagged(
            &ctx.caller,
            repo,
            reference,
            &tags,
            content_type.as_ref(),
            raw,
        )
        .await?;
    let mut headers = vec![
        location(format!("/v2/{repo}/manifests/{}", pushed.digest)),
        (DOCKER_CONTENT_DIGEST, pushed.digest.to_string()),
    ];
    if let Some(subject) = pushed.subject {
        headers.push((OCI_SUBJECT, subject.to_string()));
    }
    if !tags.is_empty() {
        let names: Vec<&str> = pushed.tags.iter().map(Tag::as_str).collect();
        headers.push((OCI_TAG, names.join(",")));
    }
    Ok(respond(StatusCode::CREATED, &headers, Body::empty()))
}

pub async fn delete(ctx: &Ctx, repo: &RepoName, reference: &Reference) -> OciResult {
    ctx.state
        .registry
        .delete_manifest(&ctx.caller, repo, reference)
        .await?;
    Ok(respond(StatusCode::ACCEPTED, &[], Body::empty()))
}
