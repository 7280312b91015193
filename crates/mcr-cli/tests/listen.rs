//! What one client can hold of the server: connections that stall while
//! sending headers, that sit idle, that stop reading their response, and
//! more connections than the cap (issue 16, case 3).
//!
//! `listen::serve` runs on a real loopback socket with a small app, under
//! tokio's paused clock: when nothing is left to do but wait, time jumps
//! to the next timer, so a limit of minutes is tested in milliseconds and
//! a missing limit shows as the test's own guard timer firing first —
//! never a race against the wall clock.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use mcr_cli::server::listen::{serve, ConnLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Size of `/big`: far more than loopback socket buffers hold.
const BIG: usize = 64 << 20;
/// How long a test waits for something the server must do by itself.
const GUARD: Duration = Duration::from_secs(3600);
/// How long `/long` thinks before answering.
const LONG: Duration = Duration::from_secs(1000);

/// `/small` answers "ok"; `/big` streams [`BIG`] zero bytes; `/slow`
/// thinks for 30 s before answering "ok", `/long` for [`LONG`].
fn app() -> Router {
    let chunk = Bytes::from(vec![0u8; 1 << 20]);
    Router::new()
        .route("/small", get(|| async { "ok" }))
        .route(
            "/big",
            get(move || {
                let chunk = chunk.clone();
                let chunks =
                    (0..BIG / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
                async move { Body::from_stream(futures_util::stream::iter(chunks)) }
            }),
        )
        .route(
            "/long",
            get(|| async {
                tokio::time::sleep(LONG).await;
                "ok"
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "ok"
            }),
        )
}

/// The server on a free loopback port; it stops when the sender drops.
async fn start(limits: ConnLimits) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        serve(
            listener,
            None,
            app(),
            &limits,
            shutdown,
            Duration::from_secs(1),
        )
        .await
        .expect("the server runs");
    });
    (addr, stop)
}

/// Limits that stay out of the way except where a test lowers one.
fn lenient() -> ConnLimits {
    ConnLimits {
        read_timeout: GUARD * 10,
        write_timeout: GUARD * 10,
        idle_timeout: GUARD * 10,
        max_connections: 64,
    }
}

/// Reads until the server closes the connection (or resets it); how many
/// bytes came, or `None` if it was still open when the guard fired.
async fn until_closed(stream: &mut TcpStream) -> Option<usize> {
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 20];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    };
    tokio::time::timeout(GUARD, read_all).await.ok()
}

/// Sends `GET path` and reads one response with a `Content-Length`; its
/// status line and body.
async fn get_once(stream: &mut TcpStream, path: &str) -> (String, Vec<u8>) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = stream.read(&mut byte).await.expect("read the head");
        assert_eq!(
            n,
            1,
            "closed inside the response head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("a text head");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().expect("a length"))
        })
        .expect("a Content-Length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.expect("read the body");
    (head.lines().next().unwrap_or_default().to_string(), body)
}

#[tokio::test(start_paused = true)]
async fn headers_that_stall_are_cut_off_after_the_read_timeout() {
    let (addr, _stop) = start(ConnLimits {
        read_timeout: Duration::from_secs(20),
        ..lenient()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let begun = Instant::now();
    stream
        .write_all(b"GET /small HTTP/1.1\r\nHost: test\r\n")
        .await
        .expect("half the headers");
    assert!(
        until_closed(&mut stream).await.is_some(),
        "the connection is still open after {GUARD:?}"
    );
    let held = begun.elapsed();
    assert!(
        held >= Duration::from_secs(20),
        "closed early, after {held:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_with_nothing_in_flight_is_closed_after_the_idle_timeout() {
    let (addr, _stop) = start(ConnLimits {
        idle_timeout: Duration::from_secs(10),
        ..lenient()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let (status, body) = get_once(&mut stream, "/small").await;
    assert_eq!(
        (status.as_str(), body.as_slice()),
        ("HTTP/1.1 200 OK", &b"ok"[..])
    );
    let idle_from = Instant::now();
    assert_eq!(
        until_closed(&mut stream).await,
        Some(0),
        "closed with nothing more sent"
    );
    assert!(idle_from.elapsed() >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn an_http2_connection_that_only_holds_its_slot_is_closed() {
    let (addr, _stop) = start(ConnLimits {
        idle_timeout: Duration::from_secs(10),
        ..lenient()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The HTTP/2 preface and an empty SETTINGS frame: a live connection
    // that asks for nothing.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface");
    assert!(
        until_closed(&mut stream).await.is_some(),
        "an idle HTTP/2 connection is still open after {GUARD:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn requests_in_flight_keep_a_connection_from_being_idle() {
    let (addr, _stop) = start(ConnLimits {
        idle_timeout: Duration::from_secs(10),
        ..lenient()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // A handler that thinks for longer than the idle timeout...
    let (status, body) = get_once(&mut stream, "/slow").await;
    assert_eq!(
        (status.as_str(), body.as_slice()),
        ("HTTP/1.1 200 OK", &b"ok"[..])
    );
    // ...and a download read slowly, for far longer than it.
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match stream.read(&mut buf).await.expect("the download goes on") {
            0 => break,
            n => total += n,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(total > BIG, "the whole body came: {total} bytes");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_its_response_is_dropped_after_the_write_timeout() {
    let (addr, _stop) = start(ConnLimits {
        write_timeout: Duration::from_secs(30),
        ..lenient()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("send");
    // Read nothing while the server's writes stall.
    tokio::time::sleep(GUARD).await;
    let got = until_closed(&mut stream)
        .await
        .expect("closed once drained");
    assert!(
        got < BIG,
        "the server gave up mid-body ({got} of {BIG} bytes)"
    );
}

#[tokio::test(start_paused = true)]
async fn connections_past_the_cap_wait_while_every_one_is_busy() {
    let (addr, _stop) = start(ConnLimits {
        max_connections: 2,
        ..lenient()
    })
    .await;
    let begun = Instant::now();
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        busy.push(tokio::spawn(async move {
            get_once(&mut stream, "/long").await;
            stream
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut third = TcpStream::connect(addr)
        .await
        .expect("the kernel queues it");
    let waiting = tokio::spawn(async move { get_once(&mut third, "/small").await });
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served past a cap of 2 with both busy"
    );
    let (status, body) = tokio::time::timeout(GUARD, waiting)
        .await
        .expect("served once a connection fell idle")
        .expect("the client task");
    assert_eq!(
        (status.as_str(), body.as_slice()),
        ("HTTP/1.1 200 OK", &b"ok"[..])
    );
    assert!(
        begun.elapsed() >= LONG,
        "served before a busy connection finished"
    );
    for stream in busy {
        stream.await.expect("the busy client got its answer");
    }
}

#[tokio::test(start_paused = true)]
async fn idle_connections_make_room_for_a_new_client() {
    let (addr, _stop) = start(ConnLimits {
        max_connections: 3,
        ..lenient()
    })
    .await;
    // One client holds every slot with kept-alive connections it does not
    // use: one after a GET (answered by mcrsrv itself), one after a POST
    // (handed to hyper), one that never sent anything. The idle timeout,
    // far away, would free them only after the guard.
    let mut used = TcpStream::connect(addr).await.expect("connect");
    let (status, _) = get_once(&mut used, "/small").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut handed = TcpStream::connect(addr).await.expect("connect");
    handed
        .write_all(b"POST /small HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("send");
    let mut head = [0u8; 12];
    handed.read_exact(&mut head).await.expect("an answer");
    assert_eq!(&head, b"HTTP/1.1 405");
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_secs(1)).await;
    newcomer_is_served(addr).await;
    for (name, stream) in [
        ("used", &mut used),
        ("handed", &mut handed),
        ("silent", &mut silent),
    ] {
        assert!(
            until_closed(stream).await.is_some(),
            "the idle {name} connection is still open"
        );
    }
}

/// The HTTP/2 connection preface and a SETTINGS frame: empty, or setting
/// the initial stream window to 0 (the client will take no body bytes).
fn h2_preface(zero_window: bool) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    if zero_window {
        out.extend_from_slice(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00");
    } else {
        out.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    }
    out
}

/// A HEADERS frame on stream 1 asking `GET /small` (HPACK: `:method GET`
/// and `:scheme http` from the static table, `:path` as a literal), the
/// request's end.
const H2_GET_SMALL: &[u8] = b"\x00\x00\x0a\x01\x05\x00\x00\x00\x01\x82\x86\x44\x06/small";

/// A newcomer at a full server: served within 5 s (the grace and more).
async fn newcomer_is_served(addr: SocketAddr) {
    let mut newcomer = TcpStream::connect(addr).await.expect("connect");
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(5), get_once(&mut newcomer, "/small"))
            .await
            .expect("the newcomer is served within the grace");
    assert_eq!(
        (status.as_str(), body.as_slice()),
        ("HTTP/1.1 200 OK", &b"ok"[..])
    );
}

#[tokio::test(start_paused = true)]
async fn a_stalled_head_or_an_http2_client_that_ignores_goaway_makes_room_too() {
    for holder in ["partial head", "silent http2"] {
        let (addr, _stop) = start(ConnLimits {
            max_connections: 1,
            ..lenient()
        })
        .await;
        let mut held = TcpStream::connect(addr).await.expect("connect");
        match holder {
            "partial head" => held.write_all(b"GET /sm").await.expect("a byte or two"),
            _ => held.write_all(&h2_preface(false)).await.expect("preface"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        newcomer_is_served(addr).await;
        assert!(
            until_closed(&mut held).await.is_some(),
            "the {holder} connection is still open"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_just_accepted_is_not_cut_off_for_a_newcomer() {
    let (addr, _stop) = start(ConnLimits {
        max_connections: 2,
        ..lenient()
    })
    .await;
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    let (status, _) = get_once(&mut idle, "/small").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Accepted, its request not sent yet when the newcomer arrives.
    let mut fresh = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(300)).await;
    newcomer_is_served(addr).await;
    let (status, body) = get_once(&mut fresh, "/small").await;
    assert_eq!(
        (status.as_str(), body.as_slice()),
        ("HTTP/1.1 200 OK", &b"ok"[..]),
        "the fresh connection was served"
    );
    assert!(
        until_closed(&mut idle).await.is_some(),
        "the idle one closed"
    );
}

#[tokio::test(start_paused = true)]
async fn an_http2_response_the_client_gives_no_window_is_dropped_after_the_write_timeout() {
    let (addr, _stop) = start(ConnLimits {
        write_timeout: Duration::from_secs(30),
        ..lenient()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut hello = h2_preface(true);
    hello.extend_from_slice(H2_GET_SMALL);
    stream.write_all(&hello).await.expect("a request");
    let begun = Instant::now();
    assert!(
        until_closed(&mut stream).await.is_some(),
        "a response that can never be sent holds its connection after {GUARD:?}"
    );
    assert!(
        begun.elapsed() >= Duration::from_secs(30),
        "closed before the write timeout: {:?}",
        begun.elapsed()
    );
}

/// A WINDOW_UPDATE frame granting `increment` bytes on `stream` (0: the
/// connection).
fn h2_window_update(stream: u32, increment: u32) -> Vec<u8> {
    let mut out = b"\x00\x00\x04\x08\x00".to_vec();
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(&increment.to_be_bytes());
    out
}

/// Reads whatever the server sent within a moment; `None` once it closed.
async fn drain(stream: &mut TcpStream) -> Option<usize> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Err(_) => return Some(total),
            Ok(Ok(0) | Err(_)) => return None,
            Ok(Ok(n)) => total += n,
        }
    }
}

/// Second review of the connection-slot fixes, N1: an HTTP/2 download
/// read slowly (16 KiB per 20 s, a write timeout of 30 s) goes on, though
/// one chunk of the body takes far longer than the timeout to go out.
#[tokio::test(start_paused = true)]
async fn a_slow_http2_download_that_moves_is_not_cut() {
    let (addr, _stop) = start(ConnLimits {
        write_timeout: Duration::from_secs(30),
        ..lenient()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS: a stream window of 16 KiB.
    hello.extend_from_slice(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x04\x00\x00\x40\x00");
    // HEADERS on stream 1: GET /big.
    hello.extend_from_slice(b"\x00\x00\x08\x01\x05\x00\x00\x00\x01\x82\x86\x44\x04/big");
    stream.write_all(&hello).await.expect("a request");
    let mut received = drain(&mut stream).await.expect("open");
    for grant in 0..10 {
        tokio::time::sleep(Duration::from_secs(20)).await;
        let mut more = h2_window_update(1, 16 << 10);
        more.extend_from_slice(&h2_window_update(0, 16 << 10));
        stream.write_all(&more).await.expect("still open");
        let got = drain(&mut stream)
            .await
            .unwrap_or_else(|| panic!("cut after {received} bytes, grant {grant}"));
        assert!(got > 0, "nothing came for grant {grant}");
        received += got;
    }
}

/// Second review, N2: new responses on the same HTTP/2 connection do not
/// keep one the client starves alive: each response has its own clock.
#[tokio::test(start_paused = true)]
async fn other_streams_do_not_cover_a_starved_one() {
    let (addr, _stop) = start(ConnLimits {
        write_timeout: Duration::from_secs(30),
        ..lenient()
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut hello = h2_preface(true);
    hello.extend_from_slice(H2_GET_SMALL);
    stream.write_all(&hello).await.expect("a request");
    let begun = Instant::now();
    let mut closed = false;
    for n in 1u32..20 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        // Another GET /small on stream 2n+1, which starts a clock of its own.
        let mut headers = b"\x00\x00\x0a\x01\x05".to_vec();
        headers.extend_from_slice(&(2 * n + 1).to_be_bytes());
        headers.extend_from_slice(b"\x82\x86\x44\x06/small");
        if stream.write_all(&headers).await.is_err() || drain(&mut stream).await.is_none() {
            closed = true;
            break;
        }
    }
    assert!(closed, "the starved stream's connection is still open");
    assert!(
        begun.elapsed() < Duration::from_secs(60),
        "closed only after {:?}",
        begun.elapsed()
    );
}
