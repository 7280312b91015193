//! The `GcStore` port: phase one of garbage collection.

use async_trait::async_trait;

use super::blob_index::BlobInfo;
use crate::digest::Digest;
use crate::error::Result;
use crate::time::Timestamp;

/// What one step of GC phase one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepStep {
    /// The blobs whose row and links the step deleted.
    pub swept: Vec<BlobInfo>,
    /// The last digest the step looked at, where the next step goes on;
    /// `None` once the step reached the end of the blob rows.
    pub next: Option<Digest>,
}

/// What garbage collection needs of the metadata beyond the other traits.
#[async_trait]
pub trait GcStore: Send + Sync + 'static {
    /// GC phase one, a window at a time. In one step (one transaction),
    /// looks at up to `limit` blob rows in digest order (the digest's text,
    /// which is also `Digest`'s order), those after `after` (from the first
    /// when `None`); of those, the blobs that no manifest references and
    /// whose row and links are all older than `cutoff` lose their row and
    /// links. GC calls it again from [`SweepStep::next`] until that is
    /// `None`, so every transaction is bounded by `limit` rows looked at —
    /// however few of them are garbage — and a run looks at each row once.
    async fn sweep_unreferenced_blobs(
        &self,
        cutoff: Timestamp,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<SweepStep>;

    /// Those of `digests` (at most one step's [`SweepStep::swept`]) that
    /// have a blob row now, in any order: GC phase two asks once per step,
    /// holding the digests' locks, which swept blobs an upload has
    /// re-created since (their files stay), rather than once per blob.
    async fn blobs_with_rows(&self, digests: &[Digest]) -> Result<Vec<Digest>>;
}
