//! One client connection: plain HTTP/1.1 requests mcrsrv answers itself
//! until a request comes that hyper must serve; TLS connections go to
//! hyper at once.
//!
//! Why: hyper owns the socket of a connection it serves and writes every
//! body from memory, so a blob download would be read from the file into
//! buffers and copied to the socket. Answering bodiless GET and HEAD
//! requests here lets a blob body go from the page cache to the socket
//! with `sendfile(2)` ([`file`]). Nothing else changes: the request goes
//! through the same router, middleware and handler as under hyper
//! ([`head`] builds it; the blob handler decides the whole response and
//! marks its body as a file region, [`mcr_http::FileBody`]), and only the
//! framing is written here ([`response`]).
//!
//! The first request that is not a well-formed bodiless GET or HEAD of
//! HTTP/1.1 — an upload, anything with a body, an upgrade, HTTP/2, a
//! malformed head — hands the connection to hyper for the rest of its
//! life, with the bytes already read put back in front ([`rewind`]).
//! Pulling clients send only GET and HEAD, so their connections stay on
//! the zero-copy path.
//!
//! Limits ([`ConnLimits`], `[server]`): a request head must arrive within
//! `read_timeout` of its first byte (the first request's, of the
//! connection's start), and a kept-alive connection with nothing in
//! flight closes after `idle_timeout`; a response the client stops
//! reading fails after `write_timeout` without progress. Under hyper,
//! [`limits`] applies the same bounds.
//!
//! Reclaim: when a client arrives while every connection slot is taken,
//! the listener notifies [`Serving::reclaim`], and a connection with no
//! request in flight closes (one handed to hyper shuts down gracefully),
//! as it would at its idle timeout.
//!
//! Shutdown: a connection waiting for a request closes; one in the middle
//! of a request answers it with `Connection: close` and then closes; one
//! handed to hyper gets hyper's graceful shutdown.

mod file;
mod head;
mod limits;
mod response;
mod rewind;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Method;
use axum::Router;
use bytes::{Buf, BytesMut};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::listen::ConnLimits;
use head::Head;
use limits::{Activity, ConnIo, Tracked};
use response::After;
use rewind::Rewind;

/// How long a connection must have waited with nothing in flight before
/// a client waiting for a slot makes it close (and how long a connection
/// asked to close gracefully then has before it is dropped): a request
/// already on its way over a connection just accepted or just idle is
/// not cut off.
pub const RECLAIM_GRACE: Duration = Duration::from_secs(1);

/// What a connection needs besides its socket.
#[derive(Clone)]
pub struct Serving {
    pub app: Router,
    pub builder: auto::Builder<TokioExecutor>,
    pub limits: ConnLimits,
    /// Cancelled when the server stops taking requests.
    pub shutdown: CancellationToken,
    /// Notified when a new client waits for a slot: connections with
    /// nothing in flight close to make room.
    pub reclaim: Arc<Notify>,
}

/// Serves a plain-HTTP connection to its end.
pub async fn serve_plain(mut stream: TcpStream, peer: SocketAddr, serving: Serving) {
    let mut buf = BytesMut::with_capacity(4096);
    let limits = &serving.limits;
    let mut first = true;
    loop {
        let waiting = Instant::now();
        // When the head being read began: its first byte, or for the
        // first request the connection's start (a client that connects
        // and says nothing is not idle between requests).
        let mut head_began = (first || !buf.is_empty()).then_some(waiting);
        first = false;
        let head = loop {
            match head::parse(&buf) {
                Head::Partial => {}
                decided => break decided,
            }
            // Between requests, shutdown closes the connection; once a
            // head has begun, the request is read and answered.
            let idle = buf.is_empty();
            let deadline = match head_began {
                None => waiting + limits.idle_timeout,
                Some(began) if idle => began + limits.read_timeout.min(limits.idle_timeout),
                Some(began) => began + limits.read_timeout,
            };
            buf.reserve(4096);
            let read = tokio::select! {
                biased;
                () = serving.shutdown.cancelled(), if idle => return,
                () = serving.reclaim.notified() => {
                    if reclaimable(&stream, &mut buf, waiting) {
                        tracing::debug!(%peer, "idle connection closed to make room for a new client");
                        return;
                    }
                    if !buf.is_empty() {
                        head_began.get_or_insert_with(Instant::now);
                    }
                    continue;
                }
                read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => read,
            };
            match read {
                Ok(Ok(0) | Err(_)) => return,
                Ok(Ok(_)) => {
                    head_began.get_or_insert_with(Instant::now);
                }
                Err(_) => {
                    tracing::debug!(%peer, idle, "no request head within the server's timeouts");
                    return;
                }
            }
        };
        let Head::Claimed {
            mut request,
            len,
            close,
        } = head
        else {
            break;
        };
        buf.advance(len);
        let head_only = request.method() == Method::HEAD;
        request.extensions_mut().insert(ConnectInfo(peer));
        let resp = match serving.app.clone().oneshot(request).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
        let close = close || serving.shutdown.is_cancelled();
        match response::write(&mut stream, resp, head_only, close, limits.write_timeout).await {
            Ok(After::KeepAlive) => {}
            Ok(After::Close) => {
                // A FIN rather than a reset, so the client reads the
                // whole response even with unread requests behind it.
                let _ = stream.shutdown().await;
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, %peer, "connection ended while answering");
                return;
            }
        }
    }
    let fd = stream.as_raw_fd();
    serve_hyper(Rewind::new(buf.freeze(), stream), fd, peer, serving).await;
}

/// Whether a plain connection waiting for a request since `waiting` may
/// close to make room: it has waited for [`RECLAIM_GRACE`] (a head
/// begun and stalled counts as waiting, since nothing was dispatched) and
/// no bytes are ready to read (a request already sent is kept, and read
/// into `buf`).
fn reclaimable(stream: &TcpStream, buf: &mut BytesMut, waiting: Instant) -> bool {
    if waiting.elapsed() < RECLAIM_GRACE {
        return false;
    }
    match stream.try_read_buf(buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

/// Hands a connection to hyper (HTTP/1.1 or HTTP/2) until it ends or,
/// after shutdown began, until hyper has drained it gracefully. `fd` is
/// the socket under `io`.
pub async fn serve_hyper<I>(io: I, fd: RawFd, peer: SocketAddr, serving: Serving)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = serving.app;
    let activity = Arc::new(Activity::new());
    let service = hyper::service::service_fn({
        let activity = Arc::clone(&activity);
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            let in_flight = activity.begin(req.version());
            req.extensions_mut().insert(ConnectInfo(peer));
            let response = app.clone().oneshot(req.map(axum::body::Body::new));
            async move {
                let response = response.await?;
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
            }
        }
    });
    let limits = &serving.limits;
    let io = Box::pin(ConnIo::new(
        TokioIo::new(io),
        fd,
        Arc::clone(&activity),
        limits,
    ));
    let conn = serving.builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    // Checks that responses being sent make progress: see
    // `Activity::is_stalled_for`. Half the limit, so a stall is caught
    // within one and a half times it.
    let mut watchdog = tokio::time::interval((limits.write_timeout / 2).max(RECLAIM_GRACE));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When a connection asked to close to make room is dropped if it has
    // not closed by then and has still nothing in flight (an HTTP/2
    // client that does not acknowledge the GOAWAY's ping, an HTTP/1.1
    // head begun and stalled).
    let mut drop_at: Option<Instant> = None;
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            () = serving.shutdown.cancelled(), if drop_at.is_none() => {
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            () = serving.reclaim.notified(), if drop_at.is_none() => {
                if activity.is_idle_for(RECLAIM_GRACE) {
                    tracing::debug!(%peer, "idle connection closed to make room for a new client");
                    conn.as_mut().graceful_shutdown();
                    drop_at = Some(Instant::now() + RECLAIM_GRACE);
                }
            }
            () = tokio::time::sleep_until(drop_at.unwrap_or_else(Instant::now)), if drop_at.is_some() => {
                if activity.is_idle_for(Duration::ZERO) {
                    break Ok(());
                }
                drop_at = Some(Instant::now() + RECLAIM_GRACE);
            }
            _ = watchdog.tick() => {
                if activity.is_stalled_for(limits.write_timeout) {
                    tracing::debug!(%peer, "a response made no progress within server.write_timeout");
                    break Ok(());
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::response::Response;
    use axum::routing::{get, post};
    use mcr_http::FileBody;
    use tokio::net::TcpListener;

    use super::*;

    /// A router whose one GET answers with a streamed body *and* a file
    /// region holding other bytes of the same length, so the client sees
    /// which of the two went out.
    fn app(file: Arc<std::fs::File>) -> Router {
        Router::new()
            .route(
                "/blob",
                get(move || {
                    let file = Arc::clone(&file);
                    async move {
                        let mut resp = Response::new(Body::from("streamed"));
                        resp.extensions_mut().insert(FileBody {
                            file,
                            offset: 2,
                            len: 8,
                        });
                        resp
                    }
                }),
            )
            .route("/upload", post(|| async { "started" }))
    }

    async fn read_response(stream: &mut TcpStream, body_len: usize) -> String {
        let mut got = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                if got.len() >= end + 4 + body_len {
                    return String::from_utf8_lossy(&got[end + 4..]).into_owned();
                }
            }
        }
    }

    #[tokio::test]
    async fn claimed_gets_send_the_file_and_hyper_streams_after_a_hand_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"..from file..").unwrap();
        let serving = Serving {
            app: app(Arc::new(std::fs::File::open(&path).unwrap())),
            builder: auto::Builder::new(TokioExecutor::new()),
            limits: ConnLimits::default(),
            shutdown: CancellationToken::new(),
            reclaim: Arc::new(Notify::new()),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn({
            let serving = serving.clone();
            async move {
                let (stream, peer) = listener.accept().await.unwrap();
                serve_plain(stream, peer, serving).await;
            }
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /blob HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut client, 8).await, "from fil");
        client
            .write_all(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut client, 7).await, "started");
        client
            .write_all(b"GET /blob HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut client, 8).await, "streamed");
        drop(client);
        server.await.unwrap();
    }
}
