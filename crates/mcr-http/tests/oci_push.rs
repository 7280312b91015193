//! Pushing: upload sessions (monolithic, two-step, chunked, streamed),
//! their status and cancellation, cross-repository mounts, and manifests
//! with every error the distribution spec defines for a push.

mod support;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use bytes::Bytes;
use mcr_core::audit::EventType;
use mcr_core::policy::{Effect, RepoPattern, RuleDraft};
use mcr_core::principal::Action;
use mcr_core::testing::admin;
use serde_json::json;
use support::*;

/// The id at the end of an upload location.
fn upload_id(location: &str) -> &str {
    location.rsplit('/').next().expect("an id")
}

fn assert_upload_location(location: &str, repo: &str) {
    let id = location
        .strip_prefix(&format!("/v2/{repo}/blobs/uploads/"))
        .unwrap_or_else(|| panic!("{location} is no upload of {repo}"));
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
}

// ---- uploads ---------------------------------------------------------

#[tokio::test]
async fn a_post_starts_a_session_whose_status_can_be_read() {
    let h = Harness::new();
    let r = h
        .user(Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    let location = r.header("location").expect("Location").to_string();
    assert_upload_location(&location, "team/app");
    assert_eq!(r.header("docker-upload-uuid"), Some(upload_id(&location)));
    assert_eq!(r.header("range"), Some("0-0"));
    assert_eq!(r.header("content-length"), Some("0"));
    assert!(r.body.is_empty());

    let r = h.user(Method::GET, &location).send().await;
    r.assert_status(StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), Some("0-0"));
    assert_eq!(r.header("location"), Some(location.as_str()));
    assert_eq!(r.header("docker-upload-uuid"), Some(upload_id(&location)));
    assert!(r.body.is_empty());
    // Without the trailing slash too.
    let r = h
        .user(Method::POST, "/v2/team/app/blobs/uploads")
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    assert_ne!(
        r.header("location"),
        Some(location.as_str()),
        "a new session"
    );
    assert_eq!(h.audit(EventType::UploadStarted).await.len(), 2);
}

#[tokio::test]
async fn a_monolithic_post_stores_the_blob() {
    let h = Harness::new();
    let data = b"monolithic blob";
    let d = sha256(data);
    let r = h
        .user(
            Method::POST,
            format!("/v2/team/app/blobs/uploads/?digest={d}"),
        )
        .header("content-type", "application/octet-stream")
        .header("content-length", data.len().to_string())
        .body(data.to_vec())
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    let location = format!("/v2/team/app/blobs/{d}");
    assert_eq!(r.header("location"), Some(location.as_str()));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    let r = h.user(Method::GET, &location).send().await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.body.as_ref(), data);
    let uploaded = h.audit(EventType::BlobUploaded).await;
    assert_eq!(uploaded.len(), 1);
    assert_eq!(
        uploaded[0].event.digest.as_ref().map(|d| d.to_string()),
        Some(d)
    );
    assert_eq!(h.catalog().await, ["team/app"]);
}

#[tokio::test]
async fn a_post_then_a_put_with_the_whole_body() {
    let h = Harness::new();
    let location = h.start_upload("app").await;
    let data = b"two-step blob";
    let d = sha256(data);
    let r = h
        .user(Method::PUT, format!("{location}?digest={d}"))
        .header("content-length", data.len().to_string())
        .body(data.to_vec())
        .send()
        .await;
    r.assert_blob_created("app", &d);
    let r = h
        .user(Method::HEAD, format!("/v2/app/blobs/{d}"))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.header("content-length"), Some("13"));
    // The finished session is gone.
    let r = h.user(Method::GET, &location).send().await;
    r.assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn three_chunks_with_content_range_then_a_put_without_body() {
    let h = Harness::new();
    let data: Vec<u8> = (0..25u8).collect();
    let location = h.start_upload("app").await;
    for (start, end) in [(0, 10), (10, 20), (20, 25)] {
        let r = h
            .user(Method::PATCH, &location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{}", end - 1))
            .header("content-length", (end - start).to_string())
            .body(data[start..end].to_vec())
            .send()
            .await;
        r.assert_status(StatusCode::ACCEPTED);
        assert_eq!(r.header("range"), Some(format!("0-{}", end - 1).as_str()));
        assert_eq!(r.header("location"), Some(location.as_str()));
        assert_eq!(r.header("docker-upload-uuid"), Some(upload_id(&location)));
        assert_eq!(h.upload_range(&location).await, format!("0-{}", end - 1));
    }
    let d = sha256(&data);
    let r = h
        .user(Method::PUT, format!("{location}?digest={d}"))
        .header("content-length", "0")
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    let r = h
        .user(Method::GET, format!("/v2/app/blobs/{d}"))
        .send()
        .await;
    assert_eq!(r.body.as_ref(), data.as_slice());
}

#[tokio::test]
async fn a_chunk_that_leaves_a_gap_is_a_416_and_the_upload_is_unchanged() {
    let h = Harness::new();
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let location = h.start_upload("app").await;
    let patch = |start: usize, end: usize| {
        h.user(Method::PATCH, &location)
            .header("content-range", format!("{start}-{}", end - 1))
            .header("content-length", (end - start).to_string())
            .body(data[start..end].to_vec())
            .send()
    };
    patch(0, 1000).await.assert_status(StatusCode::ACCEPTED);
    for (start, end) in [(2000, 3000), (0, 1000), (999, 1500)] {
        let r = patch(start, end).await;
        r.assert_error(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID");
        assert_eq!(r.header("range"), Some("0-999"), "the current end");
        assert_eq!(r.header("location"), Some(location.as_str()));
        assert_eq!(h.upload_range(&location).await, "0-999");
    }
    patch(1000, 2000).await.assert_status(StatusCode::ACCEPTED);
    // The last chunk rides on the closing PUT.
    let d = sha256(&data);
    let r = h
        .user(Method::PUT, format!("{location}?digest={d}"))
        .header("content-range", "2000-2999")
        .header("content-length", "1000")
        .body(data[2000..].to_vec())
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    let r = h
        .user(Method::GET, format!("/v2/app/blobs/{d}"))
        .send()
        .await;
    assert_eq!(r.body.as_ref(), data.as_slice());
}

#[tokio::test]
async fn a_content_range_that_disagrees_with_its_body_is_refused() {
    let h = Harness::new();
    let location = h.start_upload("app").await;
    // The last covers 2^64 bytes, one more than a length can say.
    for (range, length) in [
        ("0-9", "5"),
        ("5-2", "4"),
        ("bytes", "5"),
        ("0-18446744073709551615", "0"),
    ] {
        let r = h
            .user(Method::PATCH, &location)
            .header("content-range", range)
            .header("content-length", length)
            .body(vec![b'x'; length.parse().expect("a number")])
            .send()
            .await;
        r.assert_error(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID");
    }
    assert_eq!(h.upload_range(&location).await, "0-0");
}

#[tokio::test]
async fn streamed_patches_without_content_range_append() {
    let h = Harness::new();
    let location = h.start_upload("app").await;
    let r = h.user(Method::PATCH, &location).body("abc").send().await;
    r.assert_status(StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), Some("0-2"));
    // A body in several chunks, of unknown length.
    let chunks: Vec<Result<Bytes, std::io::Error>> = ["de", "f", "ghij"]
        .into_iter()
        .map(|c| Ok(Bytes::from(c)))
        .collect();
    let r = h
        .user(Method::PATCH, &location)
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), Some("0-9"));
    let d = sha256(b"abcdefghij");
    let r = h
        .user(Method::PUT, format!("{location}?digest={d}"))
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    let r = h
        .user(Method::GET, format!("/v2/app/blobs/{d}"))
        .send()
        .await;
    assert_eq!(r.body.as_ref(), b"abcdefghij");
}

#[tokio::test]
async fn a_cancelled_upload_is_gone() {
    let h = Harness::new();
    let location = h.start_upload("app").await;
    h.user(Method::PATCH, &location)
        .body("partial")
        .send()
        .await
        .assert_status(StatusCode::ACCEPTED);
    let r = h.user(Method::DELETE, &location).send().await;
    r.assert_status(StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    let d = sha256(b"partial");
    for (method, uri) in [
        (Method::GET, location.clone()),
        (Method::PATCH, location.clone()),
        (Method::PUT, format!("{location}?digest={d}")),
        (Method::DELETE, location.clone()),
    ] {
        let r = h.user(method, uri).body("more").send().await;
        r.assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    }
    assert_eq!(h.blob_status("app", &d).await, StatusCode::NOT_FOUND);
    assert_eq!(h.audit(EventType::UploadCancelled).await.len(), 1);
}

#[tokio::test]
async fn finishing_with_a_wrong_or_missing_digest_is_refused() {
    let h = Harness::new();
    let location = h.start_upload("app").await;
    h.user(Method::PATCH, &location)
        .body("content")
        .send()
        .await
        .assert_status(StatusCode::ACCEPTED);
    let wrong = sha256(b"something else");
    let r = h
        .user(Method::PUT, format!("{location}?digest={wrong}"))
        .send()
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    assert_eq!(h.blob_status("app", &wrong).await, StatusCode::NOT_FOUND);
    assert_eq!(
        h.blob_status("app", &sha256(b"content")).await,
        StatusCode::NOT_FOUND
    );
    // The refused PUT either kept the session as it was or ended it;
    // it never leaves one that fails differently.
    let r = h.user(Method::GET, &location).send().await;
    match r.status {
        StatusCode::NO_CONTENT => assert_eq!(r.header("range"), Some("0-6")),
        _ => r.assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
    }
    let location = h.start_upload("app").await;
    h.user(Method::PATCH, &location)
        .body("content")
        .send()
        .await
        .assert_status(StatusCode::ACCEPTED);
    for uri in [
        location.clone(),
        format!("{location}?digest="),
        format!("{location}?digest=sha256:zz"),
        format!("{location}?digest=md5:{}", "a".repeat(32)),
    ] {
        let r = h.user(Method::PUT, &uri).send().await;
        r.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    }
    // A PUT refused for its parameters leaves the session usable.
    assert_eq!(h.upload_range(&location).await, "0-6");
    let d = sha256(b"content");
    h.user(Method::PUT, format!("{location}?digest={d}"))
        .send()
        .await
        .assert_status(StatusCode::CREATED);
    assert_eq!(h.blob_status("app", &d).await, StatusCode::OK);
}

#[tokio::test]
async fn a_monolithic_upload_with_the_wrong_digest_stores_nothing() {
    let h = Harness::new();
    let wrong = sha256(b"what the client claims");
    let r = h
        .user(
            Method::POST,
            format!("/v2/fresh/blobs/uploads/?digest={wrong}"),
        )
        .body("what the client sends")
        .send()
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    assert_eq!(h.blob_status("fresh", &wrong).await, StatusCode::NOT_FOUND);
    assert_eq!(
        h.blob_status("fresh", &sha256(b"what the client sends"))
            .await,
        StatusCode::NOT_FOUND
    );
    assert!(h.audit(EventType::BlobUploaded).await.is_empty());
    assert_eq!(
        h.catalog().await,
        Vec::<String>::new(),
        "no repository left behind"
    );
    assert_eq!(h.tags("fresh").await, None);
}

#[tokio::test]
async fn an_upload_belongs_to_its_repository() {
    let h = Harness::new();
    let location = h.start_upload("app").await;
    h.user(Method::PATCH, &location)
        .body("mine")
        .send()
        .await
        .assert_status(StatusCode::ACCEPTED);
    let elsewhere = location.replace("/v2/app/", "/v2/other/");
    let d = sha256(b"mine");
    for (method, uri) in [
        (Method::GET, elsewhere.clone()),
        (Method::PATCH, elsewhere.clone()),
        (Method::PUT, format!("{elsewhere}?digest={d}")),
        (Method::DELETE, elsewhere.clone()),
    ] {
        let r = h.user(method, uri).body("theirs").send().await;
        r.assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    }
    assert_eq!(h.upload_range(&location).await, "0-3", "untouched");
    for uri in [
        "/v2/app/blobs/uploads/not-an-upload-id",
        "/v2/app/blobs/uploads/0123456789abcdef0123456789abcdef",
    ] {
        let r = h.user(Method::GET, uri).send().await;
        r.assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
    }
}

/// Review r16, D5: an unknown upload's message names the problem (a
/// malformed id, or a session gone) and what to do, in one sentence.
#[tokio::test]
async fn an_unknown_upload_is_explained() {
    let h = Harness::new();
    let d = sha256(b"x");
    for method in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
        let r = h
            .user(
                method.clone(),
                format!("/v2/app/blobs/uploads/x?digest={d}"),
            )
            .send()
            .await;
        r.assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
        assert_eq!(
            r.json()["errors"][0]["message"],
            "\"x\" is not an upload id (32 lowercase hex characters, from the Location \
             of the POST that started the upload); start an upload with POST \
             /v2/<name>/blobs/uploads/",
            "{method}"
        );
    }
    let gone = "0123456789abcdef0123456789abcdef";
    let r = h
        .user(Method::GET, format!("/v2/app/blobs/uploads/{gone}"))
        .send()
        .await;
    assert_eq!(
        r.json()["errors"][0]["message"],
        format!(
            "upload {gone} not known (finished, cancelled or expired); start an upload \
             with POST /v2/<name>/blobs/uploads/"
        )
    );
}

#[tokio::test]
async fn sha512_blobs_are_accepted() {
    let h = Harness::new();
    let data = b"hashed with sha512";
    let d = sha512(data);
    let r = h
        .user(Method::POST, format!("/v2/app/blobs/uploads/?digest={d}"))
        .body(data.to_vec())
        .send()
        .await;
    r.assert_blob_created("app", &d);
    let r = h
        .user(Method::GET, format!("/v2/app/blobs/{d}"))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.body.as_ref(), data);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));

    // Through a session too.
    let other = b"also sha512, in a session";
    let od = sha512(other);
    let location = h.start_upload("app").await;
    h.user(Method::PATCH, &location)
        .body(other.to_vec())
        .send()
        .await
        .assert_status(StatusCode::ACCEPTED);
    let r = h
        .user(Method::PUT, format!("{location}?digest={od}"))
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    let r = h
        .user(Method::HEAD, format!("/v2/app/blobs/{od}"))
        .send()
        .await;
    assert_eq!(
        r.header("content-length"),
        Some(other.len().to_string().as_str())
    );
}

#[tokio::test]
async fn the_empty_blob_is_a_blob() {
    let h = Harness::new();
    let empty = sha256(b"");
    assert_eq!(
        empty,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    h.push_blob("a", b"").await;
    let r = h
        .user(Method::HEAD, format!("/v2/a/blobs/{empty}"))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.header("content-length"), Some("0"));
    let r = h
        .user(Method::GET, format!("/v2/a/blobs/{empty}"))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert!(r.body.is_empty());
    // A session closed at once, with no byte sent.
    let location = h.start_upload("b").await;
    let r = h
        .user(Method::PUT, format!("{location}?digest={empty}"))
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    assert_eq!(h.blob_status("b", &empty).await, StatusCode::OK);
}

#[tokio::test]
async fn a_blob_is_visible_at_once_in_its_repository_only() {
    let h = Harness::new();
    let data: Vec<u8> = (0..100u8).collect();
    let d = h.push_blob("a", &data).await;
    h.push_blob("b", b"something else").await;
    let r = h
        .user(Method::HEAD, format!("/v2/a/blobs/{d}"))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.header("content-length"), Some("100"));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    for repo in ["b", "nowhere"] {
        let r = h
            .user(Method::GET, format!("/v2/{repo}/blobs/{d}"))
            .send()
            .await;
        r.assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
        let r = h
            .user(Method::HEAD, format!("/v2/{repo}/blobs/{d}"))
            .send()
            .await;
        r.assert_status(StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn bodies_over_the_blob_size_limit_are_refused_and_leave_nothing() {
    let h = Harness::with(Setup {
        max_blob_size: 16,
        ..Setup::default()
    });
    let big = vec![b'x'; 17];
    let d = sha256(&big);
    // Announced by Content-Length, or found out while streaming.
    for length in [Some("17"), None] {
        let mut call = h
            .user(Method::POST, format!("/v2/app/blobs/uploads/?digest={d}"))
            .body(big.clone());
        if let Some(l) = length {
            call = call.header("content-length", l);
        }
        call.send()
            .await
            .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    }
    assert_eq!(h.blob_status("app", &d).await, StatusCode::NOT_FOUND);

    let location = h.start_upload("app").await;
    h.user(Method::PATCH, &location)
        .body("1234")
        .send()
        .await
        .assert_status(StatusCode::ACCEPTED);
    // A streamed body that goes over the limit part-way through.
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"5678")),
        Ok(Bytes::from_static(b"9abcdefghijklm")),
    ];
    let r = h
        .user(Method::PATCH, &location)
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .send()
        .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    assert_eq!(
        h.upload_range(&location).await,
        "0-3",
        "the chunk left nothing"
    );
}

#[tokio::test]
async fn a_chunked_upload_may_not_grow_past_the_blob_size_limit() {
    // `RegistryConfig::max_blob_size` is "the largest blob an upload may
    // grow to": chunks each under the limit must not add up past it.
    let h = Harness::with(Setup {
        max_blob_size: 16,
        ..Setup::default()
    });
    let location = h.start_upload("app").await;
    h.user(Method::PATCH, &location)
        .body("0123456789")
        .send()
        .await
        .assert_status(StatusCode::ACCEPTED);
    let r = h
        .user(Method::PATCH, &location)
        .header("content-range", "10-19")
        .header("content-length", "10")
        .body("abcdefghij")
        .send()
        .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    assert_eq!(h.upload_range(&location).await, "0-9");
    let d = sha256(b"0123456789abcdefghij");
    let r = h
        .user(Method::PUT, format!("{location}?digest={d}"))
        .body("abcdefghij")
        .send()
        .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    assert_eq!(h.blob_status("app", &d).await, StatusCode::NOT_FOUND);
}

// ---- mounts ----------------------------------------------------------

#[tokio::test]
async fn a_mount_from_a_repository_the_caller_may_pull_from() {
    let h = Harness::new();
    let d = h.push_blob("src", b"shared layer").await;
    let r = h
        .user(
            Method::POST,
            format!("/v2/team/dst/blobs/uploads/?mount={d}&from=src"),
        )
        .send()
        .await;
    r.assert_blob_created("team/dst", &d);
    let r = h
        .user(Method::GET, format!("/v2/team/dst/blobs/{d}"))
        .send()
        .await;
    assert_eq!(r.body.as_ref(), b"shared layer");
    assert_eq!(h.blob_status("src", &d).await, StatusCode::OK);
    let mounted = h.audit(EventType::BlobMounted).await;
    assert_eq!(mounted.len(), 1);
    assert_eq!(
        mounted[0].event.details.get("from").map(String::as_str),
        Some("src")
    );
    assert!(h.catalog().await.contains(&"team/dst".to_string()));
}

#[tokio::test]
async fn a_mount_from_a_repository_without_the_blob_starts_a_session() {
    let h = Harness::new();
    h.push_blob("src", b"something").await;
    let missing = b"nowhere yet";
    let md = sha256(missing);
    let r = h
        .user(
            Method::POST,
            format!("/v2/dst/blobs/uploads/?mount={md}&from=src"),
        )
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    let location = r.header("location").expect("Location").to_string();
    assert_upload_location(&location, "dst");
    assert_eq!(r.header("docker-upload-uuid"), Some(upload_id(&location)));
    assert_eq!(r.header("range"), Some("0-0"));
    assert_eq!(h.blob_status("dst", &md).await, StatusCode::NOT_FOUND);
    // An ordinary session: the client uploads instead.
    let r = h
        .user(Method::PUT, format!("{location}?digest={md}"))
        .body(missing.to_vec())
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    assert_eq!(h.blob_status("dst", &md).await, StatusCode::OK);
    assert!(h.audit(EventType::BlobMounted).await.is_empty());
}

/// Issue 16, case 5: a mount without `from` takes the blob from a
/// repository the caller may pull (here `src`); a blob held nowhere starts
/// an ordinary session.
#[tokio::test]
async fn a_mount_without_from_takes_the_blob_from_where_the_caller_may_pull() {
    let h = Harness::new();
    let elsewhere = h.push_blob("src", b"in src only").await;
    let r = h
        .user(
            Method::POST,
            format!("/v2/dst/blobs/uploads/?mount={elsewhere}"),
        )
        .send()
        .await;
    r.assert_blob_created("dst", &elsewhere);
    assert_eq!(h.blob_status("dst", &elsewhere).await, StatusCode::OK);

    let nowhere = sha256(b"held nowhere");
    let r = h
        .user(
            Method::POST,
            format!("/v2/dst/blobs/uploads/?mount={nowhere}"),
        )
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    assert_upload_location(r.header("location").expect("Location"), "dst");
    assert_eq!(h.blob_status("dst", &nowhere).await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_mount_from_a_repository_the_caller_may_not_pull_starts_a_session() {
    let h = Harness::new();
    let data = b"secret layer";
    let d = sha256(data);
    let r = h
        .as_(
            "admin",
            Method::POST,
            format!("/v2/secret/blobs/uploads/?digest={d}"),
        )
        .body(data.to_vec())
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    h.registry
        .create_rule(
            &admin(),
            RuleDraft {
                priority: 1,
                description: "user may not read secret".into(),
                effect: Effect::Deny,
                actions: vec![Action::Pull],
                roles: Vec::new(),
                account_types: Vec::new(),
                subject: Some("user".into()),
                repositories: vec![RepoPattern::new("secret").expect("a pattern")],
                tags: vec![],
                enabled: true,
            },
        )
        .await
        .expect("the rule is stored");
    let r = h
        .user(Method::GET, format!("/v2/secret/blobs/{d}"))
        .send()
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "DENIED");

    let r = h
        .user(
            Method::POST,
            format!("/v2/mine/blobs/uploads/?mount={d}&from=secret"),
        )
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    assert_upload_location(r.header("location").expect("Location"), "mine");
    assert_eq!(h.blob_status("mine", &d).await, StatusCode::NOT_FOUND);
    assert!(h.audit(EventType::BlobMounted).await.is_empty());
}

#[tokio::test]
async fn a_mount_with_a_bad_digest_or_source_is_refused() {
    let h = Harness::new();
    let d = h.push_blob("src", b"x").await;
    let r = h
        .user(
            Method::POST,
            "/v2/dst/blobs/uploads/?mount=sha256:zz&from=src",
        )
        .send()
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    let r = h
        .user(
            Method::POST,
            format!("/v2/dst/blobs/uploads/?mount={d}&from=Bad"),
        )
        .send()
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "NAME_INVALID");
    assert_eq!(h.catalog().await, ["src"]);
}

// ---- manifests -------------------------------------------------------

#[tokio::test]
async fn a_manifest_put_by_tag() {
    let h = Harness::new();
    let config = h.push_blob("team/app", b"{}").await;
    let layer = h.push_blob("team/app", b"layer").await;
    let raw = to_bytes(&image_manifest(
        descriptor(OCI_CONFIG, b"{}"),
        &[descriptor(OCI_LAYER, b"layer")],
        json!({}),
    ));
    let d = sha256(&raw);
    let r = h.put_manifest("team/app", "v1", OCI_MANIFEST, &raw).await;
    r.assert_status(StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/team/app/manifests/{d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert!(r.header("oci-subject").is_none());
    assert!(r.body.is_empty());
    assert_eq!(h.tags("team/app").await, Some(vec!["v1".to_string()]));
    let r = h
        .user(Method::GET, "/v2/team/app/manifests/v1")
        .send()
        .await;
    assert_eq!(r.body.as_ref(), raw.as_slice());
    let pushed = h.audit(EventType::ManifestPushed).await;
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        pushed[0].event.details.get("tag").map(String::as_str),
        Some("v1")
    );
    // Both blobs stay visible.
    assert_eq!(h.blob_status("team/app", &config).await, StatusCode::OK);
    assert_eq!(h.blob_status("team/app", &layer).await, StatusCode::OK);
}

#[tokio::test]
async fn a_manifest_put_by_digest_has_no_tag() {
    let h = Harness::new();
    h.push_blob("app", b"{}").await;
    let raw = to_bytes(&image_manifest(
        descriptor(OCI_CONFIG, b"{}"),
        &[],
        json!({}),
    ));
    let d = sha256(&raw);
    let r = h.put_manifest("app", &d, OCI_MANIFEST, &raw).await;
    r.assert_status(StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/app/manifests/{d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(h.tags("app").await, Some(vec![]));
    assert_eq!(h.manifest_status("app", &d).await, StatusCode::OK);
    // Pushing it again is no error.
    h.put_manifest("app", &d, OCI_MANIFEST, &raw)
        .await
        .assert_status(StatusCode::CREATED);
}

#[tokio::test]
async fn a_manifest_put_under_a_digest_it_does_not_hash_to_is_refused() {
    let h = Harness::new();
    h.push_blob("app", b"{}").await;
    let raw = to_bytes(&image_manifest(
        descriptor(OCI_CONFIG, b"{}"),
        &[],
        json!({}),
    ));
    let claimed = sha256(b"another manifest");
    let r = h.put_manifest("app", &claimed, OCI_MANIFEST, &raw).await;
    r.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    assert_eq!(
        h.manifest_status("app", &claimed).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.manifest_status("app", &sha256(&raw)).await,
        StatusCode::NOT_FOUND
    );
    let r = h
        .put_manifest("app", "sha256:baddigest", OCI_MANIFEST, &raw)
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
}

#[tokio::test]
async fn a_manifest_naming_a_missing_blob_is_refused_and_nothing_is_stored() {
    let h = Harness::new();
    let config = b"{\"c\":1}";
    h.push_blob("app", config).await;
    h.push_blob("other", b"layer elsewhere").await;
    let cases = [
        // The config is missing.
        image_manifest(descriptor(OCI_CONFIG, b"no such config"), &[], json!({})),
        // A layer is missing.
        image_manifest(
            descriptor(OCI_CONFIG, config),
            &[descriptor(OCI_LAYER, b"no such layer")],
            json!({}),
        ),
        // A layer is in another repository only.
        image_manifest(
            descriptor(OCI_CONFIG, config),
            &[descriptor(OCI_LAYER, b"layer elsewhere")],
            json!({}),
        ),
    ];
    for (i, m) in cases.iter().enumerate() {
        let raw = to_bytes(m);
        let r = h.put_manifest("app", "v1", OCI_MANIFEST, &raw).await;
        r.assert_error(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
        assert_eq!(
            h.manifest_status("app", &sha256(&raw)).await,
            StatusCode::NOT_FOUND,
            "{i}"
        );
        // In a repository that does not exist yet, none comes into being.
        let r = h.put_manifest("fresh", "v1", OCI_MANIFEST, &raw).await;
        r.assert_error(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    }
    assert_eq!(h.tags("app").await, Some(vec![]));
    assert_eq!(h.catalog().await, ["app", "other"]);
    assert!(h.audit(EventType::ManifestPushed).await.is_empty());
}

#[tokio::test]
async fn an_index_must_name_manifests_of_its_repository() {
    let h = Harness::new();
    let child = h.push_seeded_image("app", "child", "c").await;
    let missing = json!({"mediaType": OCI_MANIFEST, "digest": sha256(b"no child"), "size": 8});
    let present =
        json!({"mediaType": OCI_MANIFEST, "digest": child.digest, "size": child.raw.len()});
    let raw = to_bytes(&image_index(&[present.clone(), missing], json!({})));
    let r = h.put_manifest("app", "multi", OCI_INDEX, &raw).await;
    r.assert_error(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(
        h.manifest_status("app", "multi").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.tags("app").await, Some(vec!["child".to_string()]));
    // The child of another repository does not count.
    let raw = to_bytes(&image_index(std::slice::from_ref(&present), json!({})));
    let r = h.put_manifest("other", "multi", OCI_INDEX, &raw).await;
    r.assert_error(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN");

    let r = h.put_manifest("app", "multi", OCI_INDEX, &raw).await;
    r.assert_status(StatusCode::CREATED);
    let r = h.user(Method::GET, "/v2/app/manifests/multi").send().await;
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    assert_eq!(r.body.as_ref(), raw.as_slice());
}

#[tokio::test]
async fn malformed_manifests_are_manifest_invalid() {
    let h = Harness::new();
    h.push_blob("app", b"{}").await;
    let good = image_manifest(descriptor(OCI_CONFIG, b"{}"), &[], json!({}));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"{not json".to_vec()),
        (OCI_MANIFEST, b"[]".to_vec()),
        (OCI_MANIFEST, b"".to_vec()),
        (
            OCI_MANIFEST,
            to_bytes(
                &json!({"schemaVersion": 1, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, b"{}"), "layers": []}),
            ),
        ),
        (
            OCI_MANIFEST,
            to_bytes(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []})),
        ),
        (
            OCI_MANIFEST,
            to_bytes(
                &json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": "nope"}, "layers": []}),
            ),
        ),
        // The body says one type, the header another.
        (OCI_INDEX, to_bytes(&good)),
        (
            "application/x-not-a-manifest",
            to_bytes(
                &json!({"schemaVersion": 2, "config": descriptor(OCI_CONFIG, b"{}"), "layers": []}),
            ),
        ),
    ];
    for (content_type, raw) in cases {
        let r = h.put_manifest("app", "bad", content_type, &raw).await;
        r.assert_error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID");
    }
    assert_eq!(h.tags("app").await, Some(vec![]));
    // The good one, for contrast.
    h.put_manifest("app", "good", OCI_MANIFEST, &to_bytes(&good))
        .await
        .assert_status(StatusCode::CREATED);
}

#[tokio::test]
async fn a_manifest_over_4_mib_is_refused_and_one_of_4_mib_is_not() {
    const LIMIT: usize = 4 * 1024 * 1024;
    let h = Harness::new();
    h.push_blob("app", b"{}").await;
    let padded = |size: usize| {
        let base = to_bytes(&image_manifest(
            descriptor(OCI_CONFIG, b"{}"),
            &[],
            json!({"annotations": {"pad": ""}}),
        ));
        let raw = to_bytes(&image_manifest(
            descriptor(OCI_CONFIG, b"{}"),
            &[],
            json!({"annotations": {"pad": "x".repeat(size - base.len())}}),
        ));
        assert_eq!(raw.len(), size);
        raw
    };
    let too_big = padded(LIMIT + 1);
    for length in [Some((LIMIT + 1).to_string()), None] {
        let mut call = h
            .user(Method::PUT, "/v2/app/manifests/big")
            .header("content-type", OCI_MANIFEST)
            .body(too_big.clone());
        if let Some(l) = length {
            call = call.header("content-length", l);
        }
        call.send()
            .await
            .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    }
    assert_eq!(h.manifest_status("app", "big").await, StatusCode::NOT_FOUND);
    let just_fits = padded(LIMIT);
    let r = h.put_manifest("app", "big", OCI_MANIFEST, &just_fits).await;
    r.assert_status(StatusCode::CREATED);
    let r = h.user(Method::GET, "/v2/app/manifests/big").send().await;
    assert_eq!(r.body.len(), LIMIT);
}

#[tokio::test]
async fn names_tags_and_digests_in_a_push_are_validated() {
    let h = Harness::new();
    let image = h.push_seeded_image("app", "v1", "a").await;
    let cases = [
        ("/v2/Bad/manifests/v1".to_string(), "NAME_INVALID"),
        ("/v2/a//b/manifests/v1".to_string(), "NAME_INVALID"),
        (
            format!("/v2/{}/manifests/v1", "a".repeat(256)),
            "NAME_INVALID",
        ),
        ("/v2/app/manifests/-x".to_string(), "TAG_INVALID"),
        (
            format!("/v2/app/manifests/{}", "t".repeat(129)),
            "TAG_INVALID",
        ),
        ("/v2/app/manifests/v2?tag=bad!".to_string(), "TAG_INVALID"),
        ("/v2/app/manifests/sha256:zz".to_string(), "DIGEST_INVALID"),
    ];
    for (uri, code) in cases {
        let r = h
            .user(Method::PUT, &uri)
            .header("content-type", OCI_MANIFEST)
            .body(image.raw.clone())
            .send()
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, code);
    }
    let r = h
        .user(Method::POST, "/v2/UPPER/blobs/uploads/")
        .send()
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "NAME_INVALID");
    assert_eq!(h.catalog().await, ["app"]);
    assert_eq!(h.tags("app").await, Some(vec!["v1".to_string()]));
    // The longest tag is fine.
    let longest = "t".repeat(128);
    h.put_manifest("app", &longest, OCI_MANIFEST, &image.raw)
        .await
        .assert_status(StatusCode::CREATED);
}

#[tokio::test]
async fn a_tag_moves_to_the_manifest_pushed_last() {
    let h = Harness::new();
    let first = h.push_seeded_image("app", "latest", "one").await;
    let second = h.push_seeded_image("app", "latest", "two").await;
    assert_ne!(first.digest, second.digest);
    let r = h.user(Method::GET, "/v2/app/manifests/latest").send().await;
    assert_eq!(r.body.as_ref(), second.raw.as_slice());
    assert_eq!(
        r.header("docker-content-digest"),
        Some(second.digest.as_str())
    );
    assert_eq!(
        h.manifest_status("app", &first.digest).await,
        StatusCode::OK
    );
    assert_eq!(h.tags("app").await, Some(vec!["latest".to_string()]));
}

#[tokio::test]
async fn tag_parameters_point_more_tags_at_a_manifest() {
    let h = Harness::new();
    h.push_blob("app", b"{}").await;
    let raw = to_bytes(&image_manifest(
        descriptor(OCI_CONFIG, b"{}"),
        &[],
        json!({}),
    ));
    let d = sha256(&raw);
    let r = h
        .user(Method::PUT, format!("/v2/app/manifests/{d}?tag=b&tag=a"))
        .header("content-type", OCI_MANIFEST)
        .body(raw)
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    assert_eq!(r.header("oci-tag"), Some("b,a"));
    assert_eq!(
        h.tags("app").await,
        Some(vec!["a".to_string(), "b".to_string()])
    );
}

#[tokio::test]
async fn a_manifest_with_a_subject_answers_oci_subject() {
    let h = Harness::new();
    h.push_blob("app", b"{}").await;
    // The subject need not exist (yet).
    let subject = sha256(b"an image pushed later");
    let raw = to_bytes(&image_manifest(
        descriptor(OCI_CONFIG, b"{}"),
        &[],
        json!({
            "artifactType": "application/vnd.example.sig",
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 21},
        }),
    ));
    let r = h
        .put_manifest("app", &sha256(&raw), OCI_MANIFEST, &raw)
        .await;
    r.assert_status(StatusCode::CREATED);
    assert_eq!(r.header("oci-subject"), Some(subject.as_str()));
    let r = h
        .user(Method::GET, format!("/v2/app/referrers/{subject}"))
        .send()
        .await;
    let manifests = r.json()["manifests"].clone();
    assert_eq!(manifests[0]["digest"], sha256(&raw));
}

#[tokio::test]
async fn docker_schema2_manifests_and_manifest_lists_are_accepted() {
    let h = Harness::new();
    let config = b"{\"architecture\":\"amd64\"}";
    let layer = b"docker layer";
    h.push_blob("app", config).await;
    h.push_blob("app", layer).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER, layer)],
    });
    let raw = to_bytes(&manifest);
    let r = h.put_manifest("app", "amd64", DOCKER_MANIFEST, &raw).await;
    r.assert_status(StatusCode::CREATED);
    let r = h.user(Method::GET, "/v2/app/manifests/amd64").send().await;
    assert_eq!(r.header("content-type"), Some(DOCKER_MANIFEST));
    assert_eq!(r.body.as_ref(), raw.as_slice());

    let list = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [{
            "mediaType": DOCKER_MANIFEST,
            "digest": sha256(&raw),
            "size": raw.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    });
    let list_raw = to_bytes(&list);
    let r = h
        .put_manifest("app", "latest", DOCKER_LIST, &list_raw)
        .await;
    r.assert_status(StatusCode::CREATED);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(sha256(&list_raw).as_str())
    );
    let r = h.user(Method::GET, "/v2/app/manifests/latest").send().await;
    assert_eq!(r.header("content-type"), Some(DOCKER_LIST));
    assert_eq!(r.body.as_ref(), list_raw.as_slice());
}
