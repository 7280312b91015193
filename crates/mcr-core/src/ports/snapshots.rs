//! The `SnapshotStore` port: consistent online copies of the metadata, an
//! optional capability of a metadata store.
//!
//! A store that can copy itself while serving (SQLite's `VACUUM INTO`)
//! implements it and the composition root hands it to
//! `Registry::with_snapshots`; without one, the snapshot use case answers
//! `Error::Unsupported` and the operator backs the database up with its own
//! tools (`pg_dump`, say).

use async_trait::async_trait;

use crate::error::Result;
use crate::time::Timestamp;

/// Backups of the metadata, taken while the store keeps serving.
#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// Writes a consistent copy of all the metadata, named by `at`, to
    /// wherever the store keeps its backups, while the store keeps serving;
    /// returns where it went, in words an operator can find it by (a file
    /// path for a file-backed store). Never overwrites: a copy already
    /// named by `at` fails with `Conflict`.
    async fn snapshot(&self, at: Timestamp) -> Result<String>;
}
