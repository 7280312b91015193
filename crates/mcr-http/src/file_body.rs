//! [`FileBody`]: a response body that is also a region of a local file.

use std::fs::File;
use std::sync::Arc;

/// The bytes of a response body as a region of a local file: `len` bytes
/// at `offset` of `file`.
///
/// The blob GET handler decides the whole response (status, headers, a
/// streamed body) and, when the blob store keeps the blob in a local file,
/// also puts this beside it as a response extension. A connection that can
/// send file bytes straight to its socket (`sendfile(2)` on plain HTTP/1.1,
/// in `mcrsrv`) sends this region and drops the stream unpolled; every
/// other transport (TLS, HTTP/2, the tests' in-process router) streams
/// the body as usual. Both carry the same bytes.
#[derive(Debug, Clone)]
pub struct FileBody {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
}
