//! The pull use cases in a mirrored repository (spec § "Pull-through
//! cache"): what is cached is answered locally, a miss is fetched from the
//! upstream and kept.
//!
//! - A manifest by digest, once cached, is served forever (content is
//!   addressed). A tag confirmed less than `tag_ttl` ago is answered with
//!   no upstream request; after that one `HEAD` revalidates it, and if the
//!   upstream cannot be asked the cached answer is served (`offline`) and
//!   trusted for [`crate::proxy::OFFLINE_RETRY`] (or `tag_ttl`, if
//!   shorter), so a down upstream is not waited on by every pull.
//!   Manifests are stored [`Provenance::Mirrored`]: an index's children
//!   and an image's blobs come when a client asks for them.
//! - A blob miss streams from the upstream to the client and into the
//!   store at once: the fill is a task of its own (run by the
//!   [`crate::ports::Spawn`] the embedder gave, else driven by the first
//!   reader) that goes on to its commit whether or not its readers stay,
//!   and every pull of the blob meanwhile follows it (`registry::fill`:
//!   a bounded window, then the store). The last byte reaches a client
//!   only once the whole blob hashed to its digest and was committed, so
//!   a corrupt or truncated answer fails the pull and leaves nothing
//!   behind. One fetch per digest: pulls in this process join the
//!   running fill, other replicas wait on [`LockKey::Fill`].

use std::io;
use std::sync::Arc;

use futures_util::StreamExt;

use super::fill::{FillReader, Found, Lead, JOIN_ATTEMPTS};
use super::{details, Caller, Registry};
use crate::audit::{EventType, NewAuditEvent};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::names::{Reference, RepoName};
use crate::ports::{
    BlobBody, BlobInfo, ByteRange, LockGuard, LockKey, ManifestRecord, Page, Provenance, Task,
    UploadCaps, UploadWriter, UpstreamBlob,
};
use crate::proxy::{Mirror, Mirrored};

impl Registry {
    /// A manifest of a mirrored repository, from the cache or the upstream
    /// (see the module docs); `None` if neither has it.
    pub(super) async fn mirrored_manifest(
        &self,
        caller: &Caller,
        at: &Mirrored<'_>,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        at.mirror.pull_started(repo, self.clock.now());
        let cached = self.meta.get_manifest(repo, reference).await?;
        let tag = match reference {
            Reference::Tag(tag) => tag,
            Reference::Digest(_) => {
                if cached.is_some() {
                    at.mirror.hit();
                    return Ok(cached);
                }
                return self.fetch_manifest(caller, at, repo, reference).await;
            }
        };
        let Some(cached) = cached else {
            return self.fetch_manifest(caller, at, repo, reference).await;
        };
        let now = self.clock.now();
        if at.mirror.is_fresh(repo, tag, now) {
            at.mirror.hit();
            return Ok(Some(cached));
        }
        let upstream = at.mirror.config.upstream.as_ref();
        match at
            .mirror
            .asked(upstream.manifest_digest(&at.upstream_name, tag).await)
        {
            Ok(Some(digest)) if digest == cached.digest => {
                at.mirror.confirm(repo, tag, now);
                at.mirror.hit();
                Ok(Some(cached))
            }
            Ok(Some(_moved)) => self.fetch_manifest(caller, at, repo, reference).await,
            Ok(None) => {
                // The upstream no longer has the tag: neither do we.
                at.mirror.forget(repo, tag);
                // Mirrors are never cached; every change of manifests
                // goes through the cache all the same, so the rule has no
                // exception to keep in mind.
                // Audited (and reported to webhooks) as any tag's delete.
                let event = self.event(
                    caller,
                    EventType::TagDeleted,
                    Some(repo),
                    None,
                    details([
                        ("reference", tag.to_string()),
                        ("reason", "gone upstream".to_string()),
                    ]),
                );
                let change = self.manifests.change(repo);
                let deleted = self.meta.delete_tag(repo, tag, None, &event).await;
                change.done();
                deleted?;
                Ok(None)
            }
            Err(e) if at.mirror.config.offline => {
                tracing::warn!(
                    repository = %repo, %tag, upstream = at.mirror.location(), error = %e,
                    "upstream unavailable; serving the cached tag"
                );
                at.mirror.served_offline(repo, tag, now);
                at.mirror.hit();
                Ok(Some(cached))
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches a manifest from the upstream, checks it as a push would be
    /// checked, and stores it (moving the tag if `reference` is one).
    async fn fetch_manifest(
        &self,
        caller: &Caller,
        at: &Mirrored<'_>,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let upstream = at.mirror.config.upstream.as_ref();
        let Some(fetched) = at.mirror.asked(
            upstream
                .manifest(&at.upstream_name, reference, self.config.max_manifest_size)
                .await,
        )?
        else {
            return Ok(None);
        };
        let bad = |e: Error| {
            Error::Unavailable(format!(
                "upstream {} sent an unusable manifest for {}:{reference}: {e}",
                upstream.location(),
                at.upstream_name
            ))
        };
        let new = self
            .new_manifest(
                repo,
                reference,
                Some(&fetched.media_type),
                fetched.raw,
                Provenance::Mirrored,
            )
            .map(|(new, _)| new)
            .map_err(bad);
        let new = at.mirror.asked(new)?;
        let digest = new.digest.clone();
        let event = self.event(
            caller,
            EventType::ProxyFetched,
            Some(repo),
            Some(&digest),
            details([
                ("upstream", upstream.location().to_string()),
                ("reference", reference.to_string()),
            ]),
        );
        let change = self.manifests.change(repo);
        let stored = self.meta.put_manifest(new, &event).await;
        change.done();
        stored?;
        if let Reference::Tag(tag) = reference {
            at.mirror.confirm(repo, tag, self.clock.now());
        }
        at.mirror.miss();
        self.meta
            .get_manifest(repo, &Reference::Digest(digest))
            .await
    }

    /// A blob's size in a mirrored repository: the cached row, or the
    /// upstream's answer to a `HEAD` (nothing is fetched for a `HEAD`).
    pub(super) async fn mirrored_blob_info(
        &self,
        at: &Mirrored<'_>,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>> {
        at.mirror.pull_started(repo, self.clock.now());
        if let Some(info) = self.meta.blob_in_repository(repo, digest).await? {
            at.mirror.hit();
            return Ok(Some(info));
        }
        let upstream = at.mirror.config.upstream.as_ref();
        let size = at
            .mirror
            .asked(upstream.blob_size(&at.upstream_name, digest).await)?;
        Ok(size.map(|size| BlobInfo {
            digest: digest.clone(),
            size,
        }))
    }

    /// A blob of a mirrored repository: the cached one, the fill of it
    /// running here (joined, not waited for), or a new fill from the
    /// upstream streamed to the caller as it is stored. A ranged request
    /// that misses waits for the whole fill, then reads its range.
    pub(super) async fn mirrored_blob(
        &self,
        caller: &Caller,
        at: &Mirrored<'_>,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody> {
        at.mirror.pull_started(repo, self.clock.now());
        for _ in 0..JOIN_ATTEMPTS {
            if self.meta.blob_in_repository(repo, digest).await?.is_some() {
                at.mirror.hit();
                return self.blobs.read(digest, range).await;
            }
            let lead = match self.fills.join_or_lead(repo, digest) {
                Found::Join(fill) => {
                    // Its leader found the blob stored, or failed: look again.
                    let Some(size) = fill.started().await else {
                        continue;
                    };
                    at.mirror.hit();
                    let blobs = Arc::clone(&self.blobs);
                    let reader = FillReader::new(fill, size, blobs, digest.clone(), None);
                    return self.fill_body(reader, size, digest, range).await;
                }
                Found::Lead(lead) => lead,
            };
            return self.lead_fill(caller, at, repo, digest, range, lead).await;
        }
        Err(Error::Unavailable(format!(
            "the fill of {digest} from {} kept ending before it started; try again",
            at.mirror.location()
        )))
    }

    /// Starts a fill this pull leads: under the digest's `LockKey::Fill`
    /// (one fetch across replicas), unless the blob turned out to be
    /// stored or linkable meanwhile. Dropping `lead` on any early return
    /// sends the pulls that joined it looking again.
    async fn lead_fill(
        &self,
        caller: &Caller,
        at: &Mirrored<'_>,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
        lead: Lead,
    ) -> Result<BlobBody> {
        let fill_lock = self
            .coordination
            .lock(&LockKey::Fill(digest.clone()))
            .await?;
        // Another replica may have filled it while this one waited.
        if self.meta.blob_in_repository(repo, digest).await?.is_some()
            || self.link_stored_blob(caller, at, repo, digest).await?
        {
            drop(fill_lock);
            drop(lead);
            at.mirror.hit();
            return self.blobs.read(digest, range).await;
        }
        let upstream = at.mirror.config.upstream.as_ref();
        let Some(body) = at
            .mirror
            .asked(upstream.blob(&at.upstream_name, digest).await)?
        else {
            return Err(Error::BlobUnknown(digest.clone()));
        };
        if body.size > self.config.max_blob_size {
            return Err(Error::BlobTooLarge {
                limit: self.config.max_blob_size,
            });
        }
        at.mirror.miss();
        let size = body.size;
        let fill = Arc::clone(lead.fill());
        let task = self
            .fill(caller, at.mirror, repo, digest, body, fill_lock, lead)
            .await?;
        let driver = match &self.spawner {
            Some(spawner) => {
                spawner.spawn(task);
                None
            }
            None => Some(task),
        };
        let blobs = Arc::clone(&self.blobs);
        let reader = FillReader::new(fill, size, blobs, digest.clone(), driver);
        self.fill_body(reader, size, digest, range).await
    }

    /// The body of a pull following a fill: the whole blob as it arrives,
    /// or, for a range, the range read from the store after the fill.
    async fn fill_body(
        &self,
        reader: FillReader,
        size: u64,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody> {
        let mut stream = reader.into_stream();
        if range.is_none() {
            return Ok(BlobBody {
                size,
                offset: 0,
                len: size,
                stream,
                file: None,
            });
        }
        while let Some(chunk) = stream.next().await {
            chunk.map_err(|e| Error::Unavailable(e.to_string()))?;
        }
        self.blobs.read(digest, range).await
    }

    /// Links a blob the store already holds through another repository
    /// (a base layer shared by many images, or the same image under two
    /// names) into `repo`, once the upstream answers a `HEAD` for it with
    /// the stored size: the upstream still decides what the repository
    /// holds, but the bytes are not sent again. Whether it was linked;
    /// `false` sends the pull to the upstream as a miss.
    async fn link_stored_blob(
        &self,
        caller: &Caller,
        at: &Mirrored<'_>,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool> {
        let page = Page {
            last: None,
            limit: 1,
        };
        let Some(holder) = self.meta.blob_holders(digest, &page).await?.pop() else {
            return Ok(false);
        };
        let Some(stored) = self.meta.blob_in_repository(&holder, digest).await? else {
            return Ok(false);
        };
        let upstream = at.mirror.config.upstream.as_ref();
        let size = at
            .mirror
            .asked(upstream.blob_size(&at.upstream_name, digest).await)?;
        if size != Some(stored.size) {
            return Ok(false);
        }
        let event = self.event(
            caller,
            EventType::ProxyFetched,
            Some(repo),
            Some(digest),
            details([
                ("upstream", upstream.location().to_string()),
                ("linked_from", holder.to_string()),
            ]),
        );
        let now = self.clock.now();
        Ok(self
            .meta
            .mount_blob(&holder, repo, digest, now, Provenance::Mirrored, &event)
            .await?
            .is_some())
    }

    /// Opens the upload session a fill stores `body` through (so a crash
    /// mid-way leaves only a session the purge removes), tells the pulls
    /// following `lead` that the fill runs, and returns the fill itself: a
    /// task that reads the upstream into the store and commits, whoever
    /// reads.
    #[allow(clippy::too_many_arguments)]
    async fn fill(
        &self,
        caller: &Caller,
        mirror: &Mirror,
        repo: &RepoName,
        digest: &Digest,
        body: UpstreamBlob,
        fill_lock: LockGuard,
        lead: Lead,
    ) -> Result<Task> {
        // A fill is one per digest (under its lock) and no caller's own
        // session: it counts against no one's cap.
        let owner = format!("proxy:{}", mirror.config.prefix);
        let session = self.open_session(repo, &owner, &UploadCaps::NONE).await?;
        let writer = self
            .blobs
            .resume_upload(&session.id, &session.state)
            .await?;
        let size = body.size;
        let store = FillStore {
            registry: self.parts(),
            writer,
            id: session.id,
            digest: digest.clone(),
            size,
            location: mirror.location().to_string(),
            upstream_errors: mirror.upstream_errors(),
            event: self.event(
                caller,
                EventType::ProxyFetched,
                Some(repo),
                Some(digest),
                details([
                    ("upstream", mirror.location().to_string()),
                    ("size", size.to_string()),
                ]),
            ),
        };
        let fill = Arc::clone(lead.fill());
        fill.running(size);
        let tee = Arc::clone(&fill);
        let mut received = 0u64;
        let upstream = body.stream.map(move |chunk| {
            let chunk = chunk?;
            received += chunk.len() as u64;
            // Stop at once rather than store what cannot be the blob.
            if received > size {
                return Err(io::Error::other(format!(
                    "more than the {size} bytes announced"
                )));
            }
            tee.push(&chunk);
            Ok(chunk)
        });
        Ok(Box::pin(async move {
            let outcome = store.run(Box::pin(upstream), fill_lock).await;
            fill.ended(&outcome);
            drop(lead);
        }))
    }
}

/// What a fill needs after the use case returned: the stores, and what to
/// record.
struct FillStore {
    registry: super::Parts,
    writer: Box<dyn UploadWriter>,
    id: crate::ids::UploadId,
    digest: Digest,
    size: u64,
    location: String,
    /// `mcr_proxy_upstream_errors_total` of the mirror.
    upstream_errors: metrics::Counter,
    event: NewAuditEvent,
}

impl FillStore {
    /// Appends the upstream body, checks its size, commits it with its
    /// `proxy_fetched` event under the blob's lock as an upload commit is
    /// (GC's safety argument); on any failure discards the upload. Holds
    /// the fill lock throughout. The blob's size once committed.
    async fn run(self, body: crate::ports::ByteStream, fill_lock: LockGuard) -> Result<u64> {
        let _fill_lock = fill_lock;
        let FillStore {
            registry: parts,
            mut writer,
            id,
            digest,
            size,
            location,
            upstream_errors,
            event,
        } = self;
        let upstream_fault = |what: String| {
            upstream_errors.increment(1);
            Error::Unavailable(format!(
                "upstream {location} sent a bad blob {digest}: {what}; nothing was stored"
            ))
        };
        let outcome = async {
            writer.append(body).await.map_err(|e| match e {
                Error::Storage(_) => e,
                e => upstream_fault(e.to_string()),
            })?;
            let got = writer.state().size;
            if got != size {
                return Err(upstream_fault(format!("{got} bytes, {size} announced")));
            }
            {
                let _blob = parts
                    .coordination
                    .lock(&LockKey::Blob(digest.clone()))
                    .await?;
                let stored = writer.finish(&digest).await.map_err(|e| match e {
                    Error::DigestMismatch { actual, .. } => {
                        upstream_fault(format!("its content hashes to {actual}"))
                    }
                    e => e,
                })?;
                let info = BlobInfo {
                    digest: digest.clone(),
                    size: stored,
                };
                parts
                    .meta
                    .complete_upload(&id, &info, parts.clock.now(), Provenance::Mirrored, &event)
                    .await?;
                Ok(stored)
            }
        }
        .await;
        if let Err(e) = &outcome {
            tracing::warn!(
                upstream = %location, %digest, error = %e,
                "a pull-through fill failed; nothing was stored, the next pull fetches again"
            );
            if let Err(e) = parts.meta.delete_upload(&id).await {
                tracing::warn!(upload = %id, error = %e, "removing a failed fill's session");
            }
            if let Err(e) = parts.blobs.cancel_upload(&id).await {
                tracing::warn!(upload = %id, error = %e, "removing a failed fill's data");
            }
        }
        outcome
    }
}
