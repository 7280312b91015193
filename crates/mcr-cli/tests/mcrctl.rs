//! `mcrctl` as a person or a script uses it: the real binary against a
//! real registry, checking what it prints (tables and `--json`) and its
//! exit codes.
//!
//! - Over REST and gRPC, against the real `mcrsrv dev` binary on
//!   ephemeral loopback ports with a temporary `--data` directory, logging
//!   in with the password from `DIR/admin.password`; it serves both
//!   transports at once, so every command's `--json` can be compared
//!   across them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use sha2::Digest as _;

/// What a run of mcrctl did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "mcrctl failed: {self:?}");
        self
    }

    #[track_caller]
    fn failed(self) -> Run {
        assert_ne!(self.code, 0, "mcrctl should have failed: {self:?}");
        assert!(
            self.stdout.is_empty(),
            "nothing on stdout on failure: {self:?}"
        );
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.stdout))
    }
}

/// Runs mcrctl with `args`, standard input `stdin` (none: not a terminal,
/// empty), no `MCR_TOKEN` from the environment and no proxy.
fn mcrctl(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcrctl"))
        .args(args)
        .env_remove("MCR_TOKEN")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcrctl runs");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("mcrctl exits");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `mcrsrv dev` with every address ephemeral (`--listen 127.0.0.1:0`; its
/// gRPC, UI and metrics follow); the addresses come from the lines it
/// prints, so concurrent tests never race for a port; killed when dropped.
struct Mcrsrv {
    child: Child,
    url: String,
    grpc: String,
    dir: tempfile::TempDir,
}

impl Mcrsrv {
    fn start() -> Mcrsrv {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcrsrv"))
            .args(["dev", "--data"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .env("MCR_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mcrsrv starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut url, mut grpc) = (None, None);
        // The metrics line is the last one `mcrsrv dev` prints at start.
        loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("mcrsrv exited early: {:?}", child.wait());
            };
            if let Some(a) = line.strip_prefix("mcrsrv listening on ") {
                url = Some(a.trim().to_string());
            } else if let Some(a) = line.strip_prefix("mcrsrv gRPC on ") {
                grpc = Some(a.trim().to_string());
            } else if line.starts_with("metrics on ") {
                break;
            }
        }
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Mcrsrv {
            child,
            url: url.expect("mcrsrv printed its listen address"),
            grpc: grpc.expect("mcrsrv printed its gRPC address"),
            dir,
        }
    }

    fn password(&self) -> String {
        admin_password(self.dir.path())
    }
}

impl Drop for Mcrsrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin_password(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin.password"))
        .expect("DIR/admin.password")
        .trim()
        .to_string()
}

/// `mcrctl login` as `admin` over `transport` (`--server URL` or
/// `--grpc ADDR`) with the password `mcrsrv dev` wrote in `dir`; the token.
fn admin_token(transport: &[&str], dir: &Path) -> String {
    let mut args = transport.to_vec();
    args.extend(["--json", "login", "--username", "admin", "--password-stdin"]);
    let login = mcrctl(&args, Some(&admin_password(dir))).ok().json();
    login["token"].as_str().expect("a token").to_string()
}

/// Pushes a config and a layer from `seed`, then a manifest tagged `tag`,
/// over the OCI API; returns the manifest digest.
fn push_image(base: &str, token: &str, repo: &str, tag: &str, seed: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let digest = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
        let mut descs = Vec::new();
        for data in [format!("{{\"seed\":\"{seed}\"}}"), format!("layer of {seed}")] {
            let d = digest(data.as_bytes());
            let resp = http
                .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
                .bearer_auth(token)
                .body(data.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 201, "blob upload");
            descs.push((d, data.len()));
        }
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
            descs[0].0, descs[0].1, descs[1].0, descs[1].1
        );
        let resp = http
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .bearer_auth(token)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201, "manifest push");
        digest(manifest.as_bytes())
    })
}

#[test]
fn mcrctl_over_rest_against_mcrsrv_dev() {
    let srv = Mcrsrv::start();
    let s = srv.url.as_str();

    // No token needed for status.
    let status = mcrctl(&["--server", s, "status"], None).ok();
    assert!(status.stdout.contains(": ok"), "{status:?}");
    assert_eq!(
        mcrctl(&["--server", s, "--json", "status"], None)
            .ok()
            .json()["status"],
        "ok"
    );

    // Login: a wrong password, then the right one from stdin.
    let bad = mcrctl(
        &[
            "--server",
            s,
            "login",
            "--username",
            "admin",
            "--password-stdin",
        ],
        Some("wrong\n"),
    )
    .failed();
    assert!(bad.stderr.contains("401"), "{bad:?}");
    let no_tty = mcrctl(&["--server", s, "login", "--username", "admin"], None).failed();
    assert!(no_tty.stderr.contains("--password-stdin"), "{no_tty:?}");
    let login = mcrctl(
        &[
            "--server",
            s,
            "login",
            "--username",
            "admin",
            "--password-stdin",
        ],
        Some(&format!("{}\n", srv.password())),
    )
    .ok();
    let token = login.stdout.trim().to_string();
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "{login:?}"
    );
    assert!(login.stderr.contains("MCR_TOKEN"), "{login:?}");
    let t = token.as_str();

    // Without a token, or with a wrong one: 401 and what to do.
    for args in [
        vec!["--server", s, "repo", "list"],
        vec!["--server", s, "--token", "wrong", "repo", "list"],
    ] {
        let r = mcrctl(&args, None).failed();
        assert_eq!(r.code, 1);
        assert!(r.stderr.contains("401"), "{r:?}");
        assert!(r.stderr.contains("run `mcrctl login`"), "{r:?}");
        assert!(r.stderr.contains("MCR_TOKEN"), "{r:?}");
    }

    // Repositories: empty, then two images.
    let empty = mcrctl(&["--server", s, "--token", t, "repo", "list"], None).ok();
    assert_eq!(
        empty.stdout.trim(),
        "NAME  TAGS  MANIFESTS  SIZE  LAST PUSH  CREATED"
    );
    let digest = push_image(s, t, "team/app", "v1", "one");
    push_image(s, t, "team/app", "v2", "two");
    push_image(s, t, "tool", "latest", "three");
    let list = mcrctl(&["--server", s, "--token", t, "repo", "list"], None).ok();
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{list:?}");
    assert!(
        lines[0].starts_with("NAME      TAGS  MANIFESTS  SIZE"),
        "{list:?}"
    );
    assert!(
        lines[1].starts_with("team/app  2     2          "),
        "{list:?}"
    );
    assert!(
        lines[2].starts_with("tool      1     1          "),
        "{list:?}"
    );
    let json = mcrctl(
        &["--server", s, "--token", t, "--json", "repo", "list"],
        None,
    )
    .ok()
    .json();
    assert_eq!(json[0]["name"], "team/app");
    assert_eq!(json[0]["tag_count"], 2);
    assert_eq!(json[1]["manifest_count"], 1);

    let show = mcrctl(
        &["--server", s, "--token", t, "repo", "show", "team/app"],
        None,
    )
    .ok();
    assert!(show.stdout.contains("name:       team/app"), "{show:?}");
    assert!(show.stdout.contains(&format!("v1   {digest}")), "{show:?}");
    assert!(show.stdout.contains("LAYER"), "{show:?}");
    let show = mcrctl(
        &[
            "--server", s, "--token", t, "--json", "repo", "show", "team/app",
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(
        show["tags"][0],
        serde_json::json!({"name": "v1", "digest": digest})
    );
    assert_eq!(show["layers"].as_array().unwrap().len(), 4);
    let missing = mcrctl(&["--server", s, "--token", t, "repo", "show", "nope"], None).failed();
    assert!(missing.stderr.contains("404"), "{missing:?}");

    // Delete: refused without a terminal and without --yes; then done.
    let refused = mcrctl(
        &["--server", s, "--token", t, "repo", "delete", "tool"],
        None,
    )
    .failed();
    assert!(refused.stderr.contains("pass --yes"), "{refused:?}");
    let still = mcrctl(
        &["--server", s, "--token", t, "--json", "repo", "list"],
        None,
    )
    .ok();
    assert_eq!(still.json().as_array().unwrap().len(), 2);
    let deleted = mcrctl(
        &[
            "--server", s, "--token", t, "repo", "delete", "tool", "--yes",
        ],
        None,
    )
    .ok();
    assert!(
        deleted.stdout.contains("deleted repository tool"),
        "{deleted:?}"
    );
    let after = mcrctl(
        &["--server", s, "--token", t, "--json", "repo", "list"],
        None,
    )
    .ok();
    assert_eq!(after.json().as_array().unwrap().len(), 1);

    // Policy: create from flags and from JSON, list, update, explain, delete.
    let created = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "policy",
            "create",
            "--priority",
            "10",
            "--effect",
            "allow",
            "--action",
            "registry:pull,registry:catalog",
            "--account-type",
            "system",
            "--repository",
            "team/**",
            "--description",
            "ci pulls",
        ],
        None,
    )
    .ok();
    assert!(created.stdout.starts_with("created rule "), "{created:?}");
    assert!(
        created.stdout.contains("registry:pull,registry:catalog"),
        "{created:?}"
    );
    let second = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "--json",
            "policy",
            "create",
            "--body",
            r#"{"priority": 20, "effect": "deny", "actions": ["registry:push"], "subject": "ci"}"#,
        ],
        None,
    )
    .ok()
    .json();
    let id = second["id"].as_i64().unwrap();
    assert_eq!(second["subject"], "ci");
    let invalid = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "policy",
            "create",
            "--priority",
            "0",
            "--effect",
            "allow",
            "--action",
            "registry:pull",
        ],
        None,
    )
    .failed();
    assert!(
        invalid.stderr.contains("400") && invalid.stderr.contains("priority"),
        "{invalid:?}"
    );
    let unknown = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "policy",
            "create",
            "--priority",
            "1",
            "--effect",
            "allow",
            "--action",
            "registry:fly",
        ],
        None,
    )
    .failed();
    assert!(unknown.stderr.contains("unknown action"), "{unknown:?}");

    let updated = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "--json",
            "policy",
            "update",
            &id.to_string(),
            "--priority",
            "5",
            "--clear-subject",
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(updated["priority"], 5);
    assert_eq!(updated["subject"], Value::Null);
    assert_eq!(updated["effect"], "deny", "unchanged fields are kept");
    let nothing = mcrctl(
        &["--server", s, "--token", t, "policy", "update", "1"],
        None,
    )
    .failed();
    assert!(nothing.stderr.contains("nothing to change"), "{nothing:?}");

    let list = mcrctl(&["--server", s, "--token", t, "policy", "list"], None).ok();
    let lines: Vec<&str> = list.stdout.lines().collect();
    // The header, the four built-in rules (marked), then the stored two
    // by priority.
    assert_eq!(lines.len(), 7, "{list:?}");
    assert!(lines[0].starts_with("ID "), "{list:?}");
    for (line, id) in lines[1..5].iter().zip(["-1", "-2", "-3", "-4"]) {
        assert!(line.starts_with(&format!("{id} (built-in)")), "{list:?}");
    }
    assert!(
        lines[5].starts_with(&id.to_string()) && lines[5].contains(" deny "),
        "by priority: {list:?}"
    );
    let rules = mcrctl(
        &["--server", s, "--token", t, "--json", "policy", "list"],
        None,
    )
    .ok()
    .json();
    assert_eq!(rules.as_array().unwrap().len(), 6);

    let explain = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "policy",
            "explain",
            "--subject",
            "ci",
            "--account-type",
            "system",
            "--action",
            "registry:pull",
            "--repository",
            "team/app",
        ],
        None,
    )
    .ok();
    assert!(
        explain
            .stdout
            .contains("ci (system, no roles) asks registry:pull on team/app"),
        "{explain:?}"
    );
    assert!(explain.stdout.contains("decision: allow"), "{explain:?}");
    let explain = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "--json",
            "policy",
            "explain",
            "--subject",
            "u",
            "--account-type",
            "human",
            "--role",
            "guest",
            "--action",
            "registry:push",
            "--repository",
            "team/app",
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(explain["decision"]["effect"], "deny");

    // A tag rule: created with --tags, explained with --tag.
    let tag_rule = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "--json",
            "policy",
            "create",
            "--priority",
            "20",
            "--effect",
            "deny",
            "--action",
            "registry:tag_overwrite,registry:tag_delete",
            "--tags",
            "v*,release-*",
            "--description",
            "release tags are immutable",
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(tag_rule["tags"][0], "v*");
    assert_eq!(tag_rule["tags"][1], "release-*");
    let explain = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "policy",
            "explain",
            "--subject",
            "root",
            "--account-type",
            "human",
            "--role",
            "admin",
            "--action",
            "registry:tag_overwrite",
            "--repository",
            "team/app",
            "--tag",
            "v1.0.0",
        ],
        None,
    )
    .ok();
    assert!(
        explain.stdout.contains(&format!(
            "decision: deny, by rule {}",
            tag_rule["id"].as_i64().unwrap()
        )),
        "{explain:?}"
    );

    let gone = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "policy",
            "delete",
            &id.to_string(),
        ],
        None,
    )
    .ok();
    assert_eq!(gone.stdout.trim(), format!("deleted rule {id}"));
    let again = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "policy",
            "show",
            &id.to_string(),
        ],
        None,
    )
    .failed();
    assert!(again.stderr.contains("404"), "{again:?}");

    // Audit: the latest events, oldest first.
    let tail = mcrctl(
        &["--server", s, "--token", t, "audit", "tail", "--n", "5"],
        None,
    )
    .ok();
    let lines: Vec<&str> = tail.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{tail:?}");
    assert!(
        lines[0].starts_with("ID  ") && lines[0].contains("EVENT"),
        "{tail:?}"
    );
    assert!(
        lines[5].contains("policy_rule_deleted"),
        "newest last: {tail:?}"
    );
    let pushed = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "--json",
            "audit",
            "tail",
            "--event-type",
            "manifest_pushed",
            "--since",
            "1h",
        ],
        None,
    )
    .ok()
    .json();
    let pushed = pushed.as_array().unwrap();
    assert_eq!(pushed.len(), 3);
    assert!(pushed
        .windows(2)
        .all(|w| w[0]["id"].as_i64() < w[1]["id"].as_i64()));
    let bad = mcrctl(
        &[
            "--server",
            s,
            "--token",
            t,
            "audit",
            "tail",
            "--event-type",
            "nap",
        ],
        None,
    )
    .failed();
    assert!(bad.stderr.contains("400"), "{bad:?}");

    // GC: never ran; a run; its report; reconcile.
    let st = mcrctl(&["--server", s, "--token", t, "gc", "status"], None).ok();
    assert!(st.stdout.contains("last run:        never"), "{st:?}");
    let run = mcrctl(
        &["--server", s, "--token", t, "--json", "gc", "--wait"],
        None,
    )
    .ok()
    .json();
    assert!(run["id"].as_str().unwrap().starts_with("gc-"), "{run}");
    let st = mcrctl(
        &["--server", s, "--token", t, "--json", "gc", "status"],
        None,
    )
    .ok()
    .json();
    assert_eq!(st["running"], false);
    assert_eq!(st["last_run"]["id"], run["id"]);
    let started = mcrctl(&["--server", s, "--token", t, "gc"], None).ok();
    assert!(started.stdout.contains("started"), "{started:?}");
    let rec = mcrctl(&["--server", s, "--token", t, "gc", "--reconcile"], None).ok();
    assert!(
        rec.stdout.starts_with("reconcile: removed 0 file(s)"),
        "{rec:?}"
    );

    // Snapshot: a copy of the database in DIR/backups; its path printed.
    let snap = mcrctl(&["--server", s, "--token", t, "snapshot"], None).ok();
    assert_snapshot_in(srv.dir.path(), snap.stdout.trim_end());
    let refused = mcrctl(&["--server", s, "snapshot"], None).failed();
    assert!(refused.stderr.contains("401"), "{refused:?}");
}

/// `location` is a SQLite file in `data`'s `backups` directory, named as
/// `mcrsrv snapshot` names them.
#[track_caller]
fn assert_snapshot_in(data: &Path, location: &str) {
    let copy = Path::new(location);
    let name = copy
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    assert!(
        name.starts_with("mcr-")
            && name.ends_with(".db")
            && name.len() == "mcr-YYYYMMDD-HHMMSS.db".len(),
        "{location}"
    );
    assert_eq!(
        copy.parent().map(|d| std::fs::canonicalize(d).unwrap()),
        Some(std::fs::canonicalize(data.join("backups")).unwrap()),
        "{location}"
    );
    let bytes = std::fs::read(copy).unwrap();
    assert!(
        bytes.starts_with(b"SQLite format 3\0"),
        "{location} is not a database"
    );
}

#[test]
fn errors_say_what_to_do() {
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let r = mcrctl(&["--server", &nobody, "status"], None).failed();
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot reach the registry"), "{r:?}");
    assert!(r.stderr.contains("--server URL"), "{r:?}");
    let r = mcrctl(&["--grpc", &nobody.replace("http://", ""), "status"], None).failed();
    assert!(r.stderr.contains("cannot reach the registry"), "{r:?}");
    let r = mcrctl(&["--server", "not a url", "status"], None).failed();
    assert!(r.stderr.contains("--server"), "{r:?}");
    let r = mcrctl(
        &["policy", "create", "--priority", "1", "--body", "{}"],
        None,
    );
    assert_eq!(r.code, 2, "clap refuses mixed flags and body: {r:?}");
}

#[test]
fn status_fails_naming_the_store_while_the_registry_is_not_ready() {
    let p = Mcrsrv::start();
    let rest = ["--server", p.url.as_str(), "status"];
    let grpc = ["--grpc", p.grpc.as_str(), "status"];
    for args in [rest, grpc] {
        assert!(mcrctl(&args, None).ok().stdout.contains(": ok, ready"));
    }
    let json = mcrctl(&["--server", p.url.as_str(), "--json", "status"], None).ok();
    assert_eq!(json.json()["ready"], true);

    let layers = p.dir.path().join("layers");
    std::fs::remove_dir_all(&layers).unwrap();
    for (args, code) in [(rest, "503"), (grpc, "UNAVAILABLE")] {
        let r = mcrctl(&args, None).failed();
        assert!(r.stderr.contains(code), "{r:?}");
        assert!(
            r.stderr.contains("not ready: storage: blob directory"),
            "{r:?}"
        );
        assert!(r.stderr.contains(&layers.display().to_string()), "{r:?}");
    }
    std::fs::create_dir(&layers).unwrap();
    for args in [rest, grpc] {
        mcrctl(&args, None).ok();
    }
}

#[test]
fn mcrctl_over_grpc_answers_as_over_rest() {
    let p = Mcrsrv::start();
    let g = p.grpc.as_str();
    let r = p.url.as_str();

    assert!(mcrctl(&["--grpc", g, "status"], None)
        .ok()
        .stdout
        .contains("(gRPC): ok, ready"));
    // Login over gRPC; the token works over both.
    let bad = mcrctl(
        &[
            "--grpc",
            g,
            "login",
            "--username",
            "admin",
            "--password-stdin",
        ],
        Some("wrong\n"),
    )
    .failed();
    assert!(bad.stderr.contains("UNAUTHENTICATED"), "{bad:?}");
    let token = admin_token(&["--grpc", g], p.dir.path());
    let t = token.as_str();
    for args in [
        vec!["--grpc", g, "repo", "list"],
        vec!["--grpc", g, "--token", "wrong", "gc", "status"],
    ] {
        let e = mcrctl(&args, None).failed();
        assert!(
            e.stderr
                .contains("UNAUTHENTICATED: token missing or expired"),
            "{e:?}"
        );
        assert!(e.stderr.contains("run `mcrctl login`"), "{e:?}");
    }

    push_image(r, t, "team/app", "v1", "one");
    push_image(r, t, "tool", "latest", "two");
    let rule = mcrctl(
        &[
            "--grpc",
            g,
            "--token",
            t,
            "--json",
            "policy",
            "create",
            "--priority",
            "7",
            "--effect",
            "deny",
            "--action",
            "registry:push",
            "--role",
            "user",
            "--repository",
            "team/*",
        ],
        None,
    )
    .ok()
    .json();
    let id = rule["id"].as_i64().unwrap().to_string();
    mcrctl(
        &[
            "--grpc",
            g,
            "--token",
            t,
            "policy",
            "update",
            &id,
            "--subject",
            "bob",
        ],
        None,
    )
    .ok();
    mcrctl(&["--grpc", g, "--token", t, "gc", "--wait"], None).ok();
    let refused = mcrctl(&["--grpc", g, "--token", t, "repo", "delete", "tool"], None).failed();
    assert!(refused.stderr.contains("pass --yes"), "{refused:?}");
    let missing = mcrctl(&["--grpc", g, "--token", t, "repo", "show", "nope"], None).failed();
    assert!(missing.stderr.contains("NOT_FOUND"), "{missing:?}");

    // Every read prints the same JSON and the same table over both.
    let reads: [&[&str]; 13] = [
        &["repo", "list"],
        &["repo", "list", "--sort", "size", "--desc"],
        &["repo", "list", "--filter", "team"],
        &["repo", "show", "team/app"],
        &["repo", "manifest", "team/app", "v1"],
        &["dashboard"],
        &["gc", "runs"],
        &["policy", "list"],
        &["policy", "show", &id],
        &["audit", "tail", "--n", "50"],
        &["gc", "status"],
        &[
            "policy",
            "explain",
            "--subject",
            "bob",
            "--account-type",
            "human",
            "--role",
            "user",
            "--action",
            "registry:push",
            "--repository",
            "team/app",
        ],
        &["status"],
    ];
    for read in reads {
        for json in [true, false] {
            let run = |transport: &[&str]| {
                let mut args: Vec<&str> = transport.to_vec();
                args.extend(["--token", t]);
                if json {
                    args.push("--json");
                }
                args.extend(read);
                mcrctl(&args, None).ok().stdout
            };
            let over_rest = run(&["--server", r]);
            let over_grpc = run(&["--grpc", g]);
            if read == ["status"] {
                continue; // names its transport
            }
            assert_eq!(over_rest, over_grpc, "{read:?} json={json}");
        }
    }
    let dashboard = mcrctl(&["--grpc", g, "--token", t, "--json", "dashboard"], None)
        .ok()
        .json();
    assert_eq!(dashboard["repositories"], 2, "{dashboard}");
    assert_eq!(dashboard["recent_pushes"][0]["repository"], "tool");
    assert!(dashboard["gc"]["last_run"].is_object(), "{dashboard}");
    let manifest = mcrctl(
        &[
            "--grpc", g, "--token", t, "repo", "manifest", "tool", "latest",
        ],
        None,
    )
    .ok();
    assert!(manifest.stdout.contains("LAYER"), "{manifest:?}");
    let runs = mcrctl(&["--grpc", g, "--token", t, "--json", "gc", "runs"], None)
        .ok()
        .json();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    let bad = mcrctl(
        &["--grpc", g, "--token", t, "repo", "list", "--sort", "bytes"],
        None,
    )
    .failed();
    assert!(bad.stderr.contains("unknown sort"), "{bad:?}");
    let explain = mcrctl(
        &[
            "--grpc",
            g,
            "--token",
            t,
            "policy",
            "explain",
            "--subject",
            "bob",
            "--account-type",
            "human",
            "--role",
            "user",
            "--action",
            "registry:push",
            "--repository",
            "team/app",
        ],
        None,
    )
    .ok();
    assert!(
        explain
            .stdout
            .contains(&format!("decision: deny, by rule {id}")),
        "{explain:?}"
    );

    // Writes over gRPC.
    let deleted = mcrctl(
        &["--grpc", g, "--token", t, "repo", "delete", "tool", "--yes"],
        None,
    )
    .ok();
    assert!(deleted.stdout.contains("deleted repository tool"));
    let list = mcrctl(&["--grpc", g, "--token", t, "--json", "repo", "list"], None)
        .ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    mcrctl(&["--grpc", g, "--token", t, "policy", "delete", &id], None).ok();
    let rules = mcrctl(
        &["--grpc", g, "--token", t, "--json", "policy", "list"],
        None,
    )
    .ok()
    .json();
    assert_eq!(
        rules,
        serde_json::to_value(mcr_core::policy::builtin_rules()).unwrap()
    );
    let rec = mcrctl(
        &["--grpc", g, "--token", t, "--json", "gc", "--reconcile"],
        None,
    )
    .ok()
    .json();
    assert_eq!(
        rec,
        serde_json::json!({"files_removed": [], "missing_files": []})
    );
    let snap = mcrctl(&["--grpc", g, "--token", t, "--json", "snapshot"], None)
        .ok()
        .json();
    assert_snapshot_in(p.dir.path(), snap["location"].as_str().unwrap());
    assert!(
        snap["taken_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{snap}"
    );
    let refused = mcrctl(&["--grpc", g, "snapshot"], None).failed();
    assert!(refused.stderr.contains("UNAUTHENTICATED"), "{refused:?}");
}

#[test]
fn completions_to_a_reader_that_already_left_are_not_an_error() {
    // The read end is closed before mcrctl starts, so its write meets
    // EPIPE every time, as `mcrctl completions bash | head -1` may.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_mcrctl"))
        .args(["completions", "bash"])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn quotas_are_set_listed_and_deleted_over_rest_and_grpc() {
    let p = Mcrsrv::start();
    let (g, r) = (p.grpc.as_str(), p.url.as_str());
    let token = admin_token(&["--server", r], p.dir.path());
    let t = token.as_str();
    push_image(r, t, "team/app", "v1", "one");

    let set = mcrctl(
        &[
            "--server", r, "--token", t, "quota", "set", "team/", "10MiB",
        ],
        None,
    )
    .ok();
    assert_eq!(set.stdout, "quota 1 on team/: 10.0 MiB\n");
    let set = mcrctl(
        &[
            "--grpc", g, "--token", t, "--json", "quota", "set", "team/app", "2048",
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(
        set,
        serde_json::json!({"id": 2, "scope": "team/app", "limit_bytes": 2048})
    );

    // The listing is the same over both, and a scope's use is what the
    // repository listing shows as its size.
    let size = mcrctl(
        &["--server", r, "--token", t, "--json", "repo", "list"],
        None,
    )
    .ok()
    .json()[0]["total_size"]
        .as_u64()
        .unwrap();
    for json in [true, false] {
        let run = |transport: &[&str]| {
            let mut args: Vec<&str> = transport.to_vec();
            args.extend(["--token", t]);
            if json {
                args.push("--json");
            }
            args.extend(["quota", "list"]);
            mcrctl(&args, None).ok().stdout
        };
        assert_eq!(run(&["--server", r]), run(&["--grpc", g]), "json={json}");
    }
    let listed = mcrctl(
        &["--grpc", g, "--token", t, "--json", "quota", "list"],
        None,
    )
    .ok()
    .json();
    assert_eq!(listed[0]["scope"], "team/");
    assert_eq!(listed[0]["used_bytes"], size);
    assert_eq!(listed[1]["used_bytes"], size);
    let table = mcrctl(&["--server", r, "--token", t, "quota", "list"], None)
        .ok()
        .stdout;
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("team/app") && table.contains("2.0 KiB"),
        "{table}"
    );

    for (args, says) in [
        (["quota", "set", "Team/", "1"], "invalid scope"),
        (["quota", "set", "team/", "5 parsecs"], "unknown unit"),
        (["quota", "set", "team/", "0"], "invalid limit_bytes"),
    ] {
        for transport in [["--server", r], ["--grpc", g]] {
            let mut all: Vec<&str> = transport.to_vec();
            all.extend(["--token", t]);
            all.extend(args);
            let e = mcrctl(&all, None).failed();
            assert!(e.stderr.contains(says), "{args:?}: {e:?}");
        }
    }

    mcrctl(&["--grpc", g, "--token", t, "quota", "delete", "2"], None).ok();
    let gone = mcrctl(&["--server", r, "--token", t, "quota", "delete", "2"], None).failed();
    assert!(gone.stderr.contains("quota 2 not found"), "{gone:?}");
    let listed = mcrctl(
        &["--server", r, "--token", t, "--json", "quota", "list"],
        None,
    )
    .ok()
    .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[test]
fn retention_policies_and_runs_over_rest_and_grpc() {
    let p = Mcrsrv::start();
    let (g, r) = (p.grpc.as_str(), p.url.as_str());
    let token = admin_token(&["--server", r], p.dir.path());
    let t = token.as_str();
    let digest = push_image(r, t, "team/app", "v1", "one");
    let rest = |args: &[&str]| {
        let mut all = vec!["--server", r, "--token", t];
        all.extend(args);
        mcrctl(&all, None)
    };
    let grpc = |args: &[&str]| {
        let mut all = vec!["--grpc", g, "--token", t];
        all.extend(args);
        mcrctl(&all, None)
    };

    // The engine's validation, in its words.
    let bad = rest(&[
        "retention",
        "create",
        "--repository",
        "team/*",
        "--keep-last",
        "3",
    ])
    .failed();
    assert!(
        bad.stderr.contains("a policy must delete something"),
        "{bad:?}"
    );
    let bad = grpc(&[
        "retention",
        "create",
        "--repository",
        "team/*",
        "--delete-tags-older-than",
        "5s",
    ])
    .failed();
    assert!(bad.stderr.contains("delete_tags_older_than"), "{bad:?}");

    let created = rest(&[
        "--json",
        "retention",
        "create",
        "--repository",
        "team/*",
        "--keep-last",
        "2",
        "--keep-tags",
        "v*",
        "--delete-tags-older-than",
        "30d",
        "--delete-untagged-older-than",
        "7d",
        "--description",
        "cleanup",
    ])
    .ok()
    .json();
    let id = created["id"].as_i64().unwrap().to_string();
    assert_eq!(created["keep_tags"], serde_json::json!(["v*"]));
    let by_grpc = grpc(&[
        "--json",
        "retention",
        "create",
        "--body",
        r#"{"repositories":["tool"],"delete_untagged_older_than":"1d","enabled":false}"#,
    ])
    .ok()
    .json();
    assert_eq!(by_grpc["enabled"], false, "{by_grpc}");

    let table = rest(&["retention", "list"]).ok().stdout;
    assert!(
        table.starts_with("ID  REPOSITORIES  KEEP LAST  KEEP TAGS"),
        "{table}"
    );
    assert!(
        table.contains("30days") && table.contains("cleanup"),
        "{table}"
    );

    // Nothing is old enough on a real clock: a dry run lists nothing.
    let dry = rest(&["retention", "run", "--dry-run"]).ok().stdout;
    assert!(
        dry.contains("would delete 0 manifests and 0 tags in 1 repositories; 0 refused"),
        "{dry}"
    );
    let real = grpc(&["--json", "retention", "run", "--policy", &id])
        .ok()
        .json();
    assert_eq!(real["dry_run"], false);
    assert_eq!(real["totals"]["manifests"], 0, "{real}");
    assert_eq!(
        rest(&["repo", "manifest", "team/app", &digest]).code,
        0,
        "the run deleted a young image"
    );
    let status = rest(&["retention", "status"]).ok().stdout;
    assert!(status.contains("running: no"), "{status}");
    assert!(
        status.contains(&format!(
            "last run: {} by local:admin",
            real["id"].as_str().unwrap()
        )),
        "{status}"
    );
    assert!(status.contains("next run: not scheduled"), "{status}");

    // The same answers over both transports.
    for read in [&["retention", "list"][..], &["retention", "status"][..]] {
        for json in [true, false] {
            let mut args = read.to_vec();
            if json {
                args.insert(0, "--json");
            }
            assert_eq!(rest(&args).ok().stdout, grpc(&args).ok().stdout, "{read:?}");
        }
    }

    grpc(&["retention", "delete", &id]).ok();
    let gone = rest(&["retention", "delete", &id]).failed();
    assert!(gone.stderr.contains("retention policy"), "{gone:?}");
}

#[test]
fn events_are_listed_alike_over_rest_and_grpc() {
    let p = Mcrsrv::start();
    let (g, r) = (p.grpc.as_str(), p.url.as_str());
    let token = admin_token(&["--server", r], p.dir.path());
    let t = token.as_str();
    push_image(r, t, "team/app", "v1", "one");
    push_image(r, t, "team/app", "v1", "two");

    for json in [true, false] {
        for cmd in [
            &["events", "list", "--after", "0"][..],
            &["events", "status"],
        ] {
            let run = |transport: &[&str]| {
                let mut args: Vec<&str> = transport.to_vec();
                args.extend(["--token", t]);
                if json {
                    args.push("--json");
                }
                args.extend(cmd);
                mcrctl(&args, None).ok().stdout
            };
            assert_eq!(
                run(&["--server", r]),
                run(&["--grpc", g]),
                "{cmd:?} json={json}"
            );
        }
    }
    let listed = mcrctl(
        &["--grpc", g, "--token", t, "--json", "events", "list"],
        None,
    )
    .ok()
    .json();
    let types: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["manifest.pushed", "manifest.pushed", "tag.moved"]);
    let after = listed[0]["id"].as_i64().unwrap().to_string();
    let page = mcrctl(
        &[
            "--server", r, "--token", t, "--json", "events", "list", "--after", &after, "--limit",
            "1",
        ],
        None,
    )
    .ok()
    .json();
    assert_eq!(page, serde_json::json!([listed[1].clone()]));
    let table = mcrctl(&["--server", r, "--token", t, "events", "list"], None)
        .ok()
        .stdout;
    assert!(
        table.starts_with("ID") && table.contains("tag.moved"),
        "{table}"
    );
    let status = mcrctl(
        &["--grpc", g, "--token", t, "--json", "events", "status"],
        None,
    )
    .ok()
    .json();
    assert_eq!(status, serde_json::json!([]), "mcrsrv dev has no webhooks");
}
