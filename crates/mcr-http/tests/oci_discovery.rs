//! Content discovery: tag lists and the catalog with `n`/`last`
//! pagination and `Link`, and referrers with the `artifactType` filter.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;
use support::*;

#[tokio::test]
async fn tag_lists_are_sorted_and_paginated_with_link() {
    let h = Harness::new();
    let image = h.push_seeded_image("app", "c", "same").await;
    for tag in ["e", "a", "d", "b"] {
        h.put_manifest("app", tag, OCI_MANIFEST, &image.raw)
            .await
            .assert_status(StatusCode::CREATED);
    }
    let r = h.user(Method::GET, "/v2/app/tags/list").send().await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"name": "app", "tags": ["a", "b", "c", "d", "e"]})
    );
    assert!(r.header("link").is_none());

    let r = h.user(Method::GET, "/v2/app/tags/list?n=2").send().await;
    assert_eq!(r.json(), json!({"name": "app", "tags": ["a", "b"]}));
    assert_eq!(
        r.header("link"),
        Some(r#"</v2/app/tags/list?n=2&last=b>; rel="next""#)
    );
    let next = next_link(&r).expect("a next page");
    let r = h.user(Method::GET, &next).send().await;
    assert_eq!(r.json()["tags"], json!(["c", "d"]));
    let next = next_link(&r).expect("a third page");
    let r = h.user(Method::GET, &next).send().await;
    assert_eq!(r.json()["tags"], json!(["e"]));
    assert!(r.header("link").is_none(), "no Link on the last page");

    // A page that ends exactly at the end has no Link either.
    let r = h.user(Method::GET, "/v2/app/tags/list?n=5").send().await;
    assert_eq!(r.json()["tags"].as_array().map(Vec::len), Some(5));
    assert!(r.header("link").is_none());
    let r = h.user(Method::GET, "/v2/app/tags/list?last=b").send().await;
    assert_eq!(r.json()["tags"], json!(["c", "d", "e"]));
    let r = h
        .user(Method::GET, "/v2/app/tags/list?n=2&last=e")
        .send()
        .await;
    assert_eq!(r.json()["tags"], json!([]));
    assert!(r.header("link").is_none());
}

#[tokio::test]
async fn tag_lists_of_unknown_and_tagless_repositories() {
    let h = Harness::new();
    let r = h.user(Method::GET, "/v2/nowhere/tags/list").send().await;
    r.assert_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    h.push_blob("blobs/only", b"x").await;
    let r = h.user(Method::GET, "/v2/blobs/only/tags/list").send().await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json(), json!({"name": "blobs/only", "tags": []}));
    for bad in ["n=x", "n=-1"] {
        let r = h
            .user(Method::GET, format!("/v2/blobs/only/tags/list?{bad}"))
            .send()
            .await;
        r.assert_status(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn the_catalog_is_sorted_and_paginated_with_link() {
    let h = Harness::new();
    let r = h.user(Method::GET, "/v2/_catalog").send().await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json(), json!({"repositories": []}));
    for repo in ["zed", "mid", "team/app", "app", "team/base"] {
        h.push_blob(repo, repo.as_bytes()).await;
    }
    let r = h.user(Method::GET, "/v2/_catalog").send().await;
    assert_eq!(
        r.json(),
        json!({"repositories": ["app", "mid", "team/app", "team/base", "zed"]})
    );
    assert!(r.header("link").is_none());

    let r = h.user(Method::GET, "/v2/_catalog?n=2").send().await;
    assert_eq!(r.json(), json!({"repositories": ["app", "mid"]}));
    assert_eq!(
        r.header("link"),
        Some(r#"</v2/_catalog?n=2&last=mid>; rel="next""#)
    );
    let mut seen = vec!["app".to_string(), "mid".to_string()];
    let mut next = next_link(&r);
    while let Some(uri) = next {
        let r = h.user(Method::GET, &uri).send().await;
        r.assert_status(StatusCode::OK);
        let page = strings(&r.json()["repositories"]);
        assert!(!page.is_empty() && page.len() <= 2, "{page:?}");
        seen.extend(page);
        next = next_link(&r);
    }
    assert_eq!(seen, ["app", "mid", "team/app", "team/base", "zed"]);
    let r = h
        .user(Method::GET, "/v2/_catalog?last=team/app")
        .send()
        .await;
    assert_eq!(r.json()["repositories"], json!(["team/base", "zed"]));
    let r = h.user(Method::GET, "/v2/_catalog?n=x").send().await;
    r.assert_status(StatusCode::BAD_REQUEST);
}

/// Pushes an artifact manifest referring to `subject` in `repo`; returns
/// its digest and bytes.
async fn push_referrer(
    h: &Harness,
    repo: &str,
    subject: &Image,
    artifact_type: Option<&str>,
    annotations: serde_json::Value,
) -> (String, Vec<u8>) {
    h.push_blob(repo, b"{}").await;
    let mut extra = json!({
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": subject.raw.len()},
        "annotations": annotations,
    });
    if let Some(t) = artifact_type {
        extra["artifactType"] = json!(t);
    }
    let raw = to_bytes(&image_manifest(
        descriptor("application/vnd.oci.empty.v1+json", b"{}"),
        &[],
        extra,
    ));
    let d = sha256(&raw);
    let r = h.put_manifest(repo, &d, OCI_MANIFEST, &raw).await;
    r.assert_status(StatusCode::CREATED);
    assert_eq!(r.header("oci-subject"), Some(subject.digest.as_str()));
    (d, raw)
}

#[tokio::test]
async fn referrers_list_the_manifests_naming_a_subject() {
    let h = Harness::new();
    let subject = h.push_seeded_image("app", "v1", "s").await;
    let (sig, sig_raw) = push_referrer(
        &h,
        "app",
        &subject,
        Some("application/vnd.example.sig"),
        json!({"org.example.signer": "alice"}),
    )
    .await;
    let (sbom, _) = push_referrer(
        &h,
        "app",
        &subject,
        Some("application/vnd.example.sbom"),
        json!({}),
    )
    .await;
    // No artifactType: the config's media type stands in.
    let (plain, _) = push_referrer(&h, "app", &subject, None, json!({})).await;
    // A referrer in another repository is not listed here.
    h.push_seeded_image("other", "v1", "s").await;
    push_referrer(
        &h,
        "other",
        &subject,
        Some("application/vnd.example.sig"),
        json!({}),
    )
    .await;

    let r = h
        .user(Method::GET, format!("/v2/app/referrers/{}", subject.digest))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    assert!(r.header("oci-filters-applied").is_none());
    let j = r.json();
    assert_eq!(j["schemaVersion"], 2);
    assert_eq!(j["mediaType"], OCI_INDEX);
    let manifests = j["manifests"].as_array().expect("manifests").clone();
    assert_eq!(manifests.len(), 3);
    let by_digest = |d: &str| {
        manifests
            .iter()
            .find(|m| m["digest"] == d)
            .unwrap_or_else(|| panic!("{d} listed"))
            .clone()
    };
    let s = by_digest(&sig);
    assert_eq!(s["mediaType"], OCI_MANIFEST);
    assert_eq!(s["size"], sig_raw.len());
    assert_eq!(s["artifactType"], "application/vnd.example.sig");
    assert_eq!(s["annotations"], json!({"org.example.signer": "alice"}));
    assert_eq!(
        by_digest(&sbom)["artifactType"],
        "application/vnd.example.sbom"
    );
    assert_eq!(
        by_digest(&plain)["artifactType"],
        "application/vnd.oci.empty.v1+json"
    );

    let r = h
        .user(
            Method::GET,
            format!(
                "/v2/app/referrers/{}?artifactType=application%2Fvnd.example.sig",
                subject.digest
            ),
        )
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    let only = r.json()["manifests"].clone();
    assert_eq!(only.as_array().map(Vec::len), Some(1));
    assert_eq!(only[0]["digest"], sig);

    let r = h
        .user(
            Method::GET,
            format!(
                "/v2/app/referrers/{}?artifactType=application/vnd.example.none",
                subject.digest
            ),
        )
        .send()
        .await;
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(r.json()["manifests"], json!([]));

    // Deleting a referrer takes it off the list.
    h.user(Method::DELETE, format!("/v2/app/manifests/{sbom}"))
        .send()
        .await
        .assert_status(StatusCode::ACCEPTED);
    let r = h
        .user(Method::GET, format!("/v2/app/referrers/{}", subject.digest))
        .send()
        .await;
    assert_eq!(r.json()["manifests"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn an_unknown_subject_has_no_referrers() {
    let h = Harness::new();
    h.push_seeded_image("app", "v1", "a").await;
    for uri in [
        format!("/v2/app/referrers/{}", sha256(b"unknown")),
        format!("/v2/nowhere/referrers/{}", sha256(b"unknown")),
    ] {
        let r = h.user(Method::GET, &uri).send().await;
        r.assert_status(StatusCode::OK);
        assert_eq!(r.header("content-type"), Some(OCI_INDEX));
        assert_eq!(
            r.json(),
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
        );
    }
    let r = h
        .user(Method::GET, "/v2/app/referrers/sha256:zz")
        .send()
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
}
