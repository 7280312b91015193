//! `GcStore` on SQLite: GC phase one.

use async_trait::async_trait;
use mcr_core::ports::{BlobInfo, GcStore};
use mcr_core::time::Timestamp;
use mcr_core::Result;

use rusqlite::params;

use super::rows::{all, blob_info, limit_of};
use super::{db, sql, SqliteMetaStore};

#[async_trait]
impl GcStore for SqliteMetaStore {
    async fn sweep_unreferenced_blobs(
        &self,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<Vec<BlobInfo>> {
        // One write transaction: a manifest committed before it protects
        // its blobs by reference, and one that commits after it finds
        // the swept blobs unlinked and fails with `ManifestBlobUnknown`.
        self.write("sweeping unreferenced blobs", move |tx| {
            let doomed = all(
                tx,
                sql::SWEEPABLE,
                params![cutoff.as_millis(), limit_of(limit)],
                blob_info,
            )?;
            let mut delete = tx.prepare_cached(sql::DELETE_BLOB).map_err(db)?;
            for b in &doomed {
                delete.execute([b.digest.to_string()]).map_err(db)?;
            }
            Ok(doomed)
        })
        .await
    }
}
