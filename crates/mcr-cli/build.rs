//! Records the git commit the binaries are built from, for `--version`.
//!
//! Sets `MCR_GIT_COMMIT` for the crate: the `MCR_GIT_COMMIT` environment
//! variable when set (a packager building from a tarball who knows the
//! commit, or `docker build --build-arg`), else the 12-hex-digit HEAD of
//! the git checkout this workspace is, else `unknown` (a tarball, no git,
//! or a workspace that lies inside some other repository). A checkout
//! whose sources differ from HEAD gets `-dirty` after the commit, so a
//! binary built from uncommitted code never claims a commit it is not.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MCR_GIT_COMMIT");
    let commit = std::env::var("MCR_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=MCR_GIT_COMMIT={}", commit.trim());
}

/// What the binaries are built from, relative to the workspace root:
/// their sources. A change under these re-runs this script, and a change
/// here that is not committed marks the build dirty.
const SOURCES: [&str; 4] = ["crates", "proto", "Cargo.toml", "Cargo.lock"];

/// HEAD of the checkout whose top level is this workspace's root (with
/// `-dirty` when [`SOURCES`] differ from it), and the files whose change
/// moves HEAD or the sources, so either re-runs this script.
fn git_commit() -> Option<String> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir.parent()?.parent()?.canonicalize().ok()?;
    let toplevel = PathBuf::from(git(&workspace, &["rev-parse", "--show-toplevel"])?);
    if toplevel.canonicalize().ok()? != workspace {
        return None;
    }
    let mut watched = vec![git(&workspace, &["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(&workspace, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&workspace, &["rev-parse", "--git-path", &branch])?);
    }
    watched.push(git(
        &workspace,
        &["rev-parse", "--git-path", "packed-refs"],
    )?);
    for path in watched {
        let path = workspace.join(path);
        // A path that does not exist would make cargo re-run this script
        // on every build.
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    for source in SOURCES {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(source).display()
        );
    }
    let head = git(&workspace, &["rev-parse", "--short=12", "HEAD"])?;
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend(SOURCES);
    // `git` answers None for empty output: no change is a clean tree.
    Some(match git(&workspace, &status) {
        Some(_) => format!("{head}-dirty"),
        None => head,
    })
}

/// The trimmed standard output of a successful `git` run in `dir`.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}
