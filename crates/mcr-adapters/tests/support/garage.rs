//! A real Garage for the S3 tests, started and stopped by
//! `scripts/garage.sh` (which builds it into the cache once if missing).

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use mcr_adapters::s3::S3Config;

/// A single-node Garage on 127.0.0.1, stopped when dropped.
pub struct Garage {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/garage.sh")
}

fn run(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .output()
        .expect("running scripts/garage.sh");
    assert!(
        out.status.success(),
        "scripts/garage.sh {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("garage.sh prints text")
}

impl Garage {
    /// Starts Garage with its bucket `mcr`; the server also stops when
    /// this test process ends, however it ends.
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().to_str().expect("a UTF-8 temporary path");
        let printed = run(&["start", path, &std::process::id().to_string()]);
        let env = printed
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Garage { dir, env }
    }

    /// One of the variables `garage.sh start` printed.
    pub fn var(&self, name: &str) -> String {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("garage.sh printed no {name}"))
            .clone()
    }

    /// Creates bucket `name`, which the key may use.
    pub fn bucket(&self, name: &str) {
        run(&["bucket", self.path(), name]);
    }

    /// A config for `bucket` with the key `garage.sh` made.
    pub fn config(&self, bucket: &str) -> S3Config {
        S3Config {
            endpoint: self.var("MCR_STORAGE_S3_ENDPOINT"),
            bucket: bucket.to_string(),
            region: self.var("MCR_STORAGE_S3_REGION"),
            access_key_id: Some(self.var("AWS_ACCESS_KEY_ID")),
            secret_access_key: Some(self.var("AWS_SECRET_ACCESS_KEY")),
        }
    }

    /// A config for bucket `mcr` with a second key that may only read it.
    pub fn read_only_config(&self) -> S3Config {
        let printed = run(&["read-key", self.path()]);
        let (id, secret) = printed
            .trim()
            .split_once(' ')
            .expect("garage.sh read-key prints an id and a secret");
        S3Config {
            access_key_id: Some(id.to_string()),
            secret_access_key: Some(secret.to_string()),
            ..self.config("mcr")
        }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["stop", self.path()]).status();
    }
}
