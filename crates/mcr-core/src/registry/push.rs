//! Push: upload sessions, monolithic uploads, mounts and manifests.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{details, Caller, Registry};
use crate::audit::EventType;
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::ids::UploadId;
use crate::manifest::Manifest;
use crate::media::MediaType;
use crate::names::{Reference, RepoName, Tag};
use crate::policy::PolicyInput;
use crate::ports::{BlobInfo, ByteStream, NewManifest, UploadSession};
use crate::principal::Action;

/// What a mount request led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOutcome {
    /// The blob is now visible in the target repository.
    Mounted(BlobInfo),
    /// It could not be mounted; an ordinary upload session was started.
    Started(UploadSession),
}

/// A stored manifest, as a push acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// Every tag this push pointed at the manifest.
    pub tags: Vec<Tag>,
}

impl Registry {
    /// Starts an upload session in `repo`.
    pub async fn start_upload(&self, caller: &Caller, repo: &RepoName) -> Result<UploadSession> {
        self.authorize(caller, Action::Push, Some(repo)).await?;
        let session = self.open_session(repo).await?;
        self.audit(
            caller,
            EventType::UploadStarted,
            Some(repo),
            None,
            details([("upload", session.id.to_string())]),
        )
        .await?;
        Ok(session)
    }

    async fn open_session(&self, repo: &RepoName) -> Result<UploadSession> {
        let session = UploadSession {
            id: UploadId::generate()?,
            repository: repo.clone(),
            offset: 0,
            active: self.clock.now(),
        };
        // The row first: a data file without a row is an orphan that
        // `purge_stale_uploads` may remove.
        self.meta.create_upload(&session).await?;
        self.blobs.begin_upload(&session.id).await?;
        Ok(session)
    }

    /// The session, if it exists and belongs to `repo`.
    async fn session(&self, repo: &RepoName, id: &UploadId) -> Result<UploadSession> {
        match self.meta.get_upload(id).await? {
            Some(s) if &s.repository == repo => Ok(s),
            _ => Err(Error::UploadUnknown(id.to_string())),
        }
    }

    /// Appends a chunk. With `offset`, the chunk must start exactly where
    /// the upload ends (`Error::RangeInvalid` otherwise). Returns the
    /// upload's new size.
    pub async fn upload_chunk(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: &UploadId,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        self.authorize(caller, Action::Push, Some(repo)).await?;
        self.session(repo, id).await?;
        let size = self.blobs.append_upload(id, offset, body).await?;
        self.meta
            .set_upload_offset(id, size, self.clock.now())
            .await?;
        Ok(size)
    }

    /// How many bytes the session holds.
    pub async fn upload_status(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: &UploadId,
    ) -> Result<u64> {
        self.authorize(caller, Action::Push, Some(repo)).await?;
        self.session(repo, id).await?;
        self.blobs.upload_size(id).await
    }

    /// Finishes the session as blob `digest`, appending `last_chunk` first
    /// (placed like [`Registry::upload_chunk`] places a chunk). The blob is
    /// visible in `repo` once this returns.
    pub async fn finish_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        last_chunk: Option<(Option<u64>, ByteStream)>,
    ) -> Result<BlobInfo> {
        self.authorize(caller, Action::Push, Some(repo)).await?;
        self.session(repo, id).await?;
        if let Some((offset, body)) = last_chunk {
            let size = self.blobs.append_upload(id, offset, body).await?;
            self.meta
                .set_upload_offset(id, size, self.clock.now())
                .await?;
        }
        self.commit_upload(caller, repo, id, digest).await
    }

    /// Moves the upload into place and records it, under the digest's lock
    /// so GC cannot delete the file between the two (see `locks`), then
    /// audits it.
    async fn commit_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
    ) -> Result<BlobInfo> {
        let info = {
            let _guard = self.lock_blob(digest).await?;
            let size = self.blobs.finish_upload(id, digest).await?;
            let info = BlobInfo {
                digest: digest.clone(),
                size,
            };
            self.meta
                .complete_upload(id, &info, self.clock.now())
                .await?;
            info
        };
        self.audit(
            caller,
            EventType::BlobUploaded,
            Some(repo),
            Some(digest),
            details([("size", info.size.to_string())]),
        )
        .await?;
        Ok(info)
    }

    /// Cancels a session and discards its data.
    pub async fn cancel_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: &UploadId,
    ) -> Result<()> {
        self.authorize(caller, Action::Push, Some(repo)).await?;
        self.session(repo, id).await?;
        self.meta.delete_upload(id).await?;
        self.blobs.cancel_upload(id).await?;
        self.audit(
            caller,
            EventType::UploadCancelled,
            Some(repo),
            None,
            details([("upload", id.to_string())]),
        )
        .await
    }

    /// A whole blob in one request (`POST ?digest=`).
    pub async fn upload_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<BlobInfo> {
        self.authorize(caller, Action::Push, Some(repo)).await?;
        let session = self.open_session(repo).await?;
        let committed = match self.blobs.append_upload(&session.id, Some(0), body).await {
            Ok(_) => self.commit_upload(caller, repo, &session.id, digest).await,
            Err(e) => Err(e),
        };
        let info = match committed {
            Ok(info) => info,
            Err(e) => {
                self.meta.delete_upload(&session.id).await?;
                self.blobs.cancel_upload(&session.id).await?;
                // A push that failed leaves no empty repository behind.
                self.meta.prune_repository(repo).await?;
                return Err(e);
            }
        };
        Ok(info)
    }

    /// Makes a blob of `from` visible in `to` without sending it again.
    /// Falls back to starting an upload session when `from` is absent, the
    /// caller may not pull from it, or it does not hold the blob. Without
    /// `from`, a blob already in `to` counts as mounted.
    pub async fn mount_blob(
        &self,
        caller: &Caller,
        to: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<MountOutcome> {
        self.authorize(caller, Action::Push, Some(to)).await?;
        let mounted = match from {
            Some(from) if self.may_pull(caller, from) => {
                self.meta
                    .mount_blob(from, to, digest, self.clock.now())
                    .await?
            }
            Some(_) => None,
            // Already here: mounting onto itself re-stamps the link, so GC's
            // grace period covers the manifest push that follows.
            None => {
                self.meta
                    .mount_blob(to, to, digest, self.clock.now())
                    .await?
            }
        };
        match mounted {
            Some(info) => {
                let mut d = BTreeMap::new();
                if let Some(from) = from {
                    d.insert("from".to_string(), from.to_string());
                }
                self.audit(caller, EventType::BlobMounted, Some(to), Some(digest), d)
                    .await?;
                Ok(MountOutcome::Mounted(info))
            }
            None => {
                let session = self.open_session(to).await?;
                self.audit(
                    caller,
                    EventType::UploadStarted,
                    Some(to),
                    None,
                    details([("upload", session.id.to_string())]),
                )
                .await?;
                Ok(MountOutcome::Started(session))
            }
        }
    }

    /// A silent policy check: a refused mount source is not an error, only
    /// a reason to upload instead.
    fn may_pull(&self, caller: &Caller, repo: &RepoName) -> bool {
        self.policy
            .evaluate(&PolicyInput {
                principal: &caller.principal,
                action: Action::Pull,
                repository: Some(repo),
            })
            .is_allowed()
    }

    /// Validates and stores a manifest under `reference` (a tag, which is
    /// created or moved, or the digest the content must hash to).
    pub async fn put_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&MediaType>,
        raw: Bytes,
    ) -> Result<PushedManifest> {
        self.put_manifest_tagged(caller, repo, reference, &[], content_type, raw)
            .await
    }

    /// [`Registry::put_manifest`], also pointing each of `tags` at the
    /// manifest (`PUT .../manifests/<digest>?tag=a&tag=b`).
    pub async fn put_manifest_tagged(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
        tags: &[Tag],
        content_type: Option<&MediaType>,
        raw: Bytes,
    ) -> Result<PushedManifest> {
        self.authorize(caller, Action::Push, Some(repo)).await?;
        let size = raw.len() as u64;
        if size > self.config.max_manifest_size {
            return Err(Error::ManifestTooLarge {
                size,
                limit: self.config.max_manifest_size,
            });
        }
        let manifest = Manifest::parse(content_type, &raw)?;
        let (digest, tag) = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &raw);
                if &actual != expected {
                    return Err(Error::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                (actual, None)
            }
            Reference::Tag(tag) => (Digest::of(Algorithm::Sha256, &raw), Some(tag.clone())),
        };
        let mut blobs: Vec<Digest> = manifest
            .required_blobs()
            .map(|d| d.digest.clone())
            .collect();
        blobs.sort();
        blobs.dedup();
        let mut children: Vec<Digest> = manifest
            .manifests
            .iter()
            .map(|d| d.digest.clone())
            .collect();
        children.sort();
        children.dedup();
        let subject = manifest.subject.as_ref().map(|s| s.digest.clone());
        let mut new = NewManifest {
            repository: repo.clone(),
            digest: digest.clone(),
            media_type: manifest.media_type(),
            raw,
            subject: subject.clone(),
            artifact_type: manifest.referrer_artifact_type(),
            blobs,
            children,
            tag: tag.clone(),
            created: self.clock.now(),
        };
        self.meta.put_manifest(new.clone()).await?;
        // Storing an existing manifest again only moves the tag.
        for extra in tags {
            new.tag = Some(extra.clone());
            self.meta.put_manifest(new.clone()).await?;
        }
        let all_tags: Vec<Tag> = tag.into_iter().chain(tags.iter().cloned()).collect();
        let mut d = BTreeMap::new();
        if !all_tags.is_empty() {
            let names: Vec<&str> = all_tags.iter().map(Tag::as_str).collect();
            d.insert("tag".to_string(), names.join(","));
        }
        self.audit(
            caller,
            EventType::ManifestPushed,
            Some(repo),
            Some(&digest),
            d,
        )
        .await?;
        Ok(PushedManifest {
            digest,
            subject,
            tags: all_tags,
        })
    }
}
