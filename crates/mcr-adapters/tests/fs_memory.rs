//! Memory use of a large upload and read through `FsBlobStore`.
//!
//! Ignored by default (it writes 1 GiB); run it in release mode with
//! `cargo test -p mcr-adapters --release --test fs_memory -- --ignored --nocapture`.
//! It pushes a 1 GiB pseudo-random blob in 1 MiB chunks, reads it back,
//! and checks that the process's peak resident set (VmHWM) grew by less
//! than 32 MiB: no path may hold a blob whole.

use std::io;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use mcr_adapters::fs::FsBlobStore;
use mcr_core::digest::{Algorithm, Digest};
use mcr_core::ids::UploadId;
use mcr_core::ports::{BlobStore, ByteStream, UploadState};

const CHUNK: usize = 1 << 20;
const CHUNKS: usize = 1024;
const LIMIT: u64 = 32 << 20;

/// Chunk `i` of the blob: xorshift64 output, the same on every call.
fn chunk(i: usize) -> Bytes {
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

fn blob_stream() -> ByteStream {
    Box::pin(stream::iter(0..CHUNKS).map(|i| Ok::<_, io::Error>(chunk(i))))
}

/// Peak resident set size of this process so far, in bytes.
fn peak_rss() -> u64 {
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

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes 1 GiB; run in release mode with --ignored --nocapture"]
async fn a_one_gib_blob_goes_through_in_bounded_memory() {
    let size = (CHUNK * CHUNKS) as u64;
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path().join("layers"), dir.path().join("uploads")).unwrap();

    // The expected digest, from the same generator, one chunk at a time.
    let started = Instant::now();
    let mut hasher = Algorithm::Sha256.hasher();
    for i in 0..CHUNKS {
        hasher.update(&chunk(i));
    }
    let digest = hasher.finish();
    let baseline_secs = started.elapsed().as_secs_f64();

    // Warm the runtime's blocking pool and the allocator before the baseline.
    let warm = Digest::sha256_of(b"warm");
    let id = UploadId::generate().unwrap();
    store.begin_upload(&id).await.unwrap();
    let mut w = store
        .resume_upload(&id, &UploadState::default())
        .await
        .unwrap();
    w.append(Box::pin(stream::iter([Ok(Bytes::from_static(b"warm"))])))
        .await
        .unwrap();
    w.finish(&warm).await.unwrap();
    let before = peak_rss();

    let started = Instant::now();
    let id = UploadId::generate().unwrap();
    store.begin_upload(&id).await.unwrap();
    let mut w = store
        .resume_upload(&id, &UploadState::default())
        .await
        .unwrap();
    w.append(blob_stream()).await.unwrap();
    assert_eq!(w.state().size, size);
    let append_secs = started.elapsed().as_secs_f64();
    assert_eq!(w.finish(&digest).await.unwrap(), size);
    let upload_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut body = store.read(&digest, None).await.unwrap();
    let mut hasher = Algorithm::Sha256.hasher();
    let mut read = 0u64;
    while let Some(chunk) = body.stream.next().await {
        let chunk = chunk.unwrap();
        read += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let read_secs = started.elapsed().as_secs_f64();
    assert_eq!(read, size);
    assert_eq!(hasher.finish(), digest);

    let after = peak_rss();
    let growth = after.saturating_sub(before);
    println!(
        "1 GiB blob: peak RSS {:.1} MiB before, {:.1} MiB after, growth {:.1} MiB (limit {} MiB)",
        mib(before),
        mib(after),
        mib(growth),
        LIMIT >> 20
    );
    println!(
        "upload: {upload_secs:.2} s = {:.0} MiB/s (append {append_secs:.2} s, finish with \
         fsync {:.2} s); read back (with sha256 by the reader): {read_secs:.2} s = {:.0} MiB/s",
        mib(size) / upload_secs,
        upload_secs - append_secs,
        mib(size) / read_secs
    );
    println!(
        "for scale: generating and hashing the data alone takes {baseline_secs:.2} s = {:.0} MiB/s",
        mib(size) / baseline_secs
    );
    assert!(growth < LIMIT, "peak RSS grew by {:.1} MiB", mib(growth));
}
