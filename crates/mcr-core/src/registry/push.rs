//! Push: upload sessions, monolithic uploads, mounts and manifests.
//!
//! An upload's bytes go to a writer the `BlobStore` hands out, resumed
//! from the state the session row records; after each chunk the new state
//! is recorded, so any replica can take the next chunk. Appending to a
//! session and recording its state happen under the session's lock, one
//! writer at a time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;

use super::{details, Caller, Registry};
use crate::audit::EventType;
use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::ids::UploadId;
use crate::manifest::Manifest;
use crate::media::MediaType;
use crate::names::{Reference, RepoName, Tag};
use crate::policy::TagGuard;
use crate::ports::{
    BlobInfo, ByteStream, LockGuard, LockKey, NewManifest, Provenance, UploadCaps, UploadSession,
    UploadState, UploadWriter,
};
use crate::principal::Action;

/// `body`, failing once it has yielded more than `room` bytes; the flag
/// says the limit tripped, so the failure is answered as "too large".
fn limited(body: ByteStream, room: u64) -> (ByteStream, Arc<AtomicBool>) {
    let tripped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&tripped);
    let mut seen: u64 = 0;
    let body = body.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > room {
            flag.store(true, Ordering::Release);
            return Err(std::io::Error::other(
                "the blob would be over the size limit",
            ));
        }
        Ok(chunk)
    });
    (Box::pin(body), tripped)
}

/// What a caller refused another upload session is told to wait: about
/// as long as a client takes to finish or abandon one.
const UPLOAD_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

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
        let session = self.open_caller_session(caller, repo).await?;
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

    /// A new session of `caller` in `repo`, within the caps on open
    /// sessions (`TooManyRequests` past them).
    async fn open_caller_session(&self, caller: &Caller, repo: &RepoName) -> Result<UploadSession> {
        let caps = UploadCaps {
            per_owner: self.config.max_uploads_per_principal,
            per_repository: self.config.max_uploads_per_repository,
            retry_after: UPLOAD_RETRY_AFTER,
        };
        self.open_session(repo, &caller.principal.subject, &caps)
            .await
    }

    /// A new session in `repo` opened by `owner`, within `caps`.
    pub(super) async fn open_session(
        &self,
        repo: &RepoName,
        owner: &str,
        caps: &UploadCaps,
    ) -> Result<UploadSession> {
        let session = UploadSession {
            id: UploadId::generate()?,
            repository: repo.clone(),
            state: UploadState::default(),
            active: self.clock.now(),
        };
        // The row first: a data file without a row is an orphan that
        // `purge_stale_uploads` may remove.
        self.meta.create_upload(&session, owner, caps).await?;
        self.blobs.begin_upload(&session.id).await?;
        Ok(session)
    }

    /// The session, if it exists and belongs to `repo`.
    async fn session(&self, repo: &RepoName, id: &UploadId) -> Result<UploadSession> {
        match self.meta.get_upload(id).await? {
            Some(s) if &s.repository == repo => Ok(s),
            _ => Err(Error::upload_unknown(id)),
        }
    }

    /// The session's lock (one writer at a time, across replicas), the
    /// session as recorded under it, and a writer resuming it.
    async fn writer(
        &self,
        repo: &RepoName,
        id: &UploadId,
    ) -> Result<(LockGuard, UploadSession, Box<dyn UploadWriter>)> {
        let lock = self.coordination.lock(&LockKey::Upload(id.clone())).await?;
        let session = self.session(repo, id).await?;
        let writer = self.blobs.resume_upload(id, &session.state).await?;
        Ok((lock, session, writer))
    }

    /// Appends a chunk. With `offset`, the chunk must start exactly where
    /// the upload ends (`Error::RangeInvalid` otherwise). A chunk that would
    /// grow the blob past `max_blob_size` is refused whole
    /// (`Error::BlobTooLarge`); chunks of one session are appended one at a
    /// time, so two cannot pass the limit together. Returns the upload's
    /// new size.
    pub async fn upload_chunk(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: &UploadId,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        self.authorize(caller, Action::Push, Some(repo)).await?;
        let (_lock, session, mut writer) = self.writer(repo, id).await?;
        self.append(writer.as_mut(), offset, body).await?;
        self.save_state(&session, writer.state()).await
    }

    /// Appends `body` where `offset` says, within the blob size limit.
    /// The new state is the caller's to record.
    async fn append(
        &self,
        writer: &mut dyn UploadWriter,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<()> {
        let start = writer.state().size;
        if let Some(got) = offset {
            if got != start {
                return Err(Error::RangeInvalid {
                    expected: start,
                    got,
                });
            }
        }
        let limit = self.config.max_blob_size;
        let (body, tripped) = limited(body, limit.saturating_sub(start));
        match writer.append(body).await {
            Err(_) if tripped.load(Ordering::Acquire) => Err(Error::BlobTooLarge { limit }),
            other => other,
        }
    }

    /// Records where the upload stands, and that it is active now.
    async fn save_state(&self, session: &UploadSession, state: &UploadState) -> Result<u64> {
        self.meta
            .save_upload_state(&session.id, session.state.size, state, self.clock.now())
            .await?;
        Ok(state.size)
    }

    /// How many bytes the session holds.
    pub async fn upload_status(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: &UploadId,
    ) -> Result<u64> {
        self.authorize(caller, Action::Push, Some(repo)).await?;
        Ok(self.session(repo, id).await?.state.size)
    }

    /// Finishes the session as blob `digest`, appending `last_chunk` first
    /// (placed and limited like [`Registry::upload_chunk`]'s chunks). The
    /// blob is visible in `repo` once this returns. Past a quota it is
    /// refused (`Error::QuotaExceeded`) and the session ends.
    pub async fn finish_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        last_chunk: Option<(Option<u64>, ByteStream)>,
    ) -> Result<BlobInfo> {
        self.authorize(caller, Action::Push, Some(repo)).await?;
        let (_lock, session, mut writer) = self.writer(repo, id).await?;
        let Some((offset, body)) = last_chunk else {
            return self.commit_upload(caller, repo, id, writer, digest).await;
        };
        self.append(writer.as_mut(), offset, body).await?;
        // Recorded only if the upload goes on: a finished one has no row.
        let appended = writer.state().clone();
        match self.commit_upload(caller, repo, id, writer, digest).await {
            Ok(info) => Ok(info),
            // A quota's refusal ended the session: nothing to record.
            Err(e @ Error::QuotaExceeded(_)) => Err(e),
            Err(e) => {
                if let Err(saving) = self.save_state(&session, &appended).await {
                    tracing::warn!(upload = %id, error = %saving, "recording the last chunk of a failed finish");
                }
                Err(e)
            }
        }
    }

    /// Stores the upload as its blob and records it with its audit event,
    /// under the digest's lock so GC cannot delete the file between the two
    /// (see GC's safety argument).
    async fn commit_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: &UploadId,
        writer: Box<dyn UploadWriter>,
        digest: &Digest,
    ) -> Result<BlobInfo> {
        let _guard = self.lock_blob(digest).await?;
        let size = writer.finish(digest).await?;
        let info = BlobInfo {
            digest: digest.clone(),
            size,
        };
        let event = self.event(
            caller,
            EventType::BlobUploaded,
            Some(repo),
            Some(digest),
            details([("size", size.to_string())]),
        );
        let stored = self
            .meta
            .complete_upload(id, &info, event.time, Provenance::Pushed, &event)
            .await;
        if let Err(Error::QuotaExceeded(_)) = &stored {
            self.discard_refused_upload(repo, id, digest).await;
        }
        self.audit_quota_refusal(caller, repo, digest, stored)
            .await?;
        Ok(info)
    }

    /// After a quota refused an upload's blob (its file already in
    /// place, no row or link made): ends the session, which cannot go on
    /// from a finished writer, and removes the file if no row names it.
    /// Called under the digest's lock, as GC deletes, so an upload of the
    /// same content elsewhere either committed its row first (the file
    /// stays) or renames its file in after. Failures are only logged:
    /// the client is told of the refusal, and the purge and reconcile
    /// remove what is left.
    async fn discard_refused_upload(&self, repo: &RepoName, id: &UploadId, digest: &Digest) {
        if let Err(e) = self.discard_failed_upload(repo, id).await {
            tracing::warn!(upload = %id, %repo, error = %e, "ending an upload refused for a quota");
        }
        let unclaimed = match self.meta.blob_exists(digest).await {
            Ok(exists) => !exists,
            Err(e) => {
                tracing::warn!(%digest, error = %e, "checking a blob refused for a quota");
                false
            }
        };
        if unclaimed {
            if let Err(e) = self.blobs.delete(digest).await {
                tracing::warn!(%digest, error = %e, "removing a blob refused for a quota");
            }
        }
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

    /// A whole blob in one request (`POST ?digest=`), within the blob
    /// size limit.
    pub async fn upload_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<BlobInfo> {
        self.authorize(caller, Action::Push, Some(repo)).await?;
        let session = self.open_caller_session(caller, repo).await?;
        // A session no one else knows of yet: no lock needed.
        let stored = async {
            let mut writer = self
                .blobs
                .resume_upload(&session.id, &session.state)
                .await?;
            self.append(writer.as_mut(), Some(0), body).await?;
            self.commit_upload(caller, repo, &session.id, writer, digest)
                .await
        };
        match stored.await {
            Ok(info) => Ok(info),
            // A quota's refusal cleaned up already.
            Err(e @ Error::QuotaExceeded(_)) => Err(e),
            Err(e) => {
                // The client is told why the upload failed; a cleanup
                // that fails too is only logged (the purge removes what
                // it left).
                if let Err(cleanup) = self.discard_failed_upload(repo, &session.id).await {
                    tracing::warn!(upload = %session.id, %repo, error = %cleanup, cause = %e, "cleaning up after a failed monolithic upload");
                }
                Err(e)
            }
        }
    }

    /// Removes the session of a failed upload with its data, and the
    /// repository if the push had created it empty.
    async fn discard_failed_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        self.meta.delete_upload(id).await?;
        self.blobs.cancel_upload(id).await?;
        self.meta.prune_repository(repo).await?;
        Ok(())
    }

    /// Makes a blob of `from` visible in `to` without sending it again.
    /// Falls back to starting an upload session when `from` is absent, the
    /// caller may not pull from it, or it does not hold the blob. Without
    /// `from` (an anonymous mount), a blob already in `to` counts as
    /// mounted, and otherwise it is taken from any repository holding it
    /// that the caller may pull — never from one it may not, so the
    /// answer tells nothing about repositories the caller cannot read.
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
                self.mount_from(caller, from, to, digest).await?
            }
            Some(_) => None,
            // Already here: mounting onto itself re-stamps the link, so GC's
            // grace period covers the manifest push that follows.
            None => match self.mount_from(caller, to, to, digest).await? {
                Some(info) => Some(info),
                None => self.mount_from_any(caller, to, digest).await?,
            },
        };
        match mounted {
            Some(info) => Ok(MountOutcome::Mounted(info)),
            None => {
                let session = self.open_caller_session(caller, to).await?;
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

    /// Links `digest` from `from` into `to` with its audit event (naming
    /// `from` unless it is `to`): `None` if `from` does not hold it.
    async fn mount_from(
        &self,
        caller: &Caller,
        from: &RepoName,
        to: &RepoName,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>> {
        let mut d = BTreeMap::new();
        if from != to {
            d.insert("from".to_string(), from.to_string());
        }
        let event = self.event(caller, EventType::BlobMounted, Some(to), Some(digest), d);
        let mounted = self
            .meta
            .mount_blob(from, to, digest, event.time, Provenance::Pushed, &event)
            .await;
        self.audit_quota_refusal(caller, to, digest, mounted).await
    }

    /// Mounts `digest` into `to` from the first repository holding it
    /// (by name) that the caller may pull.
    async fn mount_from_any(
        &self,
        caller: &Caller,
        to: &RepoName,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>> {
        let mut page = self.page(None, None);
        loop {
            let holders = self.meta.blob_holders(digest, &page).await?;
            for holder in &holders {
                if holder == to || !self.may_pull(caller, holder) {
                    continue;
                }
                // A holder that lost the blob meanwhile: try the next one.
                if let Some(info) = self.mount_from(caller, holder, to, digest).await? {
                    return Ok(Some(info));
                }
            }
            match holders.last() {
                Some(last) if holders.len() == page.limit => page.last = Some(last.to_string()),
                _ => return Ok(None),
            }
        }
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
        let (mut new, manifest) =
            self.new_manifest(repo, reference, content_type, raw, Provenance::Pushed)?;
        self.check_children(repo, &manifest).await?;
        new.tags.extend(tags.iter().cloned());
        new.tag_guard = self.tag_guard(caller, Action::TagOverwrite, repo);
        let (digest, subject, all_tags) =
            (new.digest.clone(), new.subject.clone(), new.tags.clone());
        let mut d = BTreeMap::new();
        if !all_tags.is_empty() {
            let names: Vec<&str> = all_tags.iter().map(Tag::as_str).collect();
            d.insert("tag".to_string(), names.join(","));
        }
        let event = self.event(
            caller,
            EventType::ManifestPushed,
            Some(repo),
            Some(&digest),
            d,
        );
        // One step for the manifest, every tag and the event: a failure
        // moves none.
        let change = self.manifests.change(repo);
        let stored = self.meta.put_manifest(new, &event).await;
        change.done();
        let stored = self.audit_tag_refusal(caller, repo, stored).await;
        self.audit_quota_refusal(caller, repo, &digest, stored)
            .await?;
        Ok(PushedManifest {
            digest,
            subject,
            tags: all_tags,
        })
    }

    /// Refuses an index whose descriptor of a stored child manifest gives
    /// another size or media type than the child's (the image-spec: a
    /// descriptor's size must match its content), so no client is sent
    /// to a child it would fail to verify. A child not stored is left to
    /// the store step, which refuses it as unknown in the same
    /// transaction that stores the index; a stored manifest's bytes never
    /// change, so reading it before that step cannot go stale.
    async fn check_children(&self, repo: &RepoName, manifest: &Manifest) -> Result<()> {
        let mut seen: BTreeMap<&Digest, Option<(u64, MediaType)>> = BTreeMap::new();
        for child in &manifest.manifests {
            let stored = match seen.get(&child.digest) {
                Some(stored) => stored.clone(),
                None => {
                    let reference = Reference::Digest(child.digest.clone());
                    let stored = self
                        .meta
                        .get_manifest(repo, &reference)
                        .await?
                        .map(|m| (m.raw.len() as u64, m.media_type));
                    seen.insert(&child.digest, stored.clone());
                    stored
                }
            };
            let Some((size, media_type)) = stored else {
                continue;
            };
            if child.size != size || child.media_type != media_type {
                return Err(Error::ManifestInvalid(format!(
                    "the descriptor of child manifest {} says {} bytes of {}, \
                     but the stored manifest is {size} bytes of {media_type}",
                    child.digest, child.size, child.media_type
                )));
            }
        }
        Ok(())
    }

    /// Builds the manifest row a push or a mirror stores: size limit,
    /// parse, digest (checked against `reference` if it is one), the
    /// references; with the parsed manifest.
    pub(super) fn new_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&MediaType>,
        raw: Bytes,
        provenance: Provenance,
    ) -> Result<(NewManifest, Manifest)> {
        let size = raw.len() as u64;
        if size > self.config.max_manifest_size {
            return Err(Error::ManifestTooLarge {
                size,
                limit: self.config.max_manifest_size,
            });
        }
        let manifest = Manifest::parse(content_type, &raw)?;
        let (digest, tag): (Digest, Option<Tag>) = match reference {
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
        let new = NewManifest {
            repository: repo.clone(),
            digest,
            media_type: manifest.media_type(),
            raw,
            subject: manifest.subject.as_ref().map(|s| s.digest.clone()),
            artifact_type: manifest.referrer_artifact_type(),
            blobs,
            children,
            tags: tag.into_iter().collect(),
            // A mirror follows its upstream's tags; a push sets its own.
            tag_guard: TagGuard::open(),
            created: self.clock.now(),
            provenance,
        };
        Ok((new, manifest))
    }
}
