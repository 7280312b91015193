//! The [`BlobStore`] contract: uploads through writers, resumed from the
//! states the store hands out; reads, ranges and their errors.
//!
//! Where the port's docs leave a choice open, these checks pin the answer:
//! - a writer's state is the whole truth of an upload: resuming from an
//!   older state discards what was appended after it, and every check
//!   resumes a fresh writer from a recorded state between requests, as
//!   another replica would;
//! - a state's `data` stays within [`MAX_STATE_DATA`] bytes;
//! - a writer of a cancelled upload stores nothing (its `finish` fails with
//!   `UploadUnknown`; its appends may fail the same way or go nowhere);
//! - `list` comes in ascending digest order, `list_uploads` in any.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::join_all;

use super::support::{body, collect, err_of, failing_body, new_id, ok, read_all, sha256, sorted};
use super::{checks, run_suite, Check};
use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use crate::ids::UploadId;
use crate::ports::{BlobStore, ByteRange, UploadState, UploadWriter};

type Store = Arc<dyn BlobStore>;

/// Largest `UploadState::data` a store may hand out: it is recorded with
/// the session after every chunk.
pub const MAX_STATE_DATA: usize = 4096;

/// Every check of the suite, in the order [`run_blob_store_contract`] runs
/// them.
pub const BLOB_STORE_CHECKS: &[Check<dyn BlobStore>] = checks![dyn BlobStore =>
    chunked_upload_reads_back_whole_and_by_ranges,
    resuming_from_an_older_state_discards_what_came_after,
    a_failing_body_leaves_the_upload_unchanged,
    wrong_digest_fails_and_keeps_the_upload,
    sha512_uploads_verify_with_sha512,
    empty_blob,
    many_small_chunks,
    small_chunks_across_a_part,
    large_chunks_across_part_sizes,
    cancel_discards_the_upload,
    unknown_ids_and_digests,
    stat_delete_and_list,
    list_uploads_names_open_sessions,
    uploads_do_not_mix,
    concurrent_identical_uploads_all_succeed,
    a_reader_survives_an_identical_upload_finishing,
    probe_passes_and_leaves_no_upload_or_blob,
];

/// Runs every [`BlobStore`] check, each on a fresh empty store from
/// `make`; panics naming the first check that fails.
pub async fn run_blob_store_contract<F, Fut>(make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn BlobStore>>,
{
    run_suite("BlobStore", BLOB_STORE_CHECKS, make).await;
}

/// Begins an upload.
async fn begin(s: &Store) -> UploadId {
    let id = new_id();
    ok(s.begin_upload(&id).await, "begin_upload");
    id
}

/// A writer resumed from `state`, as the next request (on any replica)
/// gets one.
async fn resume(s: &Store, id: &UploadId, state: &UploadState) -> Box<dyn UploadWriter> {
    let w = ok(s.resume_upload(id, state).await, "resume_upload");
    assert!(
        w.state().size <= state.size,
        "a resumed writer claims more bytes than its state"
    );
    w
}

/// Appends `chunks` as one body and returns the new state, checking it.
async fn append(w: &mut Box<dyn UploadWriter>, chunks: &[&[u8]], what: &str) -> UploadState {
    let before = w.state().size;
    ok(w.append(body(chunks.iter().copied())).await, what);
    let state = w.state().clone();
    let added: usize = chunks.iter().map(|c| c.len()).sum();
    assert_eq!(
        state.size,
        before + added as u64,
        "{what}: the state's size did not grow by the body"
    );
    assert!(
        state.data.len() <= MAX_STATE_DATA,
        "{what}: a state of {} bytes is too large to record with every chunk",
        state.data.len()
    );
    state
}

/// Uploads `data` in one chunk and finishes it.
async fn put(s: &Store, data: &[u8]) -> Digest {
    let id = begin(s).await;
    let mut w = resume(s, &id, &UploadState::default()).await;
    append(&mut w, &[data], "append").await;
    let digest = sha256(data);
    let size = ok(w.finish(&digest).await, "finish");
    assert_eq!(size, data.len() as u64, "finish returned the wrong size");
    digest
}

async fn read_range(s: &Store, d: &Digest, start: u64, end: Option<u64>) -> (u64, u64, Vec<u8>) {
    let b = ok(
        s.read(d, Some(ByteRange { start, end })).await,
        &format!("read range {start}-{end:?}"),
    );
    let (offset, size) = (b.offset, b.size);
    (offset, size, read_all(b).await)
}

fn unknown(e: &Error) -> bool {
    matches!(e, Error::UploadUnknown(_))
}

async fn chunked_upload_reads_back_whole_and_by_ranges(s: Store) {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let id = begin(&s).await;
    let mut w = resume(&s, &id, &UploadState::default()).await;
    assert_eq!(w.state().size, 0, "a new upload is empty");

    // Three requests, each resuming from the state the one before left: a
    // body of several chunks, then two more.
    let first = append(&mut w, &[&data[..1000], &data[1000..3000]], "first append").await;
    assert_eq!(first.size, 3000);
    drop(w);
    let mut w = resume(&s, &id, &first).await;
    assert_eq!(w.state(), &first, "a resumed writer starts from its state");
    let second = append(&mut w, &[&data[3000..7000]], "second append").await;
    drop(w);
    let mut w = resume(&s, &id, &second).await;
    let third = append(&mut w, &[&data[7000..]], "third append").await;
    assert_eq!(third.size, 10_000);

    let digest = sha256(&data);
    assert_eq!(ok(w.finish(&digest).await, "finish"), 10_000);
    let e = err_of(s.resume_upload(&id, &third).await, "resume after finish");
    assert!(
        unknown(&e),
        "a finished upload's storage is gone: got {e:?}"
    );
    assert!(
        !ok(collect(s.list_uploads()).await, "list_uploads").contains(&id),
        "a finished upload is not listed"
    );
    assert_eq!(ok(s.stat(&digest).await, "stat"), Some(10_000));
    assert_eq!(ok(collect(s.list()).await, "list"), vec![digest.clone()]);

    let whole = ok(s.read(&digest, None).await, "read whole");
    assert_eq!((whole.size, whole.offset, whole.len), (10_000, 0, 10_000));
    let bytes = read_all(whole).await;
    assert!(bytes == data, "the blob reads back as uploaded");
    assert_eq!(
        sha256(&bytes),
        digest,
        "a blob is only readable under its own digest"
    );

    for (start, end, want) in [
        (0, Some(0), &data[0..1]),
        (2, Some(5), &data[2..6]),
        (9000, None, &data[9000..]),
        (0, None, &data[..]),
        (9999, Some(9999), &data[9999..]),
        // An end past the blob is clamped to its last byte.
        (9990, Some(20_000), &data[9990..]),
    ] {
        let (offset, size, got) = read_range(&s, &digest, start, end).await;
        assert_eq!(
            (offset, size),
            (start, 10_000),
            "range {start}-{end:?}: offset and size"
        );
        assert!(
            got == want,
            "range {start}-{end:?}: wrong bytes ({} of them)",
            got.len()
        );
    }
    for (start, end) in [
        (10_000, None),
        (10_000, Some(10_005)),
        (20_000, Some(30_000)),
        (5, Some(4)),
    ] {
        let e = err_of(
            s.read(&digest, Some(ByteRange { start, end })).await,
            &format!("read range {start}-{end:?}"),
        );
        assert!(
            matches!(e, Error::RangeNotSatisfiable { size: 10_000 }),
            "range {start}-{end:?}: expected RangeNotSatisfiable {{ size: 10000 }}, got {e:?}"
        );
    }
}

async fn resuming_from_an_older_state_discards_what_came_after(s: Store) {
    let id = begin(&s).await;
    let mut w = resume(&s, &id, &UploadState::default()).await;
    let hello = append(&mut w, &[b"hello"], "append").await;
    // A chunk whose new state is never recorded: its request died.
    append(&mut w, &[b" world"], "append never recorded").await;
    drop(w);
    let mut w = resume(&s, &id, &hello).await;
    assert_eq!(w.state().size, 5);
    append(&mut w, &[b" there"], "append after resuming").await;
    let digest = sha256(b"hello there");
    assert_eq!(
        ok(
            w.finish(&digest).await,
            "finish: the unrecorded chunk must be gone"
        ),
        11
    );
    assert_eq!(
        read_all(ok(s.read(&digest, None).await, "read")).await,
        b"hello there"
    );

    // The same from the empty state, with a finish resumed afresh.
    let id = begin(&s).await;
    let mut w = resume(&s, &id, &UploadState::default()).await;
    append(&mut w, &[b"lost"], "append never recorded").await;
    drop(w);
    let mut w = resume(&s, &id, &UploadState::default()).await;
    let kept = append(&mut w, &[b"kept"], "append").await;
    drop(w);
    let w = resume(&s, &id, &kept).await;
    ok(w.finish(&sha256(b"kept")).await, "finish");
}

async fn a_failing_body_leaves_the_upload_unchanged(s: Store) {
    let id = begin(&s).await;
    let mut w = resume(&s, &id, &UploadState::default()).await;
    err_of(
        w.append(failing_body(b"garbage")).await,
        "failing first append",
    );
    assert_eq!(
        w.state(),
        &UploadState::default(),
        "a failed append moved the state"
    );

    let hello = append(&mut w, &[b"hello"], "append").await;
    err_of(w.append(failing_body(b"garbage")).await, "failing append");
    assert_eq!(w.state(), &hello, "a failed append changed the state");
    // The next request resumes from the recorded state.
    drop(w);
    let mut w = resume(&s, &id, &hello).await;
    err_of(
        w.append(failing_body(b"more garbage")).await,
        "failing append after resuming",
    );
    append(&mut w, &[b" world"], "append after failures").await;
    let digest = sha256(b"hello world");
    ok(
        w.finish(&digest).await,
        "finish: the failed bodies must have left no bytes",
    );
    assert_eq!(
        read_all(ok(s.read(&digest, None).await, "read")).await,
        b"hello world"
    );
}

async fn wrong_digest_fails_and_keeps_the_upload(s: Store) {
    let id = begin(&s).await;
    let mut w = resume(&s, &id, &UploadState::default()).await;
    let abc = append(&mut w, &[b"abc"], "append").await;
    let wrong = sha256(b"abcd");
    match err_of(w.finish(&wrong).await, "finish with a wrong digest") {
        Error::DigestMismatch { expected, actual } => {
            assert_eq!(expected, wrong, "DigestMismatch.expected");
            assert_eq!(
                actual,
                sha256(b"abc"),
                "DigestMismatch.actual is what the bytes hash to"
            );
        }
        e => panic!("finish with a wrong digest: expected DigestMismatch, got {e:?}"),
    }
    assert_eq!(
        ok(s.stat(&wrong).await, "stat"),
        None,
        "nothing stored under the wrong digest"
    );
    assert_eq!(
        ok(s.stat(&sha256(b"abc")).await, "stat"),
        None,
        "nothing stored under the real digest"
    );
    assert!(
        ok(collect(s.list()).await, "list").is_empty(),
        "a failed finish stored a blob"
    );
    assert!(ok(collect(s.list_uploads()).await, "list_uploads").contains(&id));

    let mut w = resume(&s, &id, &abc).await;
    assert_eq!(w.state().size, 3, "the upload survives a mismatch");
    append(&mut w, &[b"d"], "append after a mismatch").await;
    assert_eq!(
        ok(w.finish(&wrong).await, "finish with the now right digest"),
        4
    );
    assert_eq!(
        read_all(ok(s.read(&wrong, None).await, "read")).await,
        b"abcd"
    );
}

async fn sha512_uploads_verify_with_sha512(s: Store) {
    let data = b"content addressed by sha512";
    let id = begin(&s).await;
    let mut w = resume(&s, &id, &UploadState::default()).await;
    let state = append(&mut w, &[&data[..10], &data[10..]], "append").await;
    let wrong = Digest::of(Algorithm::Sha512, b"other");
    match err_of(w.finish(&wrong).await, "finish with a wrong sha512") {
        Error::DigestMismatch { actual, .. } => {
            assert_eq!(
                actual,
                Digest::of(Algorithm::Sha512, data),
                "actual must be hashed with sha512"
            )
        }
        e => panic!("expected DigestMismatch, got {e:?}"),
    }
    let digest = Digest::of(Algorithm::Sha512, data);
    let w = resume(&s, &id, &state).await;
    assert_eq!(
        ok(w.finish(&digest).await, "finish sha512"),
        data.len() as u64
    );
    assert_eq!(ok(s.stat(&digest).await, "stat"), Some(data.len() as u64));
    assert_eq!(
        ok(s.stat(&sha256(data)).await, "stat sha256"),
        None,
        "stored under sha256 too"
    );
    assert_eq!(
        read_all(ok(s.read(&digest, None).await, "read")).await,
        data
    );
    assert_eq!(ok(collect(s.list()).await, "list"), vec![digest]);
}

async fn empty_blob(s: Store) {
    let id = begin(&s).await;
    let mut w = resume(&s, &id, &UploadState::default()).await;
    let state = append(&mut w, &[], "empty append").await;
    assert_eq!(state.size, 0, "an empty body appends nothing");
    let digest = sha256(b"");
    assert_eq!(ok(w.finish(&digest).await, "finish empty"), 0);
    assert_eq!(ok(s.stat(&digest).await, "stat"), Some(0));
    let b = ok(s.read(&digest, None).await, "read empty");
    assert_eq!((b.size, b.offset, b.len), (0, 0, 0));
    assert!(read_all(b).await.is_empty());
    let e = err_of(
        s.read(
            &digest,
            Some(ByteRange {
                start: 0,
                end: None,
            }),
        )
        .await,
        "range of empty",
    );
    assert!(
        matches!(e, Error::RangeNotSatisfiable { size: 0 }),
        "got {e:?}"
    );
}

/// Many chunks far smaller than an object store's smallest part, each its
/// own request (what a client sending small PATCHes does).
async fn many_small_chunks(s: Store) {
    let id = begin(&s).await;
    let mut state = UploadState::default();
    let mut data = Vec::new();
    for i in 0..64u32 {
        let chunk: Vec<u8> = (0..1000u32).map(|j| ((i * 7 + j) % 256) as u8).collect();
        let mut w = resume(&s, &id, &state).await;
        state = append(&mut w, &[&chunk], "small append").await;
        data.extend_from_slice(&chunk);
    }
    let digest = sha256(&data);
    let w = resume(&s, &id, &state).await;
    assert_eq!(ok(w.finish(&digest).await, "finish"), data.len() as u64);
    assert!(read_all(ok(s.read(&digest, None).await, "read")).await == data);
}

/// 9 MiB in 128 KiB requests: an object store gathers small chunks into
/// parts of its minimum size (S3: 5 MiB) across requests, and a range
/// across where a part ends reads back.
async fn small_chunks_across_a_part(s: Store) {
    const CHUNK: usize = 128 << 10;
    let data: Vec<u8> = (0..9usize << 20).map(|i| (i % 251) as u8).collect();
    let id = begin(&s).await;
    let mut state = UploadState::default();
    for chunk in data.chunks(CHUNK) {
        let mut w = resume(&s, &id, &state).await;
        state = append(&mut w, &[chunk], "small append").await;
    }
    assert_eq!(state.size, data.len() as u64);
    let digest = sha256(&data);
    let w = resume(&s, &id, &state).await;
    assert_eq!(ok(w.finish(&digest).await, "finish"), data.len() as u64);
    let start = (8u64 << 20) - 10;
    let (_, _, got) = read_range(&s, &digest, start, Some(start + 19)).await;
    let at = start as usize;
    assert!(got == data[at..at + 20], "a range across 8 MiB reads back");
    assert!(read_all(ok(s.read(&digest, None).await, "read")).await == data);
}

/// Chunks that straddle an object store's 5 MiB part size, each resumed
/// from the state before.
async fn large_chunks_across_part_sizes(s: Store) {
    const MIB: usize = 1 << 20;
    let data: Vec<u8> = (0..11 * MIB + 3).map(|i| (i % 253) as u8).collect();
    let cuts = [0, 3 * MIB + 1, 10 * MIB, 10 * MIB + 1000, data.len()];
    let id = begin(&s).await;
    let mut state = UploadState::default();
    for pair in cuts.windows(2) {
        let mut w = resume(&s, &id, &state).await;
        // A body of uneven pieces, as a network delivers it.
        let piece = &data[pair[0]..pair[1]];
        let mid = piece.len() / 3;
        state = append(&mut w, &[&piece[..mid], &piece[mid..]], "large append").await;
    }
    assert_eq!(state.size, data.len() as u64);
    let digest = sha256(&data);
    let w = resume(&s, &id, &state).await;
    assert_eq!(ok(w.finish(&digest).await, "finish"), data.len() as u64);
    let start = 5 * MIB as u64 - 10;
    let (_, _, got) = read_range(&s, &digest, start, Some(start + 19)).await;
    let at = start as usize;
    assert!(got == data[at..at + 20], "a range across 5 MiB reads back");
}

async fn cancel_discards_the_upload(s: Store) {
    let id = begin(&s).await;
    let mut w = resume(&s, &id, &UploadState::default()).await;
    let state = append(&mut w, &[b"discard me"], "append").await;
    ok(s.cancel_upload(&id).await, "cancel");
    let e = err_of(s.resume_upload(&id, &state).await, "resume after cancel");
    assert!(unknown(&e), "resume after cancel: got {e:?}");
    // A writer resumed before the cancel stores nothing, even with the
    // right digest for what it wrote.
    let held = match w.append(body([b" more"])).await {
        Ok(()) => sha256(b"discard me more"),
        Err(_) => sha256(b"discard me"),
    };
    let e = err_of(w.finish(&held).await, "finish after cancel");
    assert!(unknown(&e), "finish after cancel: got {e:?}");
    assert!(!ok(collect(s.list_uploads()).await, "list_uploads").contains(&id));
    assert!(
        ok(collect(s.list()).await, "list").is_empty(),
        "a cancelled upload left a blob"
    );
    ok(
        s.cancel_upload(&id).await,
        "cancelling twice is not an error",
    );
}

async fn unknown_ids_and_digests(s: Store) {
    let id = new_id();
    let e = err_of(
        s.resume_upload(&id, &UploadState::default()).await,
        "resume an unknown id",
    );
    assert!(unknown(&e), "resume of an unknown id: got {e:?}");
    ok(
        s.cancel_upload(&id).await,
        "cancel of an unknown id is not an error",
    );
    let begun = begin(&s).await;
    let e = err_of(s.begin_upload(&begun).await, "begin an id twice");
    assert!(matches!(e, Error::Conflict(_)), "begin twice: got {e:?}");

    let d = sha256(b"never stored");
    for range in [
        None,
        Some(ByteRange {
            start: 0,
            end: None,
        }),
    ] {
        let e = err_of(s.read(&d, range).await, "read unknown");
        assert!(
            matches!(&e, Error::BlobUnknown(x) if x == &d),
            "read of an unknown blob (range {range:?}): got {e:?}"
        );
    }
    assert_eq!(ok(s.stat(&d).await, "stat"), None);
    assert!(
        !ok(s.delete(&d).await, "delete"),
        "deleting an unknown blob reports it was there"
    );
}

async fn stat_delete_and_list(s: Store) {
    assert!(
        ok(collect(s.list()).await, "list").is_empty(),
        "a new store lists blobs"
    );
    let mut digests = Vec::new();
    for data in [&b"blob a"[..], b"blob b, longer", b"c", b"the fourth blob"] {
        digests.push(put(&s, data).await);
    }
    assert_eq!(
        ok(collect(s.list()).await, "list"),
        sorted(digests.clone()),
        "list is in ascending digest order"
    );
    let (a, b) = (digests[0].clone(), digests[1].clone());
    assert_eq!(ok(s.stat(&a).await, "stat a"), Some(6));
    assert!(
        ok(s.delete(&a).await, "delete a"),
        "delete reports a stored blob"
    );
    assert!(
        !ok(s.delete(&a).await, "delete a again"),
        "second delete reports it was there"
    );
    assert_eq!(ok(s.stat(&a).await, "stat a after delete"), None);
    let e = err_of(s.read(&a, None).await, "read after delete");
    assert!(
        matches!(e, Error::BlobUnknown(_)),
        "read after delete: got {e:?}"
    );
    assert!(!ok(collect(s.list()).await, "list").contains(&a));
    assert_eq!(ok(s.stat(&b).await, "stat b"), Some(14));
    // A deleted blob can be uploaded again.
    assert_eq!(put(&s, b"blob a").await, a);
    assert_eq!(ok(s.stat(&a).await, "stat a after re-upload"), Some(6));
}

async fn list_uploads_names_open_sessions(s: Store) {
    let (open, cancelled, finished) = (begin(&s).await, begin(&s).await, begin(&s).await);
    let mut states = Vec::new();
    for id in [&open, &cancelled, &finished] {
        let mut w = resume(&s, id, &UploadState::default()).await;
        states.push(append(&mut w, &[b"data"], "append").await);
    }
    let listed = sorted(ok(collect(s.list_uploads()).await, "list_uploads"));
    assert_eq!(
        listed,
        sorted(vec![open.clone(), cancelled.clone(), finished.clone()])
    );
    ok(s.cancel_upload(&cancelled).await, "cancel");
    let w = resume(&s, &finished, &states[2]).await;
    ok(w.finish(&sha256(b"data")).await, "finish");
    assert_eq!(
        ok(collect(s.list_uploads()).await, "list_uploads"),
        vec![open]
    );
}

async fn probe_passes_and_leaves_no_upload_or_blob(s: Store) {
    let open = new_id();
    ok(s.begin_upload(&open).await, "begin_upload");
    let stored = put(&s, b"kept").await;
    ok(s.probe().await, "probe");
    ok(s.probe().await, "a second probe");
    assert_eq!(
        ok(collect(s.list_uploads()).await, "list_uploads"),
        vec![open]
    );
    assert_eq!(ok(collect(s.list()).await, "list"), vec![stored]);
}

async fn uploads_do_not_mix(s: Store) {
    let (a, b) = (begin(&s).await, begin(&s).await);
    let (mut sa, mut sb) = (UploadState::default(), UploadState::default());
    for (x, y) in [(&b"aa"[..], &b"bb"[..]), (&b"AA"[..], &b"BB"[..])] {
        let mut wa = resume(&s, &a, &sa).await;
        let mut wb = resume(&s, &b, &sb).await;
        sa = append(&mut wa, &[x], "append a").await;
        sb = append(&mut wb, &[y], "append b").await;
    }
    assert_eq!(sa.size, 4);
    let wb = resume(&s, &b, &sb).await;
    ok(wb.finish(&sha256(b"bbBB")).await, "finish b");
    let wa = resume(&s, &a, &sa).await;
    ok(wa.finish(&sha256(b"aaAA")).await, "finish a");
}

async fn concurrent_identical_uploads_all_succeed(s: Store) {
    let data: Vec<u8> = b"the same layer, pushed by 32 clients at once ".repeat(100);
    let digest = sha256(&data);
    let ids: Vec<_> = (0..32).map(|_| new_id()).collect();
    let begun = join_all(ids.iter().map(|id| s.begin_upload(id))).await;
    for r in begun {
        ok(r, "concurrent begin_upload");
    }
    let finished = join_all(ids.iter().map(|id| {
        let (s, data, digest) = (&s, &data, &digest);
        async move {
            let mut w = s.resume_upload(id, &UploadState::default()).await?;
            w.append(body([&data[..100], &data[100..]])).await?;
            w.finish(digest).await
        }
    }))
    .await;
    for r in finished {
        assert_eq!(
            ok(r, "concurrent upload of identical content"),
            data.len() as u64
        );
    }
    assert_eq!(
        ok(collect(s.list()).await, "list"),
        vec![digest.clone()],
        "one blob, listed once"
    );
    assert_eq!(ok(s.stat(&digest).await, "stat"), Some(data.len() as u64));
    assert!(read_all(ok(s.read(&digest, None).await, "read")).await == data);
    let left = ok(collect(s.list_uploads()).await, "list_uploads");
    assert!(
        ids.iter().all(|id| !left.contains(id)),
        "finished uploads are still listed"
    );
}

async fn a_reader_survives_an_identical_upload_finishing(s: Store) {
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = put(&s, &data).await;
    let reader = ok(s.read(&digest, None).await, "open a read");
    let ranged = ok(
        s.read(
            &digest,
            Some(ByteRange {
                start: 100,
                end: Some(40_099),
            }),
        )
        .await,
        "open a range",
    );
    // A second upload of the same content finishes while both are open.
    assert_eq!(put(&s, &data).await, digest);
    assert!(
        read_all(reader).await == data,
        "the open reader saw other bytes"
    );
    assert!(
        read_all(ranged).await == data[100..40_100],
        "the open range saw other bytes"
    );
    assert!(read_all(ok(s.read(&digest, None).await, "read again")).await == data);
    assert_eq!(ok(collect(s.list()).await, "list"), vec![digest]);
}
