//! `mcrsrv snapshot`: a consistent online copy of the database.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::time::Clock;
use mcr_core::time::SystemClock;

/// Copies the database to `<db dir>/backups/mcr-YYYYMMDD-HHMMSS.db` and
/// returns the path.
pub fn snapshot(db_path: &Path) -> anyhow::Result<PathBuf> {
    let dir = db_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("backups");
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the backup directory {}", dir.display()))?;
    let stamp: String = SystemClock
        .now()
        .to_rfc3339()
        .chars()
        .take(19)
        .filter(char::is_ascii_digit)
        .collect();
    let dest = dir.join(format!("mcr-{}-{}.db", &stamp[..8], &stamp[8..]));
    let store = SqliteMetaStore::open(db_path)
        .with_context(|| format!("cannot open the database {}", db_path.display()))?;
    store
        .snapshot(&dest)
        .with_context(|| format!("cannot write the snapshot {}", dest.display()))?;
    Ok(dest)
}
