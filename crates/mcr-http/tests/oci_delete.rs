//! Content management: deleting tags, manifests and blob links.

mod support;

use axum::http::{Method, StatusCode};
use mcr_core::audit::EventType;
use serde_json::json;
use support::*;

#[tokio::test]
async fn deleting_a_tag_removes_the_tag_only() {
    let h = Harness::new();
    let image = h.push_seeded_image("app", "v1", "a").await;
    h.put_manifest("app", "latest", OCI_MANIFEST, &image.raw)
        .await
        .assert_status(StatusCode::CREATED);
    let r = h
        .user(Method::DELETE, "/v2/app/manifests/latest")
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    assert!(r.body.is_empty());
    let r = h.user(Method::GET, "/v2/app/manifests/latest").send().await;
    r.assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    let r = h
        .user(Method::GET, format!("/v2/app/manifests/{}", image.digest))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.body.as_ref(), image.raw.as_slice());
    assert_eq!(h.manifest_status("app", "v1").await, StatusCode::OK);
    assert_eq!(h.tags("app").await, Some(vec!["v1".to_string()]));
    let deleted = h.audit(EventType::TagDeleted).await;
    assert_eq!(deleted.len(), 1);
    assert!(h.audit(EventType::ManifestDeleted).await.is_empty());
}

#[tokio::test]
async fn deleting_a_manifest_by_digest_removes_its_tags() {
    let h = Harness::new();
    let image = h.push_seeded_image("app", "v1", "a").await;
    let keep = h.push_seeded_image("app", "keep", "b").await;
    h.put_manifest("app", "latest", OCI_MANIFEST, &image.raw)
        .await
        .assert_status(StatusCode::CREATED);
    let uri = format!("/v2/app/manifests/{}", image.digest);
    let r = h.user(Method::DELETE, &uri).send().await;
    r.assert_status(StatusCode::ACCEPTED);
    for reference in ["v1", "latest", image.digest.as_str()] {
        let r = h
            .user(Method::GET, format!("/v2/app/manifests/{reference}"))
            .send()
            .await;
        r.assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    }
    assert_eq!(h.tags("app").await, Some(vec!["keep".to_string()]));
    assert_eq!(h.manifest_status("app", &keep.digest).await, StatusCode::OK);
    // Its blobs stay in the repository until they are deleted themselves.
    assert_eq!(h.blob_status("app", image.layer()).await, StatusCode::OK);
    let r = h.user(Method::DELETE, &uri).send().await;
    r.assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    assert_eq!(h.audit(EventType::ManifestDeleted).await.len(), 1);
}

#[tokio::test]
async fn deleting_what_is_not_there() {
    let h = Harness::new();
    h.push_seeded_image("app", "v1", "a").await;
    let cases = [
        ("/v2/app/manifests/nope".to_string(), "MANIFEST_UNKNOWN"),
        (
            format!("/v2/app/manifests/{}", sha256(b"nope")),
            "MANIFEST_UNKNOWN",
        ),
        ("/v2/nowhere/manifests/v1".to_string(), "NAME_UNKNOWN"),
        (
            format!("/v2/nowhere/manifests/{}", sha256(b"nope")),
            "NAME_UNKNOWN",
        ),
        (format!("/v2/app/blobs/{}", sha256(b"nope")), "BLOB_UNKNOWN"),
    ];
    for (uri, code) in cases {
        let r = h.user(Method::DELETE, &uri).send().await;
        r.assert_error(StatusCode::NOT_FOUND, code);
    }
    let r = h
        .user(Method::DELETE, "/v2/app/manifests/-bad")
        .send()
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "TAG_INVALID");
    assert_eq!(h.tags("app").await, Some(vec!["v1".to_string()]));
}

#[tokio::test]
async fn deleting_a_blob_unlinks_it_from_that_repository_only() {
    let h = Harness::new();
    let data = b"a layer";
    let d = h.push_blob("app", data).await;
    h.user(
        Method::POST,
        format!("/v2/copy/blobs/uploads/?mount={d}&from=app"),
    )
    .send()
    .await
    .assert_status(StatusCode::CREATED);
    let r = h
        .user(Method::DELETE, format!("/v2/app/blobs/{d}"))
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    assert!(r.body.is_empty());
    let r = h
        .user(Method::HEAD, format!("/v2/app/blobs/{d}"))
        .send()
        .await;
    r.assert_status(StatusCode::NOT_FOUND);
    let r = h
        .user(Method::GET, format!("/v2/app/blobs/{d}"))
        .send()
        .await;
    r.assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    let r = h
        .user(Method::GET, format!("/v2/copy/blobs/{d}"))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.body.as_ref(), data);
    let r = h
        .user(Method::DELETE, format!("/v2/app/blobs/{d}"))
        .send()
        .await;
    r.assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    assert_eq!(h.audit(EventType::BlobDeleted).await.len(), 1);

    // A manifest can no longer name it in that repository.
    let raw = to_bytes(&image_manifest(
        descriptor(OCI_CONFIG, data),
        &[],
        json!({}),
    ));
    let r = h.put_manifest("app", "v1", OCI_MANIFEST, &raw).await;
    r.assert_error(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    h.put_manifest("copy", "v1", OCI_MANIFEST, &raw)
        .await
        .assert_status(StatusCode::CREATED);
}
