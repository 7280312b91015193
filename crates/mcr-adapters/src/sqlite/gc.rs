//! `GcStore` on SQLite: GC phase one.

use async_trait::async_trait;
use mcr_core::ports::{BlobInfo, GcStore};
use mcr_core::time::Timestamp;
use mcr_core::Result;

use super::rows::{all, blob_info};
use super::{db, sql, SqliteMetaStore};

#[async_trait]
impl GcStore for SqliteMetaStore {
    async fn sweep_unreferenced_blobs(&self, cutoff: Timestamp) -> Result<Vec<BlobInfo>> {
        // One write transaction: a manifest committed before it protects
        // its blobs by reference, and one that commits after it finds
        // the swept blobs unlinked and fails with `ManifestBlobUnknown`.
        self.write("sweeping unreferenced blobs", move |tx| {
            let doomed = all(tx, sql::SWEEPABLE, [cutoff.as_millis()], blob_info)?;
            let mut delete = tx.prepare_cached(sql::DELETE_BLOB).map_err(db)?;
            for b in &doomed {
                delete.execute([b.digest.to_string()]).map_err(db)?;
            }
            Ok(doomed)
        })
        .await
    }
}
