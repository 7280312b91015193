//! Hostile clients against the running daemon (issue 16): the `mcrsrv`
//! binary started on a config file with local users, spoken to over real
//! sockets, raw bytes where a well-behaved client library would refuse to
//! send them. Each abuse must get the distribution-spec's (or the token
//! specification's) error and leave nothing behind: no repository in the
//! catalog, no upload file, nothing for reconcile to find.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN_PW: &str = "hostile-admin-pw";
const ALICE_PW: &str = "hostile-alice-pw";
/// The longest any single exchange of these tests may take; a server that
/// holds a connection past it fails the test instead of hanging it.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(20);
/// `[server] read_timeout` of the daemon: how long headers or a stalled
/// body may take (well under `EXCHANGE_LIMIT`).
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// `[storage] max_uploads_per_principal` of the daemon.
const MAX_UPLOADS: usize = 5;

/// `mcrsrv hash-password`'s answer for `password`, computed once.
fn hash(password: &'static str) -> String {
    static HASHES: OnceLock<std::sync::Mutex<Vec<(&'static str, String)>>> = OnceLock::new();
    let cache = HASHES.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap();
    if let Some((_, h)) = cache.iter().find(|(p, _)| *p == password) {
        return h.clone();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcrsrv"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{password}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "hash-password failed");
    let h = String::from_utf8(out.stdout).unwrap().trim().to_string();
    cache.push((password, h.clone()));
    h
}

/// A running `mcrsrv server` with users `admin` (admin) and `alice`
/// (user), whose token signing key the test wrote and so can sign with.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    key: [u8; 32],
    http: reqwest::Client,
}

impl Daemon {
    async fn start() -> Daemon {
        Daemon::start_with("").await
    }

    /// A daemon whose `[server]` section also holds `server_extra`.
    async fn start_with(server_extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).unwrap();
        let key_path = dir.path().join("token.key");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_path)
                .unwrap();
            f.write_all(&key).unwrap();
        }
        let d = dir.path().display();
        let config = format!(
            r#"
[server]
listen_addr = "127.0.0.1:0"
read_timeout = "{read_timeout}s"
{server_extra}
[database]
path = "{d}/db/mcr.db"
[storage]
layers_path = "{d}/layers"
uploads_path = "{d}/uploads"
max_uploads_per_principal = {MAX_UPLOADS}
[local]
key_path = "{d}/token.key"
[[local.users]]
username = "admin"
password_hash = "{admin}"
account_type = "human"
roles = ["admin"]
[[local.users]]
username = "alice"
password_hash = "{alice}"
account_type = "human"
roles = ["user"]
"#,
            admin = hash(ADMIN_PW),
            alice = hash(ALICE_PW),
            read_timeout = READ_TIMEOUT.as_secs(),
        );
        let config_path = dir.path().join("mcr.toml");
        std::fs::write(&config_path, config).unwrap();
        let (child, addr) = spawn(&config_path, &dir.path().join("server.log"));
        Daemon {
            child,
            dir,
            addr,
            key,
            // A connection per request: the daemon closes kept-alive
            // connections (after idle_timeout), and a POST sent on a
            // pooled connection the server just closed fails instead of
            // being retried.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(EXCHANGE_LIMIT)
                .build()
                .unwrap(),
        }
    }

    /// Stops the daemon and starts it again on the same data.
    async fn restart(&mut self) {
        self.stop();
        let (child, addr) = spawn(
            &self.dir.path().join("mcr.toml"),
            &self.dir.path().join("server.log"),
        );
        self.child = child;
        self.addr = addr;
    }

    fn stop(&mut self) {
        // SIGTERM, as systemd stops it; the drain is its business.
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        let _ = self.child.wait();
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn login(&self, user: &str, password: &str) -> String {
        let r = self
            .http
            .post(self.url("/v1/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "login of {user}");
        r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A token over `claims`, signed as the server signs (HMAC-SHA256 with
    /// its key, `<claims>.<mac>` in base64url).
    fn sign(&self, claims: &Value) -> String {
        sign_with::<Hmac<Sha256>>(&self.key, claims)
    }

    /// Sends `bytes` on a fresh connection and reads until the server
    /// closes it or `EXCHANGE_LIMIT` passes; returns what came back.
    async fn raw(&self, bytes: &[u8]) -> String {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        // The server may answer (and close) before it read everything.
        let _ = s.write_all(bytes).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(EXCHANGE_LIMIT, s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `method path` as `token` (a bearer token), sent.
    async fn send_as(&self, method: Method, path: &str, token: &str) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Opens an upload session in `app` as `token`; its location.
    async fn open_upload(&self, token: &str) -> String {
        let r = self
            .send_as(Method::POST, "/v2/app/blobs/uploads/", token)
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        r.headers()["location"].to_str().unwrap().to_string()
    }

    /// Asserts the upload session at `location` is there and holds no
    /// byte: a refused chunk was discarded.
    async fn assert_upload_empty(&self, token: &str, location: &str) {
        let r = self.send_as(Method::GET, location, token).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()["range"].to_str().unwrap(), "0-0");
    }

    /// The repositories the catalog lists, to the admin.
    async fn catalog(&self, admin: &str) -> Vec<String> {
        let r = self.send_as(Method::GET, "/v2/_catalog", admin).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    }

    /// Files under the uploads directory (an upload left behind).
    fn upload_files(&self) -> Vec<PathBuf> {
        files_under(&self.dir.path().join("uploads"))
    }

    /// Asserts nothing was left behind: no repository, no upload file,
    /// nothing reconcile would remove or miss.
    async fn nothing_left(&self, admin: &str, what: &str) {
        assert_eq!(self.catalog(admin).await, Vec::<String>::new(), "{what}");
        assert_eq!(self.upload_files(), Vec::<PathBuf>::new(), "{what}");
        let r = self.send_as(Method::POST, "/v1/gc/reconcile", admin).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v,
            json!({"files_removed": [], "missing_files": []}),
            "{what}"
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mcrsrv server` and reads the address it bound from its first
/// line of output.
fn spawn(config: &Path, log: &Path) -> (Child, SocketAddr) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcrsrv"))
        .args(["server", "--config"])
        .arg(config)
        .env("MCR_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("mcrsrv exited before it listened")
            .unwrap();
        if let Some(url) = line.strip_prefix("mcrsrv listening on http://") {
            break url.trim().parse().unwrap();
        }
    };
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn sign_with<M: Mac + hmac::digest::KeyInit>(key: &[u8], claims: &Value) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
    m.update(payload.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{payload}.{tag}")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Claims of a valid admin token, as the local identity issues them.
fn admin_claims(exp: i64) -> Value {
    json!({
        "sub": "local:admin",
        "name": "admin",
        "typ": "human",
        "roles": ["admin"],
        "iat": now_ms() - 1000,
        "exp": exp,
        "jti": "hostile-test-jti",
    })
}

fn status_line(reply: &str) -> &str {
    reply.lines().next().unwrap_or("")
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The OCI error code of a reply.
async fn oci_code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        v["errors"][0]["code"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn tokens_expired_foreign_or_changed_are_refused() {
    let d = Daemon::start().await;
    // The forging works: a token signed like the server's is accepted.
    let good = d.sign(&admin_claims(now_ms() + 600_000));
    let r = d.send_as(Method::GET, "/v2/_catalog", &good).await;
    assert_eq!(r.status(), StatusCode::OK, "a well-signed token");

    let mut other_key = [0u8; 32];
    getrandom::getrandom(&mut other_key).unwrap();
    let claims = admin_claims(now_ms() + 600_000);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let (good_payload, good_tag) = good.split_once('.').unwrap();
    let mut raised = admin_claims(now_ms() + 600_000);
    raised["exp"] = json!(i64::MAX);
    let raised = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&raised).unwrap());
    let cases = [
        ("expired", d.sign(&admin_claims(now_ms() - 1000))),
        (
            "signed with another key",
            sign_with::<Hmac<Sha256>>(&other_key, &claims),
        ),
        (
            "signed with HMAC-SHA512",
            sign_with::<Hmac<Sha512>>(&d.key, &claims),
        ),
        (
            "alg none, JWT style",
            format!(
                "{}.{payload}.",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#)
            ),
        ),
        ("HS256 JWT with the server's key", {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
            let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(&d.key).unwrap();
            m.update(format!("{header}.{payload}").as_bytes());
            let tag = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
            format!("{header}.{payload}.{tag}")
        }),
        ("no signature", format!("{good_payload}.")),
        (
            "claims changed, old signature",
            format!("{raised}.{good_tag}"),
        ),
        ("not base64", "%%%.***".to_string()),
        ("huge", "a".repeat(15 * 1024)),
    ];
    for (what, token) in cases {
        for path in [
            "/v2/_catalog",
            "/v2/alice/app/tags/list",
            "/v1/repositories",
        ] {
            let r = d.send_as(Method::GET, path, &token).await;
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{what} token on {path}"
            );
            if path.starts_with("/v2/") {
                assert!(
                    r.headers().contains_key("www-authenticate"),
                    "{what} token on {path}: 401 without a challenge"
                );
                let (_, code) = oci_code(r).await;
                assert_eq!(code, "UNAUTHORIZED", "{what} token on {path}");
            }
        }
        let r = d
            .send_as(Method::POST, "/v2/alice/app/blobs/uploads/", &token)
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what} token pushing");
    }
    let admin = d.login("admin", ADMIN_PW).await;
    d.nothing_left(&admin, "after forged tokens").await;
}

#[tokio::test]
async fn a_token_replayed_after_logout_is_refused_even_after_a_restart() {
    let mut d = Daemon::start().await;
    let token = d.login("alice", ALICE_PW).await;
    let get = |d: &Daemon, token: String| {
        let req = d.http.get(d.url("/v2/")).bearer_auth(token);
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(get(&d, token.clone()).await, StatusCode::OK);
    let r = d.send_as(Method::POST, "/v1/auth/logout", &token).await;
    assert!(r.status().is_success(), "logout answered {}", r.status());
    assert_eq!(get(&d, token.clone()).await, StatusCode::UNAUTHORIZED);
    d.restart().await;
    assert_eq!(
        get(&d, token.clone()).await,
        StatusCode::UNAUTHORIZED,
        "a revoked token came back to life after a restart"
    );
    // Another login of the same user is unaffected.
    let fresh = d.login("alice", ALICE_PW).await;
    assert_eq!(get(&d, fresh).await, StatusCode::OK);
}

/// Review r16, D1: a user removed from `[[local.users]]`, or with other
/// roles, is held to the new list by every token of theirs from the
/// restart that read it, not when the tokens expire.
#[tokio::test]
async fn a_restart_without_a_user_refuses_their_tokens_and_applies_new_roles() {
    let mut d = Daemon::start().await;
    let alice = d.login("alice", ALICE_PW).await;
    let admin = d.login("admin", ADMIN_PW).await;
    let status = |d: &Daemon, path: &str, token: &str| {
        let req = d.http.get(d.url(path)).bearer_auth(token);
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(status(&d, "/v2/_catalog", &alice).await, StatusCode::OK);
    assert_eq!(status(&d, "/v1/policy/rules", &admin).await, StatusCode::OK);
    // alice's block goes; admin is left with the user role.
    let config_path = d.dir.path().join("mcr.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let blocks: Vec<&str> = config.split("[[local.users]]").collect();
    assert_eq!(blocks.len(), 3, "{config}");
    assert!(blocks[2].contains("\"alice\""), "{config}");
    let kept = format!("{}[[local.users]]{}", blocks[0], blocks[1])
        .replace(r#"roles = ["admin"]"#, r#"roles = ["user"]"#);
    std::fs::write(&config_path, kept).unwrap();
    d.restart().await;
    for path in ["/v2/_catalog", "/v1/repositories"] {
        assert_eq!(
            status(&d, path, &alice).await,
            StatusCode::UNAUTHORIZED,
            "{path}: the token of a removed user still works"
        );
    }
    assert_eq!(
        status(&d, "/v1/policy/rules", &admin).await,
        StatusCode::FORBIDDEN,
        "the token's old roles still hold"
    );
}

#[tokio::test]
async fn oversized_heads_are_refused_with_431() {
    let d = Daemon::start().await;
    let admin = d.login("admin", ADMIN_PW).await;
    let long = "a".repeat(1 << 20);
    // Past the 64 KiB head limit (listen::MAX_HEAD_BYTES), well under
    // hyper's default of about 400 KiB.
    let over = "a".repeat(100 << 10);
    for (what, request) in [
        (
            "a 100 KiB header on a GET",
            format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {over}\r\n\r\n"),
        ),
        (
            "a 100 KiB header on a PATCH",
            format!("PATCH /v2/a/b/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nX-Big: {over}\r\nContent-Length: 0\r\n\r\n"),
        ),
        (
            "a 1 MiB header on a GET",
            format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {long}\r\n\r\n"),
        ),
        (
            "a 1 MiB header on a PATCH",
            format!("PATCH /v2/a/b/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nX-Big: {long}\r\nContent-Length: 0\r\n\r\n"),
        ),
        (
            "a 1 MiB request target",
            format!("GET /v2/{long}/manifests/x HTTP/1.1\r\nHost: x\r\n\r\n"),
        ),
        (
            "500 headers",
            format!(
                "GET /v2/ HTTP/1.1\r\nHost: x\r\n{}\r\n",
                (0..500).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
            ),
        ),
    ] {
        let reply = d.raw(request.as_bytes()).await;
        assert!(
            status_line(&reply).starts_with("HTTP/1.1 431"),
            "{what}: {:?}",
            status_line(&reply)
        );
    }
    // A head under the limit is read and answered as usual.
    let under = "a".repeat(48 << 10);
    for method in ["GET", "PATCH"] {
        let reply = d
            .raw(format!("{method} /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {under}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
            .await;
        assert!(
            status_line(&reply).starts_with("HTTP/1.1 401")
                || status_line(&reply).starts_with("HTTP/1.1 405"),
            "a 48 KiB header on a {method}: {:?}",
            status_line(&reply)
        );
    }
    // An Authorization header past the token limit is a 401, not work.
    let r = d
        .send_as(Method::GET, "/v2/_catalog", &"x".repeat(20 * 1024))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a 20 KiB token");
    d.nothing_left(&admin, "after oversized heads").await;
}

#[tokio::test]
async fn bodies_beyond_every_limit_are_refused_with_413() {
    let d = Daemon::start().await;
    let admin = d.login("admin", ADMIN_PW).await;
    // A manifest past the 4 MiB manifest limit: 100,000 layers.
    let layer = json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": sha256(b"layer"),
        "size": 5,
    });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"{}"), "size": 2},
        "layers": vec![layer; 100_000],
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    assert!(body.len() > 4 << 20);
    let r = d
        .http
        .put(d.url("/v2/hostile/layers/manifests/v1"))
        .bearer_auth(&admin)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        oci_code(r).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID".to_string()),
        "a manifest of 100,000 layers"
    );
    // The same, declared by Content-Length but never sent: refused first.
    let reply = d
        .raw(
            format!(
                "PUT /v2/hostile/layers/manifests/v1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                1u64 << 40
            )
            .as_bytes(),
        )
        .await;
    assert!(
        status_line(&reply).starts_with("HTTP/1.1 413"),
        "a declared 1 TiB manifest: {:?}",
        status_line(&reply)
    );
    // JSON bodies of the admin API.
    let big_json = format!(
        "{{\"username\":\"{}\",\"password\":\"x\"}}",
        "a".repeat(1 << 20)
    );
    for (path, token) in [("/v1/auth/login", None), ("/v1/policy/rules", Some(&admin))] {
        let mut req = d
            .http
            .post(d.url(path))
            .header("content-type", "application/json")
            .body(big_json.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "1 MiB JSON to {path}"
        );
    }
    // A chunk whose Content-Range goes past the largest blob.
    let r = d
        .send_as(Method::POST, "/v2/hostile/blob/blobs/uploads/", &admin)
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let loc = if loc.starts_with("http") {
        loc
    } else {
        d.url(&loc)
    };
    let r = d
        .http
        .patch(&loc)
        .bearer_auth(&admin)
        .header("content-range", format!("0-{}", u64::MAX - 1))
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert!(
        r.status() == StatusCode::PAYLOAD_TOO_LARGE
            || r.status() == StatusCode::RANGE_NOT_SATISFIABLE
            || r.status() == StatusCode::BAD_REQUEST,
        "a chunk claiming 2^64 bytes answered {}",
        r.status()
    );
    let r = d
        .http
        .delete(&loc)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "cancelling the upload");
    d.nothing_left(&admin, "after oversized bodies").await;
}

#[tokio::test]
async fn paths_with_bad_bytes_dots_and_encoded_slashes_are_refused() {
    let d = Daemon::start().await;
    let admin = d.login("admin", ADMIN_PW).await;
    let good = sha256(b"x");
    let hex = &good["sha256:".len()..];
    let cases: Vec<(String, &str)> = vec![
        ("/v2/%FF%FE/app/manifests/v1".into(), "NAME_INVALID"),
        ("/v2/app%C0%AF/manifests/v1".into(), "NAME_INVALID"),
        ("/v2/a/%2e%2e/b/manifests/v1".into(), "NAME_INVALID"),
        ("/v2/a/../b/manifests/v1".into(), "NAME_INVALID"),
        ("/v2/a%2F..%2Fb/manifests/v1".into(), "NAME_INVALID"),
        ("/v2/a/b%2Fc/tags/list".into(), "NAME_INVALID"),
        ("/v2/a%/manifests/v1".into(), "NAME_INVALID"),
        ("/v2/a/b/manifests/v1%2F..".into(), "TAG_INVALID"),
        ("/v2/a/b/manifests/%FF".into(), "TAG_INVALID"),
        ("/v2/a/b/manifests/..".into(), "TAG_INVALID"),
        (
            format!("/v2/a/b/blobs/sha256:..%2F..%2F{}", &hex[6..]),
            "DIGEST_INVALID",
        ),
        (
            format!("/v2/a/b/blobs/sha256%3A{hex}%2F.."),
            "DIGEST_INVALID",
        ),
        ("/v2/a/b/blobs/sha256:%FF".into(), "DIGEST_INVALID"),
    ];
    for (path, want) in &cases {
        for method in ["GET", "PUT", "DELETE"] {
            let reply = d
                .raw(
                    format!(
                        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await;
            let status = status_line(&reply);
            assert!(
                status.starts_with("HTTP/1.1 400") || status.starts_with("HTTP/1.1 404"),
                "{method} {path}: {status:?}"
            );
            if status.starts_with("HTTP/1.1 400") {
                assert!(
                    reply.contains(want),
                    "{method} {path}: want {want} in {reply:?}"
                );
            }
        }
    }
    // An upload that starts under such a name creates nothing either.
    let reply = d
        .raw(
            format!("POST /v2/a/%2e%2e/%2e%2e/x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
    assert!(status_line(&reply).starts_with("HTTP/1.1 400"), "{reply:?}");
    assert!(reply.contains("NAME_INVALID"), "{reply:?}");
    d.nothing_left(&admin, "after hostile paths").await;
    // Nothing was written outside the data directory's own layout.
    for f in files_under(d.dir.path()) {
        let name = f
            .strip_prefix(d.dir.path())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("db/")
                || name == "mcr.toml"
                || name == "token.key"
                || name == "server.log",
            "unexpected file {name}"
        );
    }
}

#[tokio::test]
async fn indexes_naming_themselves_or_unknown_children_are_refused() {
    let d = Daemon::start().await;
    let admin = d.login("admin", ADMIN_PW).await;
    let put = |reference: String, media: &'static str, body: Vec<u8>| {
        let req = d
            .http
            .put(d.url(&format!("/v2/hostile/index/manifests/{reference}")))
            .bearer_auth(&admin)
            .header("content-type", media)
            .body(body);
        async move { oci_code(req.send().await.unwrap()).await }
    };
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    // An index cannot hold its own digest (a hash is no fixed point), so
    // "itself" is a child pushed under the digest the index claims for
    // itself in the URL; and a two-index cycle names a child that never
    // exists. Each is an unknown child: refused, nothing stored.
    let child = sha256(b"not stored");
    let index = |child: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [{"mediaType": INDEX, "digest": child, "size": 100}],
        }))
        .unwrap()
    };
    let a = index(&child);
    let a_digest = sha256(&a);
    // A names B, B names A: whichever comes first names what is not there.
    let b = index(&a_digest);
    let b_digest = sha256(&b);
    let a_cycle = index(&b_digest);
    let self_ref = index(&sha256(&index("placeholder")));
    for (what, reference, body) in [
        (
            "an index naming an absent child",
            "v1".to_string(),
            a.clone(),
        ),
        (
            "an index pushed by its digest naming an absent child",
            a_digest.clone(),
            a,
        ),
        ("half of a cycle", "cycle".to_string(), b),
        ("the other half of the cycle", "cycle2".to_string(), a_cycle),
        (
            "an index that names its own placeholder",
            "self".to_string(),
            self_ref,
        ),
    ] {
        assert_eq!(
            put(reference, INDEX, body).await,
            (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".to_string()),
            "{what}"
        );
    }
    // The URL's digest must be the body's.
    let body = index(&child);
    assert_eq!(
        put(b_digest, INDEX, body).await,
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".to_string()),
        "a body pushed under another digest"
    );
    let r = d
        .send_as(Method::GET, "/v2/hostile/index/tags/list", &admin)
        .await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "refused indexes left a repository"
    );
    d.nothing_left(&admin, "after hostile indexes").await;
}

/// An index's descriptor of a stored child must give the child's size
/// and media type (image-spec: the size must match the content): a
/// client following a wrong one fails its verification.
#[tokio::test]
async fn indexes_misdescribing_a_stored_child_are_refused() {
    let d = Daemon::start().await;
    let admin = d.login("admin", ADMIN_PW).await;
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";
    let put = |reference: &str, body: &Value| {
        let req = d
            .http
            .put(d.url(&format!("/v2/hostile/desc/manifests/{reference}")))
            .bearer_auth(&admin)
            .header("content-type", INDEX)
            .body(serde_json::to_vec(body).unwrap());
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            (status, v)
        }
    };
    // A child that needs no blobs: an empty index.
    let child = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": []});
    let child_bytes = serde_json::to_vec(&child).unwrap();
    let child_digest = sha256(&child_bytes);
    assert_eq!(put("child", &child).await.0, StatusCode::CREATED);
    let naming = |media: &str, size: usize| {
        json!({
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [{"mediaType": media, "digest": child_digest, "size": size}],
        })
    };
    for (what, index) in [
        ("a wrong size", naming(INDEX, 999)),
        ("size 0", naming(INDEX, 0)),
        ("a wrong media type", naming(IMAGE, child_bytes.len())),
    ] {
        let (status, v) = put("bad", &index).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {v}");
        assert_eq!(v["errors"][0]["code"], "MANIFEST_INVALID", "{what}: {v}");
        let message = v["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(&child_digest), "{what}: {message}");
    }
    let r = d
        .send_as(Method::GET, "/v2/hostile/desc/manifests/bad", &admin)
        .await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "a refused index was stored"
    );
    let (status, v) = put("good", &naming(INDEX, child_bytes.len())).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
}

/// Slow-loris (issue 16, case 3): headers that stop half-way, and a PATCH
/// that declares 1 MiB and sends 10 bytes, are cut off after
/// `read_timeout` (the body with 408), and the half-sent chunk is not kept.
#[tokio::test]
async fn stalled_heads_and_bodies_are_cut_off_after_the_read_timeout() {
    let d = Daemon::start().await;
    let admin = d.login("admin", ADMIN_PW).await;
    let started = std::time::Instant::now();
    let reply = d.raw(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nAccept: ").await;
    let took = started.elapsed();
    assert!(
        took < EXCHANGE_LIMIT - Duration::from_secs(5),
        "a stalled head held its connection for {took:?} (reply {reply:?})"
    );
    assert!(
        took >= READ_TIMEOUT - Duration::from_millis(500),
        "{took:?}"
    );

    let location = d.open_upload(&admin).await;
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n0123456789"
    );
    let started = std::time::Instant::now();
    let reply = d.raw(head.as_bytes()).await;
    let took = started.elapsed();
    assert!(
        status_line(&reply).contains(" 408 "),
        "a stalled body got {:?} after {took:?}",
        status_line(&reply)
    );
    assert!(took < EXCHANGE_LIMIT - Duration::from_secs(5), "{took:?}");
    // The session is still there, with none of the half-sent chunk.
    d.assert_upload_empty(&admin, &location).await;
}

/// Many upload sessions (issue 16, case 4): past
/// `max_uploads_per_principal`, 429 TOOMANYREQUESTS with Retry-After, in
/// any repository; another user still has room, and cancelling a session
/// frees its slot.
#[tokio::test]
async fn open_upload_sessions_past_the_cap_are_refused_with_429() {
    let d = Daemon::start().await;
    let alice = d.login("alice", ALICE_PW).await;
    let admin = d.login("admin", ADMIN_PW).await;
    let open = |token: &str, repo: &str| {
        d.http
            .post(d.url(&format!("/v2/{repo}/blobs/uploads/")))
            .bearer_auth(token.to_string())
            .send()
    };
    let mut locations = Vec::new();
    for i in 0..MAX_UPLOADS {
        let r = open(&alice, &format!("alice/r{i}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "session {i}");
        locations.push(r.headers()["location"].to_str().unwrap().to_string());
    }
    let r = open(&alice, "alice/one-more").await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(oci_code(r).await.1, "TOOMANYREQUESTS");
    let r = open(&admin, "alice/r0").await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "another user has room");
    let r = d.send_as(Method::DELETE, &locations[0], &alice).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = open(&alice, "alice/one-more").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::ACCEPTED,
        "a cancelled session freed a slot"
    );
}

/// Sends `head`, then the body one byte a second until the server
/// answers; returns the answer (read until the server closes).
async fn trickle(addr: SocketAddr, head: String) -> String {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if wr.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(EXCHANGE_LIMIT, rd.read_to_end(&mut out)).await;
    writer.abort();
    String::from_utf8_lossy(&out).into_owned()
}

/// Review of issue 16, D1: a body trickled at a byte a second never
/// waits `read_timeout` (3 s) for a byte, but falls behind
/// `min_body_rate` once `read_timeout` has passed: 408, and nothing of
/// the chunk is kept.
#[tokio::test]
async fn a_body_trickled_below_the_minimum_rate_is_cut_off() {
    let d = Daemon::start().await;
    let admin = d.login("admin", ADMIN_PW).await;
    let location = d.open_upload(&admin).await;
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 1048576\r\n\r\n"
    );
    let started = std::time::Instant::now();
    let reply = trickle(d.addr, head).await;
    let took = started.elapsed();
    assert!(
        status_line(&reply).contains(" 408 "),
        "a trickled body got {:?} after {took:?}",
        status_line(&reply)
    );
    assert!(reply.contains("server.min_body_rate"), "{reply}");
    assert!(took < READ_TIMEOUT + Duration::from_secs(3), "{took:?}");
    d.assert_upload_empty(&admin, &location).await;
}

/// Review of issue 16, D1: one principal holds at most
/// `max_requests_in_flight` requests, so it cannot take every connection
/// with bodies it sends slowly; another principal is not held back.
#[tokio::test]
async fn requests_in_flight_past_the_principals_cap_are_refused_with_429() {
    let d = Daemon::start_with("max_requests_in_flight = 2").await;
    let admin = d.login("admin", ADMIN_PW).await;
    let alice = d.login("alice", ALICE_PW).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let location = d.open_upload(&admin).await;
        let mut s = TcpStream::connect(d.addr).await.unwrap();
        s.write_all(
            format!(
                "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
                 Expect: 100-continue\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: 10\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        // The 100 comes when the handler reads the body: the request was
        // authenticated and holds its slot.
        let mut got = [0u8; 25];
        s.read_exact(&mut got).await.unwrap();
        assert!(
            got.starts_with(b"HTTP/1.1 100 Continue"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        held.push(s);
    }
    let r = d.send_as(Method::GET, "/v2/", &admin).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(oci_code(r).await.1, "TOOMANYREQUESTS");
    let r = d.send_as(Method::GET, "/v2/", &alice).await;
    assert_eq!(r.status(), StatusCode::OK, "another principal has room");
    // Finishing one of the two gives its slot back.
    let mut s = held.pop().unwrap();
    s.write_all(b"0123456789").await.unwrap();
    let mut out = vec![0u8; 12];
    s.read_exact(&mut out).await.unwrap();
    assert_eq!(&out, b"HTTP/1.1 202");
    let r = d.send_as(Method::GET, "/v2/", &admin).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Review of issue 16, D2: failed logins are limited per username and
/// per client address on every login path; past the limit the answer is
/// 429 with Retry-After, even for the right password, which is not
/// checked.
#[tokio::test]
async fn failed_logins_past_the_limits_are_refused_with_429() {
    let d = Daemon::start_with("login_failures_per_user = 3\nlogin_failures_per_address = 5").await;
    let login = |user: &str, password: &str| {
        d.http
            .post(d.url("/v1/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
    };
    let token = |user: &str, password: &str| {
        d.http
            .get(d.url("/v2/token"))
            .basic_auth(user, Some(password))
            .send()
    };
    // Successes do not count.
    for _ in 0..4 {
        d.login("alice", ALICE_PW).await;
    }
    for i in 0..2 {
        let r = login("alice", "guess").await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let r = token("alice", "guess").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess 3");
    for r in [
        login("alice", ALICE_PW).await.unwrap(),
        token("alice", ALICE_PW).await.unwrap(),
    ] {
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=300).contains(&retry), "{retry}");
        let text = r.text().await.unwrap();
        assert!(text.contains("failed logins for alice"), "{text}");
        assert!(!text.contains(ALICE_PW), "{text}");
    }
    let r = token("alice", ALICE_PW).await.unwrap();
    assert_eq!(oci_code(r).await.1, "TOOMANYREQUESTS");
    // The address has two failures left: other usernames take them.
    for user in ["bob", "carol"] {
        let r = login(user, "guess").await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{user}");
    }
    let r = login("admin", ADMIN_PW).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the address is over"
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("failed logins from 127.0.0.1"), "{text}");
    let log = std::fs::read_to_string(d.dir.path().join("server.log")).unwrap();
    assert!(!log.contains("guess") && !log.contains(ALICE_PW), "{log}");
}

/// Reads one response with a `Content-Length` off `s`; its status line.
async fn read_one_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(EXCHANGE_LIMIT, s.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let len: usize = text[..end]
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .expect("a Content-Length");
        if got.len() >= end + 4 + len {
            return status_line(&text).to_string();
        }
    }
}

/// A kept-alive connection lives `idle_timeout` between requests, not
/// `read_timeout` (hyper's header timer closed it after `read_timeout`),
/// whether mcrsrv serves it or has handed it to hyper; and a head begun
/// on it must still arrive within `read_timeout` of its first byte.
#[tokio::test]
async fn kept_alive_connections_wait_idle_timeout_and_heads_read_timeout() {
    let d = Daemon::start_with("idle_timeout = \"8s\"").await;
    let idle = READ_TIMEOUT + Duration::from_secs(2);
    let check = |first: &'static str| async move {
        let mut s = TcpStream::connect(d.addr).await.unwrap();
        s.write_all(first.as_bytes()).await.unwrap();
        let status = read_one_response(&mut s).await;
        assert!(status.starts_with("HTTP/1.1 4"), "{first:?}: {status}");
        tokio::time::sleep(idle).await;
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let status = read_one_response(&mut s).await;
        assert!(
            status.starts_with("HTTP/1.1 401"),
            "after {idle:?} idle, behind {first:?}: {status}"
        );
        // Half a head, then nothing.
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(EXCHANGE_LIMIT, s.read_to_end(&mut rest)).await;
        let took = started.elapsed();
        assert!(
            took >= READ_TIMEOUT - Duration::from_millis(500)
                && took < READ_TIMEOUT + Duration::from_secs(3),
            "a half head behind {first:?} was cut off after {took:?}"
        );
    };
    tokio::join!(
        // Served by mcrsrv's own loop.
        check("GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        // A request with a body hands the connection to hyper.
        check("POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
    );
}
