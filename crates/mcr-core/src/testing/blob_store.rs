//! `FakeBlobStore`: the [`BlobStore`] port in memory.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::ids::UploadId;
use crate::ports::{BlobBody, BlobStore, ByteRange, ByteStream, ListStream};

/// Size of the chunks a read yields, small enough that consumers see a
/// blob of a few kilobytes arrive in several pieces.
const READ_CHUNK: usize = 4096;

/// Blobs and upload sessions held in memory.
///
/// It gives every guarantee of the port except the ones about surviving a
/// restart: appends are all-or-nothing (a failing body or a wrong offset
/// leaves the upload as it was), `finish_upload` verifies with the expected
/// digest's algorithm and keeps the session on a mismatch, and a reader
/// keeps the bytes it opened even if the blob is replaced or deleted.
#[derive(Debug, Default)]
pub struct FakeBlobStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    blobs: BTreeMap<Digest, Bytes>,
    uploads: BTreeMap<UploadId, BytesMut>,
}

impl FakeBlobStore {
    /// An empty store.
    pub fn new() -> FakeBlobStore {
        FakeBlobStore::default()
    }

    /// Stores `data` as a blob directly, bypassing upload sessions (to set
    /// up a file without a metadata row, for instance). Returns its sha256
    /// digest.
    pub fn insert(&self, data: impl Into<Bytes>) -> Digest {
        let data = data.into();
        let digest = Digest::sha256_of(&data);
        self.lock().blobs.insert(digest.clone(), data);
        digest
    }

    /// The whole content of a stored blob, for assertions.
    pub fn contents(&self, digest: &Digest) -> Option<Bytes> {
        self.lock().blobs.get(digest).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock cannot have left the
        // maps half-updated: every mutation is a single insert or remove.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn upload_unknown(id: &UploadId) -> Error {
    Error::UploadUnknown(id.to_string())
}

#[async_trait]
impl BlobStore for FakeBlobStore {
    async fn begin_upload(&self, id: &UploadId) -> Result<()> {
        let mut state = self.lock();
        if state.uploads.contains_key(id) {
            return Err(Error::Conflict(format!("upload {id} already exists")));
        }
        state.uploads.insert(id.clone(), BytesMut::new());
        Ok(())
    }

    async fn append_upload(
        &self,
        id: &UploadId,
        offset: Option<u64>,
        mut body: ByteStream,
    ) -> Result<u64> {
        let check = |state: &State| -> Result<u64> {
            let size = state
                .uploads
                .get(id)
                .ok_or_else(|| upload_unknown(id))?
                .len() as u64;
            match offset {
                Some(got) if got != size => Err(Error::RangeInvalid {
                    expected: size,
                    got,
                }),
                _ => Ok(size),
            }
        };
        // Check before reading the body, so a wrong offset fails fast, and
        // again when appending, in case another append won the race.
        check(&self.lock())?;
        let mut chunk = BytesMut::new();
        while let Some(piece) = body.next().await {
            let piece =
                piece.map_err(|e| Error::UploadInvalid(format!("reading the upload body: {e}")))?;
            chunk.extend_from_slice(&piece);
        }
        let mut state = self.lock();
        check(&state)?;
        let upload = state
            .uploads
            .get_mut(id)
            .ok_or_else(|| upload_unknown(id))?;
        upload.extend_from_slice(&chunk);
        Ok(upload.len() as u64)
    }

    async fn upload_size(&self, id: &UploadId) -> Result<u64> {
        self.lock()
            .uploads
            .get(id)
            .map(|u| u.len() as u64)
            .ok_or_else(|| upload_unknown(id))
    }

    async fn finish_upload(&self, id: &UploadId, expected: &Digest) -> Result<u64> {
        let mut state = self.lock();
        let data = state.uploads.get(id).ok_or_else(|| upload_unknown(id))?;
        let actual = Digest::of(expected.algorithm(), data);
        if &actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let data = state
            .uploads
            .remove(id)
            .ok_or_else(|| upload_unknown(id))?
            .freeze();
        let size = data.len() as u64;
        // Same digest, same bytes: replacing an existing blob is harmless,
        // and readers that opened the old `Bytes` keep them.
        state.blobs.insert(expected.clone(), data);
        Ok(size)
    }

    async fn cancel_upload(&self, id: &UploadId) -> Result<()> {
        self.lock().uploads.remove(id);
        Ok(())
    }

    fn list_uploads(&self) -> ListStream<UploadId> {
        let ids: Vec<UploadId> = self.lock().uploads.keys().cloned().collect();
        stream::iter(ids.into_iter().map(Ok)).boxed()
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobBody> {
        let data = self
            .lock()
            .blobs
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::BlobUnknown(digest.clone()))?;
        let size = data.len() as u64;
        let (offset, len) = match range {
            None => (0, size),
            Some(r) => r.resolve(size).ok_or(Error::RangeNotSatisfiable { size })?,
        };
        // `resolve` keeps offset + len within `size`, which fits in usize
        // because the bytes are in memory.
        let start = usize::try_from(offset).map_err(|e| Error::storage("reading a blob", e))?;
        let end = usize::try_from(offset + len).map_err(|e| Error::storage("reading a blob", e))?;
        let part = data.slice(start..end);
        let chunks: Vec<std::io::Result<Bytes>> = (0..part.len())
            .step_by(READ_CHUNK)
            .map(|at| Ok(part.slice(at..part.len().min(at + READ_CHUNK))))
            .collect();
        Ok(BlobBody {
            size,
            offset,
            len,
            stream: Box::pin(futures_util::stream::iter(chunks)),
            file: None,
        })
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.lock().blobs.get(digest).map(|b| b.len() as u64))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        Ok(self.lock().blobs.remove(digest).is_some())
    }

    fn list(&self) -> ListStream<Digest> {
        let digests: Vec<Digest> = self.lock().blobs.keys().cloned().collect();
        stream::iter(digests.into_iter().map(Ok)).boxed()
    }
}
