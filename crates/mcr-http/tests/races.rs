//! Issue 16, cases 7, 8 and 9 through the real router: races and
//! failures mid-step that only a fake store can make happen at will. The
//! harness runs over mcr-core's fake stores ([`Fakes`]); a test arms a
//! pause point or a refusal in one, sends requests at once with
//! `tokio::join!`, and releases the paused one when the other is done, so
//! the interleaving is the same every run (no sleeps).

mod support;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;

/// A harness over fresh fake stores, and the stores.
fn faked(setup: Setup) -> (Harness, Fakes) {
    let fakes = Fakes::default();
    let h = Harness::with(Setup {
        fakes: Some(fakes.clone()),
        ..setup
    });
    (h, fakes)
}

/// A stored rule denying `user` pushes into `locked/*`.
fn deny_locked_pushes() -> Value {
    json!({
        "priority": 5,
        "description": "nothing into locked",
        "effect": "deny",
        "actions": ["registry:push"],
        "subject": "user",
        "repositories": ["locked/*"],
    })
}

impl Harness {
    /// `POST /v1/policy/rules` as `admin`.
    async fn create_rule(&self, rule: &Value) -> Reply {
        self.as_("admin", Method::POST, "/v1/policy/rules")
            .json(rule)
            .send()
            .await
    }

    /// `PATCH /v1/policy/rules/<id>` as `admin`.
    async fn patch_rule(&self, id: i64, patch: Value) -> Reply {
        self.as_("admin", Method::PATCH, format!("/v1/policy/rules/{id}"))
            .json(&patch)
            .send()
            .await
    }

    /// A streamed chunk (no `Content-Range`) to the session at `location`.
    async fn stream_chunk(&self, location: &str, data: &[u8]) -> Reply {
        self.user(Method::PATCH, location)
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
    }
}

/// Case 7: a rule change whose reload listed the rules before another
/// change was stored, and installs after it, does not bring the older
/// rules back: the deny rule the second change acknowledged refuses the
/// push it names.
#[tokio::test]
async fn a_reload_overtaken_by_a_rule_change_does_not_undo_it() {
    let (h, fakes) = faked(Setup::default());
    // Rules fresh now, so no request reloads on its own (the clock stays).
    h.registry.reload_policy().await.expect("the rules load");
    let hold = fakes.meta.hold_next_rule_read();
    let ci_pulls = json!({
        "priority": 50,
        "description": "CI pulls",
        "effect": "allow",
        "actions": ["registry:pull"],
        "account_types": ["system"],
        "repositories": ["ci/*"],
    });
    let first = h.create_rule(&ci_pulls);
    let second = async {
        // The first change is stored and its reload has listed the rules.
        hold.reached().await;
        let r = h.create_rule(&deny_locked_pushes()).await;
        hold.release();
        r
    };
    let (first, second) = tokio::join!(first, second);
    first.assert_status(StatusCode::CREATED);
    second.assert_status(StatusCode::CREATED);
    let r = h
        .user(Method::POST, "/v2/locked/app/blobs/uploads/")
        .send()
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "DENIED");
}

/// Case 7: two edits of one rule at once lose neither; the one that read
/// the rule before the other changed it is refused with 409.
#[tokio::test]
async fn concurrent_patches_of_a_rule_lose_neither() {
    let (h, fakes) = faked(Setup::default());
    let r = h.create_rule(&deny_locked_pushes()).await;
    r.assert_status(StatusCode::CREATED);
    let id = r.json()["id"].as_i64().expect("an id");
    // The first edit reads the rule and stops; the second runs whole.
    let hold = fakes.meta.hold_next_rule_read();
    let first = h.patch_rule(id, json!({"description": "first edit"}));
    let second = async {
        hold.reached().await;
        let r = h.patch_rule(id, json!({"enabled": false})).await;
        hold.release();
        r
    };
    let (first, second) = tokio::join!(first, second);
    second.assert_status(StatusCode::OK);
    first.assert_admin_error(StatusCode::CONFLICT, &["policy rule"]);
    let stored = h
        .as_("admin", Method::GET, format!("/v1/policy/rules/{id}"))
        .send()
        .await
        .json();
    assert_eq!(stored["enabled"], json!(false), "the second edit was lost");
    assert_eq!(stored["description"], json!("nothing into locked"));
}

/// Case 8: a push naming several tags whose store step fails moves none
/// of them, and answers an error.
#[tokio::test]
async fn a_push_with_several_tags_moves_all_or_none() {
    let (h, fakes) = faked(Setup::default());
    let old = h.push_seeded_image("app", "a", "old").await;
    h.push_blob("app", b"{}").await;
    let raw = raw_image_manifest(b"{}", &[]);
    let d = sha256(&raw);
    fakes
        .meta
        .refuse_tag(mcr_core::names::Tag::new("b").expect("a tag"));
    let r = h
        .user(Method::PUT, format!("/v2/app/manifests/{d}?tag=a&tag=b"))
        .header("content-type", OCI_MANIFEST)
        .body(raw)
        .send()
        .await;
    assert!(r.status.is_server_error(), "{} {}", r.status, r.text());
    let a = h.user(Method::HEAD, "/v2/app/manifests/a").send().await;
    a.assert_status(StatusCode::OK);
    assert_eq!(
        a.header("docker-content-digest"),
        Some(old.digest.as_str()),
        "a tag moved by a push that failed"
    );
    assert_eq!(h.tags("app").await, Some(vec!["a".to_string()]));
    assert_eq!(h.manifest_status("app", &d).await, StatusCode::NOT_FOUND);
}

/// Case 8: a monolithic upload that fails is answered with its cause (a
/// digest mismatch, the client's to fix) even when discarding the
/// session after it fails too.
#[tokio::test]
async fn a_failed_monolithic_upload_reports_its_cause_not_the_cleanup() {
    let (h, fakes) = faked(Setup::default());
    fakes.blobs.fail_cancels();
    let wrong = sha256(b"something else");
    let r = h
        .user(
            Method::POST,
            format!("/v2/app/blobs/uploads/?digest={wrong}"),
        )
        .body(b"data".to_vec())
        .send()
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
}

/// Case 9: two PATCHes to one session in flight at once, each within the
/// blob size limit alone, cannot pass it together: the second is refused
/// with 413 and leaves nothing.
#[tokio::test]
async fn concurrent_chunks_cannot_pass_the_blob_size_limit_together() {
    let (h, fakes) = faked(Setup {
        max_blob_size: 16,
        ..Setup::default()
    });
    let loc = h.start_upload("app").await;
    // The first chunk stops inside the blob store, body read, not yet
    // stored; the second arrives meanwhile.
    let hold = fakes.blobs.hold_next_append();
    let first = h.stream_chunk(&loc, &[b'a'; 10]);
    let second = h.stream_chunk(&loc, &[b'b'; 10]);
    let release = async {
        hold.reached().await;
        hold.release();
    };
    let (first, second, ()) = tokio::join!(first, second, release);
    first.assert_status(StatusCode::ACCEPTED);
    second.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    assert_eq!(h.upload_range(&loc).await, "0-9");
}
