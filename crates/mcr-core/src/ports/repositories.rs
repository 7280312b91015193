//! The `RepositoryStore` port: which repositories exist, their listings
//! and counts (filtered, sorted and paged here, see `repo_query`), and
//! deleting one whole.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::blob_index::BlobInfo;
use super::repo_query::RepoQuery;
use crate::audit::NewAuditEvent;
use crate::digest::Digest;
use crate::error::Result;
use crate::ids::UploadId;
use crate::media::MediaType;
use crate::names::{RepoName, Tag};
use crate::policy::TagGuard;
use crate::time::Timestamp;

/// A page of a listing that resumes after `last`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Resume strictly after this key (lexical order).
    pub last: Option<String>,
    /// At most this many items.
    pub limit: usize,
}

/// A repository with its counts, for the admin listing.
///
/// This one shape is what the admin REST API answers (as JSON, these
/// field names), what gRPC's `RepositorySummary` carries, and what
/// `mcrctl` and `mcr-web` read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSummary {
    pub name: RepoName,
    pub tag_count: u64,
    pub manifest_count: u64,
    /// Bytes of the manifests plus the distinct blobs linked to the
    /// repository.
    pub total_size: u64,
    pub created: Timestamp,
    /// When a manifest was last stored or a tag last set in it; absent
    /// if nothing ever was.
    pub last_push: Option<Timestamp>,
}

/// A tag and the manifest it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRef {
    pub name: Tag,
    pub digest: Digest,
}

/// A stored manifest without its content: what a repository's detail
/// lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSummary {
    pub digest: Digest,
    pub media_type: MediaType,
    /// Bytes of the manifest itself.
    pub size: u64,
    pub created: Timestamp,
}

/// A repository's contents, for the admin detail view: the summary's
/// fields (flattened into the same JSON object), then the lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoDetail {
    #[serde(flatten)]
    pub summary: RepoSummary,
    /// By tag name.
    pub tags: Vec<TagRef>,
    /// Newest first.
    pub manifests: Vec<ManifestSummary>,
    /// Blobs linked to the repository, by digest.
    pub layers: Vec<BlobInfo>,
}

/// Repositories as a whole.
///
/// A repository's row comes into being on its first write (an upload
/// session, a link, a manifest) through the other traits; this one reads
/// and removes them. For readers a repository exists only while it holds
/// content — a manifest or a blob link — so an abandoned upload shows
/// nowhere, and a repository whose last content went is gone from every
/// listing (issue 16, case 2). Listings are in lexical order of the name.
#[async_trait]
pub trait RepositoryStore: Send + Sync + 'static {
    /// Whether the repository holds a manifest or a blob link.
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool>;
    /// Names of repositories holding content after `page.last`, at most
    /// `page.limit`.
    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepoName>>;
    /// Repositories named `prefix` or under `prefix/` that hold a manifest
    /// or a blob link made by a push ([`Provenance::Pushed`](super::Provenance)),
    /// not mirrored from an upstream, by name, at most `limit`: what a
    /// `[[proxy]]` prefix must not be laid over.
    async fn pushed_repositories(&self, prefix: &RepoName, limit: usize) -> Result<Vec<RepoName>>;
    /// Summaries of the repositories holding content that `query`
    /// selects, in its order, after its cursor, at most `query.limit`; the
    /// filter, the order and the page are the store's work (see
    /// [`RepoQuery`]).
    async fn repository_summaries(&self, query: &RepoQuery) -> Result<Vec<RepoSummary>>;
    /// The repository's contents; `None` unless it holds content.
    async fn repository_detail(&self, repo: &RepoName) -> Result<Option<RepoDetail>>;
    /// Deletes the repository with its manifests, tags, links and upload
    /// sessions in one step, returning the sessions so their data can be
    /// discarded. Blob rows stay for GC. `None` if there was no repository.
    /// Unless `tags` allows every tag, each of the repository's tags is
    /// first put to [`TagGuard::check`] in the same step, and the first
    /// refusal (`Error::TagRefused`) deletes nothing. Records `event` in
    /// the same step when it deleted the repository.
    async fn delete_repository(
        &self,
        repo: &RepoName,
        tags: &TagGuard,
        event: &NewAuditEvent,
    ) -> Result<Option<Vec<UploadId>>>;
    /// Deletes the repository's manifests (their references and tags with
    /// them) and blob links in one step, but not its upload sessions: an
    /// upload in progress (a pull-through cache's fill) still finishes
    /// into it. The repository itself goes too when no session is left.
    /// Blob rows stay for GC. Returns whether it held a manifest or a
    /// link.
    async fn empty_repository(&self, repo: &RepoName) -> Result<bool>;
    /// Deletes the repository if it holds nothing — no manifest, blob link
    /// or upload session — in one step; returns whether it did. Undoes the
    /// implicit creation by a push that failed.
    async fn prune_repository(&self, repo: &RepoName) -> Result<bool>;
    /// Bytes of every blob row and every stored manifest: what the
    /// registry holds.
    async fn stored_bytes(&self) -> Result<u64>;
}
