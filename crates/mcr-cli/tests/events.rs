//! Webhooks end to end (issue 15, "Events"): the real `mcrsrv` binary
//! posts its events to a receiver this test runs, which refuses the first
//! deliveries (503), then is down (connection refused) while more changes
//! happen and `mcrsrv` is killed and started again. Once the receiver is
//! back, every event in the outbox arrives, each id at least once, every
//! signature verifies with the secret, and the first arrival of the
//! events of each repository is in their order.
//!
//! Nothing here sleeps to let something happen: the test waits for a
//! condition (the receiver's count, a port answering) with a deadline,
//! and the backoff is made short by `[events]` in the config.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use mcr_core::ports::Secret;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

const SECRET: &str = "a-webhook-secret-of-32-characters";
/// Deliveries the receiver refuses with 503 before it accepts any.
const REFUSED: usize = 3;
/// Longest wait for any one condition.
const DEADLINE: Duration = Duration::from_secs(90);

/// What the receiver saw.
#[derive(Default)]
struct Received {
    /// Every request, accepted or not.
    requests: usize,
    /// Accepted deliveries in arrival order: the parsed CloudEvent.
    accepted: Vec<Value>,
    /// Deliveries whose signature did not verify.
    bad_signatures: usize,
}

type Shared = Arc<Mutex<Received>>;

async fn hook(State(seen): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut seen = seen.lock().unwrap();
    seen.requests += 1;
    if seen.requests <= REFUSED {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    // What a receiver does: HMAC-SHA256 of "<timestamp>.<body>".
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(header("x-mcr-timestamp").as_bytes());
    mac.update(b".");
    mac.update(&body);
    let want = format!("sha256={}", hex(&mac.finalize().into_bytes()));
    if header("x-mcr-signature-256") != want
        || !header("content-type").starts_with("application/cloudevents+json")
    {
        seen.bad_signatures += 1;
        return StatusCode::BAD_REQUEST;
    }
    seen.accepted
        .push(serde_json::from_slice(&body).expect("a CloudEvent is JSON"));
    StatusCode::NO_CONTENT
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The receiver on `port`, serving until the returned sender is dropped
/// or fired; the handle ends once the listener is closed.
async fn receiver(
    port: u16,
    seen: Shared,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .expect("the receiver's port is free again");
    let listener = socket.listen(64).unwrap();
    let app = Router::new().route("/hook", post(hook)).with_state(seen);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (stop, task)
}

/// `mcrsrv server` on `config`; killed (SIGKILL) when dropped.
struct Mcrsrv(Child);

impl Mcrsrv {
    fn start(config: &Path, addr: SocketAddr) -> Mcrsrv {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcrsrv"))
            .arg("server")
            .arg("--config")
            .arg(config)
            .env("MCR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mcrsrv starts");
        let deadline = Instant::now() + DEADLINE;
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("mcrsrv exited early: {status}");
            }
            assert!(Instant::now() < deadline, "nothing listens on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Mcrsrv(child)
    }
}

impl Drop for Mcrsrv {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// An admin's client of the API at `base`.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn login(base: &str, password: &str) -> Api {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let login: Value = http
            .post(format!("{base}/v1/auth/login"))
            .json(&json!({"username": "admin", "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().expect("a token").to_string();
        Api {
            http,
            base: base.to_string(),
            token,
        }
    }

    async fn blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", hex(&Sha256::digest(data)));
        let resp = self
            .http
            .post(format!(
                "{}/v2/{repo}/blobs/uploads/?digest={digest}",
                self.base
            ))
            .bearer_auth(&self.token)
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "blob upload to {repo}");
        digest
    }

    /// Pushes an image named `name` under `tag`; its digest.
    async fn push(&self, repo: &str, name: &str, tag: &str) -> String {
        let config = self
            .blob(repo, format!("{{\"name\":\"{name}\"}}").as_bytes())
            .await;
        let size = format!("{{\"name\":\"{name}\"}}").len();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": size,
            },
            "layers": [],
        })
        .to_string();
        let resp = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{tag}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "manifest put to {repo}:{tag}");
        format!("sha256:{}", hex(&Sha256::digest(manifest.as_bytes())))
    }

    async fn delete(&self, path: &str) {
        let resp = self
            .http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "DELETE {path}: {}",
            resp.status()
        );
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }
}

/// Waits until `done` holds of what the receiver saw.
async fn wait_for(seen: &Shared, what: &str, done: impl Fn(&Received) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if done(&seen.lock().unwrap()) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_signed_and_in_order_through_refusals_an_outage_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let password = "events-admin-password";
    let hash = mcr_adapters::local_identity::hash_password(&Secret::new(password)).expect("a hash");
    std::fs::write(dir.path().join("webhook.secret"), format!("{SECRET}\n")).unwrap();
    let hook_port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let data = |p: &str| dir.path().join(p).display().to_string();
    let config = dir.path().join("mcr.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen_addr = "{addr}"
external_url = "http://{addr}"
rate_limit = 0

[database]
path = "{db}"

[storage]
layers_path = "{layers}"
uploads_path = "{uploads}"

[events]
retry_initial = "50ms"
retry_max = "200ms"
poll_interval = "100ms"

[[webhook]]
url = "http://127.0.0.1:{hook_port}/hook"
secret_file = "{secret}"
repositories = ["team-a/*", "team-b/*"]

[[local.users]]
username = "admin"
password_hash = "{hash}"
account_type = "human"
roles = ["admin"]
"#,
            db = data("mcr.db"),
            layers = data("layers"),
            uploads = data("uploads"),
            secret = data("webhook.secret"),
        ),
    )
    .unwrap();
    let base = format!("http://{addr}");
    let seen: Shared = Arc::default();

    // The receiver refuses the first deliveries.
    let (stop, serving) = receiver(hook_port, Arc::clone(&seen)).await;
    let srv = Mcrsrv::start(&config, addr);
    let api = Api::login(&base, password).await;
    api.push("team-a/app", "one", "v1").await;
    let two = api.push("team-a/app", "two", "v1").await; // moves v1
    api.push("team-b/lib", "lib", "latest").await;
    api.push("other/skip", "skip", "latest").await; // filtered out
    wait_for(&seen, "the refusals and a first acceptance", |r| {
        !r.accepted.is_empty()
    })
    .await;

    // The receiver goes down: connections are refused.
    let _ = stop.send(());
    serving.await.unwrap();
    api.delete("/v2/team-a/app/manifests/v1").await;
    api.delete(&format!("/v2/team-a/app/manifests/{two}")).await;
    let lib2 = api.push("team-b/lib", "lib2", "latest").await;

    // mcrsrv dies (SIGKILL, no drain) and starts again.
    drop(srv);
    let _srv = Mcrsrv::start(&config, addr);
    let api = Api::login(&base, password).await;
    api.delete(&format!("/v2/team-b/lib/manifests/{lib2}"))
        .await;
    api.push("team-a/app", "three", "v2").await;
    api.delete("/v1/repositories/team-b/lib").await;

    let outbox = api.get("/v1/events?limit=1000").await;
    let events = outbox["events"].as_array().unwrap().clone();
    let wanted: Vec<&Value> = events
        .iter()
        .filter(|e| {
            let repo = e["repository"].as_str().unwrap_or_default();
            repo.starts_with("team-a/") || repo.starts_with("team-b/")
        })
        .collect();
    let kinds: Vec<(&str, &str)> = wanted
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["repository"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("manifest.pushed", "team-a/app"),
            ("manifest.pushed", "team-a/app"),
            ("tag.moved", "team-a/app"),
            ("manifest.pushed", "team-b/lib"),
            ("tag.deleted", "team-a/app"),
            ("manifest.deleted", "team-a/app"),
            ("manifest.pushed", "team-b/lib"),
            ("tag.moved", "team-b/lib"),
            ("tag.deleted", "team-b/lib"),
            ("manifest.deleted", "team-b/lib"),
            ("manifest.pushed", "team-a/app"),
            ("repository.deleted", "team-b/lib"),
        ],
        "the outbox holds one event per change, in order"
    );
    // The CloudEvents id is the stored `event_id`; the outbox row `id`
    // gives the order.
    let row_of: BTreeMap<String, i64> = wanted
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap().to_string(),
                e["id"].as_i64().unwrap(),
            )
        })
        .collect();
    let want_ids: BTreeSet<String> = row_of.keys().cloned().collect();
    assert_eq!(want_ids.len(), wanted.len(), "event ids are distinct");

    // The receiver is back.
    let (_stop, _serving) = receiver(hook_port, Arc::clone(&seen)).await;
    wait_for(&seen, "every event", |r| {
        let got: BTreeSet<String> = r
            .accepted
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        want_ids.is_subset(&got)
    })
    .await;

    // What arrived, checked under the lock (taken once all did).
    let accepted = {
        let r = seen.lock().unwrap();
        assert_eq!(r.bad_signatures, 0, "every signature verifies");
        assert!(
            r.requests >= REFUSED + want_ids.len(),
            "the refused deliveries were tried again"
        );
        r.accepted.clone()
    };
    let mut first_seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut ids_seen = BTreeSet::new();
    for e in &accepted {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["source"], base.as_str());
        assert_eq!(e["datacontenttype"], "application/json");
        assert!(e["type"].as_str().unwrap().starts_with("dev.mcr."));
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
        let subject = e["subject"].as_str().expect("a subject").to_string();
        assert_ne!(subject, "other/skip", "the repositories filter holds");
        assert_eq!(e["data"]["repository"], subject.as_str());
        let id = e["id"].as_str().unwrap();
        if ids_seen.insert(id) {
            first_seen.entry(subject).or_default().push(row_of[id]);
        }
    }
    for (repo, ids) in &first_seen {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{repo}'s events first arrived out of order: {ids:?}"
        );
    }

    // The delivery state says so too.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = api.get("/v1/events/webhooks").await;
        let hook = &status["webhooks"][0];
        assert_eq!(hook["url"], format!("http://127.0.0.1:{hook_port}/hook"));
        assert_eq!(hook["repositories"], json!(["team-a/*", "team-b/*"]));
        assert!(hook.get("secret").is_none());
        if hook["pending"] == 0 {
            assert_eq!(hook["attempts"], 0);
            assert_eq!(hook["last_error"], Value::Null);
            break;
        }
        assert!(Instant::now() < deadline, "still pending: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
