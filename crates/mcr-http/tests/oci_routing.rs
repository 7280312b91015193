//! What `/v2/` answers outside the happy path of an endpoint: a method the
//! endpoint does not have, a path that is no endpoint, and the API version
//! header on every response.

mod support;

use axum::http::{Method, StatusCode};
use support::*;

#[tokio::test]
async fn a_method_an_endpoint_does_not_have_is_405_unsupported() {
    let h = Harness::new();
    let image = h.push_seeded_image("app", "v1", "a").await;
    let session = h.start_upload("app").await;
    let d = image.layer();
    let cases = [
        (Method::POST, "/v2/app/tags/list".to_string()),
        (Method::DELETE, "/v2/app/tags/list".to_string()),
        (Method::POST, "/v2/app/manifests/v1".to_string()),
        (Method::PATCH, "/v2/app/manifests/v1".to_string()),
        (Method::PUT, format!("/v2/app/blobs/{d}")),
        (Method::POST, format!("/v2/app/blobs/{d}")),
        (Method::GET, "/v2/app/blobs/uploads/".to_string()),
        (Method::PUT, "/v2/app/blobs/uploads/".to_string()),
        (Method::POST, session.clone()),
        (Method::POST, format!("/v2/app/referrers/{}", image.digest)),
    ];
    for (method, uri) in cases {
        let r = h.user(method, &uri).send().await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    }
    // Nothing changed on the way.
    assert_eq!(h.tags("app").await, Some(vec!["v1".to_string()]));
    assert_eq!(h.upload_range(&session).await, "0-0");
}

#[tokio::test]
async fn the_fixed_endpoints_answer_a_wrong_method_in_the_oci_form_too() {
    let h = Harness::new();
    for (method, uri) in [
        (Method::POST, "/v2/_catalog"),
        (Method::DELETE, "/v2/_catalog"),
        (Method::POST, "/v2/"),
        (Method::DELETE, "/v2/"),
    ] {
        let r = h.user(method, uri).send().await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    }
}

#[tokio::test]
async fn a_path_that_is_no_endpoint_is_404() {
    let h = Harness::new();
    h.push_seeded_image("app", "v1", "a").await;
    for uri in [
        "/v2/app/whatever",
        "/v2/nothing",
        "/v2/app/blobs",
        "/v2/app/tags",
        "/v2/app/manifests",
        "/v2/app/tags/list/more",
    ] {
        let r = h.user(Method::GET, uri).send().await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}: {}", r.text());
        assert!(r.json()["errors"][0]["code"].is_string(), "{uri}");
    }
}

#[tokio::test]
async fn repository_names_may_contain_the_words_of_the_endpoints() {
    let h = Harness::new();
    for repo in [
        "x/manifests/y",
        "a/blobs/uploads",
        "tags/list/z",
        "referrers/blobs",
    ] {
        let image = h.push_seeded_image(repo, "v1", repo).await;
        let r = h
            .user(Method::GET, format!("/v2/{repo}/manifests/v1"))
            .send()
            .await;
        assert_eq!(r.body.as_ref(), image.raw.as_slice(), "{repo}");
        let r = h
            .user(Method::GET, format!("/v2/{repo}/tags/list"))
            .send()
            .await;
        assert_eq!(r.json()["name"], repo);
        assert_eq!(strings(&r.json()["tags"]), ["v1"]);
        let r = h
            .user(Method::GET, format!("/v2/{repo}/blobs/{}", image.layer()))
            .send()
            .await;
        r.assert_status(StatusCode::OK);
        let location = h.start_upload(repo).await;
        assert!(location.starts_with(&format!("/v2/{repo}/blobs/uploads/")));
        assert_eq!(h.upload_range(&location).await, "0-0");
        let r = h
            .user(
                Method::GET,
                format!("/v2/{repo}/referrers/{}", image.digest),
            )
            .send()
            .await;
        r.assert_status(StatusCode::OK);
    }
    let mut catalog = h.catalog().await;
    catalog.sort();
    assert_eq!(
        catalog,
        [
            "a/blobs/uploads",
            "referrers/blobs",
            "tags/list/z",
            "x/manifests/y"
        ]
    );
    // A percent-encoded slash is data (RFC 3986 section 2.2), never a
    // separator, and no name component may hold one.
    let r = h
        .user(Method::GET, "/v2/x%2Fmanifests%2Fy/tags/list")
        .send()
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "NAME_INVALID");
}

#[tokio::test]
async fn every_v2_response_carries_the_api_version_header() {
    // The harness checks every /v2 response but the token endpoint's.
    let h = Harness::new();
    let ok = h.user(Method::GET, "/v2/token").send().await;
    ok.assert_status(StatusCode::OK);
    let refused = h.anon(Method::GET, "/v2/token").send().await;
    refused.assert_status(StatusCode::UNAUTHORIZED);
    for r in [ok, refused] {
        assert_eq!(
            r.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "GET /v2/token answering {}",
            r.status
        );
    }
}
