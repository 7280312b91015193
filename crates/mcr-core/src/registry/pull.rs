//! Pull: manifests, blobs, tag lists, the catalog and referrers.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{details, Caller, Registry};
use crate::audit::EventType;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use crate::media::MediaType;
use crate::names::{Reference, RepoName, Tag};
use crate::ports::{BlobBody, BlobInfo, ByteRange, ManifestRecord};
use crate::principal::Action;

/// A manifest as served.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestContent {
    pub digest: Digest,
    pub media_type: MediaType,
    pub raw: Bytes,
    pub subject: Option<Digest>,
}

impl ManifestContent {
    /// What is served of a stored manifest; the bytes are shared, not
    /// copied.
    fn of(record: &ManifestRecord) -> ManifestContent {
        ManifestContent {
            digest: record.digest.clone(),
            media_type: record.media_type.clone(),
            raw: record.raw.clone(),
            subject: record.subject.clone(),
        }
    }
}

impl From<ManifestRecord> for ManifestContent {
    fn from(record: ManifestRecord) -> ManifestContent {
        ManifestContent {
            digest: record.digest,
            media_type: record.media_type,
            raw: record.raw,
            subject: record.subject,
        }
    }
}

/// One page of a listing, with the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// Present when a next page exists: pass it as `last` to get it. It
    /// is the key of this page's last item, computed here once so every
    /// transport hands out the same cursor.
    pub next: Option<String>,
}

impl<T> Listing<T> {
    /// The page from `limit + 1` items fetched (the extra one only says
    /// that more exist), with `key` naming an item as the cursor.
    pub(super) fn from_overfetch(
        mut items: Vec<T>,
        limit: usize,
        key: impl Fn(&T) -> String,
    ) -> Listing<T> {
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more { items.last().map(key) } else { None };
        Listing { items, next }
    }
}

impl Registry {
    /// `GET /v2/`: whether the caller may use the registry at all.
    pub async fn version_check(&self, caller: &Caller) -> Result<()> {
        self.authorize(caller, Action::VersionCheck, None).await
    }

    /// A manifest by tag or digest.
    pub async fn get_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestContent> {
        self.authorize(caller, Action::Pull, Some(repo)).await?;
        let content = match self.mirrors.find(repo) {
            Some(at) => self
                .mirrored_manifest(caller, &at, repo, reference)
                .await?
                .map(ManifestContent::from),
            None => self.stored_manifest(repo, reference).await?,
        };
        let Some(content) = content else {
            return Err(self.manifest_missing(repo, reference).await?);
        };
        self.audit_read(
            caller,
            EventType::ManifestPulled,
            Some(repo),
            Some(&content.digest),
            details([("reference", reference.to_string())]),
        )
        .await?;
        Ok(content)
    }

    /// A manifest of a repository that is not a mirror: from the manifest
    /// cache, or read from the `MetaStore` and cached (see
    /// `read_cache` for why an entry is never older than an answered
    /// change). Absences are not cached.
    async fn stored_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestContent>> {
        if let Some(hit) = self.manifests.get(repo, reference) {
            return Ok(Some(ManifestContent::of(&hit)));
        }
        let fill = self.manifests.fill();
        let Some(record) = self.meta.get_manifest(repo, reference).await? else {
            return Ok(None);
        };
        let content = ManifestContent::of(&record);
        fill.insert(repo, reference, record);
        Ok(Some(content))
    }

    /// A blob's link in a repository that is not a mirror: from the
    /// blob-link cache, or read from the `MetaStore` and cached (see
    /// `read_cache`). Absences are not cached.
    async fn stored_blob_link(&self, repo: &RepoName, digest: &Digest) -> Result<Option<BlobInfo>> {
        if let Some(hit) = self.blob_links.get(repo, digest) {
            return Ok(Some(BlobInfo::clone(&hit)));
        }
        let fill = self.blob_links.fill();
        let Some(info) = self.meta.blob_in_repository(repo, digest).await? else {
            return Ok(None);
        };
        fill.insert(repo, digest, info.clone());
        Ok(Some(info))
    }

    /// The error for a manifest that is not there: the repository or the
    /// manifest is unknown.
    pub(super) async fn manifest_missing(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Error> {
        Ok(if self.meta.repository_exists(repo).await? {
            Error::ManifestUnknown(reference.to_string())
        } else {
            Error::NameUnknown(repo.clone())
        })
    }

    /// A blob's size, if it is visible in the repository (`HEAD`).
    pub async fn stat_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<BlobInfo> {
        self.authorize(caller, Action::Pull, Some(repo)).await?;
        let info = match self.mirrors.find(repo) {
            Some(at) => self.mirrored_blob_info(&at, repo, digest).await?,
            None => self.stored_blob_link(repo, digest).await?,
        }
        .ok_or_else(|| Error::BlobUnknown(digest.clone()))?;
        self.audit_read(
            caller,
            EventType::BlobPulled,
            Some(repo),
            Some(digest),
            details([("method", "HEAD".to_string())]),
        )
        .await?;
        Ok(info)
    }

    /// A blob's content, or the `range` of it, streamed.
    pub async fn get_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody> {
        self.authorize(caller, Action::Pull, Some(repo)).await?;
        let body = match self.mirrors.find(repo) {
            Some(at) => self.mirrored_blob(caller, &at, repo, digest, range).await?,
            None => {
                if self.stored_blob_link(repo, digest).await?.is_none() {
                    return Err(Error::BlobUnknown(digest.clone()));
                }
                self.blobs.read(digest, range).await?
            }
        };
        self.audit_read(
            caller,
            EventType::BlobPulled,
            Some(repo),
            Some(digest),
            BTreeMap::new(),
        )
        .await?;
        Ok(body)
    }

    /// Tags in lexical order, after `last`, at most `n`.
    pub async fn list_tags(
        &self,
        caller: &Caller,
        repo: &RepoName,
        last: Option<String>,
        n: Option<usize>,
    ) -> Result<Listing<Tag>> {
        self.authorize(caller, Action::Pull, Some(repo)).await?;
        if !self.meta.repository_exists(repo).await? {
            return Err(Error::NameUnknown(repo.clone()));
        }
        let mut page = self.page(last, n);
        let limit = page.limit;
        page.limit += 1;
        let tags = self.meta.list_tags(repo, &page).await?;
        self.audit_read(
            caller,
            EventType::TagsListed,
            Some(repo),
            None,
            BTreeMap::new(),
        )
        .await?;
        Ok(Listing::from_overfetch(tags, limit, Tag::to_string))
    }

    /// Names of the repositories the caller may pull, in lexical order,
    /// after `last`, at most `n`.
    pub async fn catalog(
        &self,
        caller: &Caller,
        last: Option<String>,
        n: Option<usize>,
    ) -> Result<Listing<RepoName>> {
        self.authorize(caller, Action::Catalog, None).await?;
        let listing = self
            .pullable_page(
                caller,
                last,
                n,
                |r| r,
                RepoName::to_string,
                |page| async move { self.meta.list_repositories(&page).await },
            )
            .await?;
        self.audit_read(
            caller,
            EventType::CatalogListed,
            None,
            None,
            BTreeMap::new(),
        )
        .await?;
        Ok(listing)
    }

    /// Manifests whose `subject` is `subject`, as descriptors, optionally
    /// only those of `artifact_type`. An unknown subject has no referrers
    /// (the spec forbids a 404 here).
    pub async fn referrers(
        &self,
        caller: &Caller,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&MediaType>,
    ) -> Result<Vec<Descriptor>> {
        self.authorize(caller, Action::Pull, Some(repo)).await?;
        let records = self.meta.referrers(repo, subject).await?;
        let descriptors = records
            .into_iter()
            .filter(|r| artifact_type.is_none_or(|want| r.artifact_type.as_ref() == Some(want)))
            .map(referrer_descriptor)
            .collect();
        self.audit_read(
            caller,
            EventType::ReferrersListed,
            Some(repo),
            Some(subject),
            BTreeMap::new(),
        )
        .await?;
        Ok(descriptors)
    }
}

/// A referrer as the referrers API lists it: its descriptor with its
/// `artifactType` and top-level annotations.
pub(super) fn referrer_descriptor(r: ManifestRecord) -> Descriptor {
    Descriptor {
        annotations: annotations_of(&r.raw),
        size: r.raw.len() as u64,
        media_type: r.media_type,
        digest: r.digest,
        artifact_type: r.artifact_type,
        urls: Vec::new(),
        data: None,
        platform: None,
    }
}

/// The top-level annotations of a stored manifest (already validated at
/// push, so a parse failure just means none).
fn annotations_of(raw: &[u8]) -> BTreeMap<String, String> {
    #[derive(serde::Deserialize)]
    struct Annotated {
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    serde_json::from_slice::<Annotated>(raw)
        .map(|a| a.annotations)
        .unwrap_or_default()
}
