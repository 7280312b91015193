//! What the memory tests share: a 1 GiB pseudo-random blob made a chunk at
//! a time, and the process's peak resident set.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::io;

use std::time::Instant;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use mcr_core::digest::{Algorithm, Digest};
use mcr_core::ids::UploadId;
use mcr_core::ports::{BlobStore, ByteStream, UploadState};

pub const CHUNK: usize = 1 << 20;
pub const CHUNKS: usize = 1024;

/// Chunk `i` of the blob: xorshift64 output, the same on every call.
pub fn chunk(i: usize) -> Bytes {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut out = Vec::with_capacity(CHUNK);
    while out.len() < CHUNK {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    Bytes::from(out)
}

/// The whole blob as a body of `CHUNK`-sized chunks.
pub fn blob_stream() -> ByteStream {
    Box::pin(stream::iter(0..CHUNKS).map(|i| Ok::<_, io::Error>(chunk(i))))
}

/// The blob's sha256, one chunk at a time.
pub fn blob_digest() -> Digest {
    let mut hasher = Algorithm::Sha256.hasher();
    for i in 0..CHUNKS {
        hasher.update(&chunk(i));
    }
    hasher.finish()
}

/// Peak resident set size of this process so far, in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("a VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Uploads and finishes a tiny blob, so the runtime's pools, the client's
/// connections and the allocator are warm before the baseline is taken.
pub async fn warm_up(store: &dyn BlobStore) {
    let id = UploadId::generate().unwrap();
    store.begin_upload(&id).await.unwrap();
    let mut w = store
        .resume_upload(&id, &UploadState::default())
        .await
        .unwrap();
    w.append(Box::pin(stream::iter([Ok(Bytes::from_static(b"warm"))])))
        .await
        .unwrap();
    w.finish(&Digest::sha256_of(b"warm")).await.unwrap();
}

/// Reads `digest` back whole, checking its size and hash; returns the
/// seconds it took.
pub async fn read_back(store: &dyn BlobStore, digest: &Digest, size: u64) -> f64 {
    let started = Instant::now();
    let mut body = store.read(digest, None).await.unwrap();
    let mut hasher = Algorithm::Sha256.hasher();
    let mut read = 0u64;
    while let Some(chunk) = body.stream.next().await {
        let chunk = chunk.unwrap();
        read += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(read, size);
    assert_eq!(&hasher.finish(), digest);
    secs
}
