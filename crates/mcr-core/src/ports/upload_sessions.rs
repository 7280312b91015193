//! The `UploadSessionStore` port: the rows of upload sessions, and
//! completing one into a blob row and link.

use std::time::Duration;

use async_trait::async_trait;

use super::blob_index::BlobInfo;
use super::blob_store::UploadState;
use super::listing::ListStream;
use super::manifests::Provenance;
use crate::audit::NewAuditEvent;
use crate::error::{Error, Result};
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

/// How many upload sessions may be open at once: a principal opening
/// thousands of empty sessions would otherwise fill the uploads directory
/// and the database (issue 16, case 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadCaps {
    /// Sessions one principal may hold open, over all repositories.
    pub per_owner: u64,
    /// Sessions one repository may hold open, whoever opened them.
    pub per_repository: u64,
    /// What a refusal tells the client to wait before trying again.
    pub retry_after: Duration,
}

impl UploadCaps {
    /// No cap at all: for stores written by something other than a
    /// caller (tests, tools).
    pub const NONE: UploadCaps = UploadCaps {
        per_owner: u64::MAX,
        per_repository: u64::MAX,
        retry_after: Duration::from_secs(60),
    };

    /// The refusal of one more session when `owner` holds `owned` open
    /// sessions and `repo` holds `in_repo`: `TooManyRequests` naming the
    /// cap reached, or `None` when there is room.
    pub fn refusal(&self, owned: u64, in_repo: u64, owner: &str, repo: &RepoName) -> Option<Error> {
        let what = if owned >= self.per_owner {
            format!(
                "open upload sessions for {owner} (at most {}); finish or cancel one",
                self.per_owner
            )
        } else if in_repo >= self.per_repository {
            format!(
                "open upload sessions in {repo} (at most {}); finish or cancel one",
                self.per_repository
            )
        } else {
            return None;
        };
        Some(Error::TooManyRequests {
            what,
            retry_after: self.retry_after,
        })
    }
}

/// Upload session rows. A session's bytes live in the `BlobStore`; its
/// row here says which repository it belongs to, how far it got and what
/// the blob store needs to continue it ([`UploadState`]).
#[async_trait]
pub trait UploadSessionStore: Send + Sync + 'static {
    /// Records a new session opened by `owner` (a principal's subject),
    /// in one step that first counts the sessions open: `TooManyRequests`
    /// (with `caps.retry_after`) if `owner` or the repository already
    /// holds its cap, `Conflict` if the id exists; nothing is stored then.
    async fn create_upload(
        &self,
        session: &UploadSession,
        owner: &str,
        caps: &UploadCaps,
    ) -> Result<()>;
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
    /// repository stamped `at` and of `provenance` (see
    /// [`BlobIndex`](super::BlobIndex) on links made again), removes the
    /// session and records `event` (so a push that fails to be audited
    /// stores nothing). Fails with `UploadUnknown` if the session is gone,
    /// and with `QuotaExceeded` (changing nothing) if a pushed blob not yet
    /// linked in a covering quota's scope would take it past its limit
    /// (`crate::quota`).
    async fn complete_upload(
        &self,
        id: &UploadId,
        blob: &BlobInfo,
        at: Timestamp,
        provenance: Provenance,
        event: &NewAuditEvent,
    ) -> Result<()>;
    /// Removes a session; returns whether it was there.
    async fn delete_upload(&self, id: &UploadId) -> Result<bool>;
    /// Sessions last active before `before`, longest idle first. The purge
    /// deletes sessions while it reads this listing: a listing read a page
    /// at a time must not skip the sessions after one deleted meanwhile.
    fn uploads_idle_since(&self, before: Timestamp) -> ListStream<UploadSession>;
}
