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

/// Content-addressed blob storage with resumable upload sessions.
///
/// Guarantees every implementation gives (checked by the contract suite):
/// - a blob is only ever readable under a digest its bytes hash to;
/// - a finished upload is durable before `finish_upload` returns;
/// - an append that fails (body error, wrong offset) leaves the upload as it
///   was before the call;
/// - sessions live outside the process's memory, so a session can be
///   continued after a restart or by another process.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Creates an empty upload session.
    async fn begin_upload(&self, id: &UploadId) -> Result<()>;

    /// Appends `body` to the upload. With `offset: Some(o)`, fails with
    /// `Error::RangeInvalid` unless the upload currently holds exactly `o`
    /// bytes. Returns the upload's new size.
    async fn append_upload(
        &self,
        id: &UploadId,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<u64>;

    /// How many bytes the upload holds; `Error::UploadUnknown` if none.
    async fn upload_size(&self, id: &UploadId) -> Result<u64>;

    /// Verifies the upload hashes to `expected` and moves it into place as
    /// that blob, durably. On a mismatch fails with `Error::DigestMismatch`
    /// and keeps the session. Returns the blob's size.
    async fn finish_upload(&self, id: &UploadId, expected: &Digest) -> Result<u64>;

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
