//! `GcStore` on PostgreSQL: GC phase one.

use async_trait::async_trait;
use mcr_core::ports::{BlobInfo, GcStore};
use mcr_core::time::Timestamp;
use mcr_core::Result;

use super::rows::{all, blob_info, change, limit_of};
use super::{sql, PostgresMetaStore};

#[async_trait]
impl GcStore for PostgresMetaStore {
    async fn sweep_unreferenced_blobs(
        &self,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<Vec<BlobInfo>> {
        // One transaction, in three moves (the module docs of `postgres`
        // say why): lock a batch of candidates, lock their links (waiting
        // for any manifest that relies on one to commit), then delete
        // those still unreferenced and unstamped now that nothing can
        // change them. A manifest committed before protects its blobs by
        // reference; one that comes after finds the links gone and fails
        // with `ManifestBlobUnknown`.
        let data = (cutoff.as_millis(), limit_of(limit));
        self.write(
            "sweeping unreferenced blobs",
            data,
            |tx, (cutoff, limit)| {
                Box::pin(async move {
                    let candidates: Vec<String> =
                        all(tx, sql::SWEEP_CANDIDATES, &[cutoff, limit], |r| {
                            Ok(r.try_get(0)?)
                        })
                        .await?;
                    if candidates.is_empty() {
                        return Ok(Vec::new());
                    }
                    change(tx, sql::LOCK_BLOB_LINKS, &[&candidates]).await?;
                    let mut doomed = all(tx, sql::SWEEP, &[cutoff, &candidates], blob_info).await?;
                    doomed.sort_by(|a, b| a.digest.cmp(&b.digest));
                    Ok(doomed)
                })
            },
        )
        .await
    }
}
