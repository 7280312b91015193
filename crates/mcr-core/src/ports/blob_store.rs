//! The `BlobStore` port: content-addressed bytes and upload sessions.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_core::Stream;

use crate::digest::Digest;
use crate::error::Result;
use crate::ids::UploadId;
use crate::ports::ListStream;

/// A stream of body bytes. Blobs always travel as streams, never whole.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// An inclusive byte range `start..=end`, as in an HTTP `Range` header;
/// `end: None` means to the end of the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

impl ByteRange {
    /// Clamps the range to a blob of `size` bytes, giving `(offset, len)`,
    /// or `None` when it is not satisfiable.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        if self.start >= size {
            return None;
        }
        let end = self.end.map_or(size - 1, |e| e.min(size - 1));
        (end >= self.start).then(|| (self.start, end - self.start + 1))
    }
}

/// A blob's body, or part of it.
pub struct BlobBody {
    /// Size of the whole blob.
    pub size: u64,
    /// Offset of the first byte in `stream`.
    pub offset: u64,
    /// Number of bytes `stream` yields.
    pub len: u64,
    /// The bytes. It does no I/O before it is first polled, so a consumer
    /// that sends `file` instead just drops it.
    pub stream: ByteStream,
    /// The local file `stream` reads from, for a transport that can move
    /// file bytes to a socket without copying them through memory
    /// (`sendfile(2)`): it then sends `len` bytes at `offset` of it. `None`
    /// from stores that keep no local file (object stores, the fake).
    pub file: Option<Arc<File>>,
}

/// Where a stored upload stands, in the blob store's own words: how many
/// bytes it holds, and whatever else the store needs to continue it (an
/// object store: its multipart upload id, the parts written, the running
/// hash; the filesystem: a token naming the append that made this state).
///
/// The engine records it with the upload session (the metadata store's
/// `UploadSession::state`) after every append and hands it back to
/// [`BlobStore::resume_upload`], so any process — another replica, or this
/// one after a restart — continues the upload from the last recorded
/// state. A new upload starts from `UploadState::default()`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UploadState {
    /// Bytes the upload holds.
    pub size: u64,
    /// The store's own record, opaque to the engine. It is rewritten with
    /// every chunk, so keep it small (tens to hundreds of bytes).
    pub data: Bytes,
}

/// An upload being written: what [`BlobStore::resume_upload`] hands out.
///
/// The engine holds one writer per session at a time (under the
/// session's [`LockKey::Upload`](crate::ports::LockKey) lock), for one
/// request: it appends a chunk, records [`UploadWriter::state`], and drops
/// the writer, or finishes it.
#[async_trait]
pub trait UploadWriter: Send {
    /// Where the upload stands: what the engine records after an append.
    fn state(&self) -> &UploadState;

    /// Appends `body` to the upload. All or nothing: if the body fails
    /// (the client went away, a size limit tripped) or the store does,
    /// `state()` is unchanged and the stored upload resumes from it as if
    /// the call had not happened. If the caller stops waiting (drops the
    /// future), the store must still come back to a state it can resume
    /// from the last recorded state.
    async fn append(&mut self, body: ByteStream) -> Result<()>;

    /// Verifies the upload hashes to `expected` (with the digest's own
    /// algorithm) and stores it as that blob, durably, before returning
    /// its size; the upload's storage is then gone. Reads the data at most
    /// once more. On `Error::DigestMismatch` the upload stays resumable
    /// from `state()`.
    async fn finish(self: Box<Self>, expected: &Digest) -> Result<u64>;
}

/// Content-addressed blob storage with resumable upload sessions.
///
/// Guarantees every implementation gives (checked by the contract suite):
/// - a blob is only ever readable under a digest its bytes hash to;
/// - a finished upload is durable before `UploadWriter::finish` returns;
/// - an append that fails leaves the upload as it was before the call;
/// - an upload resumes from any state the store handed out for it, in
///   another process too: the store keeps the bytes, the engine keeps the
///   [`UploadState`], nothing lives only in process memory.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Creates the storage of a new, empty upload, resumable from
    /// `UploadState::default()`. `Conflict` if the id exists.
    async fn begin_upload(&self, id: &UploadId) -> Result<()>;

    /// A writer continuing the upload from `state`, the last state the
    /// engine recorded for it. Bytes beyond it that an earlier writer left
    /// (one that crashed, or whose new state was never recorded) are
    /// discarded. `Error::UploadUnknown` if the store holds no such upload.
    ///
    /// The writer's state is `state`, or smaller if the store lost bytes
    /// the state counted (a local disk's unsynced tail after a power
    /// loss): the engine takes the writer's word for the size.
    async fn resume_upload(
        &self,
        id: &UploadId,
        state: &UploadState,
    ) -> Result<Box<dyn UploadWriter>>;

    /// Discards an upload session and its data. Unknown ids are not an error.
    async fn cancel_upload(&self, id: &UploadId) -> Result<()>;

    /// Ids of every upload session holding data, for purging stale ones,
    /// in any order.
    fn list_uploads(&self) -> ListStream<UploadId>;

    /// Opens a blob, or the part of it `range` names. `Error::BlobUnknown`
    /// if absent, `Error::RangeNotSatisfiable` for a range past its end.
    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobBody>;

    /// The blob's size, if it is stored.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;

    /// Removes a blob; returns whether it was there.
    async fn delete(&self, digest: &Digest) -> Result<bool>;

    /// Every stored blob, for reconciling with the metadata, in ascending
    /// [`Digest`] order (which is the byte order of `algorithm:hex`: an
    /// object store listing keys under `<algorithm>/<hex>` gives it as is).
    fn list(&self) -> ListStream<Digest>;

    /// A cheap check that uploads can be written and blobs stored now, for
    /// a readiness probe: `Ok`, or an error whose message names what is
    /// wrong and where (a directory that is gone, a full or read-only
    /// filesystem). Leaves no trace.
    async fn probe(&self) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_against_the_blob_size() {
        let r = |start, end| ByteRange { start, end };
        assert_eq!(r(0, None).resolve(10), Some((0, 10)));
        assert_eq!(r(2, Some(4)).resolve(10), Some((2, 3)));
        assert_eq!(r(5, Some(100)).resolve(10), Some((5, 5)));
        assert_eq!(r(10, None).resolve(10), None);
        assert_eq!(r(0, None).resolve(0), None);
        assert_eq!(r(4, Some(3)).resolve(10), None);
    }
}
