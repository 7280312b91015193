//! `/v2/<name>/blobs/<digest>`.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use mcr_core::digest::Digest;
use mcr_core::names::RepoName;
use mcr_core::ports::ByteRange;
use mcr_core::Error;

use super::range::RangeSpec;
use super::{respond, Ctx, OciResult, DOCKER_CONTENT_DIGEST};
use crate::error::OciError;
use crate::FileBody;

pub async fn get(ctx: &Ctx, repo: &RepoName, digest: &Digest) -> OciResult {
    let range = match parse_range(&ctx.headers)? {
        None => None,
        Some(RangeSpec::Bytes(r)) => Some(r),
        // The last `n` bytes: where they start depends on the size.
        Some(RangeSpec::Suffix(n)) => {
            let size = ctx
                .state
                .registry
                .stat_blob(&ctx.caller, repo, digest)
                .await?
                .size;
            Some(ByteRange {
                start: size.saturating_sub(n),
                end: None,
            })
        }
    };
    let body = match ctx
        .state
        .registry
        .get_blob(&ctx.caller, repo, digest, range)
        .await
    {
        Ok(b) => b,
        Err(Error::RangeNotSatisfiable { size }) => {
            let mut e = OciError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UNKNOWN",
                format!("range not satisfiable for a blob of {size} bytes"),
            );
            e.range = None;
            let mut resp = axum::response::IntoResponse::into_response(e);
            if let Ok(v) = format!("bytes */{size}").parse() {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
        Err(e) => return Err(e.into()),
    };
    let mut headers = vec![
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_LENGTH, body.len.to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (DOCKER_CONTENT_DIGEST, digest.to_string()),
        (header::ETAG, format!("\"{digest}\"")),
    ];
    let status = if range.is_some() {
        let last = (body.offset + body.len).saturating_sub(1);
        headers.push((
            header::CONTENT_RANGE,
            format!("bytes {}-{last}/{}", body.offset, body.size),
        ));
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut resp = respond(status, &headers, Body::from_stream(body.stream));
    if let Some(file) = body.file {
        resp.extensions_mut().insert(FileBody {
            file,
            offset: body.offset,
            len: body.len,
        });
    }
    Ok(resp)
}

pub async fn head(ctx: &Ctx, repo: &RepoName, digest: &Digest) -> OciResult {
    let info = ctx
        .state
        .registry
        .stat_blob(&ctx.caller, repo, digest)
        .await?;
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_LENGTH, info.size.to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (DOCKER_CONTENT_DIGEST, digest.to_string()),
        (header::ETAG, format!("\"{digest}\"")),
    ];
    Ok(respond(StatusCode::OK, &headers, Body::empty()))
}

pub async fn delete(ctx: &Ctx, repo: &RepoName, digest: &Digest) -> OciResult {
    ctx.state
        .registry
        .delete_blob(&ctx.caller, repo, digest)
        .await?;
    Ok(respond(StatusCode::ACCEPTED, &[], Body::empty()))
}

/// The request's `Range`, if any; a malformed one is refused.
fn parse_range(headers: &HeaderMap) -> Result<Option<RangeSpec>, OciError> {
    let Some(v) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(RangeSpec::parse)
        .map(Some)
        .ok_or_else(|| {
            OciError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UNKNOWN",
                "Range must be a single range bytes=<start>-[<end>]",
            )
        })
}
