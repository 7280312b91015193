//! Writing a response to a request mcrsrv answered itself, as HTTP/1.1.
//!
//! The response is the router's, untouched: the same handlers decide
//! status, headers and body as under hyper. This module only frames it
//! the way hyper would — `Date`, `Content-Length` from the body's exact
//! size or else chunked encoding, no body for HEAD, 204 and 304,
//! `Connection: close` when the connection ends after it — and sends a
//! [`FileBody`] region with `sendfile(2)` instead of the streamed body.

use std::io::{self, Write as _};
use std::time::{Duration, SystemTime};

use axum::body::{Body, HttpBody as _};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use axum::http::{HeaderValue, Response, StatusCode};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use mcr_http::metrics::SentBytes;
use mcr_http::FileBody;
use tokio::net::TcpStream;

use super::head::has_token;
use super::{file, limits};

/// Frames smaller than this are copied behind the head (and each other)
/// and go out together; copying a few KiB costs less than another write.
const COPY_BELOW: usize = 4 << 10;

/// Gathered bytes are written once they reach this size.
const GATHER: usize = 64 << 10;

/// How the connection should go on after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    KeepAlive,
    Close,
}

/// Writes `resp`, the answer to a GET (`head_only: false`) or HEAD.
/// `close` says the connection ends after it (the client or shutdown asked
/// for that); the response's own `Connection: close` ends it too. Fails
/// when the peer goes away or takes nothing for `stall`, or the body fails
/// or lies about its length — then the connection must be dropped.
pub(super) async fn write(
    stream: &mut TcpStream,
    resp: Response<Body>,
    head_only: bool,
    close: bool,
    stall: Duration,
) -> io::Result<After> {
    let (mut parts, body) = resp.into_parts();
    let close = close
        || parts
            .headers
            .get(CONNECTION)
            .is_some_and(|v| has_token(v, "close"));
    let file = parts.extensions.remove::<FileBody>();
    let sent = parts.extensions.remove::<SentBytes>();
    let bodiless = head_only
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let length = match (&file, body.size_hint().exact()) {
        (Some(f), _) => Some(f.len),
        (None, exact) => exact,
    };
    let headers = &mut parts.headers;
    if !bodiless {
        match length {
            Some(n) => {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
                headers.remove(TRANSFER_ENCODING);
            }
            None => {
                headers.remove(CONTENT_LENGTH);
                headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            }
        }
    }
    if !headers.contains_key(DATE) {
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())) {
            headers.insert(DATE, v);
        }
    }
    if close {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }

    let mut out = BytesMut::with_capacity(512);
    // Writing into memory cannot fail.
    let _ = write!(
        (&mut out).writer(),
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_str(),
        parts.status.canonical_reason().unwrap_or("")
    );
    for (name, value) in headers.iter() {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");

    let after = if close {
        After::Close
    } else {
        After::KeepAlive
    };
    if bodiless {
        limits::write_all(stream, &out, stall).await?;
        return Ok(after);
    }
    if let Some(file) = file {
        file::send(stream, &out, &file, stall).await?;
        // The body the metrics count as it streams is dropped unsent.
        if let Some(sent) = sent {
            sent.add(file.len);
        }
        return Ok(after);
    }
    write_body(stream, out, body, length, stall).await?;
    Ok(after)
}

/// Writes the head in `out` and then `body`: with `length`, exactly that
/// many bytes, else chunked. Small frames are gathered behind the head;
/// a larger one (a manifest, a blob's chunk) is written from where it is,
/// in one vectored write with what was gathered before it, so the head
/// and a whole manifest still leave in one `writev` without copying it.
async fn write_body(
    stream: &mut TcpStream,
    mut out: BytesMut,
    body: Body,
    length: Option<u64>,
    stall: Duration,
) -> io::Result<()> {
    let mut frames = body.into_data_stream();
    let mut sent: u64 = 0;
    while let Some(frame) = frames.next().await {
        let data: Bytes = frame.map_err(io::Error::other)?;
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if length.is_some_and(|n| sent > n) {
            return Err(io::Error::other("the body is longer than its length"));
        }
        let chunked = length.is_none();
        if chunked {
            let _ = write!((&mut out).writer(), "{:x}\r\n", data.len());
        }
        if data.len() >= COPY_BELOW {
            limits::write_all_after(stream, &out, &data, stall).await?;
            out.clear();
        } else {
            out.put_slice(&data);
        }
        if chunked {
            out.put_slice(b"\r\n");
        }
        if out.len() >= GATHER {
            limits::write_all(stream, &out, stall).await?;
            out.clear();
        }
    }
    match length {
        Some(n) if sent != n => {
            return Err(io::Error::other("the body is shorter than its length"))
        }
        Some(_) => {}
        None => out.put_slice(b"0\r\n\r\n"),
    }
    limits::write_all(stream, &out, stall).await
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// Writes `resp` through a real socket and returns what the client got.
    async fn sent(resp: Response<Body>) -> Vec<u8> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let writer = tokio::spawn(async move {
            write(&mut server, resp, false, true, Duration::from_secs(10))
                .await
                .unwrap()
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(writer.await.unwrap(), After::Close);
        got
    }

    fn body_of(got: &[u8]) -> &[u8] {
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        &got[end + 4..]
    }

    #[tokio::test]
    async fn a_large_body_follows_its_head_whole() {
        let manifest = vec![b'm'; 31_249];
        let got = sent(Response::new(Body::from(manifest.clone()))).await;
        let head = String::from_utf8_lossy(&got[..got.len() - manifest.len()]).into_owned();
        assert!(head.contains("content-length: 31249\r\n"), "{head}");
        assert_eq!(body_of(&got), &manifest[..]);
    }

    #[tokio::test]
    async fn chunked_frames_small_and_large_keep_their_order_and_framing() {
        // Larger than the socket takes at once: the vectored write
        // goes on from where a partial one stopped.
        let large = vec![b'x'; 4 << 20];
        let frames: Vec<Result<Bytes, io::Error>> = vec![
            Ok(Bytes::from_static(b"ab")),
            Ok(Bytes::from(large.clone())),
            Ok(Bytes::from_static(b"cd")),
        ];
        let body = Body::from_stream(futures_util::stream::iter(frames));
        let got = sent(Response::new(body)).await;
        let mut expected = b"2\r\nab\r\n".to_vec();
        expected.extend_from_slice(format!("{:x}\r\n", large.len()).as_bytes());
        expected.extend_from_slice(&large);
        expected.extend_from_slice(b"\r\n2\r\ncd\r\n0\r\n\r\n");
        assert_eq!(body_of(&got), &expected[..]);
    }
}
