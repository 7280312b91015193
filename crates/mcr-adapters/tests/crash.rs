//! Crash safety: a child process pushes images through the real adapters
//! and is killed with SIGKILL at varied moments, 50 times over one data
//! directory. After each kill, every manifest the child saw acknowledged
//! has all its blobs readable with the right digest, no blob row lacks its
//! file, and reconcile removes the files that have no row.
//!
//! The child is this test binary itself, re-run on the `crash_worker`
//! test with `MCR_CRASH_DIR` set. It reports each step it finishes on its
//! stdout (the registry open, each blob uploaded, each manifest
//! acknowledged); round `n` kills it once it has reported `n % 10` steps,
//! so the kill lands at startup, between uploads or mid-commit of the
//! step after, whatever the machine's speed, and the acknowledged pushes
//! are counted, not hoped for.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{stream, TryStreamExt};
use mcr_adapters::fs::FsBlobStore;
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::digest::Digest;
use mcr_core::names::{Reference, RepoName};
use mcr_core::policy::Engine;
use mcr_core::ports::ByteStream;
use mcr_core::registry::Registry;
use mcr_core::testing::{admin, FakeIdentity, ManualClock};

const ROUNDS: usize = 50;
/// Steps a push reports: three blobs, then the manifest.
const STEPS_PER_PUSH: usize = 4;

fn open(dir: &Path) -> Arc<Registry> {
    let meta = SqliteMetaStore::open(&dir.join("mcr.db")).expect("open the database");
    let blobs =
        FsBlobStore::open(dir.join("layers"), dir.join("uploads")).expect("open blob storage");
    let clock = Arc::new(ManualClock::default());
    Arc::new(
        Registry::new(
            Arc::new(meta),
            Arc::new(blobs),
            Arc::new(FakeIdentity::new(clock.clone())),
            Arc::new(Engine::new()),
        )
        .with_clock(clock),
    )
}

fn body(data: Vec<u8>) -> ByteStream {
    // Several chunks, so a kill can land in the middle of an upload.
    let parts: Vec<_> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(parts))
}

/// Pseudo-random bytes from a seed (xorshift), so blobs differ per push.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The child: push images forever, printing `OPEN` once the registry is
/// open, `BLOB <digest>` after each blob upload and `ACK <repo> <digest>`
/// after each acknowledged manifest push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_worker() {
    let Ok(dir) = std::env::var("MCR_CRASH_DIR") else {
        return;
    };
    let seed: u64 = std::env::var("MCR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let r = open(Path::new(&dir));
    // On a line of its own: the test harness has begun one ("test
    // crash_worker ... ") that it ends only when the test does.
    println!("\nOPEN");
    let me = admin();
    for i in 0u64.. {
        let repo = RepoName::new(&format!("crash/r{}", i % 3)).expect("valid name");
        let shared = bytes(7, 100_000); // a layer every image shares
        let own = bytes(seed * 1_000_003 + i, 200_000 + (i as usize % 5) * 50_000);
        let config = format!("{{\"seed\":{seed},\"i\":{i}}}").into_bytes();
        let mut descs = Vec::new();
        for data in [config, shared, own] {
            let d = Digest::sha256_of(&data);
            let size = data.len();
            r.upload_blob(&me, &repo, &d, body(data))
                .await
                .expect("upload");
            println!("BLOB {d}");
            descs.push((d, size));
        }
        let layers: Vec<String> = descs[1..]
            .iter()
            .map(|(d, s)| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{s}}}"#))
            .collect();
        let raw = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
            descs[0].0,
            descs[0].1,
            layers.join(",")
        );
        let tag = Reference::parse(&format!("t{}", i % 4)).expect("valid tag");
        let pushed = r
            .put_manifest(&me, &repo, &tag, None, Bytes::from(raw))
            .await
            .expect("manifest push");
        println!("ACK {repo} {}", pushed.digest);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_pushes_survive_sigkill() {
    if std::env::var("MCR_CRASH_DIR").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary path");
    let mut acked: Vec<(RepoName, Digest)> = Vec::new();
    let mut least_acked = 0;
    for round in 0..ROUNDS {
        let child = Command::new(&exe)
            .args(["crash_worker", "--exact", "--nocapture", "--test-threads=1"])
            .env("MCR_CRASH_DIR", dir.path())
            .env("MCR_CRASH_SEED", (round + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the worker");
        // Vary the moment of the kill: startup, mid-upload, mid-commit.
        let steps = round % 10;
        let seen = tokio::task::spawn_blocking(move || kill_after(child, steps))
            .await
            .expect("the reader");
        assert_eq!(
            seen.steps, steps,
            "round {round}: the worker stopped on its own after {} of {steps} steps (its stderr is above)",
            seen.steps
        );
        // The first step is the open; then every fourth acknowledges.
        least_acked += steps.saturating_sub(1) / STEPS_PER_PUSH;
        acked.extend(seen.acked);

        let r = open(dir.path());
        for (repo, digest) in &acked {
            let m = r
                .get_manifest(&admin(), repo, &Reference::Digest(digest.clone()))
                .await
                .unwrap_or_else(|e| {
                    panic!("round {round}: acknowledged {repo}@{digest} lost: {e}")
                });
            let parsed =
                mcr_core::manifest::Manifest::parse(None, &m.raw).expect("stored manifest parses");
            for blob in parsed.required_blobs() {
                let body = r
                    .blobs()
                    .read(&blob.digest, None)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "round {round}: blob {} of {repo}@{digest} unreadable: {e}",
                            blob.digest
                        )
                    });
                let parts: Vec<Bytes> = TryStreamExt::try_collect(body.stream)
                    .await
                    .expect("read blob");
                let data = parts.concat();
                assert_eq!(
                    Digest::sha256_of(&data),
                    blob.digest,
                    "round {round}: blob content wrong"
                );
            }
        }
        let rows: BTreeSet<Digest> = r
            .meta()
            .list_blobs()
            .try_collect::<Vec<_>>()
            .await
            .expect("rows")
            .into_iter()
            .map(|b| b.digest)
            .collect();
        let report = r.reconcile(&admin()).await.expect("reconcile");
        assert!(
            report.missing_files.is_empty(),
            "round {round}: rows without files: {:?}",
            report.missing_files
        );
        let files: BTreeSet<Digest> = r
            .blobs()
            .list()
            .try_collect::<Vec<_>>()
            .await
            .expect("files")
            .into_iter()
            .collect();
        assert_eq!(
            files, rows,
            "round {round}: after reconcile, files and rows differ"
        );
        drop(r);
    }
    assert!(
        acked.len() >= least_acked,
        "only {} pushes were acknowledged in {ROUNDS} rounds, {least_acked} were waited for",
        acked.len()
    );
    eprintln!(
        "{ROUNDS} kills, {} acknowledged pushes all intact",
        acked.len()
    );
}

/// What a worker reported before it died.
struct Seen {
    /// Steps reported before the kill was sent (all asked for, unless the
    /// worker stopped on its own).
    steps: usize,
    /// Every push acknowledged, including any reported between the kill
    /// and the worker's death.
    acked: Vec<(RepoName, Digest)>,
}

/// Reads the worker's reports, SIGKILLs it as soon as it has reported
/// `steps` steps (at once for 0), and reads on until its stdout closes.
fn kill_after(mut child: Child, steps: usize) -> Seen {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut seen = Seen {
        steps: 0,
        acked: Vec::new(),
    };
    let mut killed = false;
    if steps == 0 {
        sigkill(&mut child, &mut killed);
    }
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let step = if line == "OPEN" || line.starts_with("BLOB ") {
            true
        } else if let Some(ack) = line.strip_prefix("ACK ") {
            let mut parts = ack.split(' ');
            let repo =
                RepoName::new(parts.next().unwrap_or_default()).expect("an ACK names a repository");
            let digest =
                Digest::parse(parts.next().unwrap_or_default()).expect("an ACK names a digest");
            seen.acked.push((repo, digest));
            true
        } else {
            false
        };
        if step && !killed {
            seen.steps += 1;
            if seen.steps == steps {
                sigkill(&mut child, &mut killed);
            }
        }
    }
    sigkill(&mut child, &mut killed);
    let _ = child.wait();
    seen
}

/// Kills the worker unless that was done already.
fn sigkill(child: &mut Child, killed: &mut bool) {
    if !*killed {
        child.kill().expect("SIGKILL the worker");
        *killed = true;
    }
}
