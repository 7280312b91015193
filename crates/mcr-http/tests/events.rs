//! `/v1/events` and `/v1/events/webhooks` over the real router: the
//! outbox lists one event per change in order, pages after an id, and
//! both are admin only.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;

async fn events(h: &Harness, query: &str) -> Vec<Value> {
    let r = h
        .as_("admin", Method::GET, format!("/v1/events{query}"))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    r.json()["events"].as_array().expect("a list").clone()
}

#[tokio::test]
async fn the_outbox_lists_each_change_once_in_order_to_admins_only() {
    let h = Harness::new();
    let one = h.push_image("app", "v1", b"config one", &[b"layer"]).await;
    let two = h.push_image("app", "v1", b"config two", &[b"layer"]).await;
    h.user(Method::DELETE, "/v2/app/manifests/v1")
        .send()
        .await
        .assert_status(StatusCode::ACCEPTED);
    // A pull and a refused delete report nothing.
    h.user(Method::GET, "/v2/app/manifests/v1").send().await;
    h.user(Method::DELETE, "/v2/app/manifests/v9")
        .send()
        .await
        .assert_status(StatusCode::NOT_FOUND);

    let all = events(&h, "").await;
    let kinds: Vec<(&str, &str)> = all
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["repository"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("manifest.pushed", "app"),
            ("manifest.pushed", "app"),
            ("tag.moved", "app"),
            ("tag.deleted", "app"),
        ]
    );
    assert_eq!(all[0]["data"]["digest"], one.digest.as_str());
    assert_eq!(all[0]["data"]["tags"], json!(["v1"]));
    assert!(all[0]["data"]["actor"].is_string(), "the pusher is named");
    assert_eq!(all[2]["data"]["previous_digest"], one.digest.as_str());
    assert_eq!(all[2]["data"]["digest"], two.digest.as_str());
    assert_eq!(all[3]["data"]["tag"], "v1");
    assert_eq!(
        all[3]["data"]["digest"],
        two.digest.as_str(),
        "a deleted tag names where it pointed"
    );
    let ids: std::collections::BTreeSet<&str> = all
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        all.len(),
        "each event has its own CloudEvents id"
    );

    let after = all[1]["id"].as_i64().unwrap();
    let page = events(&h, &format!("?after={after}&limit=1")).await;
    assert_eq!(page, all[2..3].to_vec(), "a page after an id");

    let r = h
        .as_("admin", Method::GET, "/v1/events/webhooks")
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json(), json!({ "webhooks": [] }), "none configured");

    for path in ["/v1/events", "/v1/events/webhooks"] {
        h.as_("user", Method::GET, path)
            .send()
            .await
            .assert_admin_error(StatusCode::FORBIDDEN, &["may not"]);
    }
    h.as_("admin", Method::GET, "/v1/events?since=3")
        .send()
        .await
        .assert_status(StatusCode::BAD_REQUEST);
}
