//! The web UI in a real browser: headless Chromium driven through
//! chromedriver (WebDriver, by `fantoccini`), against a real `mcrsrv
//! server` and a real `mcr-web server`, both over TLS 1.3 with a CA made
//! for the run, after skopeo pushed real images into the registry.
//!
//! Run by `scripts/browser.sh` (which installs Chromium, chromedriver,
//! skopeo, curl and openssl when missing):
//! `cargo test -p mcr-cli --features browser-tests --test browser`.
//! It is not part of `cargo test --workspace`: it needs a browser.
//!
//! Each check below is one point of "How it is checked" in issue 18. A
//! screenshot of every page goes to `$CARGO_TARGET_TMPDIR/browser/` (or
//! `MCR_SCREENSHOTS`) for a person to look at. The last pass browses the
//! read-only pages with JavaScript disabled.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

type Result<T = ()> = std::result::Result<T, String>;

/// How long one page may take to show what a check waits for.
const WAIT: Duration = Duration::from_secs(20);

/// How many times a read is tried again when htmx replaced what was
/// being read (an element found, then swapped out before its text came).
const STALE_RETRIES: usize = 50;

/// Whether WebDriver refused because the element left the document.
fn is_stale(e: &fantoccini::error::CmdError) -> bool {
    let e = e.to_string();
    e.contains("stale element") || e.contains("does not belong to the document")
}

/// An HTML-looking annotation and artifact type, which must render as
/// text. A media type cannot hold `<`, but `&lt` (no semicolon) is one a
/// browser decodes in unescaped HTML.
const HTML_ANNOTATION: &str = "<script>document.title='pwned'</script><b>bold</b>";
const HTML_ARTIFACT_TYPE: &str = "application/vnd.mcr.test&ltscript&gt+json";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let outcome = runtime.block_on(run());
    match outcome {
        Ok(passed) => println!("\n{passed} passed, 0 failed"),
        Err((passed, e)) => {
            eprintln!("\nbrowser suite FAILED: {e}");
            println!("\n{passed} passed, 1 failed");
            std::process::exit(1);
        }
    }
}

/// Processes started for the run, killed when it ends however it ends.
struct Procs(Vec<Child>);

impl Procs {
    fn stop(&mut self) {
        for mut c in self.0.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The run's servers and files; stopped and removed when dropped.
struct Env {
    dir: PathBuf,
    shots: PathBuf,
    ca_dir: PathBuf,
    registry: String,
    web: String,
    admin_pw: String,
    procs: Procs,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.procs.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `cmd`, and returns once it printed a line containing `marker`,
/// with that line.
fn start(procs: &mut Procs, mut cmd: Command, marker: &str, log: &Path) -> Result<String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    procs.0.push(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if line.contains(&wanted) {
                let _ = tx.send(line);
            }
        }
    });
    rx.recv_timeout(WAIT).map_err(|_| {
        format!(
            "{cmd:?} did not say {marker:?}; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })
}

fn openssl_ca(dir: &Path) -> Result {
    let p = |f: &str| dir.join(f).display().to_string();
    std::fs::create_dir_all(dir.join("certs")).map_err(|e| e.to_string())?;
    sh(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=mcr-browser-ca",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("certs/ca.crt"),
    ]))?;
    sh(Command::new("openssl").args([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]))?;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .map_err(|e| e.to_string())?;
    sh(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("certs/ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("server.crt"),
    ]))?;
    Ok(())
}

fn hash_password(pw: &str) -> Result<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcrsrv"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{pw}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// mcrsrv and mcr-web over TLS, with users admin, bob (user) and guest.
async fn environment() -> Result<Env> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?.keep();
    let shots = std::env::var_os("MCR_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser"));
    std::fs::create_dir_all(&shots).map_err(|e| e.to_string())?;
    let tls = dir.join("tls");
    openssl_ca(&tls)?;
    let admin_pw = "admin-secret".to_string();
    let mut users = String::new();
    for (name, role) in [("admin", "admin"), ("bob", "user"), ("guest", "guest")] {
        let hash = hash_password(&format!("{name}-secret"))?;
        users.push_str(&format!(
            "[[local.users]]\nusername = \"{name}\"\npassword_hash = \"{hash}\"\n\
             account_type = \"human\"\nroles = [\"{role}\"]\n"
        ));
    }
    let d = |f: &str| dir.join(f).display().to_string();
    let t = |f: &str| tls.join(f).display().to_string();
    let registry = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "[server]\nlisten_addr = \"{registry}\"\ngrpc_addr = \"127.0.0.1:{}\"\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\n[database]\npath = \"{}\"\n\
         [storage]\nlayers_path = \"{}\"\n[gc]\ngrace_period = \"0s\"\n{users}",
        free_port(),
        t("server.crt"),
        t("server.key"),
        d("data/mcr.db"),
        d("data/layers"),
    );
    std::fs::write(dir.join("mcr.toml"), config).map_err(|e| e.to_string())?;
    let mut procs = Procs(Vec::new());
    let mut mcrsrv = Command::new(env!("CARGO_BIN_EXE_mcrsrv"));
    mcrsrv.args(["server", "--config", &d("mcr.toml")]);
    let line = start(
        &mut procs,
        mcrsrv,
        "mcrsrv gRPC on",
        &dir.join("mcrsrv.log"),
    )?;
    let grpc = line.rsplit(' ').next().unwrap_or_default().to_string();
    let web_config = format!(
        "[web]\nlisten_addr = \"127.0.0.1:0\"\ngrpc_addr = \"https://{grpc}\"\n\
         ca_cert = \"{}\"\nsession_key_file = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
         registry_host = \"{registry}\"\n",
        t("certs/ca.crt"),
        d("web/session.key"),
        t("server.crt"),
        t("server.key"),
    );
    std::fs::write(dir.join("mcr-web.toml"), web_config).map_err(|e| e.to_string())?;
    let mut web = Command::new(env!("CARGO_BIN_EXE_mcr-web"));
    web.args(["server", "--config", &d("mcr-web.toml")]);
    let line = start(
        &mut procs,
        web,
        "mcr-web listening on",
        &dir.join("mcr-web.log"),
    )?;
    let web = line.rsplit(' ').next().unwrap_or_default().to_string();
    Ok(Env {
        ca_dir: tls.join("certs"),
        dir,
        shots,
        registry,
        web,
        admin_pw,
        procs,
    })
}

// ---- images, pushed by skopeo ------------------------------------------

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// An OCI layout under construction.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: PathBuf) -> Result<Layout> {
        std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(|e| e.to_string())?;
        Ok(Layout { dir })
    }

    /// Stores a blob; its descriptor.
    fn blob(&self, media_type: &str, data: &[u8]) -> Result<Value> {
        let hex = sha256_hex(data);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), data)
            .map_err(|e| e.to_string())?;
        Ok(json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": data.len()}))
    }

    /// An image for `arch` with one layer; its descriptor.
    fn image(&self, arch: &str, annotations: Value) -> Result<Value> {
        let layer = self.blob(
            "application/vnd.oci.image.layer.v1.tar",
            format!("layer for {arch}").repeat(200).as_bytes(),
        )?;
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            json!({"architecture": arch, "os": "linux", "config": {"Env": ["PATH=/bin"]},
                   "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}})
            .to_string()
            .as_bytes(),
        )?;
        let manifest = json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": [layer], "annotations": annotations});
        self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            manifest.to_string().as_bytes(),
        )
    }

    /// Names `descriptor` as `tag` in index.json.
    fn tag(&self, descriptor: &Value, tag: &str) -> Result {
        let mut d = descriptor.clone();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        let index = json!({"schemaVersion": 2, "manifests": [d]});
        std::fs::write(self.dir.join("index.json"), index.to_string()).map_err(|e| e.to_string())
    }
}

fn skopeo_push(env: &Env, layout: &Layout, tag: &str, dest: &str, all: bool) -> Result {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--quiet", "--preserve-digests"]);
    if all {
        cmd.arg("--all");
    }
    cmd.args([
        "--dest-cert-dir",
        &env.ca_dir.display().to_string(),
        "--dest-creds",
        &format!("admin:{}", env.admin_pw),
        &format!("oci:{}:{tag}", layout.dir.display()),
        &format!("docker://{}/{dest}", env.registry),
    ]);
    sh(&mut cmd).map(drop)
}

/// bob's subject, as the local identity names him in rules and the audit
/// log.
const BOB: &str = "local:bob";

/// Whether `user` may pull `reference`, asked with skopeo.
fn skopeo_can_pull(env: &Env, user: &str, reference: &str) -> bool {
    Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--cert-dir",
            &env.ca_dir.display().to_string(),
            "--creds",
            &format!("{user}:{user}-secret"),
            &format!("docker://{}/{reference}", env.registry),
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `curl` against the registry's REST API as admin; the JSON answer.
fn rest(env: &Env, method: &str, path: &str, body: Option<&str>, token: &str) -> Result<Value> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sf", "--cacert"])
        .arg(env.ca_dir.join("ca.crt"))
        .args([
            "-X",
            method,
            "-H",
            &format!("Authorization: Bearer {token}"),
        ]);
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    cmd.arg(format!("https://{}{path}", env.registry));
    let out = sh(&mut cmd)?;
    if out.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&out).map_err(|e| format!("{path}: {e}: {out}"))
}

fn admin_token(env: &Env) -> Result<String> {
    let out = sh(Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(env.ca_dir.join("ca.crt"))
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(json!({"username": "admin", "password": env.admin_pw}).to_string())
        .arg(format!("https://{}/v1/auth/login", env.registry)))?;
    let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    Ok(v["token"].as_str().unwrap_or_default().to_string())
}

/// Pushes a referrer (an SBOM-like artifact) of `subject` in `repo`
/// through the OCI API; its digest.
fn push_referrer(env: &Env, token: &str, repo: &str, subject: &Value) -> Result<String> {
    let empty = b"{}";
    let config_digest = format!("sha256:{}", sha256_hex(empty));
    let mut cmd = Command::new("curl");
    cmd.args(["-sf", "--cacert"])
        .arg(env.ca_dir.join("ca.crt"))
        .args([
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {token}"),
        ])
        .args([
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            "{}",
        ])
        .arg(format!(
            "https://{}/v2/{repo}/blobs/uploads/?digest={config_digest}",
            env.registry
        ));
    sh(&mut cmd)?;
    let manifest = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": HTML_ARTIFACT_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": 2},
        "layers": [],
        "subject": subject,
        "annotations": {"org.example.note": HTML_ANNOTATION}})
    .to_string();
    let digest = format!("sha256:{}", sha256_hex(manifest.as_bytes()));
    let mut cmd = Command::new("curl");
    cmd.args(["-sf", "--cacert"])
        .arg(env.ca_dir.join("ca.crt"))
        .args(["-X", "PUT", "-H", &format!("Authorization: Bearer {token}")])
        .args([
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            &manifest,
        ])
        .arg(format!(
            "https://{}/v2/{repo}/manifests/{digest}",
            env.registry
        ));
    sh(&mut cmd)?;
    Ok(digest)
}

struct Pushed {
    /// The index `web/multi:1` and its arm64 image.
    index: String,
    arm64: String,
    /// `web/app:v1`, with an HTML annotation and a referrer.
    image: String,
    referrer: String,
}

fn push_images(env: &Env) -> Result<Pushed> {
    let single = Layout::new(env.dir.join("single"))?;
    let image = single.image("amd64", json!({"org.example.note": HTML_ANNOTATION}))?;
    single.tag(&image, "v1")?;
    skopeo_push(env, &single, "v1", "web/app:v1", false)?;
    skopeo_push(env, &single, "v1", "web/app:latest", false)?;
    skopeo_push(env, &single, "v1", "tools/copy:v1", false)?;
    let multi = Layout::new(env.dir.join("multi"))?;
    let amd = multi.image("amd64", json!({}))?;
    let arm = multi.image("arm64", json!({}))?;
    let mut children = Vec::new();
    for (d, arch) in [(&amd, "amd64"), (&arm, "arm64")] {
        let mut d = d.clone();
        d["platform"] = json!({"architecture": arch, "os": "linux"});
        children.push(d);
    }
    let index = multi.blob(
        "application/vnd.oci.image.index.v1+json",
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
               "manifests": children})
        .to_string()
        .as_bytes(),
    )?;
    multi.tag(&index, "1")?;
    skopeo_push(env, &multi, "1", "web/multi:1", true)?;
    let token = admin_token(env)?;
    let referrer = push_referrer(env, &token, "web/app", &image)?;
    let s = |v: &Value| v["digest"].as_str().unwrap_or_default().to_string();
    Ok(Pushed {
        index: s(&index),
        arm64: s(&arm),
        image: s(&image),
        referrer,
    })
}

// ---- the browser ------------------------------------------------------

async fn chromedriver(env: &mut Env) -> Result<String> {
    let port = free_port();
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let mut cmd = Command::new(&driver);
    cmd.arg(format!("--port={port}"));
    start(
        &mut env.procs,
        cmd,
        "started successfully",
        &env.dir.join("chromedriver.log"),
    )?;
    Ok(format!("http://127.0.0.1:{port}"))
}

async fn browser(driver: &str, env: &Env, javascript: bool) -> Result<Client> {
    let profile = env.dir.join(if javascript {
        "profile"
    } else {
        "profile-nojs"
    });
    let mut args = vec![
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--no-first-run".into(),
        "--window-size=1280,1000".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    if !javascript {
        args.push("--blink-settings=scriptEnabled=false".into());
    }
    let mut options = json!({"args": args});
    if let Ok(bin) = std::env::var("CHROMIUM") {
        options["binary"] = json!(bin);
    }
    if !javascript {
        options["prefs"] = json!({"profile.managed_default_content_settings.javascript": 2});
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    // mcr-web's certificate is from the run's own CA.
    caps.insert("acceptInsecureCerts".into(), json!(true));
    caps.insert("goog:chromeOptions".into(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver)
        .await
        .map_err(|e| format!("cannot start Chromium through chromedriver: {e}"))
}

struct Ui<'a> {
    c: Client,
    env: &'a Env,
}

impl Ui<'_> {
    async fn go(&self, path: &str) -> Result {
        self.c
            .goto(&format!("{}{path}", self.env.web))
            .await
            .map_err(|e| format!("goto {path}: {e}"))
    }

    async fn find(&self, css: &str) -> Result<fantoccini::elements::Element> {
        match self
            .c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => Ok(e),
            Err(e) => Err(format!("no {css} on {}: {e}", self.url().await)),
        }
    }

    async fn text(&self, css: &str) -> Result<String> {
        for _ in 0..STALE_RETRIES {
            match self.find(css).await?.text().await {
                Err(e) if is_stale(&e) => tokio::time::sleep(Duration::from_millis(100)).await,
                read => return read.map_err(|e| e.to_string()),
            }
        }
        Err(format!("{css} kept being replaced while read"))
    }

    async fn all_texts(&self, css: &str) -> Result<Vec<String>> {
        'again: for _ in 0..STALE_RETRIES {
            let mut out = Vec::new();
            for e in self
                .c
                .find_all(Locator::Css(css))
                .await
                .map_err(|e| e.to_string())?
            {
                match e.text().await {
                    Ok(text) => out.push(text),
                    Err(e) if is_stale(&e) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue 'again;
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            return Ok(out);
        }
        Err(format!("{css} kept being replaced while read"))
    }

    async fn body(&self) -> Result<String> {
        self.text("body").await
    }

    async fn url(&self) -> String {
        self.c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    async fn click(&self, css: &str) -> Result {
        self.find(css)
            .await?
            .click()
            .await
            .map_err(|e| format!("click {css}: {e}"))
    }

    async fn fill(&self, css: &str, text: &str) -> Result {
        let e = self.find(css).await?;
        e.clear().await.map_err(|e| e.to_string())?;
        e.send_keys(text).await.map_err(|e| e.to_string())
    }

    async fn shot(&self, name: &str) -> Result {
        let png = self.c.screenshot().await.map_err(|e| e.to_string())?;
        std::fs::write(self.env.shots.join(format!("{name}.png")), png).map_err(|e| e.to_string())
    }

    /// Waits until the page's text holds `what`.
    async fn wait_text(&self, what: &str) -> Result {
        for _ in 0..(WAIT.as_millis() / 100) {
            if self.body().await.unwrap_or_default().contains(what) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "{:?} never showed on {}: {}",
            what,
            self.url().await,
            self.body().await.unwrap_or_default()
        ))
    }

    async fn login(&self, user: &str) -> Result {
        self.go("/login").await?;
        self.fill("#username", user).await?;
        self.fill("#password", &format!("{user}-secret")).await?;
        self.click("#login").await
    }

    async fn logout(&self) -> Result {
        self.click("form.logout button").await?;
        self.find("#username").await.map(drop)
    }
}

fn check(cond: bool, what: impl Into<String>) -> Result {
    if cond {
        Ok(())
    } else {
        Err(what.into())
    }
}

async fn run() -> std::result::Result<usize, (usize, String)> {
    let mut passed = 0;
    let fail = |passed: usize| move |e: String| (passed, e);
    let mut env = environment().await.map_err(fail(0))?;
    let pushed = push_images(&env).map_err(fail(0))?;
    let driver = chromedriver(&mut env).await.map_err(fail(0))?;
    let c = browser(&driver, &env, true).await.map_err(fail(0))?;
    let ui = Ui { c, env: &env };
    let checks: Vec<(&str, CheckFn)> = vec![
        ("a guest is refused at login", guest_refused),
        (
            "log in; the dashboard's numbers match the registry",
            dashboard,
        ),
        ("repositories: filter, sort, open one", repositories),
        ("an index, one platform, and a referrer", manifests),
        (
            "HTML in an annotation and an artifact type renders as text",
            escaping,
        ),
        (
            "a deny rule refuses a pull; disabled it allows it; deleted",
            deny_rule,
        ),
        ("explain a decision", explain),
        ("an htmx action that fails shows the error page", htmx_error),
        ("the audit log filters to matching rows", audit),
        ("garbage collection starts from its page", gc),
        ("a form post without the CSRF token is refused", csrf),
        ("a non-admin gets 403 on /policy", non_admin),
    ];
    for (name, f) in checks {
        print!("browser: {name} ... ");
        f(&ui, &pushed)
            .await
            .map_err(|e| (passed, format!("{name}: {e}")))?;
        println!("ok");
        passed += 1;
    }
    let _ = ui.c.close().await;
    print!("browser: the read-only pages without JavaScript ... ");
    let c = browser(&driver, &env, false).await.map_err(fail(passed))?;
    let ui = Ui { c, env: &env };
    no_javascript(&ui, &pushed)
        .await
        .map_err(|e| (passed, format!("without JavaScript: {e}")))?;
    let _ = ui.c.close().await;
    println!("ok");
    passed += 1;
    println!("screenshots in {}", env.shots.display());
    drop(env);
    Ok(passed)
}

type CheckFn = for<'a> fn(
    &'a Ui<'a>,
    &'a Pushed,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result> + 'a>>;

macro_rules! boxed {
    ($($name:ident),*) => {$(
        fn $name<'a>(
            ui: &'a Ui<'a>,
            p: &'a Pushed,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result> + 'a>> {
            Box::pin(checks::$name(ui, p))
        }
    )*};
}

boxed!(
    guest_refused,
    dashboard,
    repositories,
    manifests,
    escaping,
    deny_rule,
    explain,
    htmx_error,
    audit,
    gc,
    csrf,
    non_admin,
    no_javascript
);

mod checks {
    use super::*;

    pub async fn guest_refused(ui: &Ui<'_>, _: &Pushed) -> Result {
        ui.login("guest").await?;
        let error = ui.text("#login-error").await?;
        check(
            error.contains("only the guest role"),
            format!("said {error:?}"),
        )?;
        ui.shot("login-guest-refused").await?;
        ui.go("/").await?;
        check(
            ui.url().await.ends_with("/login"),
            "a refused guest has no session",
        )
    }

    pub async fn dashboard(ui: &Ui<'_>, _: &Pushed) -> Result {
        ui.go("/login").await?;
        ui.shot("login").await?;
        ui.login("admin").await?;
        let count = ui.text("#repo-count").await?;
        let token = admin_token(ui.env)?;
        let d = rest(ui.env, "GET", "/v1/dashboard", None, &token)?;
        let repos = rest(ui.env, "GET", "/v1/repositories", None, &token)?;
        let n = repos["repositories"].as_array().map_or(0, Vec::len);
        check(
            count == n.to_string(),
            format!("{count} repositories shown, {n} listed"),
        )?;
        check(
            d["repositories"] == count.parse::<u64>().unwrap_or(u64::MAX),
            format!("{count} shown, dashboard API says {}", d["repositories"]),
        )?;
        let stored = ui
            .find("#stored")
            .await?
            .attr("title")
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        check(
            stored == format!("{} bytes", d["stored_bytes"]),
            format!("stored {stored:?}, API {}", d["stored_bytes"]),
        )?;
        let pushes = ui.all_texts("#pushes tbody tr").await?;
        let api_pushes = d["recent_pushes"].as_array().map_or(0, Vec::len);
        check(
            pushes.len() == api_pushes && api_pushes > 0,
            format!("{} pushes shown, {api_pushes} in the API", pushes.len()),
        )?;
        check(
            pushes[0].contains(d["recent_pushes"][0]["repository"].as_str().unwrap_or("?")),
            format!("newest push {:?}", pushes[0]),
        )?;
        check(ui.text("#gc-state").await? == "idle", "GC idle")?;
        ui.shot("dashboard").await
    }

    pub async fn repositories(ui: &Ui<'_>, _: &Pushed) -> Result {
        ui.go("/repositories").await?;
        ui.find("#repo-table").await?;
        ui.shot("repositories").await?;
        // htmx swaps the table as the filter is typed.
        ui.fill("#filter", "web/").await?;
        for _ in 0..(WAIT.as_millis() / 100) {
            let names = ui.all_texts("#repo-table tbody td:first-child").await?;
            if !names.is_empty() && names.iter().all(|n| n.starts_with("web/")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let names = ui.all_texts("#repo-table tbody td:first-child").await?;
        check(
            names == ["web/app", "web/multi"],
            format!("filtered to {names:?}"),
        )?;
        ui.shot("repositories-filtered").await?;
        // Sorted by tag count, largest first.
        ui.go("/repositories?sort=tags&order=desc").await?;
        let names = ui.all_texts("#repo-table tbody td:first-child").await?;
        check(
            names.first().map(String::as_str) == Some("web/app"),
            format!("{names:?}"),
        )?;
        ui.click("#repo-table a[href='/repositories/web/app']")
            .await?;
        check(
            ui.text("#repo-name").await? == "web/app",
            "the repository page",
        )?;
        let tags = ui.all_texts("#tags tbody td:first-child").await?;
        check(tags == ["latest", "v1"], format!("tags {tags:?}"))?;
        let pull = ui
            .find("#tags input.pull-ref")
            .await?
            .prop("value")
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        check(
            pull == format!("{}/web/app:latest", ui.env.registry),
            format!("pull reference {pull:?}"),
        )?;
        ui.shot("repository").await
    }

    pub async fn manifests(ui: &Ui<'_>, p: &Pushed) -> Result {
        ui.go("/repositories/web/multi").await?;
        ui.click(&format!("#tags a[href$='{}']", p.index)).await?;
        check(
            ui.text("#manifest-digest").await? == p.index,
            "the index's page",
        )?;
        let platforms = ui.all_texts("#platforms a.platform").await?;
        check(
            platforms == ["linux/amd64", "linux/arm64"],
            format!("platforms {platforms:?}"),
        )?;
        ui.shot("manifest-index").await?;
        ui.click("#platforms tbody tr:nth-child(2) a.platform")
            .await?;
        check(
            ui.text("#manifest-digest").await? == p.arm64,
            "the arm64 image",
        )?;
        let config = ui.text("#config-json").await?;
        check(config.contains("\"arm64\""), format!("config {config}"))?;
        ui.shot("manifest-platform").await?;
        ui.go(&format!("/repositories/web/app/-/manifests/{}", p.image))
            .await?;
        ui.click("#referrers a.referrer").await?;
        check(
            ui.text("#manifest-digest").await? == p.referrer,
            "the referrer's page",
        )?;
        let subject = ui.text("#subject").await?;
        check(subject == p.image, format!("subject {subject}"))?;
        ui.shot("manifest-referrer").await
    }

    pub async fn escaping(ui: &Ui<'_>, p: &Pushed) -> Result {
        ui.go(&format!("/repositories/web/app/-/manifests/{}", p.image))
            .await?;
        let note = ui.text("#annotations td.annotation").await?;
        check(
            note == HTML_ANNOTATION,
            format!("annotation shown as {note:?}"),
        )?;
        let kind = ui.text("#referrers td.artifact-type").await?;
        check(
            kind == HTML_ARTIFACT_TYPE,
            format!("artifact type shown as {kind:?}"),
        )?;
        let title = ui.c.title().await.map_err(|e| e.to_string())?;
        check(!title.contains("pwned"), "the annotation's script ran")?;
        let bold =
            ui.c.find_all(Locator::Css("#annotations b"))
                .await
                .map_err(|e| e.to_string())?;
        check(bold.is_empty(), "the annotation's <b> became markup")?;
        let inline =
            ui.c.execute(
                "return document.querySelectorAll('script:not([src])').length",
                vec![],
            )
            .await
            .map_err(|e| e.to_string())?;
        check(inline == json!(0), format!("{inline} inline scripts"))?;
        ui.shot("manifest-escaped").await
    }

    async fn create_deny_rule(ui: &Ui<'_>) -> Result<i64> {
        ui.go("/policy").await?;
        ui.fill("#new-priority", "10").await?;
        ui.click("#new-deny").await?;
        ui.click("input[name=actions][value='registry:pull']")
            .await?;
        // The local identity's subjects are `local:<username>`.
        ui.fill("#new-subject", BOB).await?;
        ui.fill("#new-repositories", "web/*").await?;
        ui.fill("#new-description", "bob may not pull web/*")
            .await?;
        ui.click("#create").await?;
        ui.wait_text("Rule created.").await?;
        let ids = ui.all_texts("#rules tbody td:first-child").await?;
        ids.iter()
            .filter_map(|i| i.parse::<i64>().ok())
            .find(|&i| i > 0)
            .ok_or_else(|| format!("no stored rule among {ids:?}"))
    }

    pub async fn deny_rule(ui: &Ui<'_>, _: &Pushed) -> Result {
        check(
            skopeo_can_pull(ui.env, "bob", "web/app:v1"),
            "bob pulls before the rule",
        )?;
        let id = create_deny_rule(ui).await?;
        ui.shot("policy").await?;
        check(
            !skopeo_can_pull(ui.env, "bob", "web/app:v1"),
            "the deny rule did not refuse bob's pull",
        )?;
        check(
            skopeo_can_pull(ui.env, "bob", "tools/copy:v1"),
            "the rule reached beyond web/*",
        )?;
        // Disabled inline: htmx swaps the row.
        ui.click(&format!("#disable-{id}")).await?;
        ui.find(&format!("#enable-{id}")).await?;
        check(
            skopeo_can_pull(ui.env, "bob", "web/app:v1"),
            "bob still refused with the rule disabled",
        )?;
        ui.shot("policy-disabled").await?;
        // Priority and description edited inline.
        ui.fill(&format!("#rule-{id} input.priority"), "12").await?;
        ui.click(&format!("#save-{id}")).await?;
        ui.wait_text("Rule saved.").await?;
        let row = ui.text(&format!("#rule-{id}")).await?;
        check(row.contains("deny"), format!("row {row}"))?;
        // Enabled again for the explain check, then deleted there.
        ui.click(&format!("#enable-{id}")).await?;
        ui.find(&format!("#disable-{id}")).await.map(drop)
    }

    /// Review of issue 18, defect 2: a rule deleted elsewhere, then
    /// disabled from a page that still shows it — the 404 replaces the
    /// page, with its way back, instead of nothing happening.
    pub async fn htmx_error(ui: &Ui<'_>, _: &Pushed) -> Result {
        let id = create_deny_rule(ui).await?;
        let token = admin_token(ui.env)?;
        rest(
            ui.env,
            "DELETE",
            &format!("/v1/policy/rules/{id}"),
            None,
            &token,
        )?;
        ui.click(&format!("#disable-{id}")).await?;
        ui.wait_text("Not found").await?;
        ui.wait_text("Back to the dashboard").await?;
        ui.shot("htmx-error").await
    }

    pub async fn explain(ui: &Ui<'_>, _: &Pushed) -> Result {
        ui.go("/policy").await?;
        ui.fill("#explain-subject", BOB).await?;
        ui.click("#explain-form input[name=roles][value=user]")
            .await?;
        ui.find("#explain-action")
            .await?
            .select_by_value("registry:pull")
            .await
            .map_err(|e| e.to_string())?;
        ui.fill("#explain-repository", "web/app").await?;
        ui.click("#explain").await?;
        let decision = ui.text("#decision").await?;
        check(decision.contains("deny"), format!("decision {decision:?}"))?;
        let matched = ui.all_texts("#verdicts tr.matched").await?;
        check(
            matched.iter().any(|r| r.contains("bob may not pull")),
            format!("matched rules {matched:?}"),
        )?;
        ui.shot("explain").await?;
        // Delete the rule, after the confirmation page.
        ui.go("/policy").await?;
        let id = ui
            .all_texts("#rules tbody td:first-child")
            .await?
            .iter()
            .filter_map(|i| i.parse::<i64>().ok())
            .find(|&i| i > 0)
            .ok_or("the rule is gone before its deletion")?;
        ui.click(&format!("#delete-{id}")).await?;
        ui.find("#confirm-delete").await?;
        ui.shot("policy-delete-confirm").await?;
        ui.click("#confirm-delete").await?;
        ui.wait_text("Rule deleted.").await?;
        let ids = ui.all_texts("#rules tbody td:first-child").await?;
        check(
            !ids.contains(&id.to_string()),
            format!("rule {id} still listed"),
        )?;
        check(
            skopeo_can_pull(ui.env, "bob", "web/app:v1"),
            "bob pulls again",
        )
    }

    pub async fn audit(ui: &Ui<'_>, _: &Pushed) -> Result {
        ui.go("/audit").await?;
        ui.shot("audit").await?;
        ui.find("#audit-event-type")
            .await?
            .select_by_value("policy_rule_created")
            .await
            .map_err(|e| e.to_string())?;
        ui.click("#audit-filter").await?;
        let mut types = Vec::new();
        for _ in 0..(WAIT.as_millis() / 100) {
            // htmx may swap the table between finding the cells and
            // reading them (a stale element): read again on the next turn.
            types = ui
                .all_texts("#audit-table td.event-type")
                .await
                .unwrap_or_default();
            if !types.is_empty() && types.iter().all(|t| t == "policy_rule_created") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        check(
            !types.is_empty() && types.iter().all(|t| t == "policy_rule_created"),
            format!("rows {types:?}"),
        )?;
        ui.shot("audit-filtered").await?;
        ui.go(&format!("/audit?actor={BOB}&event_type=policy_deny"))
            .await?;
        let actors = ui.all_texts("#audit-table td.actor").await?;
        check(
            !actors.is_empty() && actors.iter().all(|a| a == BOB),
            format!("bob's denials: {actors:?}"),
        )
    }

    pub async fn gc(ui: &Ui<'_>, _: &Pushed) -> Result {
        ui.go("/gc").await?;
        ui.shot("gc").await?;
        // The form's POST must reach mcr-web before the polling below
        // navigates: a `goto` while the submit is in flight cancels it (a
        // loaded CI machine saw no run start). Its answer replaces the
        // page, which leaves the clicked button stale.
        let button = ui.find("#start-gc").await?;
        button
            .clone()
            .click()
            .await
            .map_err(|e| format!("click #start-gc: {e}"))?;
        let mut submitted = false;
        for _ in 0..(WAIT.as_millis() / 100) {
            match button.text().await {
                Err(e) if is_stale(&e) => {
                    submitted = true;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        check(submitted, "the start form's answer never replaced the page")?;
        for _ in 0..(WAIT.as_millis() / 100) {
            ui.go("/gc").await?;
            if !ui.all_texts("#gc-runs tbody tr").await?.is_empty() {
                return ui.shot("gc-after-run").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("no completed run listed".into())
    }

    pub async fn csrf(ui: &Ui<'_>, _: &Pushed) -> Result {
        ui.go("/policy").await?;
        let before = ui.all_texts("#rules tbody tr").await?.len();
        let status =
            ui.c.execute(
                "return fetch('/policy/rules', {method: 'POST', body: new URLSearchParams(\
                 {priority: '3', effect: 'deny', actions: 'registry:pull'})}).then(r => r.status)",
                vec![],
            )
            .await
            .map_err(|e| e.to_string())?;
        check(
            status == json!(403),
            format!("a post without the token got {status}"),
        )?;
        ui.go("/policy").await?;
        let after = ui.all_texts("#rules tbody tr").await?.len();
        check(before == after, "a rule was created without the token")
    }

    pub async fn non_admin(ui: &Ui<'_>, _: &Pushed) -> Result {
        ui.logout().await?;
        ui.login("bob").await?;
        ui.find("#repo-count").await?;
        ui.go("/policy").await?;
        let title = ui.text("#error-title").await?;
        check(title == "Not allowed", format!("title {title:?}"))?;
        ui.shot("policy-not-allowed").await?;
        let status =
            ui.c.execute("return fetch('/policy').then(r => r.status)", vec![])
                .await
                .map_err(|e| e.to_string())?;
        check(status == json!(403), format!("/policy answered {status}"))?;
        // The error page links back; logging out is on every other page.
        ui.click("a[href='/']").await?;
        ui.logout().await
    }

    pub async fn no_javascript(ui: &Ui<'_>, p: &Pushed) -> Result {
        ui.login("bob").await?;
        // WebDriver may still evaluate its own scripts; the page's did not run.
        let htmx =
            ui.c.execute("return typeof window.htmx", vec![])
                .await
                .unwrap_or(json!("undefined"));
        check(htmx == json!("undefined"), "htmx ran with scripts disabled")?;
        check(!ui.text("#repo-count").await?.is_empty(), "the dashboard")?;
        ui.shot("nojs-dashboard").await?;
        ui.click("nav a[href='/repositories']").await?;
        ui.fill("#filter", "multi").await?;
        ui.click(".filters button").await?;
        // The form's GET loads a new page: read until it is the filtered
        // one (a read may meet the old page going away).
        let mut names = Vec::new();
        for _ in 0..(WAIT.as_millis() / 100) {
            names = ui
                .all_texts("#repo-table tbody td:first-child")
                .await
                .unwrap_or_default();
            if names == ["web/multi"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        check(
            names == ["web/multi"],
            format!("filtered without htmx: {names:?}"),
        )?;
        ui.shot("nojs-repositories").await?;
        ui.click("#repo-table a[href='/repositories/web/multi']")
            .await?;
        ui.click(&format!("#tags a[href$='{}']", p.index)).await?;
        ui.click("#platforms tbody tr:nth-child(1) a.platform")
            .await?;
        check(ui.find("#manifest-json").await.is_ok(), "the image's page")?;
        ui.shot("nojs-manifest").await?;
        ui.logout().await
    }
}
