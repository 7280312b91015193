//! Two `mcrsrv` on one SQLite database: the second is refused at start,
//! naming the first; once the first is gone the database is free again.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dev(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcrsrv"));
    cmd.args(["dev", "--data"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("MCR_SERVER_METRICS_ADDR")
        .env("MCR_LOG", "warn");
    cmd
}

/// Starts `mcrsrv dev` on `data` and returns once it is listening.
fn started(data: &Path) -> Killed {
    let child = dev(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mcrsrv starts");
    let mut srv = Killed(child);
    let stdout = srv.0.stdout.take().expect("stdout");
    let mut printed = Vec::new();
    // The metrics line is the last one dev prints before serving.
    let listening = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| {
            printed.push(line.clone());
            line.starts_with("metrics on ")
        });
    assert!(listening, "mcrsrv did not start; it printed {printed:?}");
    srv
}

#[test]
fn a_second_server_on_one_database_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = started(dir.path());
    let second = dev(dir.path())
        .stdout(Stdio::null())
        .output()
        .expect("the second mcrsrv runs");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "the second mcrsrv started: {stderr}"
    );
    let holder = format!("is in use by process {}", first.0.id());
    assert!(stderr.contains(&holder), "{stderr}");
    assert!(stderr.contains("stop that mcrsrv first"), "{stderr}");

    drop(first);
    drop(started(dir.path()));
}
