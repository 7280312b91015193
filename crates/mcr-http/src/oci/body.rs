//! Request bodies as streams, and small whole bodies.

use std::io;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use mcr_core::ports::ByteStream;

use crate::error::OciError;

/// A request body as the engine takes it: a stream of chunks, never whole.
/// Limits on it are the engine's (the blob size limit, as the upload
/// grows).
pub fn body_stream(body: Body) -> ByteStream {
    Box::pin(
        body.into_data_stream()
            .map(|chunk| chunk.map_err(io::Error::other)),
    )
}

/// Refuses early when `Content-Length` already says the body is too big.
pub fn check_content_length(headers: &HeaderMap, limit: u64) -> Result<Option<u64>, OciError> {
    let Some(v) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    let len: u64 = v
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            OciError::new(
                StatusCode::BAD_REQUEST,
                "SIZE_INVALID",
                "Content-Length is not a number",
            )
        })?;
    if len > limit {
        return Err(OciError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
            format!("body of {len} bytes is over the limit of {limit} bytes"),
        ));
    }
    Ok(Some(len))
}

/// Reads a small body whole, refusing past `limit` with `too_large`.
pub async fn read_small(
    body: Body,
    limit: usize,
    too_large: impl FnOnce() -> OciError,
) -> Result<Bytes, OciError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}
