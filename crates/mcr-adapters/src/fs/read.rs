//! Streaming a blob file, or a range of it, in large chunks.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{future, stream, StreamExt};
use mcr_core::ports::ByteStream;

/// Size of one chunk read from disk and handed to the consumer.
pub(super) const CHUNK: usize = 128 * 1024;

/// Chunks read ahead of the consumer, so the disk works while the network
/// sends. Memory per open read is about `(READ_AHEAD + 1) * CHUNK`.
const READ_AHEAD: usize = 2;

/// Streams `len` bytes of `file` starting at `offset`. Each chunk is a
/// positional read on the blocking pool; the stream ends after the first
/// error. A file shorter than promised (it cannot be: blobs are never
/// rewritten) would end in `UnexpectedEof` rather than a short body.
pub(super) fn stream(file: File, offset: u64, len: u64) -> ByteStream {
    let file = Arc::new(file);
    let end = offset + len;
    let chunks = (0..len.div_ceil(CHUNK as u64)).map(move |i| {
        let start = offset + i * CHUNK as u64;
        let size = (end - start).min(CHUNK as u64) as usize;
        (start, size)
    });
    let reads = stream::iter(chunks)
        .map(move |(start, size)| {
            let file = Arc::clone(&file);
            async move {
                tokio::task::spawn_blocking(move || read_chunk(&file, start, size))
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e)))
            }
        })
        .buffered(READ_AHEAD);
    let mut failed = false;
    Box::pin(reads.take_while(move |item| {
        let go_on = !failed;
        failed |= item.is_err();
        future::ready(go_on)
    }))
}

fn read_chunk(file: &File, start: u64, size: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; size];
    file.read_exact_at(&mut buf, start)?;
    Ok(Bytes::from(buf))
}
