//! The `MetaStore` port: repositories, manifests, tags, blob rows and
//! links, upload sessions, policy rules, the audit log, and snapshots of it
//! all.
//!
//! Each method is one atomic step of a use case, so an adapter can make it
//! one transaction; the contract suite pins down what each must do.

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

use crate::audit::{AuditEvent, AuditQuery, NewAuditEvent};
use crate::digest::Digest;
use crate::error::Result;
use crate::ids::UploadId;
use crate::media::MediaType;
use crate::names::{Reference, RepoName, Tag};
use crate::policy::{Rule, RuleDraft};
use crate::time::Timestamp;

/// A stored manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRecord {
    pub repository: RepoName,
    pub digest: Digest,
    pub media_type: MediaType,
    /// The bytes exactly as pushed.
    pub raw: Bytes,
    pub subject: Option<Digest>,
    pub artifact_type: Option<MediaType>,
    pub created: Timestamp,
}

/// A manifest to store, with everything it references already resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct NewManifest {
    pub repository: RepoName,
    pub digest: Digest,
    pub media_type: MediaType,
    pub raw: Bytes,
    pub subject: Option<Digest>,
    pub artifact_type: Option<MediaType>,
    /// Blobs the manifest needs: each must be linked to the repository.
    pub blobs: Vec<Digest>,
    /// Child manifests (of an index): each must be stored in the repository.
    pub children: Vec<Digest>,
    /// Tag to point at the manifest (created or moved).
    pub tag: Option<Tag>,
    pub created: Timestamp,
}

/// A blob row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

/// An upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    pub id: UploadId,
    pub repository: RepoName,
    /// Bytes received so far, as last recorded.
    pub offset: u64,
    /// When the session was opened or last recorded received bytes: a
    /// session is stale after a long silence, however long ago it began.
    pub active: Timestamp,
}

/// A page of a listing that resumes after `last`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Resume strictly after this key (lexical order).
    pub last: Option<String>,
    /// At most this many items.
    pub limit: usize,
}

/// A repository with its counts, for the admin listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepoSummary {
    pub name: RepoName,
    pub tag_count: u64,
    pub manifest_count: u64,
    /// Bytes of the manifests plus the distinct blobs linked to the
    /// repository.
    pub total_size: u64,
    pub created: Timestamp,
}

/// A repository's contents, for the admin detail view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepoDetail {
    pub summary: RepoSummary,
    /// (tag, manifest digest), by tag name.
    pub tags: Vec<(Tag, Digest)>,
    /// (digest, media type, size, created), newest first.
    pub manifests: Vec<(Digest, MediaType, u64, Timestamp)>,
    /// Blobs linked to the repository, by digest.
    pub blobs: Vec<BlobInfo>,
}

/// Metadata storage.
///
/// Semantics every adapter shares (the contract suite checks each):
/// - repositories come into being on first write (upload, link, manifest)
///   and are listed in lexical order;
/// - a blob is *visible* in a repository while a link (repository, digest)
///   exists; links are made by completed uploads and mounts and carry the
///   time they were last made, which GC's grace period reads;
/// - `put_manifest` is all-or-nothing: it checks every blob is linked and
///   every child manifest is stored in the repository, then stores the
///   manifest, its references and the tag in one step;
/// - deleting a manifest deletes the tags that point at it.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    // Repositories.
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool>;
    /// Repository names after `page.last`, at most `page.limit`.
    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepoName>>;
    async fn repository_summaries(&self, page: &Page) -> Result<Vec<RepoSummary>>;
    async fn repository_detail(&self, repo: &RepoName) -> Result<Option<RepoDetail>>;
    /// Deletes the repository with its manifests, tags, links and upload
    /// sessions in one step, returning the sessions so their data can be
    /// discarded. Blob rows stay for GC. `None` if there was no repository.
    async fn delete_repository(&self, repo: &RepoName) -> Result<Option<Vec<UploadId>>>;

    // Manifests and tags.
    /// Fails with `ManifestBlobUnknown` or `ManifestChildUnknown` naming the
    /// first missing reference; stores nothing in that case. Storing a
    /// manifest that exists again only moves the tag.
    async fn put_manifest(&self, manifest: NewManifest) -> Result<()>;
    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>>;
    /// Deletes a manifest, its references and every tag on it.
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool>;
    /// Tags after `page.last`, at most `page.limit`, in lexical order.
    async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<Vec<Tag>>;
    /// Manifests in the repository whose `subject` is `subject`, by digest.
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ManifestRecord>>;

    // Blobs.
    /// The blob, if it is linked to the repository.
    async fn blob_in_repository(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>>;
    /// Whether a blob row exists at all.
    async fn blob_exists(&self, digest: &Digest) -> Result<bool>;
    /// Links the blob `from` holds into `to`, stamping the link with `at`.
    /// Returns the blob, or `None` (changing nothing) if `from` does not
    /// hold it.
    async fn mount_blob(
        &self,
        from: &RepoName,
        to: &RepoName,
        digest: &Digest,
        at: Timestamp,
    ) -> Result<Option<BlobInfo>>;
    /// Removes the link; the blob row stays for GC. Returns whether a link
    /// was there.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// All blob rows, for reconcile.
    async fn list_blobs(&self) -> Result<Vec<BlobInfo>>;

    // Upload sessions.
    async fn create_upload(&self, session: &UploadSession) -> Result<()>;
    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadSession>>;
    /// Records the bytes received so far and marks the session active `at`.
    async fn set_upload_offset(&self, id: &UploadId, offset: u64, at: Timestamp) -> Result<()>;
    /// In one step: records the blob row (if new), links it to the session's
    /// repository stamped `at`, and removes the session. Fails with
    /// `UploadUnknown` if the session is gone.
    async fn complete_upload(&self, id: &UploadId, blob: &BlobInfo, at: Timestamp) -> Result<()>;
    /// Removes a session; returns whether it was there.
    async fn delete_upload(&self, id: &UploadId) -> Result<bool>;
    /// Deletes the repository if it holds nothing — no manifest, blob link
    /// or upload session — in one step; returns whether it did. Undoes the
    /// implicit creation by a push that failed.
    async fn prune_repository(&self, repo: &RepoName) -> Result<bool>;
    /// Sessions last active before `before`, longest idle first.
    async fn uploads_idle_since(&self, before: Timestamp) -> Result<Vec<UploadSession>>;

    // Garbage collection.
    /// GC phase one, in one step: every blob that no manifest references
    /// and whose row and links are all older than `cutoff` loses its row
    /// and links. Returns those blobs.
    async fn sweep_unreferenced_blobs(&self, cutoff: Timestamp) -> Result<Vec<BlobInfo>>;

    // Policy rules (stored ones; the built-ins live in the engine).
    async fn list_rules(&self) -> Result<Vec<Rule>>;
    async fn get_rule(&self, id: i64) -> Result<Option<Rule>>;
    async fn create_rule(&self, draft: &RuleDraft) -> Result<Rule>;
    /// Replaces the rule with `rule.id`; `NotFound` if there is none.
    async fn update_rule(&self, rule: &Rule) -> Result<()>;
    async fn delete_rule(&self, id: i64) -> Result<bool>;

    // Audit log.
    async fn record_audit(&self, event: &NewAuditEvent) -> Result<()>;
    /// Events matching the query, newest first, windowed by limit/offset.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;

    // Backups.
    /// Writes a consistent copy of all the metadata, named by `at`, to
    /// wherever the store keeps its backups, while the store keeps serving;
    /// returns where it went, in words an operator can find it by (a file
    /// path for a file-backed store). Never overwrites: a copy already
    /// named by `at` fails with `Conflict`.
    async fn snapshot(&self, at: Timestamp) -> Result<String>;
}
