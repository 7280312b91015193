//! `EIO` from the blob store's write, fsync and rename (issue 16), the
//! faults `scripts/faults.sh` cannot make on tmpfs: injected by
//! `FaultyBlobStore` around the real `FsBlobStore`, through the real
//! router. Each request that meets one fails with a 5xx naming no path,
//! no half-written blob is ever served, the upload or a retry then
//! succeeds on the same registry, and reconcile finds nothing.

mod support;

use axum::http::{Method, StatusCode};
use mcr_core::testing::{admin, Fault};
use support::*;

const REPO: &str = "faults/app";

impl Harness {
    /// A PATCH of `data` at `start` to the session at `location`.
    async fn patch(&self, location: &str, start: usize, data: &[u8]) -> Reply {
        self.user(Method::PATCH, location)
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{start}-{}", start + data.len() - 1),
            )
            .body(data.to_vec())
            .send()
            .await
    }

    /// `PUT <location>?digest=` closing the session.
    async fn close(&self, location: &str, digest: &str) -> Reply {
        self.user(Method::PUT, format!("{location}?digest={digest}"))
            .send()
            .await
    }

    /// Asserts `r` is the storage failure an `EIO` gives: a 500 whose
    /// message names neither a path nor the injected call.
    fn assert_storage_failure(&self, r: &Reply, what: &str) {
        r.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN");
        let text = r.text();
        assert!(
            !text.contains("injected") && !text.contains(&*self.layers.to_string_lossy()),
            "{what}: the reply tells what is the operator's business: {text}"
        );
    }

    /// `digest` is served in `REPO` as exactly `data`.
    async fn served(&self, digest: &str, data: &[u8]) {
        let r = self
            .user(Method::GET, format!("/v2/{REPO}/blobs/{digest}"))
            .send()
            .await;
        r.assert_status(StatusCode::OK);
        assert!(&r.body[..] == data, "{digest} came back different");
    }

    /// Nothing inconsistent: reconcile removes no file and misses no row,
    /// and no upload file is left.
    async fn consistent(&self) {
        let report = self.registry.reconcile(&admin()).await.expect("reconcile");
        assert!(report.files_removed.is_empty(), "{report:?}");
        assert!(report.missing_files.is_empty(), "{report:?}");
        assert_eq!(self.upload_files(), Vec::<String>::new());
        assert!(self.faults.pending().is_empty(), "a fault never struck");
    }
}

#[tokio::test]
async fn eio_on_write_discards_the_chunk_and_the_upload_goes_on() {
    let h = Harness::new();
    let (a, b) = (vec![1u8; 3000], vec![2u8; 5000]);
    let whole = [a.clone(), b.clone()].concat();
    let digest = sha256(&whole);
    let loc = h.start_upload(REPO).await;
    let r = h.patch(&loc, 0, &a).await;
    r.assert_status(StatusCode::ACCEPTED);
    let loc = r.header("location").unwrap().to_string();

    h.faults.arm(Fault::Write);
    let r = h.patch(&loc, a.len(), &b).await;
    h.assert_storage_failure(&r, "PATCH meeting EIO");
    // The session still holds only the first chunk: the bytes the failed
    // write left past it are cut off, so the same chunk is taken again.
    let r = h.user(Method::GET, loc.clone()).send().await;
    r.assert_status(StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), Some(&*format!("0-{}", a.len() - 1)));
    assert_eq!(h.blob_status(REPO, &digest).await, StatusCode::NOT_FOUND);

    let r = h.patch(&loc, a.len(), &b).await;
    r.assert_status(StatusCode::ACCEPTED);
    let loc = r.header("location").unwrap().to_string();
    h.close(&loc, &digest)
        .await
        .assert_blob_created(REPO, &digest);
    h.served(&digest, &whole).await;
    h.consistent().await;
}

#[tokio::test]
async fn eio_on_write_of_a_whole_blob_leaves_nothing() {
    let h = Harness::new();
    let data = vec![7u8; 10_000];
    let digest = sha256(&data);
    h.faults.arm(Fault::Write);
    let r = h
        .user(
            Method::POST,
            format!("/v2/{REPO}/blobs/uploads/?digest={digest}"),
        )
        .body(data.clone())
        .send()
        .await;
    h.assert_storage_failure(&r, "monolithic POST meeting EIO");
    assert_eq!(h.blob_status(REPO, &digest).await, StatusCode::NOT_FOUND);
    assert_eq!(
        h.catalog().await,
        Vec::<String>::new(),
        "a failed push left a repository"
    );
    h.consistent().await;
    assert_eq!(h.push_blob(REPO, &data).await, digest);
    h.served(&digest, &data).await;
    h.consistent().await;
}

#[tokio::test]
async fn eio_on_fsync_keeps_the_upload_for_another_try() {
    let h = Harness::new();
    let data = vec![3u8; 20_000];
    let digest = sha256(&data);
    let loc = h.start_upload(REPO).await;
    let r = h.patch(&loc, 0, &data).await;
    r.assert_status(StatusCode::ACCEPTED);
    let loc = r.header("location").unwrap().to_string();

    h.faults.arm(Fault::Fsync);
    let r = h.close(&loc, &digest).await;
    h.assert_storage_failure(&r, "PUT meeting EIO on fsync");
    assert_eq!(h.blob_status(REPO, &digest).await, StatusCode::NOT_FOUND);
    assert!(
        h.blob_files().is_empty(),
        "a blob file appeared: {:?}",
        h.blob_files()
    );

    // The client's retry of the same PUT finds its upload whole.
    h.close(&loc, &digest)
        .await
        .assert_blob_created(REPO, &digest);
    h.served(&digest, &data).await;
    h.consistent().await;
}

#[tokio::test]
async fn eio_on_rename_is_reported_and_the_retry_records_the_blob() {
    let h = Harness::new();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = vec![9u8; 30_000];
    let digest = sha256(&layer);
    h.push_blob(REPO, &config).await;

    h.faults.arm(Fault::Rename);
    let r = h
        .user(
            Method::POST,
            format!("/v2/{REPO}/blobs/uploads/?digest={digest}"),
        )
        .body(layer.clone())
        .send()
        .await;
    h.assert_storage_failure(&r, "monolithic POST meeting EIO on rename");
    // Not acknowledged, so not served, though its file may be in place.
    assert_eq!(h.blob_status(REPO, &digest).await, StatusCode::NOT_FOUND);
    let raw = raw_image_manifest(&config, &[&layer]);
    let r = h.put_manifest(REPO, "v1", OCI_MANIFEST, &raw).await;
    r.assert_error(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");

    // The client pushes the blob again: recorded, served, consistent.
    assert_eq!(h.push_blob(REPO, &layer).await, digest);
    h.put_manifest(REPO, "v1", OCI_MANIFEST, &raw)
        .await
        .assert_status(StatusCode::CREATED);
    h.served(&digest, &layer).await;
    h.consistent().await;
}
