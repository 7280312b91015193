//! Quotas over the real router: `/v1/quotas` CRUD (admin only, validated,
//! audited), and every refusal of a push that would pass one — at an
//! upload's end (chunked and monolithic), a cross-repository mount and a
//! manifest PUT — answered 403 `DENIED` with the exact message, leaving
//! no link, no manifest and no blob file behind.

mod support;

use axum::http::{Method, StatusCode};
use mcr_core::audit::EventType;
use serde_json::{json, Value};
use support::*;

/// Sets a quota over REST as `admin`; the answer's JSON.
async fn set_quota(h: &Harness, scope: &str, limit_bytes: u64) -> Value {
    let r = h
        .as_("admin", Method::POST, "/v1/quotas")
        .json(&json!({ "scope": scope, "limit_bytes": limit_bytes }))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    r.json()
}

async fn quotas(h: &Harness) -> Value {
    let r = h.as_("admin", Method::GET, "/v1/quotas").send().await;
    r.assert_status(StatusCode::OK);
    r.json()["quotas"].clone()
}

/// The refusal's text for `scope` using `used` of `limit`, needing `needs`.
fn refusal(scope: &str, used: &str, limit: &str, needs: &str) -> String {
    format!(
        "quota exceeded for \"{scope}\": {used} of {limit} used, this push needs {needs} \
         (delete images and run GC, or ask an admin to raise the quota)"
    )
}

#[track_caller]
fn assert_refused(r: &Reply, message: &str) {
    r.assert_error(StatusCode::FORBIDDEN, "DENIED");
    assert_eq!(r.json()["errors"][0]["message"], message, "{}", r.text());
}

#[tokio::test]
async fn quotas_are_set_listed_and_deleted_by_admins_only() {
    let h = Harness::new();
    let set = set_quota(&h, "team-a/", 1000).await;
    let id = set["id"].as_i64().expect("an id");
    assert_eq!(
        set,
        json!({ "id": id, "scope": "team-a/", "limit_bytes": 1000 })
    );
    h.push_blob("team-a/app", b"0123456789").await;
    let again = set_quota(&h, "team-a/", 2000).await;
    assert_eq!(again["id"], id, "setting a scope again changes its quota");
    set_quota(&h, "team-a/app", 500).await;
    let listed = quotas(&h).await;
    assert_eq!(
        listed[0],
        json!({ "id": id, "scope": "team-a/", "limit_bytes": 2000, "used_bytes": 10 })
    );
    assert_eq!(listed[1]["scope"], "team-a/app");
    assert_eq!(listed[1]["used_bytes"], 10);
    // The repository listing shows the same use.
    let repos = h.as_("admin", Method::GET, "/v1/repositories").send().await;
    assert_eq!(repos.json()["repositories"][0]["total_size"], 10);

    for (body, parts) in [
        (
            json!({ "scope": "Team/", "limit_bytes": 1 }),
            &["invalid scope", "\"Team/\" is not a namespace"][..],
        ),
        (
            json!({ "scope": "a//", "limit_bytes": 1 }),
            &["invalid scope"][..],
        ),
        (
            json!({ "scope": "a/", "limit_bytes": 0 }),
            &["invalid limit_bytes", "from 1 to"][..],
        ),
        (
            json!({ "scope": "a/", "limit_bytes": 1u64 << 61 }),
            &["invalid limit_bytes"][..],
        ),
        (
            json!({ "scope": "a/", "limit_bytes": -1 }),
            &["integer `-1`, expected u64"][..],
        ),
        (
            json!({ "scope": "a/", "limit_bytes": 1, "limit": 2 }),
            &["unknown field `limit`"][..],
        ),
        (json!({ "limit_bytes": 1 }), &["missing field `scope`"][..]),
    ] {
        let r = h
            .as_("admin", Method::POST, "/v1/quotas")
            .json(&body)
            .send()
            .await;
        r.assert_admin_error(StatusCode::BAD_REQUEST, parts);
    }
    for (method, uri) in [
        (Method::GET, "/v1/quotas".to_string()),
        (Method::POST, "/v1/quotas".to_string()),
        (Method::DELETE, format!("/v1/quotas/{id}")),
    ] {
        let r = h
            .as_("user", method, uri)
            .json(&json!({ "scope": "x/", "limit_bytes": 1 }))
            .send()
            .await;
        r.assert_admin_error(StatusCode::FORBIDDEN, &["may not"]);
    }
    assert_eq!(
        quotas(&h).await.as_array().map(Vec::len),
        Some(2),
        "refusals change nothing"
    );

    h.as_("admin", Method::DELETE, format!("/v1/quotas/{id}"))
        .send()
        .await
        .assert_status(StatusCode::NO_CONTENT);
    h.as_("admin", Method::DELETE, format!("/v1/quotas/{id}"))
        .send()
        .await
        .assert_admin_error(StatusCode::NOT_FOUND, &["quota", &id.to_string()]);
    assert_eq!(quotas(&h).await[0]["scope"], "team-a/app");

    let set_events = h.audit(EventType::QuotaSet).await;
    assert_eq!(set_events.len(), 3);
    assert_eq!(set_events[0].event.details["scope"], "team-a/app");
    assert_eq!(set_events[0].event.actor_id.as_deref(), Some("admin"));
    let deleted = h.audit(EventType::QuotaDeleted).await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].event.details["quota_id"], id.to_string());
}

#[tokio::test]
async fn an_upload_past_a_quota_is_refused_at_its_end_and_leaves_nothing() {
    let h = Harness::new();
    set_quota(&h, "team-a/", 100).await;
    h.push_blob("team-a/app", &[b'a'; 60]).await;
    let files_before = h.blob_files();
    let want = refusal("team-a/", "60 B", "100 B", "50 B");

    // Chunked: the chunk is taken, the end is refused.
    let data = [b'b'; 50];
    let digest = sha256(&data);
    let location = h.start_upload("team-a/other").await;
    h.user(Method::PATCH, location.clone())
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .assert_status(StatusCode::ACCEPTED);
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = h
        .user(Method::PUT, format!("{location}{sep}digest={digest}"))
        .send()
        .await;
    assert_refused(&r, &want);
    assert_eq!(
        h.blob_status("team-a/other", &digest).await,
        StatusCode::NOT_FOUND
    );
    h.user(Method::GET, location)
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");

    // Monolithic.
    let r = h
        .user(
            Method::POST,
            format!("/v2/team-a/other/blobs/uploads/?digest={digest}"),
        )
        .body(data.to_vec())
        .send()
        .await;
    assert_refused(&r, &want);
    assert_eq!(h.blob_files(), files_before, "no blob file is left");
    assert!(h.upload_files().is_empty(), "no upload is left");

    let events = h.audit(EventType::QuotaExceeded).await;
    assert_eq!(events.len(), 2);
    let d = &events[0].event.details;
    assert_eq!(
        (
            d["scope"].as_str(),
            d["used_bytes"].as_str(),
            d["needs_bytes"].as_str(),
            d["limit_bytes"].as_str()
        ),
        ("team-a/", "60", "50", "100")
    );
    assert_eq!(
        events[0].event.repository.as_ref().map(|r| r.as_str()),
        Some("team-a/other")
    );

    // Content the namespace holds already adds nothing: it goes in.
    h.push_blob("team-a/other", &[b'a'; 60]).await;
    assert_eq!(quotas(&h).await[0]["used_bytes"], 60);
}

#[tokio::test]
async fn a_mount_past_a_quota_is_refused_and_links_nothing() {
    let h = Harness::new();
    set_quota(&h, "team-a/app", 100).await;
    h.push_blob("team-a/app", &[b'a'; 90]).await;
    let digest = h.push_blob("free/src", &[b'c'; 20]).await;
    let r = h
        .user(
            Method::POST,
            format!("/v2/team-a/app/blobs/uploads/?mount={digest}&from=free/src"),
        )
        .send()
        .await;
    assert_refused(&r, &refusal("team-a/app", "90 B", "100 B", "20 B"));
    assert_eq!(
        h.blob_status("team-a/app", &digest).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.blob_status("free/src", &digest).await, StatusCode::OK);
    assert_eq!(h.audit(EventType::QuotaExceeded).await.len(), 1);
}

#[tokio::test]
async fn a_manifest_past_a_quota_is_refused_and_stores_nothing() {
    let h = Harness::new();
    let config = b"{\"config\":1}";
    let layer = [b'l'; 40];
    h.push_blob("team-a/app", config).await;
    h.push_blob("team-a/app", &layer).await;
    let raw = raw_image_manifest(config, &[&layer]);
    let used = config.len() + layer.len();
    set_quota(&h, "team-a/", used as u64 + 10).await;
    let r = h.put_manifest("team-a/app", "v1", OCI_MANIFEST, &raw).await;
    assert_refused(
        &r,
        &refusal(
            "team-a/",
            &format!("{used} B"),
            &format!("{} B", used + 10),
            &format!("{} B", raw.len()),
        ),
    );
    assert_eq!(
        h.manifest_status("team-a/app", "v1").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.tags("team-a/app").await, Some(vec![]));
    // Raised, the same push goes through and counts its bytes.
    set_quota(&h, "team-a/", 1 << 20).await;
    h.put_manifest("team-a/app", "v1", OCI_MANIFEST, &raw)
        .await
        .assert_status(StatusCode::CREATED);
    assert_eq!(quotas(&h).await[0]["used_bytes"], (used + raw.len()) as u64);
}
