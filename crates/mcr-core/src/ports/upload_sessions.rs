//! The `UploadSessionStore` port: the rows of upload sessions, and
//! completing one into a blob row and link.

use async_trait::async_trait;

use super::blob_index::BlobInfo;
use super::blob_store::UploadState;
use super::listing::ListStream;
use crate::error::Result;
use crate::ids::UploadId;
use crate::names::RepoName;
use crate::time::Timestamp;

/// An upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    pub id: UploadId,
    pub repository: RepoName,
    /// Where the stored upload stands (its size, and the blob store's own
    /// record of it), as last recorded: what a writer resumes from.
    pub state: UploadState,
    /// When the session was opened or last recorded received bytes: a
    /// session is stale after a long silence, however long ago it began.
    pub active: Timestamp,
}

/// Upload session rows. A session's bytes live in the `BlobStore`; its
/// row here says which repository it belongs to, how far it got and what
/// the blob store needs to continue it ([`UploadState`]).
#[async_trait]
pub trait UploadSessionStore: Send + Sync + 'static {
    /// Records a new session, creating its repository on first write.
    /// `Conflict` if the id exists.
    async fn create_upload(&self, session: &UploadSession) -> Result<()>;
    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadSession>>;
    /// Records where the upload stands after an append and marks the
    /// session active `at`, in one step, if the recorded size is still
    /// `from` (the size the append started at): `Conflict` otherwise (two
    /// writers raced, which the engine's upload lock prevents),
    /// `UploadUnknown` if the session is gone.
    async fn save_upload_state(
        &self,
        id: &UploadId,
        from: u64,
        state: &UploadState,
        at: Timestamp,
    ) -> Result<()>;
    /// In one step: records the blob row (if new), links it to the session's
    /// repository stamped `at`, and removes the session. Fails with
    /// `UploadUnknown` if the session is gone.
    async fn complete_upload(&self, id: &UploadId, blob: &BlobInfo, at: Timestamp) -> Result<()>;
    /// Removes a session; returns whether it was there.
    async fn delete_upload(&self, id: &UploadId) -> Result<bool>;
    /// Sessions last active before `before`, longest idle first. The purge
    /// deletes sessions while it reads this listing: a listing read a page
    /// at a time must not skip the sessions after one deleted meanwhile.
    fn uploads_idle_since(&self, before: Timestamp) -> ListStream<UploadSession>;
}
