//! The [`BlobStore`] contract: uploads, reads, ranges and their errors.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::join_all;

use super::support::{body, collect, err_of, failing_body, new_id, ok, read_all, sha256, sorted};
use super::{checks, run_suite, Check};
use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use crate::ports::{BlobStore, ByteRange};

type Store = Arc<dyn BlobStore>;

/// Every check of the suite, in the order [`run_blob_store_contract`] runs
/// them.
pub const BLOB_STORE_CHECKS: &[Check<dyn BlobStore>] = checks![dyn BlobStore =>
    chunked_upload_reads_back_whole_and_by_ranges,
    append_at_a_wrong_offset_fails_and_changes_nothing,
    a_failing_body_leaves_the_upload_unchanged,
    wrong_digest_fails_and_keeps_the_session,
    sha512_uploads_verify_with_sha512,
    empty_blob,
    cancel_discards_the_session,
    unknown_ids_and_digests,
    stat_delete_and_list,
    list_uploads_names_open_sessions,
    uploads_do_not_mix,
    concurrent_identical_uploads_all_succeed,
    a_reader_survives_an_identical_upload_finishing,
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

/// Begins an upload, appends `data` in one chunk and finishes it.
async fn put(s: &Store, data: &[u8]) -> Digest {
    let id = new_id();
    ok(s.begin_upload(&id).await, "begin_upload");
    ok(
        s.append_upload(&id, Some(0), body([data])).await,
        "append_upload",
    );
    let digest = sha256(data);
    let size = ok(s.finish_upload(&id, &digest).await, "finish_upload");
    assert_eq!(
        size,
        data.len() as u64,
        "finish_upload returned the wrong size"
    );
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

async fn chunked_upload_reads_back_whole_and_by_ranges(s: Store) {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let id = new_id();
    ok(s.begin_upload(&id).await, "begin_upload");
    assert_eq!(
        ok(s.upload_size(&id).await, "upload_size"),
        0,
        "a new upload is empty"
    );

    // Three appends: an explicit offset with a body of several chunks,
    // one without an offset, and another with one.
    let size = ok(
        s.append_upload(&id, Some(0), body([&data[..1000], &data[1000..3000]]))
            .await,
        "first append",
    );
    assert_eq!(size, 3000, "append returns the upload's new size");
    let size = ok(
        s.append_upload(&id, None, body([&data[3000..7000]])).await,
        "second append",
    );
    assert_eq!(size, 7000);
    let size = ok(
        s.append_upload(&id, Some(7000), body([&data[7000..]]))
            .await,
        "third append",
    );
    assert_eq!(size, 10_000);
    assert_eq!(ok(s.upload_size(&id).await, "upload_size"), 10_000);

    let digest = sha256(&data);
    assert_eq!(
        ok(s.finish_upload(&id, &digest).await, "finish_upload"),
        10_000
    );
    assert!(
        matches!(
            err_of(s.upload_size(&id).await, "upload_size after finish"),
            Error::UploadUnknown(_)
        ),
        "a finished upload's session is gone"
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

async fn append_at_a_wrong_offset_fails_and_changes_nothing(s: Store) {
    let id = new_id();
    ok(s.begin_upload(&id).await, "begin_upload");
    ok(
        s.append_upload(&id, Some(0), body([b"hello"])).await,
        "append",
    );
    for got in [0, 3, 6, 100] {
        let e = err_of(
            s.append_upload(&id, Some(got), body([b"XXXX"])).await,
            &format!("append at offset {got}"),
        );
        assert!(
            matches!(e, Error::RangeInvalid { expected: 5, got: g } if g == got),
            "append at {got} to a 5-byte upload: expected RangeInvalid {{ expected: 5, got: {got} }}, got {e:?}"
        );
        assert_eq!(
            ok(s.upload_size(&id).await, "upload_size"),
            5,
            "a rejected append changed the size"
        );
    }
    ok(
        s.append_upload(&id, Some(5), body([b" world"])).await,
        "append at the right offset",
    );
    let size = ok(
        s.finish_upload(&id, &sha256(b"hello world")).await,
        "finish",
    );
    assert_eq!(size, 11, "the rejected appends left bytes behind");

    let fresh = new_id();
    ok(s.begin_upload(&fresh).await, "begin_upload");
    let e = err_of(
        s.append_upload(&fresh, Some(1), body([b"x"])).await,
        "append at 1 to an empty upload",
    );
    assert!(
        matches!(
            e,
            Error::RangeInvalid {
                expected: 0,
                got: 1
            }
        ),
        "got {e:?}"
    );
}

async fn a_failing_body_leaves_the_upload_unchanged(s: Store) {
    let id = new_id();
    ok(s.begin_upload(&id).await, "begin_upload");
    err_of(
        s.append_upload(&id, Some(0), failing_body(b"garbage"))
            .await,
        "failing first append",
    );
    assert_eq!(
        ok(s.upload_size(&id).await, "upload_size"),
        0,
        "a failed first append left bytes"
    );

    ok(
        s.append_upload(&id, Some(0), body([b"hello"])).await,
        "append",
    );
    err_of(
        s.append_upload(&id, None, failing_body(b"garbage")).await,
        "failing append",
    );
    assert_eq!(
        ok(s.upload_size(&id).await, "upload_size"),
        5,
        "a failed append changed the size"
    );
    err_of(
        s.append_upload(&id, Some(5), failing_body(b"garbage"))
            .await,
        "failing append at 5",
    );
    assert_eq!(
        ok(s.upload_size(&id).await, "upload_size"),
        5,
        "a failed append changed the size"
    );

    ok(
        s.append_upload(&id, Some(5), body([b" world"])).await,
        "append after failures",
    );
    let digest = sha256(b"hello world");
    ok(
        s.finish_upload(&id, &digest).await,
        "finish: the failed bodies must have left no bytes",
    );
    assert_eq!(
        read_all(ok(s.read(&digest, None).await, "read")).await,
        b"hello world"
    );
}

async fn wrong_digest_fails_and_keeps_the_session(s: Store) {
    let id = new_id();
    ok(s.begin_upload(&id).await, "begin_upload");
    ok(
        s.append_upload(&id, Some(0), body([b"abc"])).await,
        "append",
    );
    let wrong = sha256(b"abcd");
    match err_of(
        s.finish_upload(&id, &wrong).await,
        "finish with a wrong digest",
    ) {
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

    assert_eq!(
        ok(s.upload_size(&id).await, "upload_size"),
        3,
        "the session survives a mismatch"
    );
    assert!(ok(collect(s.list_uploads()).await, "list_uploads").contains(&id));
    ok(
        s.append_upload(&id, Some(3), body([b"d"])).await,
        "append after a mismatch",
    );
    assert_eq!(
        ok(
            s.finish_upload(&id, &wrong).await,
            "finish with the now right digest"
        ),
        4
    );
    assert_eq!(
        read_all(ok(s.read(&wrong, None).await, "read")).await,
        b"abcd"
    );
}

async fn sha512_uploads_verify_with_sha512(s: Store) {
    let data = b"content addressed by sha512";
    let id = new_id();
    ok(s.begin_upload(&id).await, "begin_upload");
    ok(
        s.append_upload(&id, None, body([&data[..10], &data[10..]]))
            .await,
        "append",
    );
    let wrong = Digest::of(Algorithm::Sha512, b"other");
    match err_of(
        s.finish_upload(&id, &wrong).await,
        "finish with a wrong sha512",
    ) {
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
    assert_eq!(
        ok(s.finish_upload(&id, &digest).await, "finish sha512"),
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
    let id = new_id();
    ok(s.begin_upload(&id).await, "begin_upload");
    let size = ok(
        s.append_upload(&id, Some(0), body(Vec::<&[u8]>::new()))
            .await,
        "empty append",
    );
    assert_eq!(size, 0, "an empty body appends nothing");
    let digest = sha256(b"");
    assert_eq!(ok(s.finish_upload(&id, &digest).await, "finish empty"), 0);
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

async fn cancel_discards_the_session(s: Store) {
    let id = new_id();
    ok(s.begin_upload(&id).await, "begin_upload");
    ok(
        s.append_upload(&id, None, body([b"discard me"])).await,
        "append",
    );
    ok(s.cancel_upload(&id).await, "cancel");
    let unknown = |e: &Error| matches!(e, Error::UploadUnknown(_));
    let e = err_of(s.upload_size(&id).await, "upload_size after cancel");
    assert!(unknown(&e), "upload_size after cancel: got {e:?}");
    let e = err_of(
        s.append_upload(&id, None, body([b"x"])).await,
        "append after cancel",
    );
    assert!(unknown(&e), "append after cancel: got {e:?}");
    let e = err_of(
        s.finish_upload(&id, &sha256(b"discard me")).await,
        "finish after cancel",
    );
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
    let unknown = |e: &Error| matches!(e, Error::UploadUnknown(_));
    let e = err_of(s.upload_size(&id).await, "upload_size");
    assert!(unknown(&e), "upload_size of an unknown id: got {e:?}");
    let e = err_of(s.append_upload(&id, Some(0), body([b"x"])).await, "append");
    assert!(unknown(&e), "append to an unknown id: got {e:?}");
    let e = err_of(s.finish_upload(&id, &sha256(b"")).await, "finish");
    assert!(unknown(&e), "finish of an unknown id: got {e:?}");
    ok(
        s.cancel_upload(&id).await,
        "cancel of an unknown id is not an error",
    );

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
    let a = put(&s, b"blob a").await;
    let b = put(&s, b"blob b, longer").await;
    assert_eq!(
        ok(collect(s.list()).await, "list"),
        sorted(vec![a.clone(), b.clone()]),
        "list is in ascending digest order"
    );
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
    assert_eq!(ok(collect(s.list()).await, "list"), vec![b.clone()]);
    assert_eq!(ok(s.stat(&b).await, "stat b"), Some(14));
    // A deleted blob can be uploaded again.
    assert_eq!(put(&s, b"blob a").await, a);
    assert_eq!(ok(s.stat(&a).await, "stat a after re-upload"), Some(6));
}

async fn list_uploads_names_open_sessions(s: Store) {
    let (open, cancelled, finished) = (new_id(), new_id(), new_id());
    for id in [&open, &cancelled, &finished] {
        ok(s.begin_upload(id).await, "begin_upload");
        ok(s.append_upload(id, None, body([b"data"])).await, "append");
    }
    let listed = sorted(ok(collect(s.list_uploads()).await, "list_uploads"));
    assert_eq!(
        listed,
        sorted(vec![open.clone(), cancelled.clone(), finished.clone()])
    );
    ok(s.cancel_upload(&cancelled).await, "cancel");
    ok(s.finish_upload(&finished, &sha256(b"data")).await, "finish");
    assert_eq!(
        ok(collect(s.list_uploads()).await, "list_uploads"),
        vec![open]
    );
}

async fn uploads_do_not_mix(s: Store) {
    let (a, b) = (new_id(), new_id());
    ok(s.begin_upload(&a).await, "begin a");
    ok(s.begin_upload(&b).await, "begin b");
    for (x, y) in [(&b"aa"[..], &b"bb"[..]), (&b"AA"[..], &b"BB"[..])] {
        ok(s.append_upload(&a, None, body([x])).await, "append a");
        ok(s.append_upload(&b, None, body([y])).await, "append b");
    }
    assert_eq!(ok(s.upload_size(&a).await, "size a"), 4);
    ok(s.finish_upload(&b, &sha256(b"bbBB")).await, "finish b");
    ok(s.finish_upload(&a, &sha256(b"aaAA")).await, "finish a");
}

async fn concurrent_identical_uploads_all_succeed(s: Store) {
    let data: Vec<u8> = b"the same layer, pushed by 32 clients at once ".repeat(100);
    let digest = sha256(&data);
    let ids: Vec<_> = (0..32).map(|_| new_id()).collect();
    let begun = join_all(ids.iter().map(|id| s.begin_upload(id))).await;
    for r in begun {
        ok(r, "concurrent begin_upload");
    }
    let appended = join_all(
        ids.iter()
            .map(|id| s.append_upload(id, Some(0), body([&data[..100], &data[100..]]))),
    )
    .await;
    for r in appended {
        assert_eq!(ok(r, "concurrent append"), data.len() as u64);
    }
    let finished = join_all(ids.iter().map(|id| s.finish_upload(id, &digest))).await;
    for r in finished {
        assert_eq!(
            ok(r, "concurrent finish of identical content"),
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
        "finished sessions are still listed"
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
