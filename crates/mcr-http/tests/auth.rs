//! Authentication at the edge: the version check, token challenges, the
//! token endpoint, refused and expired credentials, an unreachable
//! identity service, and the rule that a request without valid
//! credentials changes nothing.

mod support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use mcr_core::audit::EventType;
use mcr_core::testing::TEST_PASSWORD;
use mcr_http::HttpConfig;
use serde_json::json;
use support::*;

#[tokio::test]
async fn the_version_check_answers_an_empty_object_to_basic_and_bearer_callers() {
    let h = Harness::new();
    for who in ["admin", "user", "guest", "system"] {
        let r = h.as_(who, Method::GET, "/v2/").send().await;
        r.assert_status(StatusCode::OK);
        assert_eq!(r.json(), json!({}), "{who}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let token = h.token("user").await;
    let r = h.anon(Method::GET, "/v2/").bearer(&token).send().await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json(), json!({}));
    let r = h.anon(Method::GET, "/v2").bearer(&token).send().await;
    r.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn the_version_check_challenges_a_caller_without_credentials() {
    let h = Harness::new();
    for path in ["/v2/", "/v2"] {
        let r = h.anon(Method::GET, path).send().await;
        r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer realm="http://registry.test/v2/token",service="mcr""#),
            "{path}"
        );
    }
    // The realm follows the Host the client used...
    let r = h
        .anon(Method::GET, "/v2/")
        .header("host", "127.0.0.1:5000")
        .send()
        .await;
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="http://127.0.0.1:5000/v2/token",service="mcr""#)
    );
}

#[tokio::test]
async fn the_realm_comes_from_the_configured_url_and_scheme() {
    let h = Harness::with_config(HttpConfig {
        external_url: Some("https://registry.example.com/".into()),
        service_name: "my-registry".into(),
        ..HttpConfig::default()
    });
    let r = h.anon(Method::GET, "/v2/").send().await;
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="https://registry.example.com/v2/token",service="my-registry""#)
    );
    let h = Harness::with_config(HttpConfig {
        tls: true,
        ..HttpConfig::default()
    });
    let r = h.anon(Method::GET, "/v2/app/tags/list").send().await;
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer realm="https://registry.test/v2/token",service="mcr",scope="repository:app:pull""#
        )
    );
}

#[tokio::test]
async fn repository_endpoints_challenge_with_the_scope_they_need() {
    let h = Harness::new();
    let d = sha256(b"x");
    let upload = "/v2/team/app/blobs/uploads/0123456789abcdef0123456789abcdef";
    let cases = [
        (Method::GET, "/v2/team/app/manifests/v1".to_string(), "pull"),
        (
            Method::HEAD,
            "/v2/team/app/manifests/v1".to_string(),
            "pull",
        ),
        (Method::GET, format!("/v2/team/app/blobs/{d}"), "pull"),
        (Method::HEAD, format!("/v2/team/app/blobs/{d}"), "pull"),
        (Method::GET, "/v2/team/app/tags/list".to_string(), "pull"),
        (Method::GET, format!("/v2/team/app/referrers/{d}"), "pull"),
        (Method::GET, upload.to_string(), "pull"),
        (
            Method::PUT,
            "/v2/team/app/manifests/v1".to_string(),
            "pull,push",
        ),
        (
            Method::DELETE,
            "/v2/team/app/manifests/v1".to_string(),
            "pull,push",
        ),
        (
            Method::DELETE,
            format!("/v2/team/app/blobs/{d}"),
            "pull,push",
        ),
        (
            Method::POST,
            "/v2/team/app/blobs/uploads/".to_string(),
            "pull,push",
        ),
        (Method::PATCH, upload.to_string(), "pull,push"),
        (Method::PUT, format!("{upload}?digest={d}"), "pull,push"),
        (Method::DELETE, upload.to_string(), "pull,push"),
    ];
    for (method, uri, actions) in cases {
        let r = h.anon(method.clone(), &uri).send().await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(challenge("team/app", actions).as_str()),
            "{method} {uri}"
        );
        if method != Method::HEAD {
            assert_eq!(r.code(), "UNAUTHORIZED", "{method} {uri}");
        }
    }
    // The catalog is no repository endpoint: no scope.
    let r = h.anon(Method::GET, "/v2/_catalog").send().await;
    r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="http://registry.test/v2/token",service="mcr""#)
    );
}

#[tokio::test]
async fn wrong_credentials_are_refused_with_a_challenge_and_audited() {
    let h = Harness::new();
    let wrong = [
        basic("user", "wrong"),
        basic("nobody", TEST_PASSWORD),
        "Basic not-base64!".to_string(),
        "Basic dXNlcg==".to_string(), // "user", no colon
        "Bearer not-a-token".to_string(),
        "Digest username=user".to_string(),
    ];
    for auth in &wrong {
        let r = h
            .anon(Method::GET, "/v2/")
            .header("authorization", auth.as_str())
            .send()
            .await;
        r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer realm="http://registry.test/v2/token",service="mcr""#),
            "{auth}"
        );
        let r = h
            .anon(Method::GET, "/v2/app/manifests/v1")
            .header("authorization", auth.as_str())
            .send()
            .await;
        r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert_eq!(
            r.header("www-authenticate"),
            Some(challenge("app", "pull").as_str())
        );
    }
    let failed = h.audit(EventType::LoginFailed).await;
    let users: Vec<&str> = failed
        .iter()
        .filter_map(|e| e.event.details.get("username").map(String::as_str))
        .collect();
    assert!(
        users.contains(&"user") && users.contains(&"nobody"),
        "{users:?}"
    );
    assert!(
        failed
            .iter()
            .all(|e| !format!("{:?}", e.event.details).contains("wrong")),
        "no password in the audit log"
    );
}

#[tokio::test]
async fn the_token_endpoint_trades_basic_credentials_for_a_working_bearer_token() {
    let h = Harness::new();
    let r = h
        .user(
            Method::GET,
            "/v2/token?service=mcr&scope=repository:app:pull,push",
        )
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    let j = r.json();
    let token = j["token"].as_str().expect("token").to_string();
    assert!(!token.is_empty());
    assert_eq!(j["access_token"], j["token"]);
    assert_eq!(j["expires_in"], 3600, "the identity service's TTL");
    assert_eq!(
        j["issued_at"], "2024-01-01T00:00:00.000Z",
        "the clock's now"
    );
    assert_eq!(h.audit(EventType::Login).await.len(), 1);

    // The token works on every endpoint, including pushes.
    let r = h.anon(Method::GET, "/v2/").bearer(&token).send().await;
    r.assert_status(StatusCode::OK);
    let d = sha256(b"by bearer");
    let r = h
        .anon(Method::POST, format!("/v2/app/blobs/uploads/?digest={d}"))
        .bearer(&token)
        .body("by bearer")
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    assert_eq!(h.blob_status("app", &d).await, StatusCode::OK);
}

#[tokio::test]
async fn the_token_endpoint_refuses_missing_and_wrong_credentials() {
    let h = Harness::new();
    let token = h.token("user").await;
    for auth in [
        None,
        Some(basic("user", "wrong")),
        Some(format!("Bearer {token}")),
    ] {
        let mut call = h.anon(Method::GET, "/v2/token");
        if let Some(a) = &auth {
            call = call.header("authorization", a.as_str());
        }
        let r = call.send().await;
        r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Basic realm="mcr""#),
            "{auth:?}"
        );
        assert!(!r.text().contains(&token));
    }
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let h = Harness::new();
    let token = h.token("user").await;
    h.clock.advance(Duration::from_secs(3599));
    let r = h.anon(Method::GET, "/v2/").bearer(&token).send().await;
    r.assert_status(StatusCode::OK);
    h.clock.advance(Duration::from_secs(1));
    let r = h.anon(Method::GET, "/v2/").bearer(&token).send().await;
    r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert!(r.header("www-authenticate").is_some());
}

#[tokio::test]
async fn an_unreachable_identity_service_is_a_503_not_a_401() {
    let h = Harness::new();
    let token = h.token("user").await;
    h.push_blob("app", b"before the outage").await;
    h.identity.set_unavailable(true);
    let d = sha256(b"during the outage");
    let calls = [
        h.user(Method::GET, "/v2/"),
        h.anon(Method::GET, "/v2/").bearer(&token),
        h.user(Method::GET, "/v2/token"),
        h.user(Method::GET, "/v2/_catalog"),
        h.user(Method::GET, "/v2/app/tags/list"),
        h.user(Method::POST, format!("/v2/app/blobs/uploads/?digest={d}"))
            .body("during the outage"),
    ];
    for call in calls {
        let r = call.send().await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{} {}: {}",
            r.method,
            r.uri,
            r.text()
        );
        assert!(r.header("www-authenticate").is_none(), "{}", r.uri);
        assert!(r.json()["errors"][0]["code"].is_string(), "{}", r.text());
    }
    h.identity.set_unavailable(false);
    assert_eq!(h.blob_status("app", &d).await, StatusCode::NOT_FOUND);
    let r = h.anon(Method::GET, "/v2/").bearer(&token).send().await;
    r.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn a_request_without_valid_credentials_changes_nothing() {
    let h = Harness::new();
    let image = h.push_seeded_image("app", "v1", "a").await;
    let session = h.start_upload("app").await;
    let r = h
        .user(Method::PATCH, &session)
        .body(b"12345".to_vec())
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    let catalog = h.catalog().await;
    let pushes = h.audit(EventType::ManifestPushed).await.len();

    let new = b"not welcome";
    let nd = sha256(new);
    let other = image_manifest(
        descriptor(OCI_CONFIG, b"{\"seed\":\"a\"}"),
        &[],
        json!({"annotations": {"x": "y"}}),
    );
    for auth in [None, Some(basic("user", "wrong"))] {
        let requests = [
            (
                Method::POST,
                format!("/v2/app/blobs/uploads/?digest={nd}"),
                new.to_vec(),
            ),
            (
                Method::POST,
                format!("/v2/fresh/blobs/uploads/?digest={nd}"),
                new.to_vec(),
            ),
            (Method::POST, "/v2/fresh/blobs/uploads/".to_string(), vec![]),
            (
                Method::POST,
                format!("/v2/fresh/blobs/uploads/?mount={}&from=app", image.layer()),
                vec![],
            ),
            (
                Method::PUT,
                "/v2/app/manifests/v2".to_string(),
                to_bytes(&other),
            ),
            (
                Method::PUT,
                "/v2/app/manifests/v1".to_string(),
                to_bytes(&other),
            ),
            (Method::PATCH, session.clone(), b"67890".to_vec()),
            (
                Method::PUT,
                format!("{session}?digest={}", sha256(b"12345")),
                vec![],
            ),
            (Method::DELETE, session.clone(), vec![]),
            (Method::DELETE, "/v2/app/manifests/v1".to_string(), vec![]),
            (
                Method::DELETE,
                format!("/v2/app/manifests/{}", image.digest),
                vec![],
            ),
            (
                Method::DELETE,
                format!("/v2/app/blobs/{}", image.layer()),
                vec![],
            ),
        ];
        for (method, uri, body) in requests {
            let mut call = h
                .anon(method.clone(), &uri)
                .header("content-type", OCI_MANIFEST)
                .body(body);
            if let Some(a) = &auth {
                call = call.header("authorization", a.as_str());
            }
            let r = call.send().await;
            r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        }
    }

    assert_eq!(h.catalog().await, catalog, "no repository came into being");
    assert_eq!(h.tags("app").await, Some(vec!["v1".to_string()]));
    let r = h.user(Method::GET, "/v2/app/manifests/v1").send().await;
    assert_eq!(r.body.as_ref(), image.raw.as_slice(), "v1 did not move");
    assert_eq!(h.blob_status("app", image.layer()).await, StatusCode::OK);
    assert_eq!(h.blob_status("app", &nd).await, StatusCode::NOT_FOUND);
    assert_eq!(
        h.upload_range(&session).await,
        "0-4",
        "the session is as it was"
    );
    assert_eq!(h.audit(EventType::ManifestPushed).await.len(), pushes);
}
