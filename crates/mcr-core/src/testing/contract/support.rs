//! Helpers shared by the contract checks: bodies, digests, names, times.

use std::fmt::Debug;
use std::io;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::ids::UploadId;
use crate::names::{RepoName, Tag};
use crate::ports::{BlobBody, ByteStream, ListStream};
use crate::time::Timestamp;

/// A body that yields `chunks` one by one.
pub(super) fn body<I, C>(chunks: I) -> ByteStream
where
    I: IntoIterator<Item = C>,
    C: AsRef<[u8]>,
{
    let items: Vec<io::Result<Bytes>> = chunks
        .into_iter()
        .map(|c| Ok(Bytes::copy_from_slice(c.as_ref())))
        .collect();
    Box::pin(futures_util::stream::iter(items))
}

/// A body that yields `first`, then fails as a client that went away.
pub(super) fn failing_body(first: &[u8]) -> ByteStream {
    let items: Vec<io::Result<Bytes>> = vec![
        Ok(Bytes::copy_from_slice(first)),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away (contract check)",
        )),
    ];
    Box::pin(futures_util::stream::iter(items))
}

/// Reads a body to the end, checking it yields exactly `len` bytes and,
/// where the store hands out the file, that the file holds the same bytes
/// at `offset` (what a zero-copy transport sends instead).
pub(super) async fn read_all(mut body: BlobBody) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.stream.next().await {
        out.extend_from_slice(&chunk.expect("the blob stream failed"));
    }
    assert_eq!(
        out.len() as u64,
        body.len,
        "the stream yielded {} bytes, but the body's len says {}",
        out.len(),
        body.len
    );
    if let Some(file) = &body.file {
        use std::os::unix::fs::FileExt;
        let mut direct = vec![0; out.len()];
        file.read_exact_at(&mut direct, body.offset)
            .expect("reading the body's file at its offset");
        assert!(
            direct == out,
            "the body's file holds other bytes at offset {} than its stream",
            body.offset
        );
    }
    out
}

/// The error of a result that must have failed (`T` need not be `Debug`).
pub(super) fn err_of<T>(result: Result<T>, what: &str) -> Error {
    match result {
        Ok(_) => panic!("{what}: expected an error, got Ok"),
        Err(e) => e,
    }
}

/// Unwraps a result that must have succeeded, naming the step.
pub(super) fn ok<T>(result: Result<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: expected success, got {e:?}"),
    }
}

/// Reads a listing to its end.
pub(super) async fn collect<T>(listing: ListStream<T>) -> Result<Vec<T>> {
    listing.try_collect().await
}

/// Sorts for comparisons where the port promises no order.
pub(super) fn sorted<T: Ord + Debug>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

pub(super) fn sha256(data: &[u8]) -> Digest {
    Digest::sha256_of(data)
}

pub(super) fn new_id() -> UploadId {
    UploadId::generate().expect("the OS has randomness for an upload id")
}

pub(super) fn repo(name: &str) -> RepoName {
    RepoName::new(name).expect("the contract uses valid repository names")
}

pub(super) fn tag(name: &str) -> Tag {
    Tag::new(name).expect("the contract uses valid tags")
}

/// A time `secs` seconds after a fixed origin (2024-01-01T00:00:00Z).
pub(super) fn t(secs: i64) -> Timestamp {
    Timestamp::from_millis(1_704_067_200_000 + secs * 1000)
}
