//! Upload sessions on S3: appends cut into multipart parts and a tail of
//! pieces, finishing by completing the multipart upload.
//!
//! An append hashes the body as it goes by and gathers it into parts of
//! exactly [`PART_SIZE`] bytes (the tail left by earlier appends is read
//! back to start the next part); what remains, less than a part, becomes a
//! new tail piece. Everything an append writes sits beyond the state it
//! resumed from, so a failed, abandoned or unrecorded append leaves that
//! state intact: a part number past the state's count is overwritten by
//! the next append and left out of the completion; a piece or an ETag list
//! the state does not name is never read.
//!
//! Tail pieces merge so that each is more than twice the next (the newest
//! piece absorbs older ones up to that point), which keeps a tail at most
//! 24 pieces and rewrites a byte O(log(part / chunk)) times however small
//! the chunks a client sends.
//!
//! Memory: an append holds at most one part plus one body chunk; finishing
//! holds at most the tail (less than a part).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use mcr_core::digest::{Algorithm, Digest};
use mcr_core::error::{Error, Result};
use mcr_core::ids::UploadId;
use mcr_core::ports::{ByteStream, UploadState, UploadWriter};
use object_store::aws::AmazonS3;
use object_store::multipart::MultipartStore;
use object_store::{MultipartId, ObjectStore, ObjectStoreExt, PutPayload};
use sha2_resumable::Digest as _;

use super::state::{Progress, PART_SIZE};
use super::{failed, keys};

/// An upload being written, resumed from a recorded state.
pub(super) struct S3Writer {
    store: Arc<AmazonS3>,
    id: UploadId,
    /// The session's multipart upload, once one exists.
    multipart: Option<MultipartId>,
    progress: Progress,
    state: UploadState,
    /// Whether the session was seen to exist since the last call: the
    /// first append after resuming need not look again.
    seen: bool,
}

/// A writer continuing `id` from `state`; `UploadUnknown` if the session
/// is gone.
pub(super) async fn resume(
    store: Arc<AmazonS3>,
    id: UploadId,
    state: &UploadState,
) -> Result<S3Writer> {
    let progress = Progress::decode(state)?;
    let multipart = session(&store, &id).await?;
    Ok(S3Writer {
        store,
        id,
        multipart,
        state: state.clone(),
        progress,
        seen: true,
    })
}

/// The session's multipart upload id (`None` before its first part);
/// `UploadUnknown` if the session does not exist.
pub(super) async fn session(store: &AmazonS3, id: &UploadId) -> Result<Option<MultipartId>> {
    let key = keys::session(id);
    let read = async { store.get(&key).await?.bytes().await };
    match read.await {
        Ok(b) if b.is_empty() => Ok(None),
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(object_store::Error::NotFound { .. }) => Err(unknown(id)),
        Err(e) => Err(failed(format!("reading upload session {id}"), e)),
    }
}

fn unknown(id: &UploadId) -> Error {
    Error::upload_unknown(id)
}

/// Body chunks gathered for the next part or piece.
#[derive(Default)]
struct Pending {
    chunks: Vec<Bytes>,
    len: u64,
}

impl Pending {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len() as u64;
        self.chunks.push(chunk);
    }

    /// Takes the first `n` bytes (no more than `len`), splitting a chunk
    /// without copying it.
    fn take_front(&mut self, mut n: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut rest = std::mem::take(&mut self.chunks).into_iter();
        for mut chunk in rest.by_ref() {
            let len = chunk.len() as u64;
            if len <= n {
                n -= len;
                self.len -= len;
                out.push(chunk);
                if n == 0 {
                    break;
                }
            } else {
                // `n < len`, which is a usize.
                let head = chunk.split_to(n as usize);
                self.len -= n;
                out.push(head);
                self.chunks.push(chunk);
                break;
            }
        }
        self.chunks.extend(rest);
        out
    }
}

impl S3Writer {
    /// Reads a whole object of the upload; `UploadUnknown` if it is gone
    /// (the session was cancelled or finished meanwhile).
    async fn read(&self, key: &object_store::path::Path) -> Result<Vec<Bytes>> {
        let read = async {
            self.store
                .get(key)
                .await?
                .into_stream()
                .try_collect::<Vec<_>>()
                .await
        };
        match read.await {
            Ok(chunks) => Ok(chunks),
            Err(object_store::Error::NotFound { .. }) => Err(unknown(&self.id)),
            Err(e) => Err(failed(format!("reading {key}"), e)),
        }
    }

    async fn put(&self, key: &object_store::path::Path, payload: PutPayload) -> Result<()> {
        self.store
            .put(key, payload)
            .await
            .map(drop)
            .map_err(|e| failed(format!("writing {key}"), e))
    }

    /// The bytes of `progress`'s tail, in order.
    async fn read_tail(&self, progress: &Progress) -> Result<Vec<Bytes>> {
        let mut out = Vec::new();
        let mut offset = progress.tail_start();
        for &len in &progress.pieces {
            out.extend(self.read(&keys::piece(&self.id, offset, len)).await?);
            offset += u64::from(len);
        }
        Ok(out)
    }

    /// The ETags of parts 1..=parts.
    async fn etags(&self, parts: u32) -> Result<Vec<String>> {
        if parts == 0 {
            return Ok(Vec::new());
        }
        let text: Vec<u8> = self.read(&keys::etags(&self.id, parts)).await?.concat();
        let etags: Vec<String> = String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_owned)
            .collect();
        if etags.len() != parts as usize {
            return Err(Error::storage(
                format!("reading the part list of upload {}", self.id),
                format!("it names {} parts, not {parts}", etags.len()),
            ));
        }
        Ok(etags)
    }

    /// The session's multipart upload, created (and named in the session
    /// object) on first use.
    async fn multipart(&mut self) -> Result<MultipartId> {
        if let Some(id) = &self.multipart {
            return Ok(id.clone());
        }
        let assembled = keys::assembled(&self.id);
        let created = self
            .store
            .create_multipart(&assembled)
            .await
            .map_err(|e| failed(format!("creating the multipart upload {assembled}"), e))?;
        self.put(
            &keys::session(&self.id),
            PutPayload::from(created.clone().into_bytes()),
        )
        .await?;
        self.multipart = Some(created.clone());
        Ok(created)
    }

    /// Uploads part `index + 1`; returns its ETag.
    async fn put_part(&mut self, index: u32, chunks: Vec<Bytes>) -> Result<String> {
        let multipart = self.multipart().await?;
        let assembled = keys::assembled(&self.id);
        match self
            .store
            .put_part(
                &assembled,
                &multipart,
                index as usize,
                PutPayload::from_iter(chunks),
            )
            .await
        {
            Ok(part) => Ok(part.content_id),
            Err(object_store::Error::NotFound { .. }) => Err(unknown(&self.id)),
            Err(e) => Err(failed(
                format!("uploading part {} of {assembled}", index + 1),
                e,
            )),
        }
    }

    /// Adds `chunks` to `progress`'s tail as a new piece, merged with the
    /// older pieces that are not more than twice its length.
    async fn add_piece(
        &self,
        progress: &mut Progress,
        mut chunks: Vec<Bytes>,
        len: u64,
    ) -> Result<()> {
        let mut len = u32::try_from(len).map_err(|_| {
            Error::storage(
                "adding a tail piece",
                format!("{len} bytes is longer than a part"),
            )
        })?;
        let mut offset = progress.size();
        while let Some(&older) = progress.pieces.last() {
            if older > len.saturating_mul(2) {
                break;
            }
            offset -= u64::from(older);
            let mut merged = self.read(&keys::piece(&self.id, offset, older)).await?;
            merged.append(&mut chunks);
            chunks = merged;
            len += older;
            progress.pieces.pop();
        }
        self.put(
            &keys::piece(&self.id, offset, len),
            PutPayload::from_iter(chunks),
        )
        .await?;
        progress.pieces.push(len);
        Ok(())
    }

    /// Removes everything of the upload: its multipart upload, its
    /// objects, and last its session object, so a crash half way leaves a
    /// session that is still listed and purged later.
    async fn discard(&self, multipart: Option<&MultipartId>) -> Result<()> {
        discard(&self.store, &self.id, multipart).await
    }
}

/// What [`S3Writer::discard`] does, for a session without a writer.
pub(super) async fn discard(
    store: &AmazonS3,
    id: &UploadId,
    multipart: Option<&MultipartId>,
) -> Result<()> {
    if let Some(multipart) = multipart {
        match store.abort_multipart(&keys::assembled(id), multipart).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(failed(format!("aborting the multipart upload of {id}"), e)),
        }
    }
    let session = keys::session(id);
    let others = store
        .list(Some(&keys::upload_dir(id)))
        .map_ok(|meta| meta.location)
        .try_filter(move |key| std::future::ready(key != &session))
        .boxed();
    store
        .delete_stream(others)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| failed(format!("deleting the objects of upload {id}"), e))?;
    match store.delete(&keys::session(id)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(failed(format!("deleting upload session {id}"), e)),
    }
}

#[async_trait]
impl UploadWriter for S3Writer {
    fn state(&self) -> &UploadState {
        &self.state
    }

    async fn append(&mut self, mut body: ByteStream) -> Result<()> {
        // A writer held across requests must not write into a session
        // cancelled meanwhile.
        if !std::mem::take(&mut self.seen) {
            self.multipart = session(&self.store, &self.id).await?;
        }
        let mut next = self.progress.clone();
        let mut etags: Option<Vec<String>> = None;
        let mut pending = Pending::default();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| Error::UploadInvalid(format!("reading the upload body: {e}")))?;
            next.hash.update(&chunk);
            pending.push(chunk);
            while next.tail_len() + pending.len >= PART_SIZE {
                let mut part = self.read_tail(&next).await?;
                part.extend(pending.take_front(PART_SIZE - next.tail_len()));
                let known = match etags.take() {
                    Some(known) => known,
                    None => self.etags(next.parts).await?,
                };
                let etag = self.put_part(next.parts, part).await?;
                let known = etags.insert(known);
                known.push(etag);
                next.parts += 1;
                next.pieces.clear();
            }
        }
        if let Some(etags) = &etags {
            self.put(
                &keys::etags(&self.id, next.parts),
                PutPayload::from(etags.join("\n")),
            )
            .await?;
        }
        if pending.len > 0 {
            let len = pending.len;
            self.add_piece(&mut next, pending.chunks, len).await?;
        }
        if next.size() == self.progress.size() {
            // An empty body: the state stays as recorded.
            return Ok(());
        }
        self.state = next.encode();
        self.progress = next;
        Ok(())
    }

    async fn finish(self: Box<Self>, expected: &Digest) -> Result<u64> {
        let multipart = session(&self.store, &self.id).await?;
        let size = self.progress.size();
        let target = keys::blob(expected);
        let parts = self.progress.parts;
        // The tail, read once: it is the whole blob or its last part.
        let mut tail = None;
        match expected.algorithm() {
            Algorithm::Sha256 => {
                let hex = hex::encode(self.progress.hash.clone().finalize());
                let actual = Digest::parse(&format!("sha256:{hex}"))?;
                if &actual != expected {
                    return Err(Error::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
            }
            // Only sha256 runs as bytes go by (it is what clients use);
            // another digest is checked by reading the bytes once.
            algorithm if parts == 0 => {
                let bytes = self.read_tail(&self.progress).await?;
                let mut hasher = algorithm.hasher();
                bytes.iter().for_each(|b| hasher.update(b));
                let actual = hasher.finish();
                if &actual != expected {
                    return Err(Error::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                tail = Some(bytes);
            }
            _ => return self.finish_checking_after(expected, multipart).await,
        }
        if exists(&self.store, &target).await? {
            // Content-addressed: the blob there has these very bytes.
            self.discard(multipart.as_ref()).await?;
            return Ok(size);
        }
        let this = if parts == 0 {
            let bytes = match tail {
                Some(bytes) => bytes,
                None => self.read_tail(&self.progress).await?,
            };
            self.put(&target, PutPayload::from_iter(bytes)).await?;
            self
        } else {
            let this = self.assemble(multipart.as_ref()).await?;
            copy(&this.store, &keys::assembled(&this.id), &target).await?;
            this
        };
        // A multipart upload an unrecorded append began is aborted here.
        this.discard(multipart.as_ref()).await?;
        Ok(size)
    }
}

impl S3Writer {
    /// Completes the multipart upload into the session's `assembled`
    /// object: the parts the state counts, then its tail as the last part.
    async fn assemble(mut self: Box<Self>, multipart: Option<&MultipartId>) -> Result<Box<Self>> {
        let Some(multipart) = multipart.cloned() else {
            return Err(Error::storage(
                format!("finishing upload {}", self.id),
                "its state counts parts but its session names no multipart upload",
            ));
        };
        self.multipart = Some(multipart.clone());
        let mut etags = self.etags(self.progress.parts).await?;
        if !self.progress.pieces.is_empty() {
            let tail = self.read_tail(&self.progress).await?;
            etags.push(self.put_part(self.progress.parts, tail).await?);
        }
        let parts = etags
            .into_iter()
            .map(|content_id| object_store::multipart::PartId { content_id })
            .collect();
        let assembled = keys::assembled(&self.id);
        match self
            .store
            .complete_multipart(&assembled, &multipart, parts)
            .await
        {
            Ok(_) => Ok(self),
            Err(object_store::Error::NotFound { .. }) => Err(unknown(&self.id)),
            Err(e) => Err(failed(
                format!("completing the multipart upload {assembled}"),
                e,
            )),
        }
    }

    /// Finishes an upload of parts whose digest the running sha256 cannot
    /// check: assembles it, hashes the assembled object (the one read),
    /// and copies it into place. On a mismatch the session is discarded,
    /// as its parts no longer exist apart.
    async fn finish_checking_after(
        self: Box<Self>,
        expected: &Digest,
        multipart: Option<MultipartId>,
    ) -> Result<u64> {
        let size = self.progress.size();
        let this = self.assemble(multipart.as_ref()).await?;
        let assembled = keys::assembled(&this.id);
        let mut hasher = expected.algorithm().hasher();
        let mut stream = this
            .store
            .get(&assembled)
            .await
            .map_err(|e| failed(format!("reading {assembled}"), e))?
            .into_stream();
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk.map_err(|e| failed(format!("reading {assembled}"), e))?);
        }
        let actual = hasher.finish();
        if &actual != expected {
            this.discard(None).await?;
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        copy(&this.store, &assembled, &keys::blob(expected)).await?;
        this.discard(None).await?;
        Ok(size)
    }
}

/// Whether an object exists.
pub(super) async fn exists(store: &AmazonS3, key: &object_store::path::Path) -> Result<bool> {
    match store.head(key).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(failed(format!("looking up {key}"), e)),
    }
}

/// A server-side copy: the bytes do not pass through this process.
async fn copy(
    store: &AmazonS3,
    from: &object_store::path::Path,
    to: &object_store::path::Path,
) -> Result<()> {
    store
        .copy(from, to)
        .await
        .map_err(|e| failed(format!("copying {from} to {to}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_splits_chunks_without_losing_bytes() {
        let mut p = Pending::default();
        for c in [&b"abc"[..], b"defg", b"h"] {
            p.push(Bytes::copy_from_slice(c));
        }
        assert_eq!(p.take_front(5).concat(), b"abcde");
        assert_eq!(p.len, 3);
        assert_eq!(p.take_front(3).concat(), b"fgh");
        assert_eq!((p.len, p.chunks.len()), (0, 0));
    }
}
