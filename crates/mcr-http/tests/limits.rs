//! What one client may hold or send (issue 16): request bodies that stop
//! arriving, and each principal's request rate.
//!
//! Tests that wait for a limit run on tokio's paused clock: when nothing
//! is left to do but wait, time jumps to the next timer, so a missing
//! limit shows as the test's own guard firing first, not as a race.

mod support;

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;
use mcr_core::registry::{LoginLimit, RateLimit};
use mcr_http::HttpConfig;
use support::*;

/// How long a test waits for something the registry must do by itself.
const GUARD: Duration = Duration::from_secs(3600);

/// A body that sends `first` and then nothing, never ending.
fn stalling_body(first: &'static [u8]) -> Body {
    let head = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(first))]);
    Body::from_stream(head.chain(futures_util::stream::pending()))
}

#[tokio::test(start_paused = true)]
async fn a_chunk_that_stops_arriving_is_refused_and_discarded() {
    let h = Harness::new();
    let location = h.start_upload("team/app").await;
    let patch = h
        .user(Method::PATCH, &location)
        .header("content-type", "application/octet-stream")
        .header("content-length", (1u64 << 20).to_string())
        .body(stalling_body(b"ten bytes."))
        .send();
    let r = tokio::time::timeout(GUARD, patch)
        .await
        .expect("a PATCH whose body stalls is answered");
    r.assert_error(StatusCode::REQUEST_TIMEOUT, "BLOB_UPLOAD_INVALID");
    // The upload is where it was, and resumes.
    assert_eq!(h.upload_range(&location).await, "0-0");
    let r = h
        .user(Method::PATCH, &location)
        .header("content-type", "application/octet-stream")
        .body(b"whole chunk".to_vec())
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), Some("0-10"));
}

/// A body that sends one byte every `every`, for ever.
fn trickling_body(every: Duration) -> Body {
    Body::from_stream(futures_util::stream::unfold((), move |()| async move {
        tokio::time::sleep(every).await;
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), ()))
    }))
}

/// Review of issue 16, D1: a byte every 10 s never trips the 60 s wait
/// between bytes, but falls behind the minimum rate once the 60 s grace
/// is over; the chunk is refused with 408 and discarded.
#[tokio::test(start_paused = true)]
async fn a_chunk_trickled_below_the_minimum_rate_is_refused_and_discarded() {
    let h = Harness::new();
    let location = h.start_upload("team/app").await;
    let started = tokio::time::Instant::now();
    let patch = h
        .user(Method::PATCH, &location)
        .header("content-type", "application/octet-stream")
        .header("content-length", (1u64 << 20).to_string())
        .body(trickling_body(Duration::from_secs(10)))
        .send();
    let r = tokio::time::timeout(GUARD, patch)
        .await
        .expect("a PATCH whose body trickles is answered");
    r.assert_error(StatusCode::REQUEST_TIMEOUT, "BLOB_UPLOAD_INVALID");
    assert!(r.text().contains("server.min_body_rate"), "{}", r.text());
    // Six bytes in 60 s earn 6 ms past the grace.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(60) && took < Duration::from_secs(61),
        "{took:?}"
    );
    assert_eq!(h.upload_range(&location).await, "0-0");
    // Off, the same body is only held to the wait between bytes.
    let h = Harness::with_config(HttpConfig {
        min_body_rate: 0,
        ..HttpConfig::default()
    });
    let location = h.start_upload("team/app").await;
    let patch = h
        .user(Method::PATCH, &location)
        .header("content-type", "application/octet-stream")
        .body(trickling_body(Duration::from_secs(10)))
        .send();
    assert!(
        tokio::time::timeout(Duration::from_secs(600), patch)
            .await
            .is_err(),
        "with min_body_rate 0 a body that keeps coming is not cut off"
    );
}

#[tokio::test(start_paused = true)]
async fn every_body_that_stops_arriving_is_refused() {
    let h = Harness::new();
    let digest = sha256(b"never sent in full");
    let monolithic = h
        .user(
            Method::POST,
            format!("/v2/team/app/blobs/uploads/?digest={digest}"),
        )
        .body(stalling_body(b"never sent"))
        .send();
    let r = tokio::time::timeout(GUARD, monolithic)
        .await
        .expect("answered");
    r.assert_error(StatusCode::REQUEST_TIMEOUT, "BLOB_UPLOAD_INVALID");
    assert!(h.upload_files().is_empty(), "{:?}", h.upload_files());

    let manifest = h
        .user(Method::PUT, "/v2/team/app/manifests/latest")
        .header("content-type", OCI_MANIFEST)
        .body(stalling_body(b"{\"schemaVersion\":"))
        .send();
    let r = tokio::time::timeout(GUARD, manifest)
        .await
        .expect("answered");
    r.assert_error(StatusCode::REQUEST_TIMEOUT, "MANIFEST_INVALID");

    let rule = h
        .as_("admin", Method::POST, "/v1/policy/rules")
        .header("content-type", "application/json")
        .body(stalling_body(b"{\"priority\":"))
        .send();
    let r = tokio::time::timeout(GUARD, rule).await.expect("answered");
    r.assert_admin_error(StatusCode::REQUEST_TIMEOUT, &["server.read_timeout"]);
    assert!(h.catalog().await.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn a_principal_over_its_rate_gets_429_with_retry_after_on_every_api() {
    let h = Harness::with(Setup {
        rate_limit: Some(RateLimit {
            per_second: NonZeroU32::new(1).expect("1"),
            burst: NonZeroU32::new(2).expect("2"),
        }),
        ..Setup::bearer()
    });
    h.bearer_as("user", Method::GET, "/v2/")
        .send()
        .await
        .assert_status(StatusCode::OK);
    h.bearer_as("user", Method::GET, "/v2/_catalog")
        .send()
        .await
        .assert_status(StatusCode::OK);
    let r = h.bearer_as("user", Method::GET, "/v2/").send().await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    assert_eq!(r.header("retry-after"), Some("1"));
    // The admin API answers in its own form, with the same header.
    let r = h
        .bearer_as("user", Method::GET, "/v1/repositories")
        .send()
        .await;
    r.assert_admin_error(StatusCode::TOO_MANY_REQUESTS, &["too many requests"]);
    assert_eq!(r.header("retry-after"), Some("1"));
    // HTTP Basic and the token endpoint draw from the same bucket.
    let r = h.user(Method::GET, "/v2/").send().await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    let r = h.user(Method::GET, "/v2/token").send().await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    // Others are not held back, and the bucket refills with time.
    h.bearer_as("admin", Method::GET, "/v2/")
        .send()
        .await
        .assert_status(StatusCode::OK);
    h.clock.advance(Duration::from_secs(1));
    h.bearer_as("user", Method::GET, "/v2/")
        .send()
        .await
        .assert_status(StatusCode::OK);
    // A refused request is not audited: a flood must not flood the log.
    assert!(h
        .audit(mcr_core::audit::EventType::PolicyDeny)
        .await
        .is_empty());
}

/// Issue 16, case 4: past the cap on open upload sessions, a new one is
/// refused with 429 and Retry-After, and nothing is left behind.
#[tokio::test]
async fn open_upload_sessions_past_the_cap_get_429_with_retry_after() {
    let h = Harness::with(Setup {
        max_uploads_per_principal: 3,
        ..Setup::default()
    });
    for _ in 0..3 {
        h.start_upload("app").await;
    }
    let r = h.user(Method::POST, "/v2/app/blobs/uploads/").send().await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    assert_eq!(r.header("retry-after"), Some("60"));
    // The cap is the principal's, over every repository.
    let r = h
        .user(Method::POST, "/v2/other/blobs/uploads/")
        .send()
        .await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    assert!(!h.catalog().await.contains(&"other".to_string()));
    // Another principal still has room.
    let r = h
        .as_("admin", Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
}

/// Review of issue 16, D1: however slowly their bodies come, one
/// principal holds at most `max_requests_in_flight` requests (and so
/// connections); one more is 429 with Retry-After, others are not held
/// back, and a request that ends gives its slot back.
#[tokio::test(start_paused = true)]
async fn requests_in_flight_past_the_principals_cap_get_429() {
    let h = Harness::with(Setup {
        max_requests_in_flight: Some(NonZeroUsize::new(2).expect("2")),
        ..Setup::bearer()
    });
    let mut held = Vec::new();
    for _ in 0..2 {
        let location = h.start_upload("team/app").await;
        held.push(tokio::spawn(
            h.bearer_as("user", Method::PATCH, &location)
                .header("content-type", "application/octet-stream")
                .body(stalling_body(b"a byte or two"))
                .send(),
        ));
    }
    // Both PATCHes reach their bodies; the clock moves 1 ms, far inside
    // the body timeout.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let r = h.bearer_as("user", Method::GET, "/v2/").send().await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.text().contains("in flight"), "{}", r.text());
    let r = h
        .bearer_as("user", Method::GET, "/v1/repositories")
        .send()
        .await;
    r.assert_admin_error(StatusCode::TOO_MANY_REQUESTS, &["in flight"]);
    h.bearer_as("admin", Method::GET, "/v2/")
        .send()
        .await
        .assert_status(StatusCode::OK);
    held.pop().expect("two").abort();
    tokio::time::sleep(Duration::from_millis(1)).await;
    h.bearer_as("user", Method::GET, "/v2/")
        .send()
        .await
        .assert_status(StatusCode::OK);
}

/// Review of issue 16 (second round), defect 2: a download counts as in
/// flight until its body has been sent, not only until its handler
/// answered, so a principal reading many responses slowly cannot hold
/// more than its cap of connections.
#[tokio::test]
async fn a_download_holds_its_slot_until_its_body_is_read() {
    let h = Harness::with(Setup {
        max_requests_in_flight: Some(NonZeroUsize::new(1).expect("1")),
        ..Setup::bearer()
    });
    let digest = h.push_blob("team/app", &[7u8; 4096]).await;
    let unread = h
        .bearer_as("user", Method::GET, format!("/v2/team/app/blobs/{digest}"))
        .send_unread()
        .await;
    assert_eq!(unread.status(), StatusCode::OK);
    let r = h.bearer_as("user", Method::GET, "/v2/").send().await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    let body = axum::body::to_bytes(unread.into_body(), usize::MAX)
        .await
        .expect("the body reads");
    assert_eq!(body.len(), 4096);
    h.bearer_as("user", Method::GET, "/v2/")
        .send()
        .await
        .assert_status(StatusCode::OK);
}

/// Review of issue 16, D2: past the failed logins allowed for a username,
/// every way of logging in is refused with 429 and Retry-After without
/// the password being checked (the right one too), until the window ends;
/// another username is not held back, and successes never count.
#[tokio::test]
async fn failed_logins_past_the_limit_are_refused_until_the_window_ends() {
    let h = Harness::with(Setup {
        login_limit: Some(LoginLimit {
            per_username: 3,
            per_address: 0,
            window: Duration::from_secs(300),
        }),
        ..Setup::default()
    });
    // Successes are not failures.
    for _ in 0..5 {
        h.user(Method::GET, "/v2/")
            .send()
            .await
            .assert_status(StatusCode::OK);
    }
    let bad = serde_json::json!({"username": "user", "password": "wrong"});
    for _ in 0..2 {
        let r = h
            .anon(Method::POST, "/v1/auth/login")
            .json(&bad)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    }
    let r = h
        .anon(Method::GET, "/v2/token")
        .basic("user", "wrong")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    // Three failures: the right password is refused as well now.
    let r = h.user(Method::GET, "/v2/").send().await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");
    assert_eq!(r.header("retry-after"), Some("300"));
    let r = h.user(Method::GET, "/v2/token").send().await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    let r = h
        .anon(Method::POST, "/v1/auth/login")
        .json(&bad)
        .send()
        .await;
    r.assert_admin_error(StatusCode::TOO_MANY_REQUESTS, &["failed logins for user"]);
    assert!(r.header("retry-after").is_some());
    h.as_("admin", Method::GET, "/v2/")
        .send()
        .await
        .assert_status(StatusCode::OK);
    // Refusals are neither checked nor audited: three failures logged.
    assert_eq!(
        h.audit(mcr_core::audit::EventType::LoginFailed).await.len(),
        3
    );
    h.clock.advance(Duration::from_secs(300));
    h.user(Method::GET, "/v2/")
        .send()
        .await
        .assert_status(StatusCode::OK);
}
