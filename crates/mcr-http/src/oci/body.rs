//! Request bodies as streams, and small whole bodies, and why a body
//! ended early: stalled past `HttpConfig::body_timeout` or slower than
//! `HttpConfig::min_body_rate` ([`crate::pace`]), or cut off by the
//! client.

use std::error::Error as _;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::{Bytes, BytesMut};
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
/// the body timeout, or sent too slowly ([`crate::pace`]).
pub(crate) fn stalled_error(e: &axum::Error) -> bool {
    let mut cause = e.source();
    while let Some(c) = cause {
        if c.is::<crate::pace::BodyTooSlow>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Why a body that stalled, or came too slowly, was refused.
pub(crate) const BODY_TOO_SLOW: &str =
    "the request body stopped arriving (server.read_timeout) or came slower than server.min_body_rate";

/// The answer to a body that stalled: 408, so the client knows to resend
/// rather than that the content was wrong. A half-sent chunk is discarded;
/// an upload keeps what it had before it.
fn body_stalled(code: &'static str) -> OciError {
    OciError::new(
        StatusCode::REQUEST_TIMEOUT,
        code,
        format!("{BODY_TOO_SLOW}; send it again"),
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

/// How much of a body refused for its size is still read, and dropped,
/// before the refusal goes out. A client still sending when the server
/// answers and closes the connection gets a reset instead of the answer
/// (and so never learns why); nginx reads on for the same reason
/// (`lingering_close`). A body declared larger is answered at once.
pub const DRAIN_MAX: u64 = 64 << 20;

/// Why a small body was not read whole.
#[derive(Debug)]
pub(crate) enum SmallBodyError {
    /// Over the limit (what followed was read and dropped, up to
    /// [`DRAIN_MAX`]).
    TooLarge,
    /// The client stopped sending for longer than the body timeout.
    Stalled,
    /// The body broke off (the client went away).
    Broken(axum::Error),
}

/// Reads `body` whole if it holds at most `limit` bytes.
pub(crate) async fn read_at_most(body: Body, limit: usize) -> Result<Bytes, SmallBodyError> {
    let mut stream = body.into_data_stream();
    let mut whole = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if stalled_error(&e) {
                SmallBodyError::Stalled
            } else {
                SmallBodyError::Broken(e)
            }
        })?;
        if whole.len() + chunk.len() > limit {
            let read = (whole.len() + chunk.len()) as u64;
            discard(stream, DRAIN_MAX.saturating_sub(read)).await;
            return Err(SmallBodyError::TooLarge);
        }
        whole.extend_from_slice(&chunk);
    }
    Ok(whole.freeze())
}

/// Reads and drops up to `max` bytes of a refused body (see
/// [`DRAIN_MAX`]); stops at the first error.
pub(crate) async fn discard(
    mut stream: impl futures_util::Stream<Item = Result<Bytes, axum::Error>> + Unpin,
    max: u64,
) {
    let mut left = max;
    while let Some(Ok(chunk)) = stream.next().await {
        match left.checked_sub(chunk.len() as u64) {
            Some(l) => left = l,
            None => return,
        }
    }
}

/// Reads a small body whole, refusing past `limit` with `too_large`; a
/// body that stalls is refused with `code` and 408, one that breaks off
/// with `code` and 400.
pub async fn read_small(
    body: Body,
    limit: usize,
    code: &'static str,
    too_large: impl FnOnce() -> OciError,
) -> Result<Bytes, OciError> {
    read_at_most(body, limit).await.map_err(|e| match e {
        SmallBodyError::TooLarge => too_large(),
        SmallBodyError::Stalled => body_stalled(code),
        SmallBodyError::Broken(e) => OciError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("the request body broke off: {e}"),
        ),
    })
}
