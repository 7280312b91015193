//! The `GcStore` port: phase one of garbage collection.

use async_trait::async_trait;

use super::blob_index::BlobInfo;
use crate::error::Result;
use crate::time::Timestamp;

/// What garbage collection needs of the metadata beyond the other traits.
#[async_trait]
pub trait GcStore: Send + Sync + 'static {
    /// GC phase one, in one step: every blob that no manifest references
    /// and whose row and links are all older than `cutoff` loses its row
    /// and links. Returns those blobs.
    async fn sweep_unreferenced_blobs(&self, cutoff: Timestamp) -> Result<Vec<BlobInfo>>;
}
