//! What one connection may hold: how long it may sit idle, and how long a
//! response may wait on a client that does not read it.
//!
//! A client that opens connections and sends nothing, or reads nothing,
//! would otherwise keep them — and their file descriptors — for ever
//! (issue 16, case 3). This module bounds them for connections hyper
//! serves ([`ConnIo`]) and for the writes of responses mcrsrv frames
//! itself ([`writable`], [`write_all`], [`write_all_after`]):
//!
//! - **idle**: a connection with no request in flight for `idle_timeout`
//!   is closed (before its first request, for `read_timeout` if shorter).
//!   Requests count as in flight from the moment the service is called
//!   until their response body is sent or dropped ([`Activity::begin`],
//!   [`Tracked`]), so a long download is never idle. Bytes received do
//!   not count as activity: an HTTP/2 client that only pings is still
//!   idle.
//! - **head**: on HTTP/1.1, a request head must arrive in full within
//!   `read_timeout` of the first bytes received after the connection fell
//!   idle. hyper's own header timer cannot do this: it starts when hyper
//!   begins reading a head, which on a kept-alive connection is as soon as
//!   the last response went, so it closed idle connections after
//!   `read_timeout` whatever `idle_timeout` said. A head hyper already
//!   holds in part when the connection falls idle (pipelined behind the
//!   last request) is bounded by the idle clock only.
//! - **write stall**: a write (or flush) the socket has not taken for
//!   `write_timeout` fails the connection; any progress starts the clock
//!   again, so a slow reader is fine and only one that stopped is not.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::Version;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::body::{Frame, SizeHint};
use hyper::rt::{Read, ReadBufCursor, Write};
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::server::listen::ConnLimits;

/// What a connection's requests are doing, shared by the service that
/// runs them and the connection's I/O.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Whether the connection speaks HTTP/2, whose requests have no head
    /// to time (hyper's h2 bounds its frames); known from its first
    /// request.
    http2: AtomicBool,
    /// Counts the moments the connection fell idle, so the I/O can tell a
    /// new idle spell from the one it is already timing.
    idle_spells: AtomicU64,
    /// The connection's reader, woken when it falls idle so it starts the
    /// idle clock even while parked on a socket with nothing to read.
    reader: AtomicWaker,
    /// When the connection began: the times below count from it.
    began: Instant,
    /// When the connection last fell idle (its start at first), in
    /// milliseconds from `began`.
    idle_since: AtomicU64,
    /// Each response being sent (by a number of its own): when its body
    /// last handed out a piece, in milliseconds from `began`. Each has
    /// its own clock, so one stream that moves cannot cover another that
    /// a client starves.
    responses: Mutex<HashMap<u64, u64>>,
    /// The number the next response gets.
    next_response: AtomicU64,
}

impl Activity {
    /// The activity of a connection starting now.
    pub fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            http2: AtomicBool::new(false),
            idle_spells: AtomicU64::new(0),
            reader: AtomicWaker::new(),
            began: Instant::now(),
            idle_since: AtomicU64::new(0),
            responses: Mutex::new(HashMap::new()),
            next_response: AtomicU64::new(0),
        }
    }

    /// Counts a request of `version` as in flight until the guard is
    /// dropped.
    pub fn begin(self: &Arc<Self>, version: Version) -> InFlight {
        if version == Version::HTTP_2 {
            self.http2.store(true, Ordering::Release);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// Whether no request has been in flight for `grace` at least.
    pub fn is_idle_for(&self, grace: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.since(&self.idle_since) >= grace
    }

    /// Whether an HTTP/2 response being sent has handed out nothing for
    /// `limit`: a client that gives a stream no window is never written
    /// to, so the write-stall clock cannot see it.
    pub fn is_stalled_for(&self, limit: Duration) -> bool {
        let now = self.now();
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        self.responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|&at| now.saturating_sub(at) >= limit)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn since(&self, at: &AtomicU64) -> Duration {
        Duration::from_millis(self.now().saturating_sub(at.load(Ordering::Acquire)))
    }

    /// Records that response `id` handed out a piece (or began) now.
    fn progressed(&self, id: u64) {
        let now = self.now();
        self.responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, now);
    }
}

/// A request in flight on its connection.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_since.store(self.0.now(), Ordering::Release);
            self.0.idle_spells.fetch_add(1, Ordering::AcqRel);
            self.0.reader.wake();
        }
    }
}

/// Most bytes an HTTP/2 response body hands hyper at once. hyper asks for
/// the next piece only when the client's window has taken the last, so
/// the pieces are what the stall clock sees move: a client reading at
/// least this much per `write_timeout` is slow, not stalled (the store
/// reads blobs in pieces of up to 512 KiB).
const H2_PIECE: usize = 16 << 10;

/// A response body that keeps its request in flight until it has been
/// sent in full or dropped, and tells the connection when it progresses.
pub struct Tracked {
    body: Body,
    in_flight: InFlight,
    /// This response's number in `Activity::responses`.
    id: u64,
    /// Whether it goes out on HTTP/2, in pieces of [`H2_PIECE`].
    http2: bool,
    /// What is left of a frame larger than a piece.
    rest: Bytes,
}

impl Tracked {
    pub fn new(body: Body, in_flight: InFlight) -> Tracked {
        let activity = &in_flight.0;
        let id = activity.next_response.fetch_add(1, Ordering::AcqRel);
        let http2 = activity.http2.load(Ordering::Acquire);
        // Only HTTP/2 responses go on a clock of their own: a stream the
        // client gives no window is never written, so nothing else sees
        // it. An HTTP/1.1 body waits on the socket, whose write-stall
        // clock (with the kernel's queue) judges the client; a body clock
        // there would cut a slow reader whose megabytes sit in the
        // kernel's buffer (third review).
        if http2 {
            activity.progressed(id);
        }
        Tracked {
            body,
            in_flight,
            id,
            http2,
            rest: Bytes::new(),
        }
    }

    /// The next piece of `data` to hand out, keeping the rest.
    fn piece(&mut self, mut data: Bytes) -> Bytes {
        if self.http2 && data.len() > H2_PIECE {
            self.rest = data.split_off(H2_PIECE);
        }
        data
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.in_flight
            .0
            .responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let frame = if !this.rest.is_empty() {
            let rest = std::mem::take(&mut this.rest);
            Poll::Ready(Some(Ok(Frame::data(this.piece(rest)))))
        } else {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(Frame::data(this.piece(data))))),
                    Err(frame) => Poll::Ready(Some(Ok(frame))),
                },
                other => other,
            }
        };
        if frame.is_ready() && this.http2 {
            this.in_flight.0.progressed(this.id);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.body.size_hint();
        let rest = self.rest.len() as u64;
        hint.set_lower(hint.lower() + rest);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

pin_project! {
    /// A connection's I/O under the idle and write-stall limits.
    pub struct ConnIo<T> {
        #[pin]
        io: T,
        activity: Arc<Activity>,
        idle_timeout: Duration,
        #[pin]
        idle: Sleep,
        // The idle spell `idle` is timing, if any.
        timing: Option<u64>,
        read_timeout: Duration,
        #[pin]
        head: Sleep,
        // The idle spell whose request head `head` is timing, if any.
        head_timing: Option<u64>,
        write_timeout: Duration,
        #[pin]
        stall: Sleep,
        // Whether `stall` is timing a write the socket has not taken.
        stalled: bool,
        // The socket, to ask how much the kernel still holds for the peer.
        fd: RawFd,
        // What it held when `stall` was last set.
        held: Option<i64>,
    }
}

impl<T: Read + Write> ConnIo<T> {
    /// `io` over the socket `fd`, which must outlive it.
    pub fn new(io: T, fd: RawFd, activity: Arc<Activity>, limits: &ConnLimits) -> ConnIo<T> {
        ConnIo {
            io,
            activity,
            idle_timeout: limits.idle_timeout,
            idle: tokio::time::sleep(limits.idle_timeout),
            timing: None,
            read_timeout: limits.read_timeout,
            head: tokio::time::sleep(limits.read_timeout),
            head_timing: None,
            write_timeout: limits.write_timeout,
            stall: tokio::time::sleep(limits.write_timeout),
            stalled: false,
            fd,
            held: None,
        }
    }
}

impl<T: Read + Write> Read for ConnIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let mut this = self.project();
        this.activity.reader.register(cx.waker());
        if this.activity.in_flight.load(Ordering::Acquire) != 0 {
            return this.io.poll_read(cx, buf);
        }
        let spell = this.activity.idle_spells.load(Ordering::Acquire);
        if *this.timing != Some(spell) {
            *this.timing = Some(spell);
            // Spell 0 is the wait for the first request, held to
            // read_timeout as a head is.
            let wait = if spell == 0 {
                (*this.idle_timeout).min(*this.read_timeout)
            } else {
                *this.idle_timeout
            };
            this.idle.as_mut().reset(Instant::now() + wait);
        }
        if this.idle.poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for longer than server.idle_timeout",
            )));
        }
        if *this.head_timing == Some(spell) && this.head.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received within server.read_timeout",
            )));
        }
        let read = this.io.poll_read(cx, buf);
        // Bytes while idle begin a head (or end the connection, which
        // ends the wait anyway).
        if read.is_ready()
            && *this.head_timing != Some(spell)
            && !this.activity.http2.load(Ordering::Acquire)
        {
            *this.head_timing = Some(spell);
            this.head
                .as_mut()
                .reset(Instant::now() + *this.read_timeout);
        }
        read
    }
}

impl<T: Read + Write> ConnIo<T> {
    /// Runs one write-side operation under the stall clock: started when
    /// the socket first refuses, stopped by any progress.
    fn write_op<R>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        let mut this = self.project();
        match op(this.io, cx) {
            Poll::Ready(r) => {
                *this.stalled = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !*this.stalled {
                    *this.stalled = true;
                    *this.held = queued(*this.fd);
                    let deadline = Instant::now() + *this.write_timeout;
                    this.stall.as_mut().reset(deadline);
                }
                while this.stall.as_mut().poll(cx).is_ready() {
                    let now = queued(*this.fd);
                    if !drained(*this.held, now) {
                        return Poll::Ready(Err(write_stalled()));
                    }
                    *this.held = now;
                    let deadline = Instant::now() + *this.write_timeout;
                    this.stall.as_mut().reset(deadline);
                }
                Poll::Pending
            }
        }
    }
}

impl<T: Read + Write> Write for ConnIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_op(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write_op(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write_op(cx, |io, cx| io.poll_shutdown(cx))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write_op(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }
}

/// The error of a write the client has not taken for `write_timeout`.
fn write_stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client read nothing for longer than server.write_timeout",
    )
}

/// Bytes the kernel still holds for the peer of `fd` (sent and not yet
/// acknowledged, or not sent yet: `SIOCOUTQ`, tcp(7)); `None` if it
/// cannot tell.
fn queued(fd: RawFd) -> Option<i64> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int into `n`; a bad fd only
    // makes it fail.
    (unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) } == 0).then_some(i64::from(n))
}

/// Whether the peer took bytes between two [`queued`] readings.
///
/// Why: a socket is reported writable again only once about a third of
/// its send buffer (up to 4 MiB) has drained, so a client that reads
/// slowly but steadily could go a whole `write_timeout` without the
/// socket taking a byte; the kernel's queue going down is its progress.
fn drained(before: Option<i64>, now: Option<i64>) -> bool {
    matches!((before, now), (Some(b), Some(n)) if n < b)
}

/// Runs `op`, a write to `stream` or a wait for it to take bytes,
/// failing when the client took nothing for `stall` (see [`drained`]).
async fn unless_stalled<T>(
    stream: &TcpStream,
    stall: Duration,
    op: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let fd = stream.as_raw_fd();
    tokio::pin!(op);
    let mut held = queued(fd);
    loop {
        match tokio::time::timeout(stall, &mut op).await {
            Ok(done) => return done,
            Err(_) => {
                let now = queued(fd);
                if !drained(held, now) {
                    return Err(write_stalled());
                }
                held = now;
            }
        }
    }
}

/// Waits until `stream` takes bytes, failing when the client took
/// nothing for `stall`.
pub(super) async fn writable(stream: &TcpStream, stall: Duration) -> io::Result<()> {
    unless_stalled(stream, stall, stream.writable()).await
}

/// Writes all of `first` and then all of `then` with vectored writes
/// (one `writev` when the socket takes both), failing when the socket
/// takes nothing for `stall`; any progress starts the clock again.
/// `then` is sent from where it is, not copied behind `first`.
pub(super) async fn write_all_after(
    stream: &mut TcpStream,
    first: &[u8],
    then: &[u8],
    stall: Duration,
) -> io::Result<()> {
    let mut slices = [IoSlice::new(first), IoSlice::new(then)];
    let mut bufs = &mut slices[..];
    // Drops empty slices up front; each advance drops those written.
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let n = unless_stalled(stream, stall, async {
            loop {
                stream.writable().await?;
                match stream.try_write_vectored(bufs) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    written => return written,
                }
            }
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// Writes all of `buf`, failing as [`write_all_after`] does.
pub(super) async fn write_all(
    stream: &mut TcpStream,
    buf: &[u8],
    stall: Duration,
) -> io::Result<()> {
    write_all_after(stream, buf, &[], stall).await
}
