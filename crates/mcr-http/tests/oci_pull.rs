//! Pulling: manifests by tag and by digest, blobs whole and by range, and
//! the errors for what is not there.

mod support;

use axum::http::{Method, StatusCode};
use mcr_core::audit::EventType;
use support::*;

#[tokio::test]
async fn a_manifest_by_tag_and_by_digest_is_served_byte_for_byte() {
    let h = Harness::new();
    let image = h.push_seeded_image("team/app", "v1", "a").await;
    let length = image.raw.len().to_string();
    for reference in ["v1", image.digest.as_str()] {
        let uri = format!("/v2/team/app/manifests/{reference}");
        let r = h
            .user(Method::GET, &uri)
            .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
            .send()
            .await;
        r.assert_status(StatusCode::OK);
        assert_eq!(r.body.as_ref(), image.raw.as_slice(), "{reference}");
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            r.header("docker-content-digest"),
            Some(image.digest.as_str())
        );
        assert_eq!(r.header("content-length"), Some(length.as_str()));

        let r = h.user(Method::HEAD, &uri).send().await;
        r.assert_status(StatusCode::OK);
        assert!(r.body.is_empty(), "HEAD has no body");
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            r.header("docker-content-digest"),
            Some(image.digest.as_str())
        );
        assert_eq!(r.header("content-length"), Some(length.as_str()));
    }
    assert_eq!(h.audit(EventType::ManifestPulled).await.len(), 4);
}

#[tokio::test]
async fn a_manifest_keeps_unknown_fields_and_formatting() {
    let h = Harness::new();
    h.push_blob("app", b"{}").await;
    let raw = format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\": \"{OCI_CONFIG}\", \"digest\": \"{}\", \"size\": 2}},\n  \"layers\": [],\n  \"x-unknown\": {{\"kept\": true}}\n}}\n",
        sha256(b"{}")
    );
    h.put_manifest("app", "v1", OCI_MANIFEST, raw.as_bytes())
        .await
        .assert_status(StatusCode::CREATED);
    let r = h.user(Method::GET, "/v2/app/manifests/v1").send().await;
    assert_eq!(r.body.as_ref(), raw.as_bytes());
    assert_eq!(
        r.header("docker-content-digest"),
        Some(sha256(raw.as_bytes()).as_str())
    );
}

#[tokio::test]
async fn what_is_not_there_is_404_with_the_right_code() {
    let h = Harness::new();
    let image = h.push_seeded_image("app", "v1", "a").await;
    h.push_seeded_image("other", "v1", "b").await;
    let cases = [
        ("/v2/app/manifests/nope".to_string(), "MANIFEST_UNKNOWN"),
        (
            format!("/v2/app/manifests/{}", sha256(b"nope")),
            "MANIFEST_UNKNOWN",
        ),
        // A manifest of another repository is unknown here.
        (
            format!("/v2/other/manifests/{}", image.digest),
            "MANIFEST_UNKNOWN",
        ),
        // A malformed reference names no manifest.
        ("/v2/app/manifests/.INVALID".to_string(), "MANIFEST_UNKNOWN"),
        ("/v2/nowhere/manifests/v1".to_string(), "NAME_UNKNOWN"),
        (
            format!("/v2/nowhere/manifests/{}", image.digest),
            "NAME_UNKNOWN",
        ),
    ];
    for (uri, code) in &cases {
        let r = h.user(Method::GET, uri).send().await;
        r.assert_error(StatusCode::NOT_FOUND, code);
        let r = h.user(Method::HEAD, uri).send().await;
        r.assert_status(StatusCode::NOT_FOUND);
    }
    let r = h.user(Method::GET, "/v2/Bad/manifests/v1").send().await;
    r.assert_error(StatusCode::BAD_REQUEST, "NAME_INVALID");
    let r = h.user(Method::GET, "/v2/-app/tags/list").send().await;
    r.assert_error(StatusCode::BAD_REQUEST, "NAME_INVALID");
}

#[tokio::test]
async fn a_blob_is_served_whole_with_its_headers() {
    let h = Harness::new();
    let data: Vec<u8> = (0..100u8).collect();
    let d = h.push_blob("app", &data).await;
    let r = h
        .user(Method::GET, format!("/v2/app/blobs/{d}"))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.body.as_ref(), data.as_slice());
    assert_eq!(r.header("content-length"), Some("100"));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert!(r.header("content-range").is_none());

    let r = h
        .user(Method::HEAD, format!("/v2/app/blobs/{d}"))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("100"));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(h.audit(EventType::BlobPulled).await.len(), 2);
}

#[tokio::test]
async fn a_blob_is_served_by_range() {
    let h = Harness::new();
    let data: Vec<u8> = (0..100u8).collect();
    let d = h.push_blob("app", &data).await;
    let uri = format!("/v2/app/blobs/{d}");
    for (range, expected, content_range) in [
        ("bytes=2-5", &data[2..6], "bytes 2-5/100"),
        ("bytes=0-0", &data[0..1], "bytes 0-0/100"),
        ("bytes=90-", &data[90..], "bytes 90-99/100"),
        ("bytes=-10", &data[90..], "bytes 90-99/100"),
        ("bytes=95-500", &data[95..], "bytes 95-99/100"),
        ("bytes=0-99", &data[..], "bytes 0-99/100"),
    ] {
        let r = h
            .user(Method::GET, &uri)
            .header("range", range)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.body.as_ref(), expected, "{range}");
        assert_eq!(r.header("content-range"), Some(content_range), "{range}");
        assert_eq!(
            r.header("content-length"),
            Some(expected.len().to_string().as_str()),
            "{range}"
        );
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    }
    for range in [
        "bytes=100-",
        "bytes=100-200",
        "bytes=5-2",
        "bytes=x",
        "lines=1-2",
    ] {
        let r = h
            .user(Method::GET, &uri)
            .header("range", range)
            .send()
            .await;
        assert_eq!(
            r.status,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{range}: {}",
            r.text()
        );
    }
    let r = h
        .user(Method::GET, &uri)
        .header("range", "bytes=100-")
        .send()
        .await;
    assert_eq!(r.header("content-range"), Some("bytes */100"));
}

#[tokio::test]
async fn a_large_blob_streams_back_intact() {
    let h = Harness::new();
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let location = h.start_upload("app").await;
    for (i, chunk) in data.chunks(1024 * 1024).enumerate() {
        let start = i * 1024 * 1024;
        h.user(Method::PATCH, &location)
            .header(
                "content-range",
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .header("content-length", chunk.len().to_string())
            .body(chunk.to_vec())
            .send()
            .await
            .assert_status(StatusCode::ACCEPTED);
    }
    let d = sha256(&data);
    h.user(Method::PUT, format!("{location}?digest={d}"))
        .send()
        .await
        .assert_status(StatusCode::CREATED);
    let r = h
        .user(Method::GET, format!("/v2/app/blobs/{d}"))
        .send()
        .await;
    assert_eq!(r.body.len(), data.len());
    assert_eq!(sha256(&r.body), d);
}

#[tokio::test]
async fn unknown_and_malformed_blob_digests() {
    let h = Harness::new();
    h.push_blob("app", b"x").await;
    let unknown = sha256(b"never pushed");
    let r = h
        .user(Method::GET, format!("/v2/app/blobs/{unknown}"))
        .send()
        .await;
    r.assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    let r = h
        .user(Method::HEAD, format!("/v2/app/blobs/{unknown}"))
        .send()
        .await;
    r.assert_status(StatusCode::NOT_FOUND);
    for bad in ["sha256:zz", "sha256:", "nohash", "sha256:ABCDEF"] {
        let r = h
            .user(Method::GET, format!("/v2/app/blobs/{bad}"))
            .send()
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    }
}
