//! The `BlobIndex` port: blob rows (one per content) and the links that
//! make a blob visible in a repository.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::listing::ListStream;
use super::manifests::Provenance;
use super::repositories::Page;
use crate::audit::NewAuditEvent;
use crate::digest::Digest;
use crate::error::Result;
use crate::names::RepoName;
use crate::time::Timestamp;

/// A blob row; in a [`RepoDetail`](super::RepoDetail), one of the
/// repository's layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

/// Blob rows and repository links.
///
/// A blob is *visible* in a repository while a link (repository, digest)
/// exists. Links are made by completed uploads (through
/// `UploadSessionStore::complete_upload`) and by mounts, and carry the
/// time they were last made, which GC's grace period reads, and whether a
/// push made them ([`Provenance`]), which
/// `RepositoryStore::pushed_repositories` reads. Making a link again
/// re-stamps it, and a pushed link stays pushed: only unlinking it (or
/// emptying or deleting its repository) forgets the push.
#[async_trait]
pub trait BlobIndex: Send + Sync + 'static {
    /// The blob, if it is linked to the repository.
    async fn blob_in_repository(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>>;
    /// Whether a blob row exists at all.
    async fn blob_exists(&self, digest: &Digest) -> Result<bool>;
    /// The repositories the blob is linked to, by name, after `page.last`,
    /// at most `page.limit`: where a mount without `from` may take it
    /// from, among those the caller may pull (issue 16, case 5).
    async fn blob_holders(&self, digest: &Digest, page: &Page) -> Result<Vec<RepoName>>;
    /// Links the blob `from` holds into `to`, stamping the link with `at`
    /// and `provenance`, and records `event`, in one step (a mount is never
    /// acknowledged unaudited, nor audited undone). Returns the blob, or
    /// `None` (changing nothing, not even creating `to`, recording
    /// nothing) if `from` does not hold it. Like an upload, a pushed mount
    /// is checked against every quota covering `to` in the same step:
    /// `QuotaExceeded` links nothing.
    async fn mount_blob(
        &self,
        from: &RepoName,
        to: &RepoName,
        digest: &Digest,
        at: Timestamp,
        provenance: Provenance,
        event: &NewAuditEvent,
    ) -> Result<Option<BlobInfo>>;
    /// Removes the link; the blob row stays for GC. Returns whether a link
    /// was there, and then records `event` in the same step.
    async fn unlink_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        event: &NewAuditEvent,
    ) -> Result<bool>;
    /// Every blob row, for reconcile, in ascending digest order (byte order
    /// of `algorithm:hex`; PostgreSQL needs `COLLATE "C"` for it).
    fn list_blobs(&self) -> ListStream<BlobInfo>;
}
