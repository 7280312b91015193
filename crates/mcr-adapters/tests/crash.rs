//! Crash safety: a child process pushes images through the real adapters
//! and is killed with SIGKILL at random moments, 50 times over one data
//! directory. After each kill, every manifest the child saw acknowledged
//! has all its blobs readable with the right digest, no blob row lacks its
//! file, and reconcile removes the files that have no row.
//!
//! The child is this test binary itself, re-run on the `crash_worker`
//! test with `MCR_CRASH_DIR` set.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

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

/// The child: push images forever, printing `ACK <repo> <digest>` after
/// each acknowledged manifest push.
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
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["crash_worker", "--exact", "--nocapture", "--test-threads=1"])
            .env("MCR_CRASH_DIR", dir.path())
            .env("MCR_CRASH_SEED", (round + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    let mut parts = l.strip_prefix("ACK ")?.split(' ');
                    Some((
                        RepoName::new(parts.next()?).ok()?,
                        Digest::parse(parts.next()?).ok()?,
                    ))
                })
                .collect::<Vec<_>>()
        });
        // Vary the moment of the kill: startup, mid-upload, mid-commit.
        let wait = 30 + (round as u64 * 37) % 400;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().expect("SIGKILL the worker");
        let _ = child.wait();
        acked.extend(reader.join().expect("reader thread"));

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
        acked.len() >= ROUNDS / 2,
        "only {} pushes were acknowledged in {ROUNDS} rounds",
        acked.len()
    );
    eprintln!(
        "{ROUNDS} kills, {} acknowledged pushes all intact",
        acked.len()
    );
}
