//! A [`BlobStore`] wrapper that fails on command, for the faults a test
//! cannot make for real: `EIO` from a write, an `fsync` or a `rename` of
//! the store underneath. Full and read-only storage are made for real
//! (`scripts/faults.sh` on tmpfs); these three only a failing disk makes.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::digest::Digest;
use crate::error::{Result, StorageError};
use crate::ids::UploadId;
use crate::ports::{
    BlobBody, BlobStore, ByteRange, ByteStream, ListStream, UploadState, UploadWriter,
};

/// Where an injected `EIO` strikes, named after the system call of a
/// filesystem store that would fail there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// [`UploadWriter::append`]: the chunk reached the store, then the
    /// write reported `EIO` (a half-written chunk is left past the state).
    Write,
    /// [`UploadWriter::finish`], before the blob is stored: the data's
    /// `fsync` failed, the upload stays as it was.
    Fsync,
    /// [`UploadWriter::finish`], after the blob is stored: the `rename`
    /// (or the directory's `fsync` that makes it durable) reported `EIO`,
    /// so the caller hears of a failure while the file is in place.
    Rename,
}

/// Faults armed on a [`FaultyBlobStore`], each striking once, in order.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    armed: Arc<Mutex<VecDeque<Fault>>>,
}

impl Faults {
    /// Arms `fault` for the next call that reaches its point.
    pub fn arm(&self, fault: Fault) {
        self.lock().push_back(fault);
    }

    /// Faults armed and not yet struck.
    pub fn pending(&self) -> Vec<Fault> {
        self.lock().iter().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Fault>> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Consumes `fault` if it is the next armed one.
    fn strikes(&self, fault: Fault) -> bool {
        let mut armed = self.lock();
        if armed.front() == Some(&fault) {
            armed.pop_front();
            true
        } else {
            false
        }
    }
}

fn eio(op: &str) -> crate::Error {
    StorageError::io(
        format!("{op} (injected)"),
        io::Error::from_raw_os_error(5), // EIO
    )
    .into()
}

/// `inner` with the [`Faults`] a test arms.
pub struct FaultyBlobStore<B> {
    inner: B,
    faults: Faults,
}

impl<B: BlobStore> FaultyBlobStore<B> {
    /// Wraps `inner`, failing where `faults` (a handle the test keeps a
    /// clone of) is armed.
    pub fn new(inner: B, faults: Faults) -> FaultyBlobStore<B> {
        FaultyBlobStore { inner, faults }
    }
}

#[async_trait]
impl<B: BlobStore> BlobStore for FaultyBlobStore<B> {
    async fn begin_upload(&self, id: &UploadId) -> Result<()> {
        self.inner.begin_upload(id).await
    }

    async fn resume_upload(
        &self,
        id: &UploadId,
        state: &UploadState,
    ) -> Result<Box<dyn UploadWriter>> {
        let inner = self.inner.resume_upload(id, state).await?;
        Ok(Box::new(FaultyWriter {
            inner,
            faults: self.faults.clone(),
            failed_from: None,
        }))
    }

    async fn cancel_upload(&self, id: &UploadId) -> Result<()> {
        self.inner.cancel_upload(id).await
    }

    fn list_uploads(&self) -> ListStream<UploadId> {
        self.inner.list_uploads()
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobBody> {
        self.inner.read(digest, range).await
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        self.inner.stat(digest).await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        self.inner.delete(digest).await
    }

    fn list(&self) -> ListStream<Digest> {
        self.inner.list()
    }

    async fn probe(&self) -> Result<()> {
        self.inner.probe().await
    }
}

struct FaultyWriter {
    inner: Box<dyn UploadWriter>,
    faults: Faults,
    /// After a [`Fault::Write`]: the state before it, which `state()` keeps
    /// reporting as a failed append must.
    failed_from: Option<UploadState>,
}

#[async_trait]
impl UploadWriter for FaultyWriter {
    fn state(&self) -> &UploadState {
        self.failed_from.as_ref().unwrap_or(self.inner.state())
    }

    async fn append(&mut self, body: ByteStream) -> Result<()> {
        if self.faults.strikes(Fault::Write) {
            // The bytes reach the store but the state stays: the next
            // writer, resumed from the recorded state, must cut them off.
            let before = self.inner.state().clone();
            self.inner.append(body).await?;
            self.failed_from = Some(before);
            return Err(eio("write"));
        }
        self.inner.append(body).await
    }

    async fn finish(self: Box<Self>, expected: &Digest) -> Result<u64> {
        if self.faults.strikes(Fault::Fsync) {
            return Err(eio("fsync"));
        }
        let rename_fails = self.faults.strikes(Fault::Rename);
        let size = self.inner.finish(expected).await?;
        if rename_fails {
            return Err(eio("rename"));
        }
        Ok(size)
    }
}
