//! Request bodies as streams with a size limit, and small whole bodies.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use mcr_core::ports::ByteStream;

use crate::error::OciError;

/// A body stream that fails once more than `limit` bytes went by, and
/// remembers that it did, so the failure can be answered as "too large"
/// rather than as a storage error.
pub struct LimitedBody {
    pub stream: ByteStream,
    exceeded: Arc<AtomicBool>,
    limit: u64,
}

impl LimitedBody {
    pub fn new(body: Body, limit: u64) -> LimitedBody {
        let exceeded = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&exceeded);
        let mut seen: u64 = 0;
        let stream = body.into_data_stream().map(move |chunk| {
            let chunk = chunk.map_err(io::Error::other)?;
            seen += chunk.len() as u64;
            if seen > limit {
                flag.store(true, Ordering::Release);
                return Err(io::Error::other("request body over the size limit"));
            }
            Ok::<Bytes, io::Error>(chunk)
        });
        LimitedBody {
            stream: Box::pin(stream),
            exceeded,
            limit,
        }
    }

    /// Turns an engine error into the answer: "too large" if the limit
    /// tripped, the error's own mapping otherwise.
    pub fn guard(&self) -> impl Fn(mcr_core::Error) -> OciError {
        let exceeded = Arc::clone(&self.exceeded);
        let limit = self.limit;
        move |e| {
            if exceeded.load(Ordering::Acquire) {
                OciError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "SIZE_INVALID",
                    format!("body is over the limit of {limit} bytes"),
                )
            } else {
                e.into()
            }
        }
    }
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
