//! The `GcStore` port: phase one of garbage collection.

use async_trait::async_trait;

use super::blob_index::BlobInfo;
use crate::error::Result;
use crate::time::Timestamp;

/// What garbage collection needs of the metadata beyond the other traits.
#[async_trait]
pub trait GcStore: Send + Sync + 'static {
    /// GC phase one, a batch at a time: in one step (one transaction), up
    /// to `limit` blobs that no manifest references and whose row and links
    /// are all older than `cutoff` lose their row and links. Returns those
    /// blobs; fewer than `limit` means none was left at that moment. GC
    /// calls it again until then, so no transaction grows with the number
    /// of blobs.
    async fn sweep_unreferenced_blobs(
        &self,
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<Vec<BlobInfo>>;
}
