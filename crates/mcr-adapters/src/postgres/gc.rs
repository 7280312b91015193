//! `GcStore` on PostgreSQL: GC phase one.

use async_trait::async_trait;
use mcr_core::digest::Digest;
use mcr_core::ports::{GcStore, SweepStep};
use mcr_core::time::Timestamp;
use mcr_core::Result;

use super::rows::{all, blob_info, change, limit_of, one, parsed, parsed_opt};
use super::{sql, PostgresMetaStore};

#[async_trait]
impl GcStore for PostgresMetaStore {
    async fn sweep_unreferenced_blobs(
        &self,
        cutoff: Timestamp,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<SweepStep> {
        // One transaction, in four moves (the module docs of `postgres`
        // say why): find the window (the next `limit` rows after the
        // cursor), lock its candidates, lock their links (waiting for any
        // manifest that relies on one to commit), then delete those still
        // unreferenced and unstamped now that nothing can change them. A
        // manifest committed before protects its blobs by reference; one
        // that comes after finds the links gone and fails with
        // `ManifestBlobUnknown`. The window only narrows which rows the
        // candidates come from, so the argument holds window by window.
        // Every digest sorts after "" (they start with the algorithm).
        let after = after.map_or_else(String::new, Digest::to_string);
        let data = (cutoff.as_millis(), after, limit_of(limit));
        self.write(
            "sweeping unreferenced blobs",
            data,
            |tx, (cutoff, after, limit)| {
                Box::pin(async move {
                    let window = one(tx, sql::SWEEP_WINDOW, &[after, limit], |r| {
                        Ok((r.try_get::<_, i64>(0)?, parsed_opt(r, 1, Digest::parse)?))
                    })
                    .await?;
                    let Some((seen, Some(last))) = window else {
                        return Ok(SweepStep {
                            swept: Vec::new(),
                            next: None,
                        });
                    };
                    let last_text = last.to_string();
                    let candidates: Vec<String> = all(
                        tx,
                        sql::SWEEP_CANDIDATES,
                        &[cutoff, after, &last_text],
                        |r| Ok(r.try_get(0)?),
                    )
                    .await?;
                    let mut swept = Vec::new();
                    if !candidates.is_empty() {
                        change(tx, sql::LOCK_BLOB_LINKS, &[&candidates]).await?;
                        swept = all(tx, sql::SWEEP, &[cutoff, &candidates], blob_info).await?;
                        swept.sort_by(|a, b| a.digest.cmp(&b.digest));
                    }
                    // A window shorter than asked for reached the end.
                    let next = (seen >= *limit).then_some(last);
                    Ok(SweepStep { swept, next })
                })
            },
        )
        .await
    }

    async fn blobs_with_rows(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let digests: Vec<String> = digests.iter().map(Digest::to_string).collect();
        self.run("looking up swept blobs", digests, |c, digests| {
            Box::pin(async move {
                all(c, sql::BLOBS_WITH_ROWS, &[digests], |r| {
                    parsed(r, 0, Digest::parse)
                })
                .await
            })
        })
        .await
    }
}
