//! `/v2/<name>/blobs/uploads/[<id>]`: starting, feeding, finishing,
//! inspecting and cancelling uploads, and cross-repository mounts.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::names::RepoName;
use mcr_core::ports::{BlobInfo, UploadSession};
use mcr_core::registry::MountOutcome;
use mcr_core::Error;

use super::body::{check_content_length, BodyStream};
use super::range::ContentRange;
use super::{
    location, range_header, respond, Ctx, OciResult, DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID,
};
use crate::error::OciError;

/// `POST`: a monolithic upload with `?digest=`, a mount with `?mount=`, or
/// a new session.
pub async fn start(ctx: &Ctx, repo: &RepoName, body: Body) -> OciResult {
    let query = ctx.query();
    if let Some(mount) = query.get("mount") {
        let digest = Digest::parse(mount)?;
        let from = query.get("from").map(|f| RepoName::new(f)).transpose()?;
        return match ctx
            .state
            .registry
            .mount_blob(&ctx.caller, repo, &digest, from.as_ref())
            .await?
        {
            MountOutcome::Mounted(info) => Ok(blob_created(repo, &info)),
            MountOutcome::Started(session) => {
                Ok(session_response(StatusCode::ACCEPTED, &session.id, repo, 0))
            }
        };
    }
    if let Some(digest) = query.get("digest") {
        let digest = Digest::parse(digest)?;
        check_content_length(&ctx.headers, max_blob_size(ctx))?;
        let body = BodyStream::new(body);
        let guard = body.guard();
        let info = ctx
            .state
            .registry
            .upload_blob(&ctx.caller, repo, &digest, body.stream)
            .await
            .map_err(guard)?;
        return Ok(blob_created(repo, &info));
    }
    let session: UploadSession = ctx.state.registry.start_upload(&ctx.caller, repo).await?;
    Ok(session_response(StatusCode::ACCEPTED, &session.id, repo, 0))
}

/// `PATCH`: one chunk, placed by `Content-Range` when given, else appended.
/// The engine holds the upload to the blob size limit as it grows; a body
/// that says it is larger than any blob may be is refused before it is
/// read.
pub async fn patch(ctx: &Ctx, repo: &RepoName, id: &UploadId, body: Body) -> OciResult {
    let offset = chunk_offset(&ctx.headers, max_blob_size(ctx))?;
    let body = BodyStream::new(body);
    let guard = body.guard();
    match ctx
        .state
        .registry
        .upload_chunk(&ctx.caller, repo, id, offset, body.stream)
        .await
    {
        Ok(size) => Ok(session_response(StatusCode::ACCEPTED, id, repo, size)),
        Err(e) => Err(chunk_error(guard(e), repo, id)),
    }
}

/// The largest blob the engine takes.
fn max_blob_size(ctx: &Ctx) -> u64 {
    ctx.state.registry.config().max_blob_size
}

/// Where a chunk goes: its `Content-Range` start (checked against
/// `Content-Length`), or the end of the upload when there is none.
fn chunk_offset(headers: &HeaderMap, limit: u64) -> Result<Option<u64>, OciError> {
    let length = check_content_length(headers, limit)?;
    match content_range(headers)? {
        Some(range) => {
            if length.is_some_and(|len| !range.fits(len)) {
                return Err(OciError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "BLOB_UPLOAD_INVALID",
                    format!(
                        "Content-Range {}-{} does not match Content-Length",
                        range.start(),
                        range.end()
                    ),
                ));
            }
            Ok(Some(range.start()))
        }
        None => Ok(None),
    }
}

/// A refused chunk still names the session, so the client can ask where
/// the upload stands and resume.
fn chunk_error(mut err: OciError, repo: &RepoName, id: &UploadId) -> OciError {
    if err.status == StatusCode::RANGE_NOT_SATISFIABLE {
        err.location = Some(format!("/v2/{repo}/blobs/uploads/{id}"));
    }
    err
}

/// `PUT ?digest=`: the last chunk (if any) and the end of the upload.
pub async fn put(ctx: &Ctx, repo: &RepoName, id: &UploadId, body: Body) -> OciResult {
    let digest = ctx
        .query()
        .get("digest")
        .ok_or_else(|| {
            Error::DigestInvalid(
                "the digest query parameter is required to finish an upload".into(),
            )
        })
        .and_then(|d| Digest::parse(d))?;
    let offset = chunk_offset(&ctx.headers, max_blob_size(ctx))?;
    // A body known to be empty (Content-Length: 0, or none at all) is no
    // last chunk; anything else, even chunked and empty, is appended.
    let has_body = axum::body::HttpBody::size_hint(&body).exact() != Some(0);
    let body = BodyStream::new(body);
    let guard = body.guard();
    let last_chunk = has_body.then_some((offset, body.stream));
    let info = ctx
        .state
        .registry
        .finish_upload(&ctx.caller, repo, id, &digest, last_chunk)
        .await
        .map_err(|e| chunk_error(guard(e), repo, id))?;
    Ok(blob_created(repo, &info))
}

/// `GET`: how far the upload got.
pub async fn status(ctx: &Ctx, repo: &RepoName, id: &UploadId) -> OciResult {
    let size = ctx
        .state
        .registry
        .upload_status(&ctx.caller, repo, id)
        .await?;
    Ok(session_response(StatusCode::NO_CONTENT, id, repo, size))
}

/// `DELETE`: cancel.
pub async fn cancel(ctx: &Ctx, repo: &RepoName, id: &UploadId) -> OciResult {
    ctx.state
        .registry
        .cancel_upload(&ctx.caller, repo, id)
        .await?;
    Ok(respond(StatusCode::NO_CONTENT, &[], Body::empty()))
}

fn session_response(
    status: StatusCode,
    id: &UploadId,
    repo: &RepoName,
    size: u64,
) -> axum::response::Response {
    respond(
        status,
        &[
            location(format!("/v2/{repo}/blobs/uploads/{id}")),
            (header::RANGE, range_header(size)),
            (DOCKER_UPLOAD_UUID, id.to_string()),
            (header::CONTENT_LENGTH, "0".to_string()),
        ],
        Body::empty(),
    )
}

fn blob_created(repo: &RepoName, info: &BlobInfo) -> axum::response::Response {
    respond(
        StatusCode::CREATED,
        &[
            location(format!("/v2/{repo}/blobs/{}", info.digest)),
            (DOCKER_CONTENT_DIGEST, info.digest.to_string()),
            (header::CONTENT_LENGTH, "0".to_string()),
        ],
        Body::empty(),
    )
}

/// The request's `Content-Range`, if any; a malformed one is refused.
fn content_range(headers: &HeaderMap) -> Result<Option<ContentRange>, OciError> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(ContentRange::parse)
        .map(Some)
        .ok_or_else(|| {
            OciError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                "Content-Range must be <start>-<end>",
            )
        })
}
