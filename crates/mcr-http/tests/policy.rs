//! The policy at the edge: what the built-in rules give each kind of
//! caller, stored rules taking effect at once, and a denied request
//! changing nothing.

mod support;

use axum::http::{Method, StatusCode};
use mcr_core::audit::EventType;
use mcr_core::policy::{Effect, RepoPattern, RuleDraft};
use mcr_core::principal::{Action, Role};
use mcr_core::testing::admin;
use support::*;

fn rule(effect: Effect, actions: &[Action], repositories: &[&str]) -> RuleDraft {
    RuleDraft {
        priority: 10,
        description: "test rule".into(),
        effect,
        actions: actions.to_vec(),
        roles: Vec::new(),
        account_types: Vec::new(),
        subject: None,
        repositories: repositories
            .iter()
            .map(|p| RepoPattern::new(p).expect("a valid pattern"))
            .collect(),
        tags: vec![],
        enabled: true,
    }
}

#[tokio::test]
async fn guests_and_system_accounts_may_check_the_version_but_not_pull_or_push() {
    let h = Harness::new();
    let image = h.push_seeded_image("app", "v1", "a").await;
    let session = h.start_upload("app").await;
    for who in ["guest", "system"] {
        let r = h.as_(who, Method::GET, "/v2/").send().await;
        r.assert_status(StatusCode::OK);
        let nd = sha256(b"new");
        let cases = [
            (Method::GET, "/v2/app/manifests/v1".to_string()),
            (Method::GET, format!("/v2/app/manifests/{}", image.digest)),
            (Method::GET, format!("/v2/app/blobs/{}", image.layer())),
            (Method::GET, "/v2/app/tags/list".to_string()),
            (Method::GET, "/v2/_catalog".to_string()),
            (Method::GET, format!("/v2/app/referrers/{}", image.digest)),
            (Method::GET, session.clone()),
            (Method::POST, "/v2/app/blobs/uploads/".to_string()),
            (Method::POST, format!("/v2/app/blobs/uploads/?digest={nd}")),
            (
                Method::POST,
                format!("/v2/other/blobs/uploads/?mount={}&from=app", image.layer()),
            ),
            (Method::PATCH, session.clone()),
            (Method::PUT, format!("{session}?digest={nd}")),
            (Method::DELETE, session.clone()),
            (Method::PUT, "/v2/app/manifests/v2".to_string()),
            (Method::DELETE, "/v2/app/manifests/v1".to_string()),
            (Method::DELETE, format!("/v2/app/blobs/{}", image.layer())),
        ];
        for (method, uri) in cases {
            let r = h
                .as_(who, method, &uri)
                .header("content-type", OCI_MANIFEST)
                .body(image.raw.clone())
                .send()
                .await;
            r.assert_error(StatusCode::FORBIDDEN, "DENIED");
            assert!(r.header("www-authenticate").is_none(), "{uri}");
        }
        let r = h
            .as_(
                who,
                Method::HEAD,
                format!("/v2/app/blobs/{}", image.layer()),
            )
            .send()
            .await;
        r.assert_status(StatusCode::FORBIDDEN);
    }
    // The user still sees everything as it was.
    let r = h.user(Method::GET, "/v2/app/manifests/v1").send().await;
    assert_eq!(r.body.as_ref(), image.raw.as_slice());
    assert_eq!(h.upload_range(&session).await, "0-0");
}

#[tokio::test]
async fn a_denied_push_changes_nothing_and_is_audited() {
    let h = Harness::new();
    let image = h.push_seeded_image("app", "v1", "a").await;
    let catalog = h.catalog().await;
    let data = b"guest data";
    let d = sha256(data);
    for repo in ["app", "guest-repo"] {
        let r = h
            .as_(
                "guest",
                Method::POST,
                format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            )
            .body(data.to_vec())
            .send()
            .await;
        r.assert_error(StatusCode::FORBIDDEN, "DENIED");
        let r = h
            .as_("guest", Method::POST, format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await;
        r.assert_error(StatusCode::FORBIDDEN, "DENIED");
        let r = h
            .as_("guest", Method::PUT, format!("/v2/{repo}/manifests/evil"))
            .header("content-type", OCI_MANIFEST)
            .body(image.raw.clone())
            .send()
            .await;
        r.assert_error(StatusCode::FORBIDDEN, "DENIED");
    }
    assert_eq!(h.catalog().await, catalog);
    assert_eq!(h.tags("app").await, Some(vec!["v1".to_string()]));
    assert_eq!(h.blob_status("app", &d).await, StatusCode::NOT_FOUND);
    let denials = h.audit(EventType::PolicyDeny).await;
    assert_eq!(denials.len(), 6);
    assert!(denials
        .iter()
        .all(|e| e.event.actor_id.as_deref() == Some("guest")
            && e.event.details.get("action").map(String::as_str) == Some("registry:push")));
}

#[tokio::test]
async fn stored_rules_take_effect_on_the_next_request() {
    let h = Harness::new();
    let public = h.push_seeded_image("public/app", "v1", "p").await;
    h.push_seeded_image("private", "v1", "q").await;
    let mut allow = rule(Effect::Allow, &[Action::Pull], &["public/*"]);
    allow.roles = vec![Role::Guest];
    h.registry
        .create_rule(&admin(), allow)
        .await
        .expect("the rule is stored");
    let r = h
        .as_("guest", Method::GET, "/v2/public/app/manifests/v1")
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.body.as_ref(), public.raw.as_slice());
    let r = h
        .as_("guest", Method::GET, "/v2/private/manifests/v1")
        .send()
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "DENIED");
    let r = h
        .as_("guest", Method::POST, "/v2/public/app/blobs/uploads/")
        .send()
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "DENIED");

    let mut deny = rule(Effect::Deny, &[Action::Push], &["locked"]);
    deny.subject = Some("user".into());
    h.registry
        .create_rule(&admin(), deny)
        .await
        .expect("the rule is stored");
    let r = h
        .user(Method::POST, "/v2/locked/blobs/uploads/")
        .send()
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "DENIED");
    assert!(!h.catalog().await.contains(&"locked".to_string()));
    let r = h
        .as_("admin", Method::POST, "/v2/locked/blobs/uploads/")
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
}

/// A rule denying `user` pulls from `alice/*`.
async fn deny_user_pulls_from_alice(h: &Harness) {
    let mut deny = rule(Effect::Deny, &[Action::Pull], &["alice/*"]);
    deny.subject = Some("user".into());
    h.registry
        .create_rule(&admin(), deny)
        .await
        .expect("the rule is stored");
}

/// Issue 16, case 1: a listing holds only repositories the caller may
/// pull, on both APIs, and pages around the ones left out.
#[tokio::test]
async fn listings_hold_only_repositories_the_caller_may_pull() {
    let h = Harness::new();
    for repo in ["a", "alice/private", "b"] {
        h.push_seeded_image(repo, "v1", repo).await;
    }
    deny_user_pulls_from_alice(&h).await;
    let r = h.user(Method::GET, "/v2/_catalog").send().await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["repositories"], serde_json::json!(["a", "b"]));
    let r = h.user(Method::GET, "/v2/_catalog?n=1").send().await;
    assert_eq!(r.json()["repositories"], serde_json::json!(["a"]));
    assert!(r.header("link").is_some(), "a next page follows");
    let r = h.user(Method::GET, "/v2/_catalog?n=1&last=a").send().await;
    assert_eq!(r.json()["repositories"], serde_json::json!(["b"]));
    assert!(
        r.header("link").is_none(),
        "nothing the user may read follows"
    );
    let r = h.user(Method::GET, "/v1/repositories").send().await;
    r.assert_status(StatusCode::OK);
    let listed = r.json();
    let names: Vec<&str> = listed["repositories"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["a", "b"]);
    let r = h
        .user(Method::GET, "/v2/alice/private/tags/list")
        .send()
        .await;
    r.assert_error(StatusCode::FORBIDDEN, "DENIED");
    assert_eq!(h.catalog().await, ["a", "alice/private", "b"]);
}

/// Issue 16, case 2: an upload that never lands anything, and a mount
/// that fell back to one, leave no repository in any listing.
#[tokio::test]
async fn an_abandoned_upload_leaves_no_repository() {
    let h = Harness::new();
    h.start_upload("bob/x").await;
    let nowhere = sha256(b"nowhere");
    let r = h
        .user(
            Method::POST,
            format!("/v2/bob/y/blobs/uploads/?mount={nowhere}&from=a"),
        )
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    assert!(h.catalog().await.is_empty());
    let r = h.user(Method::GET, "/v1/repositories").send().await;
    assert_eq!(r.json()["repositories"], serde_json::json!([]));
    assert_eq!(h.tags("bob/x").await, None);
    let layer = h.push_blob("bob/x", b"content").await;
    assert_eq!(h.catalog().await, ["bob/x"]);
    let r = h
        .user(Method::DELETE, format!("/v2/bob/x/blobs/{layer}"))
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    assert!(h.catalog().await.is_empty(), "its last content went");
}

/// Issue 16, case 5: `POST ?mount=` without `from` mounts a blob the
/// caller may pull from some repository, and only then.
#[tokio::test]
async fn an_anonymous_mount_uses_only_repositories_the_caller_may_pull() {
    let h = Harness::new();
    let secret = h.push_blob("alice/private", b"secret").await;
    let shared = h.push_blob("public", b"shared").await;
    deny_user_pulls_from_alice(&h).await;
    let r = h
        .user(
            Method::POST,
            format!("/v2/bob/app/blobs/uploads/?mount={shared}"),
        )
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/bob/app/blobs/{shared}").as_str())
    );
    assert_eq!(h.blob_status("bob/app", &shared).await, StatusCode::OK);
    let r = h
        .user(
            Method::POST,
            format!("/v2/bob/app/blobs/uploads/?mount={secret}"),
        )
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    assert_eq!(
        h.blob_status("bob/app", &secret).await,
        StatusCode::NOT_FOUND
    );
}
