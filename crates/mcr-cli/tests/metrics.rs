//! `GET /metrics` of the real `mcrsrv dev` binary: after a push, a pull,
//! a denied request, a refused token, gRPC calls and a GC run, each
//! counter moved by exactly what was done; the output parses as the
//! Prometheus text format (the `prometheus-parse` crate, and `promtool
//! check metrics` where Debian's `prometheus` package is installed); no
//! label value holds a repository name or a digest; and the metrics are
//! not served on the API's listener.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};
use serde_json::{json, Value as Json};
use sha2::Digest as _;

/// `mcrsrv dev` with every address ephemeral (`--listen 127.0.0.1:0`; its
/// gRPC, UI and metrics follow), read from the lines it prints so
/// concurrent tests never race for a port; GC's grace period 0 s; killed
/// when dropped.
struct Mcrsrv {
    child: Child,
    api: String,
    grpc: String,
    metrics: String,
    dir: tempfile::TempDir,
}

impl Mcrsrv {
    fn start() -> Mcrsrv {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcrsrv"))
            .args(["dev", "--data"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .env("MCR_GC_GRACE_PERIOD", "0s")
            .env("MCR_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mcrsrv starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut api, mut grpc) = (None, None);
        // The metrics line is the last one `mcrsrv dev` prints at start.
        let metrics = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("mcrsrv exited early: {:?}", child.wait());
            };
            if let Some(a) = line.strip_prefix("mcrsrv listening on ") {
                api = Some(a.trim().to_string());
            } else if let Some(a) = line.strip_prefix("mcrsrv gRPC on ") {
                grpc = Some(a.trim().to_string());
            } else if let Some(a) = line.strip_prefix("metrics on ") {
                break a.trim().to_string();
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Mcrsrv {
            child,
            api: api.expect("mcrsrv printed its listen address"),
            grpc: grpc.expect("mcrsrv printed its gRPC address"),
            metrics,
            dir,
        }
    }
}

impl Drop for Mcrsrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scrape, parsed, with its text.
struct Metrics {
    text: String,
    scrape: Scrape,
}

impl Metrics {
    /// The value of `name` with (at least) `labels`; 0 when absent, as
    /// Prometheus reads a counter that has not been created yet.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => panic!("{name} is not a single number"),
            })
            .collect();
        assert!(found.len() <= 1, "{name}{labels:?} matches {found:?}");
        found.first().copied().unwrap_or(0.0)
    }
}

struct Client {
    http: reqwest::Client,
    srv: Mcrsrv,
    token: String,
}

impl Client {
    async fn new(srv: Mcrsrv) -> Client {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let password = std::fs::read_to_string(srv.dir.path().join("admin.password")).unwrap();
        let login: Json = http
            .post(format!("{}/v1/auth/login", srv.api))
            .json(&json!({"username": "admin", "password": password.trim()}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().expect("a token").to_string();
        Client { http, srv, token }
    }

    async fn scrape(&self) -> Metrics {
        let resp = self.http.get(&self.srv.metrics).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = resp.text().await.unwrap();
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"));
        Metrics { text, scrape }
    }

    /// POST, one PATCH, then PUT with the digest, under `repo` (a path
    /// like `/v2/team/app`); the upload's id.
    async fn chunked_upload(&self, repo: &str, data: &[u8]) -> String {
        let started = self
            .http
            .post(format!("{}{repo}/blobs/uploads/", self.srv.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 202);
        let location = started.headers()["location"].to_str().unwrap().to_string();
        // Locations may be absolute URLs or paths.
        let absolute = |l: &str| {
            if l.starts_with("http") {
                l.to_string()
            } else {
                format!("{}{l}", self.srv.api)
            }
        };
        let url = absolute(&location);
        let id = location
            .rsplit('/')
            .next()
            .and_then(|tail| tail.split('?').next())
            .expect("an upload id")
            .to_string();
        assert!(id.len() >= 16, "upload id {id:?} from {location}");
        let patched = self
            .http
            .patch(&url)
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 202);
        let next = absolute(patched.headers()["location"].to_str().unwrap());
        let sep = if next.contains('?') { '&' } else { '?' };
        let finished = self
            .http
            .put(format!("{next}{sep}digest={}", digest(data)))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(finished.status(), 201);
        id
    }

    /// A request with the admin's bearer token; its status.
    async fn send(&self, method: reqwest::Method, path: &str, body: &[u8]) -> u16 {
        self.send_as(&self.token, method, path, body).await.0
    }

    async fn send_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.srv.api))
            .bearer_auth(token)
            .body(body.to_vec());
        if path.contains("/manifests/") {
            req = req.header("content-type", OCI_MANIFEST);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const BLOB_UPLOAD: &str = "/v2/<name>/blobs/uploads/";
const BLOB: &str = "/v2/<name>/blobs/<digest>";
const MANIFEST: &str = "/v2/<name>/manifests/<reference>";

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn requests(m: &Metrics, route: &str, method: &str, code: &str) -> f64 {
    m.get(
        "mcr_http_requests_total",
        &[("route", route), ("method", method), ("code", code)],
    )
}

#[tokio::test]
async fn counters_move_by_what_was_done_and_the_output_is_prometheus_text() {
    let c = Client::new(Mcrsrv::start()).await;
    let post = reqwest::Method::POST;
    let (config, layer, orphan) = (
        br#"{"architecture":"amd64"}"#.as_slice(),
        b"a layer of 31 bytes, more or so".as_slice(),
        b"an orphan blob".as_slice(),
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        digest(config),
        config.len(),
        digest(layer),
        layer.len()
    );

    // A push: two blobs, monolithic, then the manifest.
    let before = c.scrape().await;
    // GC's series exist before any run, so an alert on a failed run or
    // on none for days can fire after a restart.
    for series in [
        r#"mcr_gc_runs_total{result="completed"} 0"#,
        r#"mcr_gc_runs_total{result="failed"} 0"#,
        "mcr_gc_blobs_removed_total 0",
    ] {
        assert!(
            before.text.lines().any(|l| l == series),
            "no `{series}` before the first GC:\n{}",
            before.text
        );
    }
    for blob in [config, layer] {
        let path = format!("/v2/team/app/blobs/uploads/?digest={}", digest(blob));
        assert_eq!(c.send(post.clone(), &path, blob).await, 201);
    }
    let put = reqwest::Method::PUT;
    assert_eq!(
        c.send(put, "/v2/team/app/manifests/v1", manifest.as_bytes())
            .await,
        201
    );
    let pushed = c.scrape().await;
    assert_eq!(
        requests(&pushed, BLOB_UPLOAD, "POST", "201")
            - requests(&before, BLOB_UPLOAD, "POST", "201"),
        2.0
    );
    assert_eq!(
        requests(&pushed, MANIFEST, "PUT", "201") - requests(&before, MANIFEST, "PUT", "201"),
        1.0
    );
    let received = |m: &Metrics, route| m.get("mcr_http_received_bytes_total", &[("route", route)]);
    assert_eq!(
        received(&pushed, BLOB_UPLOAD) - received(&before, BLOB_UPLOAD),
        (config.len() + layer.len()) as f64
    );
    assert_eq!(
        received(&pushed, MANIFEST) - received(&before, MANIFEST),
        manifest.len() as f64
    );
    assert_eq!(pushed.get("mcr_blobs_stored", &[]), 2.0);
    assert_eq!(
        pushed.get("mcr_blobs_stored_bytes", &[]),
        (config.len() + layer.len()) as f64
    );
    assert_eq!(pushed.get("mcr_upload_sessions_open", &[]), 0.0);
    // Three bearer requests, three validations.
    let valid = |m: &Metrics| m.get("mcr_token_validations_total", &[("result", "valid")]);
    assert_eq!(valid(&pushed) - valid(&before), 3.0);

    // A pull: the manifest and the layer.
    let get = reqwest::Method::GET;
    let (status, body) = c
        .send_as(&c.token, get.clone(), "/v2/team/app/manifests/v1", b"")
        .await;
    assert_eq!((status, body.len()), (200, manifest.len()));
    let path = format!("/v2/team/app/blobs/{}", digest(layer));
    assert_eq!(
        c.send_as(&c.token, get.clone(), &path, b"").await,
        (200, layer.to_vec())
    );
    let pulled = c.scrape().await;
    assert_eq!(
        requests(&pulled, MANIFEST, "GET", "200") - requests(&pushed, MANIFEST, "GET", "200"),
        1.0
    );
    assert_eq!(
        requests(&pulled, BLOB, "GET", "200") - requests(&pushed, BLOB, "GET", "200"),
        1.0
    );
    let sent = |m: &Metrics, route| m.get("mcr_http_sent_bytes_total", &[("route", route)]);
    assert_eq!(
        sent(&pulled, MANIFEST) - sent(&pushed, MANIFEST),
        manifest.len() as f64
    );
    assert_eq!(
        sent(&pulled, BLOB) - sent(&pushed, BLOB),
        layer.len() as f64
    );
    let durations = |m: &Metrics| {
        m.get(
            "mcr_http_request_duration_seconds_count",
            &[("route", MANIFEST), ("method", "GET")],
        )
    };
    assert_eq!(durations(&pulled) - durations(&pushed), 1.0);

    // Denied: a rule refuses pushes to locked/**, then a push there; and
    // a token nobody issued.
    let rule = json!({"priority": 1, "effect": "deny", "actions": ["registry:push"], "repositories": ["locked/**"]});
    assert_eq!(
        c.send(
            post.clone(),
            "/v1/policy/rules",
            rule.to_string().as_bytes()
        )
        .await,
        201
    );
    let before_denied = c.scrape().await;
    assert_eq!(
        c.send(post.clone(), "/v2/locked/app/blobs/uploads/", b"")
            .await,
        403
    );
    assert_eq!(
        c.send_as("forged", get.clone(), "/v2/team/app/manifests/v1", b"")
            .await
            .0,
        401
    );
    let denied = c.scrape().await;
    assert_eq!(
        requests(&denied, BLOB_UPLOAD, "POST", "403")
            - requests(&before_denied, BLOB_UPLOAD, "POST", "403"),
        1.0
    );
    assert_eq!(
        requests(&denied, MANIFEST, "GET", "401")
            - requests(&before_denied, MANIFEST, "GET", "401"),
        1.0
    );
    let invalid = |m: &Metrics| m.get("mcr_token_validations_total", &[("result", "invalid")]);
    assert_eq!(invalid(&denied) - invalid(&before_denied), 1.0);
    assert_eq!(valid(&denied) - valid(&before_denied), 1.0);

    // gRPC: mcrctl status calls Health and Ready.
    let out = Command::new(env!("CARGO_BIN_EXE_mcrctl"))
        .args(["--grpc", &c.srv.grpc, "status"])
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let grpc = c.scrape().await;
    for method in ["Health", "Ready"] {
        let calls = |m: &Metrics| {
            m.get(
                "mcr_grpc_requests_total",
                &[
                    ("service", "mcr.v1.AdminService"),
                    ("method", method),
                    ("code", "OK"),
                ],
            )
        };
        assert_eq!(calls(&grpc) - calls(&denied), 1.0, "{method}");
    }

    // GC: an orphan blob (grace period 0 s) is collected; the image stays.
    // It goes in as a chunked upload, whose id appears in its paths.
    let upload_id = c.chunked_upload("/v2/team/app", orphan).await;
    let before_gc = c.scrape().await;
    let upload = "/v2/<name>/blobs/uploads/<reference>";
    for (method, code) in [("PATCH", "202"), ("PUT", "201")] {
        let moved =
            requests(&before_gc, upload, method, code) - requests(&grpc, upload, method, code);
        assert_eq!(moved, 1.0, "{method} {upload} {code}");
    }
    assert_eq!(before_gc.get("mcr_blobs_stored", &[]), 3.0);
    assert_eq!(c.send(post.clone(), "/v1/gc", b"").await, 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    let after_gc = loop {
        let m = c.scrape().await;
        if m.get("mcr_gc_runs_total", &[("result", "completed")]) > 0.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "GC did not finish:\n{}", m.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        after_gc.get("mcr_gc_runs_total", &[("result", "completed")]),
        1.0
    );
    assert_eq!(
        after_gc.get("mcr_gc_runs_total", &[("result", "failed")]),
        0.0
    );
    assert_eq!(after_gc.get("mcr_gc_blobs_removed_total", &[]), 1.0);
    assert_eq!(
        after_gc.get("mcr_gc_freed_bytes_total", &[]),
        orphan.len() as f64
    );
    assert!(after_gc.get("mcr_gc_last_run_duration_seconds", &[]) >= 0.0);
    assert!(after_gc.get("mcr_gc_last_success_timestamp_seconds", &[]) > 1.7e9);
    assert_eq!(after_gc.get("mcr_blobs_stored", &[]), 2.0);

    // No label value comes from a path: no repository, no digest, no id.
    for s in &after_gc.scrape.samples {
        for (k, v) in s.labels.iter() {
            assert!(
                !v.contains("team")
                    && !v.contains("locked")
                    && !v.contains("sha256")
                    && !v.contains(&upload_id),
                "{} has {k}={v}",
                s.metric
            );
        }
    }
    promtool_check(&after_gc.text);
    alert_rules_name_what_is_exported(&after_gc);

    // The API's listener does not serve them.
    let (status, _) = c.send_as(&c.token, get, "/metrics", b"").await;
    assert_eq!(status, 404);
}

/// `promtool check metrics` (Debian's `prometheus` package) on the text,
/// where it is installed; says so when it is not.
fn promtool_check(text: &str) {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("promtool not run ({e}): install Debian's prometheus package for the lint");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `mcr_` metric deploy/prometheus/mcr-alerts.yml (and its unit
/// tests) names is one mcrsrv exports, and every `route` it names is a
/// template this scrape shows: renaming a metric or a route breaks this
/// test, not the alert at 3 a.m. MCIAS's metrics are not in a `mcrsrv
/// dev` scrape (no MCIAS): for those the names the adapter records are
/// read from its source.
fn alert_rules_name_what_is_exported(m: &Metrics) {
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/prometheus");
    let mcias = include_str!("../../mcr-adapters/src/metrics.rs");
    let exported: std::collections::BTreeSet<&str> =
        m.scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    let routes: std::collections::BTreeSet<&str> = m
        .scrape
        .samples
        .iter()
        .filter_map(|s| s.labels.get("route"))
        .collect();
    let mut names = 0;
    for file in ["mcr-alerts.yml", "mcr-alerts.test.yml"] {
        let path = format!("{deploy}/{file}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for (at, _) in text.match_indices("mcr_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            assert!(
                exported.contains(base) || mcias.contains(&format!("\"{base}\"")),
                "{file} names {name}, which mcrsrv does not export"
            );
            names += 1;
        }
        for (at, _) in text.match_indices("route=\"") {
            let value = text[at + 7..].split('"').next().unwrap_or_default();
            assert!(
                routes.contains(value),
                "{file} names route {value:?}; the routes exported: {routes:?}"
            );
        }
    }
    assert!(
        names > 5,
        "only {names} metric names found in the alert rules"
    );
}

/// `mcrsrv dev` without `MCR_SERVER_METRICS_ADDR` serves its metrics on a
/// free loopback port and prints the line the README promises; the URL
/// it prints answers with Prometheus text.
#[tokio::test]
async fn dev_prints_where_its_metrics_are() {
    let dir = tempfile::tempdir().expect("temp dir");
    let child = Command::new(env!("CARGO_BIN_EXE_mcrsrv"))
        .args(["dev", "--data"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("MCR_SERVER_METRICS_ADDR")
        .env("MCR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mcrsrv starts");
    let mut srv = Killed(child);
    let stdout = srv.0.stdout.take().expect("stdout");
    // Ends at the line, or when mcrsrv exits and closes its stdout.
    let mut printed = Vec::new();
    let url = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            printed.push(line.clone());
            line.strip_prefix("metrics on ").map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no `metrics on` line; mcrsrv printed {printed:?}"));
    let port = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{url} is not http://127.0.0.1:PORT/metrics"));
    assert_ne!(port.parse::<u16>().expect("a port"), 0);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let text = http
        .get(&url)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"));
    assert!(text.contains("mcr_blobs_stored"), "{text}");
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
