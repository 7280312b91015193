//! The `StoreStatus` port: what a readiness probe and the metrics read of
//! the metadata store.

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;

/// How much the store holds, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StoreTotals {
    /// Blob rows.
    pub blobs: u64,
    /// Their sizes added up, in bytes.
    pub blob_bytes: u64,
    /// Upload sessions open.
    pub upload_sessions: u64,
}

/// The store's health and size, asked by the daemon's probes and
/// metrics rather than by a use case's step.
#[async_trait]
pub trait StoreStatus: Send + Sync + 'static {
    /// Blob rows with their total size, and open upload sessions: one
    /// consistent read, as cheap as the store can make it (a scrape of the
    /// metrics asks).
    async fn totals(&self) -> Result<StoreTotals>;
    /// A cheap check that the store can serve reads and writes now, for a
    /// readiness probe: `Ok`, or an error whose message names what is
    /// wrong and where (a file that is gone, a read-only filesystem, a
    /// database that does not answer). Changes nothing.
    async fn probe(&self) -> Result<()>;
}
