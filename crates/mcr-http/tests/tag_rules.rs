//! Immutable tags over the real router: a deny rule on
//! `registry:tag_overwrite` and `registry:tag_delete`, created over REST
//! with `tags`, refuses every move and delete of a matching tag with 403
//! `DENIED` and a message naming the rule (admins included), while a
//! re-push of the same manifest and new tags go through.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;
use support::*;

const RULE_NAME: &str = "release tags are immutable";

/// Creates the rule over REST as `admin`; its id.
async fn immutable_v_tags(h: &Harness) -> i64 {
    let r = h
        .as_("admin", Method::POST, "/v1/policy/rules")
        .json(&json!({
            "priority": 10,
            "description": RULE_NAME,
            "effect": "deny",
            "actions": ["registry:tag_overwrite", "registry:tag_delete"],
            "tags": ["v*"],
        }))
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    assert_eq!(r.json()["tags"], json!(["v*"]));
    r.json()["id"].as_i64().expect("an id")
}

/// Asserts a refusal by the rule: 403, `DENIED`, a message naming the
/// rule and the way out.
#[track_caller]
fn assert_refused(r: &Reply, rule: i64, tag: &str) {
    r.assert_error(StatusCode::FORBIDDEN, "DENIED");
    let message = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for part in [
        &format!("tag {tag}"),
        &format!("immutable by rule {rule} \"{RULE_NAME}\""),
        &format!("mcrctl policy delete {rule}"),
        &format!("/v1/policy/rules/{rule}"),
    ] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

#[tokio::test]
async fn an_immutable_tag_refuses_moves_and_deletes_and_takes_a_re_push() {
    let h = Harness::new();
    let rule = immutable_v_tags(&h).await;
    let one = h.push_seeded_image("app", "v1.0.0", "one").await;
    let two = h.push_seeded_image("app", "latest", "two").await;

    // The same manifest again under its tag: idempotent.
    h.put_manifest("app", "v1.0.0", OCI_MANIFEST, &one.raw)
        .await
        .assert_status(StatusCode::CREATED);
    // A new tag matching the pattern is created.
    h.put_manifest("app", "v2", OCI_MANIFEST, &two.raw)
        .await
        .assert_status(StatusCode::CREATED);

    for who in ["user", "admin"] {
        let put = |uri: String| {
            h.as_(who, Method::PUT, uri)
                .header("content-type", OCI_MANIFEST)
                .body(two.raw.clone())
        };
        // Moving it.
        let r = put("/v2/app/manifests/v1.0.0".into()).send().await;
        assert_refused(&r, rule, "v1.0.0");
        // Moving it as an extra tag of a push: nothing of the push stays.
        let r = put(format!(
            "/v2/app/manifests/{}?tag=rc&tag=v1.0.0",
            two.digest
        ))
        .send()
        .await;
        assert_refused(&r, rule, "v1.0.0");
        h.user(Method::GET, "/v2/app/manifests/rc")
            .send()
            .await
            .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
        // Deleting it.
        let r = h
            .as_(who, Method::DELETE, "/v2/app/manifests/v1.0.0")
            .send()
            .await;
        assert_refused(&r, rule, "v1.0.0");
        // Deleting the manifest it points at.
        let r = h
            .as_(
                who,
                Method::DELETE,
                format!("/v2/app/manifests/{}", one.digest),
            )
            .send()
            .await;
        assert_refused(&r, rule, "v1.0.0");
        assert!(
            r.text().contains(&format!("manifest {}", one.digest)),
            "{}",
            r.text()
        );
    }
    // Deleting the repository (admin API).
    let r = h
        .as_("admin", Method::DELETE, "/v1/repositories/app")
        .send()
        .await;
    r.assert_admin_error(
        StatusCode::FORBIDDEN,
        &["tag v", &format!("immutable by rule {rule}")],
    );

    // The tag still pulls the original bytes.
    let r = h.user(Method::GET, "/v2/app/manifests/v1.0.0").send().await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.body, one.raw);
    // Tags the rule does not match move as before.
    h.put_manifest("app", "latest", OCI_MANIFEST, &one.raw)
        .await
        .assert_status(StatusCode::CREATED);
    h.user(Method::DELETE, "/v2/app/manifests/latest")
        .send()
        .await
        .assert_status(StatusCode::ACCEPTED);

    // Explain says the same, with the tag.
    let r = h
        .as_("admin", Method::POST, "/v1/policy/explain")
        .json(
            &json!({"subject": "user", "account_type": "human", "roles": ["user"],
                      "action": "registry:tag_overwrite", "repository": "app", "tag": "v1.0.0"}),
        )
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(
        r.json()["decision"],
        json!({"effect": "deny", "rule_id": rule})
    );
    assert!(
        r.json()["text"]
            .as_str()
            .unwrap_or_default()
            .contains("on tag v1.0.0"),
        "{}",
        r.text()
    );

    // Lifted: the admin disables the rule, and the tag moves.
    h.as_("admin", Method::PATCH, format!("/v1/policy/rules/{rule}"))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .assert_status(StatusCode::OK);
    h.put_manifest("app", "v1.0.0", OCI_MANIFEST, &two.raw)
        .await
        .assert_status(StatusCode::CREATED);
}

#[tokio::test]
async fn tag_patterns_are_validated_at_the_api() {
    let h = Harness::new();
    for (body, part) in [
        (
            json!({"priority": 1, "effect": "deny", "actions": ["registry:tag_delete"], "tags": ["v/1"]}),
            "invalid tags: pattern \"v/1\"",
        ),
        (
            json!({"priority": 1, "effect": "deny", "actions": ["registry:push"], "tags": ["v*"]}),
            "not registry:push",
        ),
    ] {
        let r = h
            .as_("admin", Method::POST, "/v1/policy/rules")
            .json(&body)
            .send()
            .await;
        r.assert_admin_error(StatusCode::BAD_REQUEST, &[part]);
    }
}
