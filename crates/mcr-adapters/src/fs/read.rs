//! Streaming a blob file, or a range of it, in large chunks.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{future, stream, StreamExt};
use mcr_core::ports::ByteStream;

use super::retry_interrupted;

/// Size of the first chunk read from disk and handed to the consumer.
const FIRST_CHUNK: usize = 128 << 10;

/// Each chunk is twice the one before, up to this size. Every chunk costs
/// a hand-off to the blocking pool and back, which dominates the CPU cost
/// of a large download, so long reads move to large chunks; small blobs
/// (and the first bytes of any) still go out in small ones. Kept below
/// the allocator's mmap threshold (1 MiB in `mcrsrv`) so that chunk
/// buffers are reused rather than mapped and unmapped each time.
const MAX_CHUNK: usize = 512 << 10;

/// Chunks read ahead of the consumer, so the disk works while the network
/// sends. Memory per open read is at most `(READ_AHEAD + 1) * MAX_CHUNK`.
const READ_AHEAD: usize = 2;

/// Streams `len` bytes of `file` starting at `offset`. Each chunk is a
/// positional read on the blocking pool; the stream ends after the first
/// error. A file shorter than promised (it cannot be: blobs are never
/// rewritten) would end in `UnexpectedEof` rather than a short body.
pub(super) fn stream(file: Arc<File>, offset: u64, len: u64) -> ByteStream {
    let reads = stream::iter(chunks(offset, len))
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

/// The `(start, size)` of each chunk of `len` bytes from `offset`.
fn chunks(offset: u64, len: u64) -> impl Iterator<Item = (u64, usize)> {
    let end = offset + len;
    let mut next = (offset, FIRST_CHUNK);
    std::iter::from_fn(move || {
        let (start, size) = next;
        if start >= end {
            return None;
        }
        let size = (end - start).min(size as u64) as usize;
        next = (start + size as u64, (size * 2).min(MAX_CHUNK));
        Some((start, size))
    })
}

/// Reads exactly `size` bytes at `start` into a fresh buffer, without
/// zeroing it first (the read overwrites every byte, and zeroing costs
/// as much as a tenth of a download's CPU).
fn read_chunk(file: &File, start: u64, size: usize) -> io::Result<Bytes> {
    let mut buf: Vec<u8> = Vec::with_capacity(size);
    while buf.len() < size {
        let filled = buf.len();
        let at = libc::off_t::try_from(start + filled as u64).map_err(io::Error::other)?;
        // SAFETY: the kernel writes at most `size - filled` bytes into the
        // spare capacity, which `with_capacity(size)` reserved.
        let n = retry_interrupted(|| unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(filled).cast(),
                size - filled,
                at,
            )
        })?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // SAFETY: the `n` bytes after `filled` were just written.
        unsafe { buf.set_len(filled + n) };
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_grow_to_the_cap_and_cover_the_range_exactly() {
        let offset = 7;
        let len = 5 * MAX_CHUNK as u64 + 3;
        let got: Vec<_> = chunks(offset, len).collect();
        let sizes: Vec<usize> = got.iter().map(|c| c.1).collect();
        assert_eq!(&sizes[..3], [FIRST_CHUNK, 2 * FIRST_CHUNK, MAX_CHUNK]);
        assert!(sizes.iter().all(|&s| s <= MAX_CHUNK));
        let mut at = offset;
        for (start, size) in got {
            assert_eq!(start, at);
            at += size as u64;
        }
        assert_eq!(at, offset + len);
        assert_eq!(chunks(3, 0).count(), 0);
        assert_eq!(chunks(0, 10).collect::<Vec<_>>(), [(0, 10)]);
    }

    #[test]
    fn read_chunk_reads_exactly_or_reports_a_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(
            read_chunk(&file, 1000, 200_000).unwrap(),
            data[1000..201_000]
        );
        let err = read_chunk(&file, 200_000, 200_000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
