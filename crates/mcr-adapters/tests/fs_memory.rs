//! Memory use of a large upload and read through `FsBlobStore`.
//!
//! Ignored by default (it writes 1 GiB); run it in release mode with
//! `cargo test -p mcr-adapters --release --test fs_memory -- --ignored --nocapture`.
//! It pushes a 1 GiB pseudo-random blob in 1 MiB chunks, reads it back,
//! and checks that the process's peak resident set (VmHWM) grew by less
//! than 32 MiB: no path may hold a blob whole.

#[path = "support/memory.rs"]
mod memory;

use std::time::Instant;

use mcr_adapters::fs::FsBlobStore;
use mcr_core::ids::UploadId;
use mcr_core::ports::{BlobStore, UploadState};

use memory::{blob_digest, blob_stream, mib, peak_rss, read_back, warm_up, CHUNK, CHUNKS};

const LIMIT: u64 = 32 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes 1 GiB; run in release mode with --ignored --nocapture"]
async fn a_one_gib_blob_goes_through_in_bounded_memory() {
    let size = (CHUNK * CHUNKS) as u64;
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path().join("layers"), dir.path().join("uploads")).unwrap();

    // The expected digest, from the same generator, one chunk at a time.
    let started = Instant::now();
    let digest = blob_digest();
    let baseline_secs = started.elapsed().as_secs_f64();

    warm_up(&store).await;
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

    let read_secs = read_back(&store, &digest, size).await;

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
