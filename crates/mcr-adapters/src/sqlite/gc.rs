//! `GcStore` on SQLite: GC phase one.

use async_trait::async_trait;
use mcr_core::digest::Digest;
use mcr_core::ports::{GcStore, SweepStep};
use mcr_core::time::Timestamp;
use mcr_core::Result;

use rusqlite::params;

use super::rows::{all, blob_info, limit_of, parsed_opt};
use super::{db, sql, SqliteMetaStore};

#[async_trait]
impl GcStore for SqliteMetaStore {
    async fn sweep_unreferenced_blobs(
        &self,
        cutoff: Timestamp,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<SweepStep> {
        // Every digest sorts after "" (they start with the algorithm).
        let after = after.map_or_else(String::new, Digest::to_string);
        // One write transaction: a manifest committed before it protects
        // its blobs by reference, and one that commits after it finds
        // the swept blobs unlinked and fails with `ManifestBlobUnknown`.
        let step = self
            .write("sweeping unreferenced blobs", move |tx| {
                let (seen, last): (i64, Option<Digest>) = tx
                    .query_row(sql::SWEEP_WINDOW, params![after, limit_of(limit)], |row| {
                        Ok((row.get(0)?, parsed_opt(row, 1, Digest::parse)?))
                    })
                    .map_err(db)?;
                let Some(last) = last else {
                    return Ok(SweepStep {
                        swept: Vec::new(),
                        next: None,
                    });
                };
                let swept = all(
                    tx,
                    sql::SWEEPABLE,
                    params![cutoff.as_millis(), after, last.to_string()],
                    blob_info,
                )?;
                let mut delete = tx.prepare_cached(sql::DELETE_BLOB).map_err(db)?;
                for b in &swept {
                    delete.execute([b.digest.to_string()]).map_err(db)?;
                }
                let next = if usize::try_from(seen).is_ok_and(|n| n >= limit) {
                    Some(last)
                } else {
                    None
                };
                Ok(SweepStep { swept, next })
            })
            .await?;
        if step.next.is_none() {
            // The run's last step: the log its steps wrote goes into the
            // database file before the run reports done, so a run's time
            // includes that copy whatever its length (the checkpoint
            // thread would do it up to `CHECKPOINT_INTERVAL` later, after
            // a short run had ended).
            self.checkpoint_now().await;
        }
        Ok(step)
    }

    async fn blobs_with_rows(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let digests = digests.to_vec();
        // One read, one indexed lookup per digest on a cached statement.
        self.read("looking up swept blobs", move |tx| {
            let mut exists = tx.prepare_cached(sql::BLOB_EXISTS).map_err(db)?;
            let mut present = Vec::new();
            for d in digests {
                if exists.exists([d.to_string()]).map_err(db)? {
                    present.push(d);
                }
            }
            Ok(present)
        })
        .await
    }
}
