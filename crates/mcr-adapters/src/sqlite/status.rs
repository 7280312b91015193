//! `StoreStatus` on SQLite: the readiness probe and the totals the
//! metrics show.

use async_trait::async_trait;
use mcr_core::ports::{StoreStatus, StoreTotals};
use mcr_core::Result;

use super::{db, probe, SqliteMetaStore};

#[async_trait]
impl StoreStatus for SqliteMetaStore {
    async fn totals(&self) -> Result<StoreTotals> {
        self.read("counting blobs and uploads", |tx| {
            let (blobs, blob_bytes) = tx
                .query_row(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )
                .map_err(db)?;
            let upload_sessions = tx
                .query_row("SELECT COUNT(*) FROM uploads", [], |r| r.get::<_, i64>(0))
                .map_err(db)?;
            Ok(StoreTotals {
                blobs: blobs.max(0) as u64,
                blob_bytes: blob_bytes.max(0) as u64,
                upload_sessions: upload_sessions.max(0) as u64,
            })
        })
        .await
    }

    /// The file is still the one opened and writable, and a pooled
    /// connection reads its schema. The file checks are a `stat` and two
    /// `access` calls, made in place: no slower than the pool hand-off.
    async fn probe(&self) -> Result<()> {
        probe::check_file(&self.path, self.opened)?;
        self.read("reading the schema", |tx| {
            tx.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(db)
        })
        .await
        .map(drop)
    }
}
