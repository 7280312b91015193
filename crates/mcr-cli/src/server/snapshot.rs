//! `mcrsrv snapshot`: a consistent online copy of the database, taken
//! beside a running server through the same store method as the admin
//! API's `POST /v1/snapshot`, so both name and protect copies alike.

use std::path::Path;

use anyhow::Context;
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::ports::SnapshotStore;
use mcr_core::time::{Clock, SystemClock};

/// Copies the database to `<db dir>/backups/mcr-YYYYMMDD-HHMMSS.db` and
/// returns the path.
pub async fn snapshot(db_path: &Path) -> anyhow::Result<String> {
    let store = SqliteMetaStore::open(db_path)
        .with_context(|| format!("cannot open the database {}", db_path.display()))?;
    store
        .snapshot(SystemClock.now())
        .await
        .context("cannot write the snapshot")
}
