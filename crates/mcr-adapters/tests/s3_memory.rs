//! Memory use of a large upload and read through `S3BlobStore`, on a real
//! Garage started by `scripts/garage.sh`.
//!
//! Ignored by default (it moves 1 GiB through Garage twice); run it with
//! `cargo test -p mcr-adapters --test s3_memory -- --ignored --nocapture`.
//! It pushes a 1 GiB pseudo-random blob as 16 requests of 64 MiB in 1 MiB
//! chunks, each resumed from the state the one before recorded, finishes
//! it, reads it back, and checks that the process's peak resident set
//! (VmHWM) grew by less than 40 MiB. The adapter's bound is one part
//! (8 MiB) and a body chunk per upload; the rest is the HTTP client's and
//! the allocator's.

#[path = "support/garage.rs"]
mod garage;
#[path = "support/memory.rs"]
mod memory;

use std::time::Instant;

use futures_util::{stream, StreamExt};
use mcr_adapters::s3::S3BlobStore;
use mcr_core::ids::UploadId;
use mcr_core::ports::{BlobStore, ByteStream, UploadState};

use garage::Garage;
use memory::{blob_digest, chunk, mib, peak_rss, read_back, warm_up, CHUNK, CHUNKS};

const LIMIT: u64 = 40 << 20;
const REQUESTS: usize = 16;

/// Request `r` of the upload: its share of the blob's chunks.
fn request(r: usize) -> ByteStream {
    let per = CHUNKS / REQUESTS;
    Box::pin(stream::iter(r * per..(r + 1) * per).map(|i| Ok(chunk(i))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "moves 1 GiB through Garage; run with --ignored --nocapture"]
async fn a_one_gib_blob_goes_through_s3_in_bounded_memory() {
    let size = (CHUNK * CHUNKS) as u64;
    let garage = Garage::start();
    let store = S3BlobStore::connect(&garage.config("mcr")).await.unwrap();
    let digest = blob_digest();

    warm_up(&store).await;
    let before = peak_rss();

    let started = Instant::now();
    let id = UploadId::generate().unwrap();
    store.begin_upload(&id).await.unwrap();
    let mut state = UploadState::default();
    for r in 0..REQUESTS {
        let mut w = store.resume_upload(&id, &state).await.unwrap();
        w.append(request(r)).await.unwrap();
        state = w.state().clone();
    }
    assert_eq!(state.size, size);
    let append_secs = started.elapsed().as_secs_f64();
    let w = store.resume_upload(&id, &state).await.unwrap();
    assert_eq!(w.finish(&digest).await.unwrap(), size);
    let upload_secs = started.elapsed().as_secs_f64();

    let read_secs = read_back(&store, &digest, size).await;

    let after = peak_rss();
    let growth = after.saturating_sub(before);
    println!(
        "1 GiB blob through S3 (Garage): peak RSS {:.1} MiB before, {:.1} MiB after, \
         growth {:.1} MiB (limit {} MiB)",
        mib(before),
        mib(after),
        mib(growth),
        LIMIT >> 20
    );
    println!(
        "upload in {REQUESTS} requests: {upload_secs:.2} s = {:.0} MiB/s (appends {append_secs:.2} s, \
         finish {:.2} s); read back with sha256: {read_secs:.2} s = {:.0} MiB/s",
        mib(size) / upload_secs,
        upload_secs - append_secs,
        mib(size) / read_secs
    );
    assert!(growth < LIMIT, "peak RSS grew by {:.1} MiB", mib(growth));
}
