//! Garbage collection: running it, waiting for a run started over HTTP,
//! and reading what it left in the blob and upload directories.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use mcr_core::registry::GcReport;
use mcr_core::testing::admin;
use serde_json::{json, Value};

use super::{sha256, Harness};

impl Harness {
    /// Runs GC to the end through the use case, as `admin`.
    pub async fn gc(&self) -> GcReport {
        self.registry
            .collect_garbage(&admin())
            .await
            .expect("GC runs")
    }

    /// Waits for the GC run `id` started over HTTP to be reported done.
    pub async fn wait_for_gc(&self, id: &str) -> Value {
        for _ in 0..5000 {
            let r = self
                .helper_call("admin", Method::GET, "/v1/gc/status")
                .send()
                .await;
            r.assert_status(StatusCode::OK);
            let status = r.json();
            if status["running"] == json!(false) && status["last_run"]["id"] == json!(id) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("GC run {id} did not finish");
    }

    /// Every blob file under [`Harness::layers`] with its size, checking on
    /// the way that the tree holds nothing else: no stray file, no empty
    /// prefix directory, and every file named by the SHA-256 of its bytes.
    pub fn blob_files(&self) -> BTreeMap<String, u64> {
        let mut found = BTreeMap::new();
        for entry in read_dir(&self.layers) {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert_eq!(
                name,
                "sha256",
                "stray entry {:?} in the layers directory",
                entry.path()
            );
            for prefix in read_dir(&entry.path()) {
                let prefix_name = prefix.file_name().to_string_lossy().into_owned();
                assert!(
                    prefix.file_type().expect("a file type").is_dir() && prefix_name.len() == 2,
                    "stray entry {:?}",
                    prefix.path()
                );
                let blobs = read_dir(&prefix.path());
                assert!(
                    !blobs.is_empty(),
                    "empty prefix directory {:?}",
                    prefix.path()
                );
                for blob in blobs {
                    let hex = blob.file_name().to_string_lossy().into_owned();
                    assert!(
                        hex.len() == 64 && hex.starts_with(&prefix_name),
                        "stray file {:?}",
                        blob.path()
                    );
                    let bytes = std::fs::read(blob.path()).expect("the blob reads");
                    let digest = format!("sha256:{hex}");
                    assert_eq!(
                        sha256(&bytes),
                        digest,
                        "blob file {:?} is corrupt",
                        blob.path()
                    );
                    found.insert(digest, bytes.len() as u64);
                }
            }
        }
        found
    }

    /// Files left in the uploads directory.
    pub fn upload_files(&self) -> Vec<String> {
        std::fs::read_dir(&self.uploads)
            .expect("the uploads directory reads")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

/// The entries of `dir`; none when it does not exist (yet).
fn read_dir(dir: &Path) -> Vec<std::fs::DirEntry> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.expect("a directory entry")).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("reading {dir:?}: {e}"),
    }
}
