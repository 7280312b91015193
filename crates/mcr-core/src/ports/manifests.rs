//! The `ManifestStore` port: manifests with their references, tags and
//! referrers.

use async_trait::async_trait;
use bytes::Bytes;

use super::repositories::Page;
use crate::audit::NewAuditEvent;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::MediaType;
use crate::names::{Reference, RepoName, Tag};
use crate::policy::TagGuard;
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
    /// Blobs the manifest needs: each must be linked to the repository
    /// (unless [`Provenance::Mirrored`]).
    pub blobs: Vec<Digest>,
    /// Child manifests (of an index): each must be stored in the repository
    /// (unless [`Provenance::Mirrored`]).
    pub children: Vec<Digest>,
    /// Tags to point at the manifest (each created or moved), all in the
    /// same step as the manifest: a push with several tags moves all or
    /// none (issue 16, case 8).
    pub tags: Vec<Tag>,
    /// Asked, in the store step, about each of `tags` that already points
    /// at another manifest (`registry:tag_overwrite`); a refusal
    /// (`Error::TagRefused`) stores nothing. Re-pushing the manifest a tag
    /// already names moves nothing and is not asked.
    pub tag_guard: TagGuard,
    pub created: Timestamp,
    pub provenance: Provenance,
}

/// Where a manifest to store, or a blob link to make, comes from: a
/// manifest's decides what must already be in the repository, and both
/// are recorded, so that a `[[proxy]]` prefix laid over pushed content is
/// refused ([`RepositoryStore::pushed_repositories`](super::RepositoryStore::pushed_repositories)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Pushed by a client (a manifest put, a blob upload or mount): a
    /// manifest's every blob must be linked and every child stored first.
    Pushed,
    /// A pull-through cache's copy of upstream content (a manifest, or a
    /// blob it fetched or linked from another repository). A manifest's
    /// blobs and children arrive on demand, when a client asks for them,
    /// so none is required; its references are recorded all the same:
    /// they keep what has been cached safe from GC.
    Mirrored,
}

/// What a manifest delete does when something still refers to the
/// manifest as its step (transaction) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestDelete {
    /// Deletes it with every tag on it: a client's `DELETE` by digest.
    WithTags,
    /// Deletes it only while no tag points at it and no manifest in the
    /// repository has it as a child (an index's entry) or as its
    /// `subject`, else `Error::Conflict`: retention's deletions, planned
    /// earlier, so a tag or an index pushed since the plan keeps it.
    IfUnreferenced,
}

impl ManifestDelete {
    /// Whether the delete goes ahead, given what refers to `digest` in
    /// its step: `tag`, a tag on it, and `referrer`, a manifest of the
    /// repository with it as a child or subject (each the first found,
    /// if any). `Error::Conflict` naming the referent when
    /// [`ManifestDelete::IfUnreferenced`] keeps it.
    pub fn check(
        self,
        digest: &Digest,
        tag: Option<&Tag>,
        referrer: Option<&Digest>,
    ) -> Result<()> {
        if self == ManifestDelete::WithTags {
            return Ok(());
        }
        let by = match (tag, referrer) {
            (Some(t), _) => format!("tag {t:?} points at it"),
            (None, Some(r)) => format!("manifest {r} refers to it"),
            (None, None) => return Ok(()),
        };
        Err(Error::Conflict(format!("manifest {digest} was kept: {by}")))
    }
}

/// Whether a tag's compare-and-delete goes ahead: `Ok` when `expected`
/// is `None` or is `actual`, where the tag points in the delete's step;
/// else `Error::Conflict` saying where it points now.
pub fn check_tag_target(tag: &Tag, expected: Option<&Digest>, actual: &Digest) -> Result<()> {
    match expected {
        Some(e) if e != actual => Err(Error::Conflict(format!(
            "tag {tag:?} was kept: it points at {actual}, not {e}"
        ))),
        _ => Ok(()),
    }
}

/// Manifests and the tags that point at them.
///
/// - `put_manifest` is all-or-nothing: it checks every blob is linked and
///   every child manifest is stored in the repository (for a
///   [`Provenance::Pushed`] manifest), then stores the manifest, its
///   references and its tags in one step (one transaction);
///   the references are what protect blobs from GC;
/// - deleting a manifest deletes the tags that point at it;
/// - a [`TagGuard`] is asked inside the step about every tag it would move
///   or delete (see `policy::TagGuard` for why not before it).
#[async_trait]
pub trait ManifestStore: Send + Sync + 'static {
    /// Fails with `ManifestBlobUnknown` or `ManifestChildUnknown` naming the
    /// first missing reference of a pushed manifest; stores nothing in that
    /// case. A pushed manifest not yet stored in a scope is charged its
    /// bytes against every quota covering the repository, in the same step
    /// (`crate::quota`): `QuotaExceeded` stores nothing. Storing a manifest that exists again only moves the tags. Creates the
    /// repository on its first manifest. Records `event` in the same step,
    /// so a push that fails to be audited stores nothing.
    async fn put_manifest(&self, manifest: NewManifest, event: &NewAuditEvent) -> Result<()>;
    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>>;
    /// Deletes a manifest, its references and every tag on it. Unless
    /// `tags` allows every tag, each tag on it is first put to
    /// [`TagGuard::check`] in the same step, and the first refusal
    /// (`Error::TagRefused`) deletes nothing. With
    /// [`ManifestDelete::IfUnreferenced`], a manifest something refers to
    /// in that step is kept and `Error::Conflict` names what. Records
    /// `event` in the same step when it deleted the manifest (not when
    /// there was none), so a delete that fails to be audited deletes
    /// nothing.
    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        tags: &TagGuard,
        mode: ManifestDelete,
        event: &NewAuditEvent,
    ) -> Result<bool>;
    /// Deletes the tag, recording `event` in the same step if there was
    /// one. With `expected`, only while the tag points at that digest in
    /// the same step (compare-and-delete): a tag moved elsewhere is kept
    /// and `Error::Conflict` says where it points now. `Ok(false)` when
    /// there is no such tag.
    async fn delete_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        expected: Option<&Digest>,
        event: &NewAuditEvent,
    ) -> Result<bool>;
    /// Tags after `page.last`, at most `page.limit`, in lexical order.
    async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<Vec<Tag>>;
    /// Manifests in the repository whose `subject` is `subject`, by digest.
    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ManifestRecord>>;
}
