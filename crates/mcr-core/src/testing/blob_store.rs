//! `FakeBlobStore`: the [`BlobStore`] port in memory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt};

use super::hold::{Hold, PausePoint};
use crate::digest::Digest;
use crate::error::{Error, Result, StorageError};
use crate::ids::UploadId;
use crate::ports::{
    BlobBody, BlobStore, ByteRange, ByteStream, ListStream, UploadState, UploadWriter,
};

/// Size of the chunks a read yields, small enough that consumers see a
/// blob of a few kilobytes arrive in several pieces.
const READ_CHUNK: usize = 4096;

/// Blobs and upload sessions held in memory.
///
/// It gives every guarantee of the port except surviving a restart:
/// appends are all-or-nothing (a failing body leaves the upload as it
/// was), resuming from an older state discards what was appended after
/// it, `finish` verifies with the expected digest's algorithm and keeps
/// the upload on a mismatch, and a reader keeps the bytes it opened even
/// if the blob is replaced or deleted. It is strict about states: resuming
/// from one it never handed out for that upload is a storage error, so a
/// use case that records the wrong state fails its tests.
#[derive(Debug, Default)]
pub struct FakeBlobStore {
    state: Arc<Mutex<State>>,
    /// Where [`FakeBlobStore::hold_next_append`] stops an append: after it
    /// read its whole body, before it stores it.
    append_pause: Arc<PausePoint>,
    /// Set by [`FakeBlobStore::fail_cancels`].
    cancels_fail: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct State {
    blobs: BTreeMap<Digest, Bytes>,
    uploads: BTreeMap<UploadId, BytesMut>,
    /// What the readiness probe reports, while set.
    probe_failure: Option<String>,
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
        lock(&self.state).blobs.insert(digest.clone(), data);
        digest
    }

    /// The whole content of a stored blob, for assertions.
    pub fn contents(&self, digest: &Digest) -> Option<Bytes> {
        lock(&self.state).blobs.get(digest).cloned()
    }

    /// Bytes an upload's storage holds, appended but perhaps never
    /// recorded, for assertions.
    pub fn upload_contents(&self, id: &UploadId) -> Option<Bytes> {
        lock(&self.state)
            .uploads
            .get(id)
            .map(|b| Bytes::copy_from_slice(b))
    }

    /// Makes [`BlobStore::probe`] fail with `Error::Storage(reason)` (or
    /// succeed again with `None`), standing in for a blob directory that
    /// became unusable.
    pub fn set_probe_failure(&self, reason: Option<&str>) {
        lock(&self.state).probe_failure = reason.map(str::to_string);
    }

    /// Stops the next append once it has read its whole body, before it
    /// stores it, until the returned [`Hold`] is released: to interleave
    /// another call with an append in flight.
    pub fn hold_next_append(&self) -> Hold {
        self.append_pause.arm()
    }

    /// Makes every `cancel_upload` from now on fail with an unavailable-
    /// storage error (discarding nothing), for tests of cleanup that fails.
    pub fn fail_cancels(&self) {
        self.cancels_fail.store(true, Ordering::Release);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock cannot have left the
    // maps half-updated: every mutation is a single insert or remove.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn upload_unknown(id: &UploadId) -> Error {
    Error::upload_unknown(id)
}

/// The state the fake hands out for an upload of `size` bytes: its own
/// record is the size again, so a state passed back is checked.
fn state_of(size: u64) -> UploadState {
    UploadState {
        size,
        data: Bytes::from(format!("fake:{size}")),
    }
}

/// An upload being written in memory.
struct FakeWriter {
    store: Arc<Mutex<State>>,
    pause: Arc<PausePoint>,
    id: UploadId,
    state: UploadState,
}

impl FakeWriter {
    /// The upload's bytes as of this writer's state, dropping anything
    /// appended after it was recorded.
    fn bytes<'a>(&self, state: &'a mut State) -> Result<&'a mut BytesMut> {
        let upload = state
            .uploads
            .get_mut(&self.id)
            .ok_or_else(|| upload_unknown(&self.id))?;
        let size = usize::try_from(self.state.size).map_err(|e| Error::storage("resuming", e))?;
        upload.truncate(size);
        Ok(upload)
    }
}

#[async_trait]
impl UploadWriter for FakeWriter {
    fn state(&self) -> &UploadState {
        &self.state
    }

    async fn append(&mut self, mut body: ByteStream) -> Result<()> {
        let mut chunk = BytesMut::new();
        while let Some(piece) = body.next().await {
            let piece =
                piece.map_err(|e| Error::UploadInvalid(format!("reading the upload body: {e}")))?;
            chunk.extend_from_slice(&piece);
        }
        self.pause.pass().await;
        let mut state = lock(&self.store);
        let upload = self.bytes(&mut state)?;
        upload.extend_from_slice(&chunk);
        self.state = state_of(upload.len() as u64);
        Ok(())
    }

    async fn finish(self: Box<Self>, expected: &Digest) -> Result<u64> {
        let mut state = lock(&self.store);
        let data = self.bytes(&mut state)?;
        let actual = Digest::of(expected.algorithm(), data);
        if &actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let data = state
            .uploads
            .remove(&self.id)
            .ok_or_else(|| upload_unknown(&self.id))?
            .freeze();
        let size = data.len() as u64;
        // Same digest, same bytes: replacing an existing blob is harmless,
        // and readers that opened the old `Bytes` keep them.
        state.blobs.insert(expected.clone(), data);
        Ok(size)
    }
}

#[async_trait]
impl BlobStore for FakeBlobStore {
    async fn begin_upload(&self, id: &UploadId) -> Result<()> {
        let mut state = lock(&self.state);
        if state.uploads.contains_key(id) {
            return Err(Error::Conflict(format!("upload {id} already exists")));
        }
        state.uploads.insert(id.clone(), BytesMut::new());
        Ok(())
    }

    async fn resume_upload(
        &self,
        id: &UploadId,
        from: &UploadState,
    ) -> Result<Box<dyn UploadWriter>> {
        let held = lock(&self.state)
            .uploads
            .get(id)
            .map(|b| b.len() as u64)
            .ok_or_else(|| upload_unknown(id))?;
        let handed_out = from == &UploadState::default() || from == &state_of(from.size);
        if !handed_out || from.size > held {
            return Err(Error::storage(
                format!("resuming upload {id}"),
                format!("{from:?} is not a state this store handed out for it"),
            ));
        }
        Ok(Box::new(FakeWriter {
            store: Arc::clone(&self.state),
            pause: Arc::clone(&self.append_pause),
            id: id.clone(),
            state: from.clone(),
        }))
    }

    async fn cancel_upload(&self, id: &UploadId) -> Result<()> {
        if self.cancels_fail.load(Ordering::Acquire) {
            return Err(Error::Storage(StorageError::unavailable(
                "discarding an upload",
                "cancels fail in this test",
            )));
        }
        lock(&self.state).uploads.remove(id);
        Ok(())
    }

    fn list_uploads(&self) -> ListStream<UploadId> {
        let ids: Vec<UploadId> = lock(&self.state).uploads.keys().cloned().collect();
        stream::iter(ids.into_iter().map(Ok)).boxed()
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobBody> {
        let data = lock(&self.state)
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
        Ok(lock(&self.state).blobs.get(digest).map(|b| b.len() as u64))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        Ok(lock(&self.state).blobs.remove(digest).is_some())
    }

    fn list(&self) -> ListStream<Digest> {
        let digests: Vec<Digest> = lock(&self.state).blobs.keys().cloned().collect();
        stream::iter(digests.into_iter().map(Ok)).boxed()
    }

    async fn probe(&self) -> Result<()> {
        match &lock(&self.state).probe_failure {
            Some(reason) => Err(Error::storage("probing the fake store", reason.clone())),
            None => Ok(()),
        }
    }
}
