//! `mcrsrv`'s own connection handling, over real sockets: plain HTTP/1.1
//! GET and HEAD requests answered with `sendfile`, keep-alive, pipelining,
//! `Connection: close`, the hand-off to hyper of anything else, and the
//! drain on shutdown. Every answer is compared with what the router gives
//! for the same request in process (no socket, no zero-copy): same status,
//! same headers but `Date`, same bytes.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use mcr_cli::server::{dev, listen, run};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tower::ServiceExt;

/// A registry served by `listen::serve` on a free loopback port.
struct Server {
    addr: SocketAddr,
    router: axum::Router,
    token: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (config, password, _) =
            dev::dev_config(dir.path(), "127.0.0.1:0", &[], std::iter::empty()).unwrap();
        // Nothing here leaves background work (no GC is started).
        let state = run::build(&config, tokio_util::task::TaskTracker::new())
            .await
            .unwrap();
        let (issued, _) = state
            .registry
            .login("admin", &password, None)
            .await
            .unwrap();
        let router = mcr_http::router(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router.clone();
        let done = tokio::spawn(async move {
            listen::serve(
                listener,
                None,
                app,
                &listen::ConnLimits::default(),
                async move {
                    let _ = stopped.await;
                },
                Duration::from_secs(30),
            )
            .await
        });
        Server {
            addr,
            router,
            token: issued.token.expose().to_string(),
            stop: Some(stop),
            done,
            _dir: dir,
        }
    }

    async fn connect(&self) -> Conn {
        Conn {
            stream: TcpStream::connect(self.addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    fn auth(&self) -> String {
        format!("Authorization: Bearer {}\r\n", self.token)
    }

    /// The router's own answer to a bodiless request, in process: what
    /// hyper would have sent.
    async fn in_process(&self, method: &str, target: &str, headers: &[(&str, String)]) -> Reply {
        let mut req = Request::builder().method(method).uri(target);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Uploads `data` to `repo` in one POST + PUT on its own connection;
    /// returns the digest.
    async fn upload(&self, repo: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)));
        let mut c = self.connect().await;
        let r = c
            .call(&format!(
                "POST /v2/{repo}/blobs/uploads/ HTTP/1.1\r\nHost: t\r\n{}Content-Length: 0\r\n\r\n",
                self.auth()
            ))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        let location = r.headers["location"].to_str().unwrap().to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        c.stream
            .write_all(
                format!(
                    "PUT {location}{sep}digest={digest} HTTP/1.1\r\nHost: t\r\n{}Content-Length: {}\r\n\r\n",
                    self.auth(),
                    data.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        c.stream.write_all(data).await.unwrap();
        let r = c.read_reply(false).await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        digest
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.done)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    /// Status and headers as hyper or the router would give them, `Date`
    /// and connection management left out.
    fn assert_same_as(&self, other: &Reply, what: &str) {
        assert_eq!(self.status, other.status, "{what}: status");
        let strip = |h: &HeaderMap| {
            let mut h = h.clone();
            h.remove("date");
            h.remove("connection");
            let mut v: Vec<(String, String)> = h
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            strip(&self.headers),
            strip(&other.headers),
            "{what}: headers"
        );
        assert!(self.body == other.body, "{what}: body differs");
    }
}

/// A client connection that reads responses as HTTP/1.1 framing says.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn call(&mut self, raw: &str) -> Reply {
        self.stream.write_all(raw.as_bytes()).await.unwrap();
        self.read_reply(raw.starts_with("HEAD ")).await
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 64 << 10];
        let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut chunk))
            .await
            .expect("the server answers")
            .unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    async fn read_reply(&mut self, head_request: bool) -> Reply {
        let (status, headers, len) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(len) = resp.parse(&self.buf).unwrap() {
                let mut headers = HeaderMap::new();
                for f in resp.headers.iter() {
                    headers.append(
                        axum::http::HeaderName::from_bytes(f.name.as_bytes()).unwrap(),
                        axum::http::HeaderValue::from_bytes(f.value).unwrap(),
                    );
                }
                break (
                    StatusCode::from_u16(resp.code.unwrap()).unwrap(),
                    headers,
                    len,
                );
            }
            assert!(self.fill().await > 0, "connection closed inside a head");
        };
        self.buf.drain(..len);
        assert!(headers.contains_key("date"), "every response has a Date");
        let mut body = Vec::new();
        if !head_request {
            if let Some(n) = headers.get("content-length") {
                let n: usize = n.to_str().unwrap().parse().unwrap();
                while self.buf.len() < n {
                    assert!(self.fill().await > 0, "connection closed inside a body");
                }
                body = self.buf.drain(..n).collect();
            } else {
                assert_eq!(headers["transfer-encoding"], "chunked");
                loop {
                    let line_end = loop {
                        if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            break i;
                        }
                        assert!(self.fill().await > 0);
                    };
                    let size = usize::from_str_radix(
                        std::str::from_utf8(&self.buf[..line_end]).unwrap(),
                        16,
                    )
                    .unwrap();
                    while self.buf.len() < line_end + 2 + size + 2 {
                        assert!(self.fill().await > 0);
                    }
                    body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                    self.buf.drain(..line_end + 2 + size + 2);
                    if size == 0 {
                        break;
                    }
                }
            }
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Whether the server closed the connection (after what was read).
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill().await == 0
    }
}

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[0] ^ seed)
        .collect()
}

#[tokio::test]
async fn blob_reads_on_one_connection_match_the_router() {
    let server = Server::start().await;
    let data = blob(3 << 20, 1);
    let digest = server.upload("t/zero", &data).await;
    let path = format!("/v2/t/zero/blobs/{digest}");
    let auth = [("authorization", format!("Bearer {}", server.token))];
    let mut c = server.connect().await;
    // Each case: the Range header sent, if any.
    for (range, what) in [
        (None, "whole blob"),
        (Some("bytes=100-199"), "range"),
        (Some("bytes=-10"), "suffix range"),
        (Some("bytes=5000000-"), "range past the end"),
    ] {
        let mut raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{}", server.auth());
        let mut headers = auth.to_vec();
        if let Some(r) = range {
            raw.push_str(&format!("Range: {r}\r\n"));
            headers.push(("range", r.to_string()));
        }
        raw.push_str("\r\n");
        let got = c.call(&raw).await;
        got.assert_same_as(&server.in_process("GET", &path, &headers).await, what);
    }
    let whole = c
        .call(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\n{}\r\n",
            server.auth()
        ))
        .await;
    assert!(whole.body == data, "the whole blob, byte for byte");
    let head = c
        .call(&format!(
            "HEAD {path} HTTP/1.1\r\nHost: t\r\n{}\r\n",
            server.auth()
        ))
        .await;
    head.assert_same_as(&server.in_process("HEAD", &path, &auth).await, "HEAD");
    assert_eq!(
        head.headers["content-length"],
        data.len().to_string().as_str()
    );
    // Refusals are the router's too, bodies and challenges included.
    let anonymous = c
        .call(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    anonymous.assert_same_as(
        &server
            .in_process("GET", &path, &[("host", "t".into())])
            .await,
        "no token",
    );
    let unknown = format!("/v2/t/zero/blobs/sha256:{}", "0".repeat(64));
    let missing = c
        .call(&format!(
            "GET {unknown} HTTP/1.1\r\nHost: t\r\n{}\r\n",
            server.auth()
        ))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    missing.assert_same_as(
        &server.in_process("GET", &unknown, &auth).await,
        "unknown blob",
    );
    // Other bodiless GETs take the same path.
    let catalog = c
        .call(&format!(
            "GET /v2/_catalog HTTP/1.1\r\nHost: t\r\n{}\r\n",
            server.auth()
        ))
        .await;
    catalog.assert_same_as(
        &server.in_process("GET", "/v2/_catalog", &auth).await,
        "catalog",
    );
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_close_is_honoured() {
    let server = Server::start().await;
    let a = blob(100_000, 2);
    let b = blob(70_000, 3);
    let da = server.upload("t/pipe", &a).await;
    let db = server.upload("t/pipe", &b).await;
    let mut c = server.connect().await;
    let auth = server.auth();
    let both = format!(
        "GET /v2/t/pipe/blobs/{da} HTTP/1.1\r\nHost: t\r\n{auth}\r\nGET /v2/t/pipe/blobs/{db} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n"
    );
    c.stream.write_all(both.as_bytes()).await.unwrap();
    let first = c.read_reply(false).await;
    assert!(first.body == a);
    assert!(first.headers.get("connection").is_none());
    let second = c.read_reply(false).await;
    assert!(second.body == b);
    assert_eq!(second.headers["connection"], "close");
    assert!(
        c.closed().await,
        "the server closes after Connection: close"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_request_with_a_body_hands_the_connection_to_hyper() {
    let server = Server::start().await;
    let data = blob(200_000, 4);
    let digest = server.upload("t/mixed", &data).await;
    let path = format!("/v2/t/mixed/blobs/{digest}");
    let mut c = server.connect().await;
    let get = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{}\r\n", server.auth());
    assert!(c.call(&get).await.body == data);
    // An upload start: hyper answers it, on the same connection...
    let started = c
        .call(&format!(
            "POST /v2/t/mixed/blobs/uploads/ HTTP/1.1\r\nHost: t\r\n{}Content-Length: 0\r\n\r\n",
            server.auth()
        ))
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    // ...and everything after it.
    let again = c.call(&get).await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.body == data);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_a_download_in_flight_and_closes_idle_connections() {
    let server = Server::start().await;
    let data = blob(24 << 20, 5);
    let digest = server.upload("t/drain", &data).await;
    let mut idle = server.connect().await;
    let mut busy = server.connect().await;
    // Ask for the blob but do not read yet: the server is left mid-body,
    // waiting for the socket to take more.
    busy.stream
        .write_all(
            format!(
                "GET /v2/t/drain/blobs/{digest} HTTP/1.1\r\nHost: t\r\n{}\r\n",
                server.auth()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert!(busy.fill().await > 0, "the response has begun");
    let stopping = tokio::spawn(server.stop());
    assert!(
        idle.closed().await,
        "an idle connection is closed at shutdown"
    );
    let reply = busy.read_reply(false).await;
    assert!(reply.body == data, "the download in flight completes");
    assert!(busy.closed().await, "and then its connection closes");
    stopping.await.unwrap();
}
