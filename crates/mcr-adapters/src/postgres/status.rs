//! `StoreStatus` on PostgreSQL: totals for the metrics, and the readiness
//! probe.

use async_trait::async_trait;
use mcr_core::ports::{StoreStatus, StoreTotals};
use mcr_core::{Error, Result};

use super::rows::{one, u64_at};
use super::{sql, PostgresMetaStore};

#[async_trait]
impl StoreStatus for PostgresMetaStore {
    /// Two counts in one snapshot. `COUNT(*)` reads every row (PostgreSQL
    /// keeps no row count), which a scrape every few seconds affords up to
    /// millions of blobs.
    async fn totals(&self) -> Result<StoreTotals> {
        self.read("counting blobs and uploads", (), |tx, ()| {
            Box::pin(async move {
                let (blobs, blob_bytes) = one(tx, sql::BLOB_TOTALS, &[], |r| {
                    Ok((u64_at(r, 0)?, u64_at(r, 1)?))
                })
                .await?
                .unwrap_or_default();
                let upload_sessions = one(tx, sql::UPLOAD_TOTAL, &[], |r| u64_at(r, 0))
                    .await?
                    .unwrap_or_default();
                Ok(StoreTotals {
                    blobs,
                    blob_bytes,
                    upload_sessions,
                })
            })
        })
        .await
    }

    /// A pooled connection answers, and the server takes writes (a hot
    /// standby, or a primary demoted under us, answers reads only).
    async fn probe(&self) -> Result<()> {
        let read_only = self
            .run("probing the database", (), |c, ()| {
                Box::pin(async move {
                    Ok(
                        one(c, sql::IN_RECOVERY, &[], |r| Ok(r.try_get::<_, bool>(0)?))
                            .await?
                            .unwrap_or(false),
                    )
                })
            })
            .await?;
        if read_only {
            return Err(Error::storage(
                "probing the database",
                format!(
                    "{} is a read-only standby (in recovery); point database.url at the primary",
                    self.target()
                ),
            ));
        }
        Ok(())
    }
}
