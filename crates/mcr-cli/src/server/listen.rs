//! Accepting connections, plain or TLS 1.3, and draining them on shutdown.
//!
//! Each connection is a task of its own ([`super::conn`] serves it, under
//! the [`ConnLimits`]); at most `max_connections` are open at once. A
//! client that arrives while every slot is taken makes the connections
//! with no request in flight close (kept-alive ones a client holds
//! without using), so idle connections cannot keep new clients out; past
//! the cap with every connection busy, it waits. Shutdown stops accepting,
//! tells every connection to finish what it is answering and close, and
//! waits for them up to the drain time.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn::{self, Serving};

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes a request head (request line and header fields) may take:
/// 64 KiB, well above the 16 KiB a token may be, and a sixth of hyper's
/// default (about 400 KiB), which would let `max_connections` clients pin
/// 400 MB of header buffers. Beyond it the answer is 431. On HTTP/1.1 it
/// is also the most hyper reads ahead into one buffer, so a body arrives
/// in pieces of at most this size; on HTTP/2 it bounds a request's decoded
/// header list.
pub const MAX_HEAD_BYTES: usize = 64 << 10;

/// How often a client waiting for a slot asks idle connections again to
/// close: a connection busy at one call may have fallen idle by the next.
const RECLAIM_EVERY: Duration = Duration::from_millis(100);

/// Least time between two warnings that the connection cap is reached, so
/// a flood does not flood the log too.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// A TLS acceptor from PEM files, refusing anything older than TLS 1.3.
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read server.tls_cert {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "server.tls_cert {} is not a PEM certificate chain",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!("server.tls_cert {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("server.tls_key {} is not a PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 is not available")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not fit together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// File descriptors kept for everything but connections: the database,
/// blob files being read and written, the listeners.
const FD_RESERVE: libc::rlim_t = 256;
/// Highest open-file limit asked for (Linux's default `nr_open`).
const FD_CEILING: libc::rlim_t = 1 << 20;

/// Raises this process's open-file limit as far as it may (as Go programs
/// do), then checks that `connections` connections fit under it with
/// room for files, so the connection cap, not the kernel, is what refuses
/// a flood.
pub fn ensure_fd_room(connections: usize) -> anyhow::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is handed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot read the open-file limit");
    }
    let wanted = limit.rlim_max.min(FD_CEILING);
    if limit.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is handed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = wanted;
        }
    }
    let need = libc::rlim_t::try_from(connections)
        .unwrap_or(libc::rlim_t::MAX)
        .saturating_add(FD_RESERVE);
    if limit.rlim_cur < need {
        anyhow::bail!(
            "server.max_connections allows {connections} connections, which need {need} open files, \
             but this process may open only {}; raise its limit (LimitNOFILE= in systemd, ulimit -n) \
             or lower server.max_connections",
            limit.rlim_cur
        );
    }
    Ok(())
}

/// Limits every connection of a listener lives under (`[server]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLimits {
    /// How long an HTTP/1.1 request's head may take to arrive in full,
    /// counted from its first byte (the first request's from the
    /// connection's start, so a client that connects and sends nothing is
    /// closed after it too); also how long a request body may go without
    /// a byte.
    pub read_timeout: Duration,
    /// How long a response may wait on a client that does not read it.
    pub write_timeout: Duration,
    /// How long a connection may stay open with no request in flight
    /// after its first request.
    pub idle_timeout: Duration,
    /// Most connections open at once. A client arriving past it makes
    /// the connections with no request in flight close; while every one
    /// is busy it waits (one accepted, the rest in the kernel's accept
    /// queue) until one closes.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    /// The `[server]` defaults.
    fn default() -> ConnLimits {
        ConnLimits {
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            max_connections: 1024,
        }
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves,
/// then waits up to `drain` for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: &ConnLimits,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> anyhow::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Off, with its default of 30 s too: hyper starts it when it
        // begins reading a head, which on a kept-alive connection is as
        // soon as the last response went, so it would close idle
        // connections after read_timeout. `conn::limits` times a head
        // from its first byte instead.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    let serving = Serving {
        app,
        builder,
        limits: limits.clone(),
        shutdown: CancellationToken::new(),
        reclaim: Arc::new(Notify::new()),
    };
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "every connection slot is taken: closing idle connections, \
                         new clients wait while all are busy (raise server.max_connections \
                         if this is normal load)"
                    );
                }
                // One accepted client waits here, the rest in the kernel's
                // accept queue; until a slot frees, idle connections are
                // asked again and again to make room.
                let waited = tokio::select! {
                    slot = reclaim_slot(&slots, &serving.reclaim) => slot,
                    () = &mut shutdown => break,
                };
                waited.context("the connection slots closed")?
            }
        };
        let _ = stream.set_nodelay(true);
        let serving = serving.clone();
        match &tls {
            None => {
                connections.spawn(async move {
                    conn::serve_plain(stream, peer, serving).await;
                    drop(slot);
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let began = Instant::now();
                    let fd = stream.as_raw_fd();
                    let accepting = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    tokio::pin!(accepting);
                    // A handshake that has not finished within the grace
                    // makes room for a waiting client, as an idle
                    // connection does.
                    let handshake = loop {
                        tokio::select! {
                            done = &mut accepting => break done,
                            () = serving.shutdown.cancelled() => return,
                            () = serving.reclaim.notified() => {
                                if began.elapsed() >= conn::RECLAIM_GRACE {
                                    tracing::debug!(%peer, "TLS handshake dropped to make room for a new client");
                                    return;
                                }
                            }
                        }
                    };
                    match handshake {
                        Ok(Ok(tls)) => conn::serve_hyper(tls, fd, peer, serving).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    serving.shutdown.cancel();
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown timeout passed with requests still in flight");
    }
    Ok(())
}

/// Waits for a free slot, telling the connections with nothing in flight
/// to close every [`RECLAIM_EVERY`] until one does.
async fn reclaim_slot(
    slots: &Arc<Semaphore>,
    reclaim: &Notify,
) -> Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError> {
    loop {
        reclaim.notify_waiters();
        if let Ok(slot) =
            tokio::time::timeout(RECLAIM_EVERY, Arc::clone(slots).acquire_owned()).await
        {
            return slot;
        }
    }
}
