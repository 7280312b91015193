//! Request bodies as streams, and small whole bodies, and why a body
//! ended early: stalled past `HttpConfig::body_timeout`, or cut off by the
//! client.

use std::error::Error as _;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use mcr_core::ports::ByteStream;

use crate::error::OciError;

/// A request body as the engine takes it: a stream of chunks, never whole.
/// Limits on it are the engine's (the blob size limit, as the upload
/// grows); the stream remembers whether it failed because the client
/// stopped sending, so that failure is answered as the client's.
pub struct BodyStream {
    pub stream: ByteStream,
    stalled: Arc<AtomicBool>,
}

impl BodyStream {
    pub fn new(body: Body) -> BodyStream {
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stalled);
        let stream = body.into_data_stream().map(move |chunk| {
            chunk.map_err(|e| {
                if stalled_error(&e) {
                    flag.store(true, Ordering::Release);
                }
                io::Error::other(e)
            })
        });
        BodyStream {
            stream: Box::pin(stream),
            stalled,
        }
    }

    /// Turns an engine error into the answer: "timed out" (408) if the
    /// client stopped sending, the error's own mapping otherwise.
    pub fn guard(&self) -> impl Fn(mcr_core::Error) -> OciError {
        let stalled = Arc::clone(&self.stalled);
        move |e| {
            if stalled.load(Ordering::Acquire) {
                body_stalled("BLOB_UPLOAD_INVALID")
            } else {
                e.into()
            }
        }
    }
}

/// Whether a body failed because the client sent nothing for longer than
/// the body timeout (the router's `RequestBodyTimeoutLayer`).
pub(crate) fn stalled_error(e: &axum::Error) -> bool {
    let mut cause = e.source();
    while let Some(c) = cause {
        if c.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The answer to a body that stalled: 408, so the client knows to resend
/// rather than that the content was wrong. A half-sent chunk is discarded;
/// an upload keeps what it had before it.
fn body_stalled(code: &'static str) -> OciError {
    OciError::new(
        StatusCode::REQUEST_TIMEOUT,
        code,
        "the request body stopped arriving (server.read_timeout); send it again",
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

/// Reads a small body whole, refusing past `limit` with `too_large`; a
/// body that stalls is refused with `code` and 408.
pub async fn read_small(
    body: Body,
    limit: usize,
    code: &'static str,
    too_large: impl FnOnce() -> OciError,
) -> Result<Bytes, OciError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if stalled_error(&e) {
            body_stalled(code)
        } else {
            too_large()
        }
    })
}
