//! Every OCI endpoint through the real router over SQLite and a temporary
//! blob directory: success, headers, bodies and side effects, and each
//! error code the distribution spec defines for it.

mod harness;

use axum::http::{Method, StatusCode};
use harness::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[tokio::test]
async fn version_check_challenges_and_admits() {
    let h = Harness::new();
    let r = h.send(Method::GET, "/v2/", None, &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "UNAUTHORIZED");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="http://registry.test/v2/token",service="mcr""#)
    );
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    for who in ["user", "guest", "system"] {
        let r = h
            .send(Method::GET, "/v2/", Some(&basic(who)), &[], "")
            .await;
        assert_eq!(
            (r.status, r.json()),
            (StatusCode::OK, serde_json::json!({})),
            "{who}"
        );
    }
    let r = h
        .send(Method::GET, "/v2/", Some("Basic dXNlcjp3cm9uZw=="), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "wrong password");
}

#[tokio::test]
async fn the_token_endpoint_trades_basic_credentials_for_a_bearer_token() {
    let h = Harness::new();
    let r = h
        .send(
            Method::GET,
            "/v2/token?service=mcr&scope=repository:a:pull",
            Some(&basic("user")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    let token = j["token"].as_str().unwrap().to_string();
    assert_eq!(j["access_token"], j["token"]);
    assert!(j["expires_in"].as_i64().unwrap() > 0);
    assert!(j["issued_at"].as_str().unwrap().ends_with('Z'));
    let r = h
        .send(
            Method::GET,
            "/v2/",
            Some(&format!("Bearer {token}")),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h.send(Method::GET, "/v2/token", None, &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    let r = h
        .send(Method::GET, "/v2/", Some("Bearer not-a-token"), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unreachable_identity_service_is_a_503_not_a_401() {
    let h = Harness::new();
    h.identity.set_unavailable(true);
    let r = h
        .send(Method::GET, "/v2/", Some(&basic("user")), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.header("www-authenticate").is_none());
}

#[tokio::test]
async fn repository_endpoints_challenge_with_a_scope_and_change_nothing() {
    let h = Harness::new();
    let r = h
        .send(Method::GET, "/v2/a/b/tags/list", None, &[], "")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .ends_with(r#"scope="repository:a/b:pull""#));
    let d = sha256(b"x");
    let r = h
        .send(
            Method::POST,
            &format!("/v2/a/b/blobs/uploads/?digest={d}"),
            None,
            &[],
            "x",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .ends_with(r#"scope="repository:a/b:pull,push""#));
    let r = h.as_user(Method::GET, "/v2/_catalog", "").await;
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!([]),
        "the refused push stored nothing"
    );
}

#[tokio::test]
async fn monolithic_and_two_step_uploads() {
    let h = Harness::new();
    let data = b"monolithic blob";
    let d = sha256(data);
    let r = h
        .as_user(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={d}"),
            data.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/r/blobs/{d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));

    let r = h.as_user(Method::POST, "/v2/r/blobs/uploads/", "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), Some("0-0"));
    let loc = r.header("location").unwrap().to_string();
    assert!(loc.starts_with("/v2/r/blobs/uploads/"));
    assert_eq!(r.header("docker-upload-uuid"), loc.rsplit('/').next());
    let other = b"two-step blob";
    let od = sha256(other);
    let r = h
        .as_user(Method::PUT, &format!("{loc}?digest={od}"), other.to_vec())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = h
        .as_user(Method::HEAD, &format!("/v2/r/blobs/{od}"), "")
        .await;
    assert_eq!(
        (r.status, r.header("content-length")),
        (StatusCode::OK, Some("13"))
    );
}

#[tokio::test]
async fn chunked_upload_with_a_gap_resumes_after_a_416() {
    let h = Harness::new();
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
    let loc = h
        .as_user(Method::POST, "/v2/r/blobs/uploads/", "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    let patch = |start: usize, end: usize| {
        let range = format!("{start}-{}", end - 1);
        let len = (end - start).to_string();
        let chunk = data[start..end].to_vec();
        let loc = loc.clone();
        let h = &h;
        async move {
            h.send(
                Method::PATCH,
                &loc,
                Some(&basic("user")),
                &[("content-range", &range), ("content-length", &len)],
                chunk,
            )
            .await
        }
    };
    let r = patch(0, 1000).await;
    assert_eq!(
        (r.status, r.header("range")),
        (StatusCode::ACCEPTED, Some("0-999"))
    );
    let r = patch(2000, 3000).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("range"), Some("0-999"));
    assert_eq!(r.header("location"), Some(loc.as_str()));
    let r = h.as_user(Method::GET, &loc, "").await;
    assert_eq!(
        (r.status, r.header("range")),
        (StatusCode::NO_CONTENT, Some("0-999"))
    );
    assert_eq!(patch(1000, 2000).await.status, StatusCode::ACCEPTED);
    // The last chunk can ride on the closing PUT.
    let d = sha256(&data);
    let r = h
        .send(
            Method::PUT,
            &format!("{loc}?digest={d}"),
            Some(&basic("user")),
            &[("content-range", "2000-2999"), ("content-length", "1000")],
            data[2000..].to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = h
        .as_user(Method::GET, &format!("/v2/r/blobs/{d}"), "")
        .await;
    assert_eq!(r.body.as_ref(), &data[..]);
}

#[tokio::test]
async fn streamed_patch_status_cancel_and_bad_digests() {
    let h = Harness::new();
    let loc = h
        .as_user(Method::POST, "/v2/r/blobs/uploads/", "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    let r = h.as_user(Method::PATCH, &loc, b"streamed".to_vec()).await;
    assert_eq!(
        (r.status, r.header("range")),
        (StatusCode::ACCEPTED, Some("0-7"))
    );
    let r = h
        .as_user(
            Method::PUT,
            &format!("{loc}?digest={}", sha256(b"something else")),
            "",
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let r = h.as_user(Method::PUT, &loc, "").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        "no digest"
    );
    let r = h.as_user(Method::DELETE, &loc, "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h.as_user(Method::GET, &loc, "").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );
    // A session of one repository is unknown in another.
    let loc = h
        .as_user(Method::POST, "/v2/r/blobs/uploads/", "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    let r = h
        .as_user(Method::GET, &loc.replace("/v2/r/", "/v2/other/"), "")
        .await;
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
    let r = h
        .as_user(Method::GET, "/v2/r/blobs/uploads/not-an-upload-id", "")
        .await;
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn sha512_and_empty_blobs() {
    let h = Harness::new();
    let data = b"hashed with sha512";
    let d512 = format!(
        "sha512:{}",
        hex::encode(<sha2::Sha512 as sha2::Digest>::digest(data))
    );
    let r = h
        .as_user(
            Method::POST,
            &format!("/v2/r/blobs/uploads/?digest={d512}"),
            data.to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.header("docker-content-digest")),
        (StatusCode::CREATED, Some(d512.as_str()))
    );
    let r = h
        .as_user(Method::GET, &format!("/v2/r/blobs/{d512}"), "")
        .await;
    assert_eq!(r.body.as_ref(), data);
    let empty = sha256(b"");
    h.push_blob("r", b"").await;
    let r = h
        .as_user(Method::HEAD, &format!("/v2/r/blobs/{empty}"), "")
        .await;
    assert_eq!(
        (r.status, r.header("content-length")),
        (StatusCode::OK, Some("0"))
    );
}

#[tokio::test]
async fn blobs_are_visible_at_once_in_their_repository_only_and_serve_ranges() {
    let h = Harness::new();
    let data: Vec<u8> = (0..100u8).collect();
    let d = h.push_blob("a", &data).await;
    let r = h
        .as_user(Method::HEAD, &format!("/v2/a/blobs/{d}"), "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert!(r.body.is_empty());
    let r = h
        .as_user(Method::GET, &format!("/v2/b/blobs/{d}"), "")
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
    );
    for (range, body, content_range) in [
        ("bytes=2-5", &data[2..6], "bytes 2-5/100"),
        ("bytes=90-", &data[90..], "bytes 90-99/100"),
        ("bytes=-10", &data[90..], "bytes 90-99/100"),
        ("bytes=95-500", &data[95..], "bytes 95-99/100"),
    ] {
        let r = h
            .send(
                Method::GET,
                &format!("/v2/a/blobs/{d}"),
                Some(&basic("user")),
                &[("range", range)],
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.body.as_ref(), body, "{range}");
        assert_eq!(r.header("content-range"), Some(content_range), "{range}");
    }
    for range in ["bytes=100-", "bytes=5-2", "bytes=x"] {
        let r = h
            .send(
                Method::GET,
                &format!("/v2/a/blobs/{d}"),
                Some(&basic("user")),
                &[("range", range)],
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
    }
    let r = h
        .as_user(Method::DELETE, &format!("/v2/a/blobs/{d}"), "")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        h.as_user(Method::HEAD, &format!("/v2/a/blobs/{d}"), "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = h
        .as_user(Method::DELETE, &format!("/v2/a/blobs/{d}"), "")
        .await;
    assert_eq!(r.code(), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn mounts() {
    let h = Harness::new();
    let d = h.push_blob("src", b"shared layer").await;
    let r = h
        .as_user(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/dst/blobs/{d}").as_str())
    );
    assert_eq!(
        h.as_user(Method::HEAD, &format!("/v2/dst/blobs/{d}"), "")
            .await
            .status,
        StatusCode::OK
    );
    let missing = sha256(b"nowhere");
    let r = h
        .as_user(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={missing}&from=src"),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r
        .header("location")
        .unwrap()
        .starts_with("/v2/dst/blobs/uploads/"));
    let r = h
        .as_user(
            Method::POST,
            &format!("/v2/third/blobs/uploads/?mount={missing}"),
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn manifests_push_pull_head_and_errors() {
    let h = Harness::new();
    let (digest, raw, _) = h.push_image("team/app", "v1", "a").await;
    for reference in ["v1", digest.as_str()] {
        let r = h
            .as_user(
                Method::GET,
                &format!("/v2/team/app/manifests/{reference}"),
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.as_ref(), raw.as_bytes());
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
        assert_eq!(
            r.header("content-length"),
            Some(raw.len().to_string().as_str())
        );
        let r = h
            .as_user(
                Method::HEAD,
                &format!("/v2/team/app/manifests/{reference}"),
                "",
            )
            .await;
        assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));
        assert_eq!(
            r.header("content-length"),
            Some(raw.len().to_string().as_str())
        );
    }
    let put = |reference: String, body: String| {
        let h = &h;
        async move {
            h.send(
                Method::PUT,
                &format!("/v2/team/app/manifests/{reference}"),
                Some(&basic("user")),
                &[("content-type", OCI_MANIFEST)],
                body,
            )
            .await
        }
    };
    let r = put(digest.clone(), raw.clone()).await;
    assert_eq!(
        (r.status, r.header("location")),
        (
            StatusCode::CREATED,
            Some(format!("/v2/team/app/manifests/{digest}").as_str())
        )
    );
    let r = put(sha256(b"other"), raw.clone()).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let r = put("sha256:baddigeststring".into(), raw.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let ghost = image_manifest(&sha256(b"no config"), 9, &[], "");
    let r = put("ghost".into(), ghost).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );
    assert_eq!(
        h.as_user(Method::GET, "/v2/team/app/manifests/ghost", "")
            .await
            .code(),
        "MANIFEST_UNKNOWN"
    );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1}}]}}"#,
        sha256(b"no child")
    );
    let r = h
        .send(
            Method::PUT,
            "/v2/team/app/manifests/idx",
            Some(&basic("user")),
            &[("content-type", "application/vnd.oci.image.index.v1+json")],
            index,
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );
    let r = put("bad".into(), "{not json".into()).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
    );
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(4 * 1024 * 1024));
    let r = put("big".into(), big).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID")
    );
    let r = h
        .as_user(Method::GET, "/v2/team/app/manifests/nope", "")
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
    let r = h
        .as_user(Method::GET, "/v2/team/app/manifests/.INVALID", "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h.as_user(Method::GET, "/v2/nowhere/manifests/v1", "").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );
    let r = h.as_user(Method::GET, "/v2/Bad/manifests/v1", "").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "NAME_INVALID")
    );
    let r = put("bad:tag!".into(), raw.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h
        .send(
            Method::PUT,
            "/v2/team/app/manifests/-x",
            Some(&basic("user")),
            &[],
            raw.clone(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "TAG_INVALID")
    );
}

#[tokio::test]
async fn subjects_referrers_and_tag_parameters() {
    let h = Harness::new();
    let (subject, raw, _) = h.push_image("app", "v1", "s").await;
    let empty = h.push_blob("app", b"{}").await;
    let subj = format!(
        r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{}}}"#,
        raw.len()
    );
    let sig = image_manifest(
        &empty,
        2,
        &[],
        &format!(r#","artifactType":"application/x.sig","annotations":{{"k":"v"}}{subj}"#),
    );
    let sbom = image_manifest(
        &empty,
        2,
        &[],
        &format!(r#","artifactType":"application/x.sbom"{subj}"#),
    );
    let sig_d = sha256(sig.as_bytes());
    let r = h
        .send(
            Method::PUT,
            &format!("/v2/app/manifests/{sig_d}?tag=sig&tag=signed"),
            Some(&basic("user")),
            &[("content-type", OCI_MANIFEST)],
            sig,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("oci-subject"), Some(subject.as_str()));
    assert_eq!(r.header("oci-tag"), Some("sig,signed"));
    let r = h
        .send(
            Method::PUT,
            "/v2/app/manifests/sbom",
            Some(&basic("user")),
            &[("content-type", OCI_MANIFEST)],
            sbom,
        )
        .await;
    assert_eq!(r.header("oci-subject"), Some(subject.as_str()));

    let r = h
        .as_user(Method::GET, &format!("/v2/app/referrers/{subject}"), "")
        .await;
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    assert!(r.header("oci-filters-applied").is_none());
    let j = r.json();
    assert_eq!(j["schemaVersion"], 2);
    assert_eq!(j["manifests"].as_array().unwrap().len(), 2);
    let r = h
        .as_user(
            Method::GET,
            &format!("/v2/app/referrers/{subject}?artifactType=application%2Fx.sig"),
            "",
        )
        .await;
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    let j = r.json();
    let only = j["manifests"].as_array().unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["digest"], sig_d);
    assert_eq!(only[0]["artifactType"], "application/x.sig");
    assert_eq!(only[0]["annotations"]["k"], "v");
    assert_eq!(only[0]["mediaType"], OCI_MANIFEST);
    let r = h
        .as_user(
            Method::GET,
            &format!("/v2/nowhere/referrers/{}", sha256(b"?")),
            "",
        )
        .await;
    assert_eq!(
        (r.status, r.json()["manifests"].clone()),
        (StatusCode::OK, serde_json::json!([]))
    );
}

#[tokio::test]
async fn tag_lists_and_the_catalog_paginate_with_link() {
    let h = Harness::new();
    for tag in ["c", "a", "d", "b"] {
        h.push_image("app", tag, "same").await;
    }
    let r = h.as_user(Method::GET, "/v2/app/tags/list?n=2", "").await;
    assert_eq!(
        r.json(),
        serde_json::json!({"name": "app", "tags": ["a", "b"]})
    );
    assert_eq!(
        r.header("link"),
        Some(r#"</v2/app/tags/list?n=2&last=b>; rel="next""#)
    );
    let r = h
        .as_user(Method::GET, "/v2/app/tags/list?n=2&last=b", "")
        .await;
    assert_eq!(r.json()["tags"], serde_json::json!(["c", "d"]));
    assert!(r.header("link").is_none());
    let r = h.as_user(Method::GET, "/v2/app/tags/list?last=b", "").await;
    assert_eq!(r.json()["tags"], serde_json::json!(["c", "d"]));
    let r = h.as_user(Method::GET, "/v2/nowhere/tags/list", "").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );
    h.push_blob("zed", b"z").await;
    h.push_blob("mid", b"m").await;
    let r = h.as_user(Method::GET, "/v2/_catalog?n=2", "").await;
    assert_eq!(
        r.json(),
        serde_json::json!({"repositories": ["app", "mid"]})
    );
    assert_eq!(
        r.header("link"),
        Some(r#"</v2/_catalog?n=2&last=mid>; rel="next""#)
    );
    let r = h.as_user(Method::GET, "/v2/_catalog?n=x", "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn deletes_by_tag_and_by_digest() {
    let h = Harness::new();
    let (digest, raw, _) = h.push_image("app", "v1", "a").await;
    h.send(
        Method::PUT,
        "/v2/app/manifests/latest",
        Some(&basic("user")),
        &[("content-type", OCI_MANIFEST)],
        raw,
    )
    .await;
    let r = h
        .as_user(Method::DELETE, "/v2/app/manifests/latest", "")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        h.as_user(Method::HEAD, "/v2/app/manifests/latest", "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.as_user(Method::GET, &format!("/v2/app/manifests/{digest}"), "")
            .await
            .status,
        StatusCode::OK
    );
    let r = h
        .as_user(Method::DELETE, &format!("/v2/app/manifests/{digest}"), "")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        h.as_user(Method::GET, "/v2/app/manifests/v1", "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = h
        .as_user(Method::DELETE, &format!("/v2/app/manifests/{digest}"), "")
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
}

#[tokio::test]
async fn the_policy_decides_and_a_denied_request_changes_nothing() {
    let h = Harness::new();
    h.push_image("app", "v1", "a").await;
    let guest = basic("guest");
    for (method, uri) in [
        (Method::GET, "/v2/app/manifests/v1".to_string()),
        (Method::GET, "/v2/app/tags/list".to_string()),
        (Method::GET, "/v2/_catalog".to_string()),
        (Method::POST, "/v2/app/blobs/uploads/".to_string()),
        (Method::DELETE, "/v2/app/manifests/v1".to_string()),
    ] {
        let r = h.send(method.clone(), &uri, Some(&guest), &[], "").await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::FORBIDDEN, "DENIED"),
            "{method} {uri}"
        );
    }
    assert_eq!(
        h.as_user(Method::GET, "/v2/app/manifests/v1", "")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_methods_and_paths() {
    let h = Harness::new();
    let r = h.as_user(Method::POST, "/v2/app/tags/list", "").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
    );
    let r = h.as_user(Method::GET, "/v2/app/whatever", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
