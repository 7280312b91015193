//! Serving the routes on a listener, plain or TLS 1.3.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mcr_core::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::Server;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection (after its TLS handshake) may take to send its
/// first bytes, the HTTP/2 preface: until then no keepalive ping can
/// tell a silent client from a slow one, so without it a client that
/// connects and says nothing would hold a slot for ever.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections ready for the server that it has not taken yet.
const ACCEPT_BACKLOG: usize = 64;
/// How often an HTTP/2 ping checks a quiet peer is still there, and how
/// long it has to answer: a vanished client frees its slot.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long in-flight calls of a connection past its age may finish.
const AGE_GRACE: Duration = Duration::from_secs(30);

/// What the gRPC listener's connections may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeLimits {
    /// Most connections open at once; further clients wait in the
    /// kernel's accept queue until one closes.
    pub max_connections: usize,
    /// A connection older than this is asked to go away (HTTP/2 GOAWAY,
    /// calls in flight may finish); clients reconnect. However quiet, no
    /// client holds a slot for longer.
    pub max_connection_age: Duration,
}

impl Default for ServeLimits {
    fn default() -> ServeLimits {
        ServeLimits {
            max_connections: 1024,
            max_connection_age: Duration::from_secs(3600),
        }
    }
}

/// Serves [`crate::router`] on `listener` under `limits` until `shutdown`
/// resolves, then lets in-flight calls finish; work outliving a call goes
/// to `tasks`. With `tls` (the REST
/// listener's acceptor: same certificate, TLS 1.3 only) every connection
/// is TLS; handshakes run concurrently, so a slow client cannot hold up
/// the others.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    registry: Arc<Registry>,
    limits: ServeLimits,
    tasks: TaskTracker,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let server = Server::builder()
        .max_connection_age(limits.max_connection_age)
        .max_connection_age_grace(AGE_GRACE)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_routes(crate::router(registry, tasks));
    let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let accept = tokio::spawn(accept(listener, tls, slots, tx));
    let incoming = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|conn| (Ok::<_, io::Error>(conn), rx))
    });
    let result = server
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    accept.abort();
    result
}

/// Accepts connections while a slot is free and hands each, once its
/// handshake (if any) is done, to the server.
async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    slots: Arc<Semaphore>,
    tx: mpsc::Sender<Conn>,
) {
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!(error = %e, "grpc accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = tls.clone() else {
            let _ = tx.send(Conn::new(Stream::Plain(stream), slot)).await;
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Conn::new(Stream::Tls(Box::new(tls)), slot)).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, %peer, "grpc TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "grpc TLS handshake timed out"),
            }
        });
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A server-side connection, plain or TLS, that tells tonic its peer and
/// holds one of the listener's slots until it closes.
pub struct Conn {
    stream: Stream,
    _slot: OwnedSemaphorePermit,
    /// Until the first bytes arrive: when the connection is dropped if
    /// none have ([`PREFACE_TIMEOUT`]).
    preface_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Conn {
    fn new(stream: Stream, slot: OwnedSemaphorePermit) -> Conn {
        Conn {
            stream,
            _slot: slot,
            preface_deadline: Some(Box::pin(tokio::time::sleep(PREFACE_TIMEOUT))),
        }
    }

    fn io(self: Pin<&mut Self>) -> Pin<&mut dyn AsyncReadWrite> {
        let io: &mut dyn AsyncReadWrite = match &mut self.get_mut().stream {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.as_mut(),
        };
        Pin::new(io)
    }
}

/// Both halves of a stream, as one trait object.
trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncReadWrite for T {}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match &self.stream {
            Stream::Plain(s) => s.connect_info(),
            Stream::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(deadline) = this.preface_deadline.as_mut() else {
            return Pin::new(this).io().poll_read(cx, buf);
        };
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface within the time allowed",
            )));
        }
        let filled = buf.filled().len();
        let read = Pin::new(&mut *this).io().poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > filled {
            this.preface_deadline = None;
        }
        read
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}
