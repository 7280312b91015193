//! The `RepositoryStore` port: which repositories exist, their listings
//! and counts, and deleting one whole.

use async_trait::async_trait;
use serde::Serialize;

use super::blob_index::BlobInfo;
use crate::digest::Digest;
use crate::error::Result;
use crate::ids::UploadId;
use crate::media::MediaType;
use crate::names::{RepoName, Tag};
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
    /// stored by a push ([`Provenance::Pushed`](super::Provenance)), not
    /// mirrored from an upstream, by name, at most `limit`: what a
    /// `[[proxy]]` prefix must not be laid over.
    async fn pushed_repositories(&self, prefix: &RepoName, limit: usize) -> Result<Vec<RepoName>>;
    /// [`RepositoryStore::list_repositories`] with each one's counts.
    async fn repository_summaries(&self, page: &Page) -> Result<Vec<RepoSummary>>;
    /// The repository's contents; `None` unless it holds content.
    async fn repository_detail(&self, repo: &RepoName) -> Result<Option<RepoDetail>>;
    /// Deletes the repository with its manifests, tags, links and upload
    /// sessions in one step, returning the sessions so their data can be
    /// discarded. Blob rows stay for GC. `None` if there was no repository.
    async fn delete_repository(&self, repo: &RepoName) -> Result<Option<Vec<UploadId>>>;
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
}
