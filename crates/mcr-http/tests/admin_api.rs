//! The admin REST API under `/v1`, endpoint by endpoint: what success
//! answers, what each validation error says, that non-admins get 403 and
//! callers without credentials 401 — every failure as `{"error": "..."}` —
//! and the side effects (audit entries, revoked tokens, rules in force,
//! files on disk).

mod support;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use mcr_adapters::sqlite::{backup_path, SqliteMetaStore};
use mcr_core::audit::EventType;
use mcr_core::names::RepoName;
use mcr_core::policy::builtin_rules;
use mcr_core::ports::RepositoryStore;
use mcr_core::testing::{admin, ManualClock, TEST_PASSWORD};
use serde_json::{json, Value};
use support::*;

const NO_CREDENTIALS: &str = "authentication required: no credentials";

fn at(seconds: u64) -> String {
    ManualClock::START
        .saturating_add(Duration::from_secs(seconds))
        .to_rfc3339()
}

// ---------------------------------------------------------------- health

#[tokio::test]
async fn health_answers_without_credentials() {
    let h = Harness::with(Setup::bearer());
    let r = h.anon(Method::GET, "/v1/health").send().await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "ok"}));
    // Credentials, even bad ones, do not matter.
    let r = h
        .anon(Method::GET, "/v1/health")
        .bearer("not-a-token")
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "ok"}));
}

/// `GET /v1/ready` without credentials: its status and body.
async fn readiness(h: &Harness) -> (StatusCode, Value) {
    let r = h.anon(Method::GET, "/v1/ready").send().await;
    (r.status, r.json())
}

#[tokio::test]
async fn readiness_is_503_naming_the_store_that_is_gone_until_it_is_back() {
    let h = Harness::new();
    let ready = json!({"status": "ready", "database": null, "storage": null});
    assert_eq!(readiness(&h).await, (StatusCode::OK, ready.clone()));

    // The blob directory removed for real, as an unmounted volume would be.
    std::fs::remove_dir_all(&h.layers).unwrap();
    let (status, body) = readiness(&h).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["database"], Value::Null);
    let why = body["storage"].as_str().expect("the storage problem");
    assert!(
        why.contains(&h.layers.display().to_string()) && why.contains("is gone"),
        "{why}"
    );
    assert_eq!(body["error"], format!("not ready: storage: {why}"));
    std::fs::create_dir(&h.layers).unwrap();
    assert_eq!(readiness(&h).await, (StatusCode::OK, ready.clone()));

    // The database file moved away: the open connections would go on
    // writing to a file no restart finds.
    let db = h.db_path();
    let aside = db.with_extension("aside");
    std::fs::rename(&db, &aside).unwrap();
    let (status, body) = readiness(&h).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["storage"], Value::Null);
    let why = body["database"].as_str().expect("the database problem");
    assert!(
        why.contains(&db.display().to_string()) && why.contains("is gone"),
        "{why}"
    );
    std::fs::rename(&aside, &db).unwrap();
    assert_eq!(readiness(&h).await, (StatusCode::OK, ready));
}

// ---------------------------------------------------------------- login, logout

#[tokio::test]
async fn login_answers_a_token_that_authenticates_admin_requests() {
    let h = Harness::with(Setup::bearer());
    let r = h
        .anon(Method::POST, "/v1/auth/login")
        .json(&json!({"username": "admin", "password": TEST_PASSWORD}))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    let body = r.json();
    let token = body["token"].as_str().expect("a token").to_string();
    assert!(!token.is_empty());
    // The fake identity's tokens in this harness live a century.
    let expires = ManualClock::START
        .saturating_add(Duration::from_secs(100 * 365 * 24 * 3600))
        .to_rfc3339();
    assert_eq!(body["expires_at"], json!(expires));
    assert_eq!(
        body["principal"],
        json!({"subject": "admin", "username": "admin", "account_type": "human", "roles": ["admin"]}),
        "who logged in"
    );
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");

    let r = h
        .anon(Method::GET, "/v1/gc/status")
        .bearer(&token)
        .send()
        .await;
    r.assert_status(StatusCode::OK);

    let logins = h.audit(EventType::Login).await;
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].event.actor_id.as_deref(), Some("admin"));
    assert_eq!(logins[0].event.details["username"], "admin");
}

#[tokio::test]
async fn login_refuses_a_wrong_password_or_unknown_user() {
    let h = Harness::with(Setup::bearer());
    for (username, password) in [("admin", "wrong"), ("nobody", TEST_PASSWORD)] {
        let r = h
            .anon(Method::POST, "/v1/auth/login")
            .json(&json!({"username": username, "password": password}))
            .send()
            .await;
        r.assert_admin_error(
            StatusCode::UNAUTHORIZED,
            &["authentication required", "invalid username or password"],
        );
        assert!(!r.text().contains(password), "the password is echoed");
    }
    let failed = h.audit(EventType::LoginFailed).await;
    let names: Vec<&str> = failed
        .iter()
        .map(|e| e.event.details["username"].as_str())
        .collect();
    assert_eq!(names, ["nobody", "admin"]);
    assert!(h.audit(EventType::Login).await.is_empty());
}

#[tokio::test]
async fn login_rejects_malformed_and_oversized_bodies() {
    let h = Harness::with(Setup::bearer());
    let cases: [(&[u8], &[&str]); 4] = [
        (b"{not json", &["invalid JSON body"]),
        (b"", &["invalid JSON body"]),
        (
            br#"{"username": "admin"}"#,
            &["invalid JSON body", "missing field `password`"],
        ),
        (
            br#"{"username": 7, "password": "x"}"#,
            &["invalid JSON body", "invalid type"],
        ),
    ];
    for (body, parts) in cases {
        let r = h
            .anon(Method::POST, "/v1/auth/login")
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await;
        r.assert_admin_error(StatusCode::BAD_REQUEST, parts);
    }
    let huge = json!({"username": "admin", "password": "x".repeat(70 * 1024)});
    let r = h
        .anon(Method::POST, "/v1/auth/login")
        .json(&huge)
        .send()
        .await;
    r.assert_admin_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &["request body is over 65536 bytes"],
    );
    // Nothing was attempted, so nothing failed.
    assert!(h.audit(EventType::LoginFailed).await.is_empty());
}

#[tokio::test]
async fn logout_revokes_the_token_it_is_called_with() {
    let h = Harness::with(Setup::bearer());
    let r = h
        .anon(Method::POST, "/v1/auth/login")
        .json(&json!({"username": "user", "password": TEST_PASSWORD}))
        .send()
        .await;
    let token = r.json()["token"].as_str().unwrap().to_string();
    // The token works on the OCI side and the admin side...
    let r = h.anon(Method::GET, "/v2/").bearer(&token).send().await;
    r.assert_status(StatusCode::OK);
    let r = h
        .anon(Method::POST, "/v1/auth/logout")
        .bearer(&token)
        .send()
        .await;
    r.assert_status(StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    // ...and nowhere after logout.
    let r = h
        .anon(Method::GET, "/v1/repositories")
        .bearer(&token)
        .send()
        .await;
    r.assert_admin_error(
        StatusCode::UNAUTHORIZED,
        &["authentication required", "token not valid"],
    );
    let r = h
        .anon(Method::POST, "/v1/auth/logout")
        .bearer(&token)
        .send()
        .await;
    r.assert_admin_error(StatusCode::UNAUTHORIZED, &["token not valid"]);
    let r = h.anon(Method::GET, "/v2/").bearer(&token).send().await;
    r.assert_status(StatusCode::UNAUTHORIZED);
    // Other tokens of the same user are untouched.
    let r = h
        .bearer_as("user", Method::GET, "/v1/repositories")
        .send()
        .await;
    r.assert_status(StatusCode::OK);

    let logouts = h.audit(EventType::Logout).await;
    assert_eq!(logouts.len(), 1);
    assert_eq!(logouts[0].event.actor_id.as_deref(), Some("user"));
}

#[tokio::test]
async fn logout_needs_a_bearer_token() {
    let h = Harness::with(Setup::bearer());
    let r = h.anon(Method::POST, "/v1/auth/logout").send().await;
    r.assert_admin_error(StatusCode::UNAUTHORIZED, &[NO_CREDENTIALS]);
    let r = h
        .anon(Method::POST, "/v1/auth/logout")
        .basic("user", TEST_PASSWORD)
        .send()
        .await;
    r.assert_admin_error(
        StatusCode::BAD_REQUEST,
        &["logout needs the bearer token to revoke"],
    );
    assert!(h.audit(EventType::Logout).await.is_empty());
}

#[tokio::test]
async fn an_unreachable_identity_service_is_503_not_401() {
    let h = Harness::with(Setup::bearer());
    h.identity.set_unavailable(true);
    let r = h
        .anon(Method::POST, "/v1/auth/login")
        .json(&json!({"username": "admin", "password": TEST_PASSWORD}))
        .send()
        .await;
    r.assert_admin_error(
        StatusCode::SERVICE_UNAVAILABLE,
        &["service unavailable", "identity service unreachable"],
    );
    let r = h
        .bearer_as("admin", Method::GET, "/v1/repositories")
        .send()
        .await;
    r.assert_admin_error(StatusCode::SERVICE_UNAVAILABLE, &["service unavailable"]);
    let r = h.anon(Method::GET, "/v1/health").send().await;
    r.assert_status(StatusCode::OK);
    // No failed login is recorded for an outage.
    assert!(h.audit(EventType::LoginFailed).await.is_empty());
}

// ---------------------------------------------------------------- repositories

/// Pushes three repositories through the OCI endpoints; returns the
/// expected summary of each, by name.
async fn three_repositories(h: &Harness) -> Vec<Value> {
    // ci/app: one manifest with two tags, a second untagged manifest that
    // shares the layer, and a blob no manifest names (still linked).
    let shared: &[u8] = b"shared layer bytes";
    let a = h
        .push_image("ci/app", "v1", b"{\"app\":1}", &[shared, b"app layer one"])
        .await;
    let r = h
        .bearer_as("user", Method::PUT, "/v2/ci/app/manifests/latest")
        .header("content-type", OCI_MANIFEST)
        .body(a.raw.clone())
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    let b = h
        .push_image(
            "ci/app",
            &sha256(&raw_image_manifest(b"{\"app\":2}", &[shared])),
            b"{\"app\":2}",
            &[shared],
        )
        .await;
    let loose = h.push_blob("ci/app", b"a blob no manifest names").await;
    assert!(loose.starts_with("sha256:"));
    let app_size = a.raw.len() as u64
        + b.raw.len() as u64
        + [
            &b"{\"app\":1}"[..],
            b"{\"app\":2}",
            shared,
            b"app layer one",
            b"a blob no manifest names",
        ]
        .iter()
        .map(|x| x.len() as u64)
        .sum::<u64>();
    // lib/base: one tagged manifest.
    let base = h
        .push_image("lib/base", "1.0", b"{\"base\":1}", &[b"base layer"])
        .await;
    let base_size = base.raw.len() as u64 + (b"{\"base\":1}".len() + b"base layer".len()) as u64;
    // zeta: only an uploaded blob.
    h.push_blob("zeta", b"zeta bytes").await;
    let created = ManualClock::START.to_rfc3339();
    vec![
        json!({"name": "ci/app", "tag_count": 2, "manifest_count": 2, "total_size": app_size, "created": created, "last_push": created}),
        json!({"name": "lib/base", "tag_count": 1, "manifest_count": 1, "total_size": base_size, "created": created, "last_push": created}),
        json!({"name": "zeta", "tag_count": 0, "manifest_count": 0, "total_size": 10, "created": created, "last_push": null}),
    ]
}

#[tokio::test]
async fn repositories_list_tag_count_manifest_count_and_total_size() {
    let h = Harness::with(Setup::bearer());
    let expected = three_repositories(&h).await;
    for who in ["admin", "user"] {
        let r = h
            .bearer_as(who, Method::GET, "/v1/repositories")
            .send()
            .await;
        r.assert_status(StatusCode::OK);
        assert_eq!(
            r.json(),
            json!({"repositories": expected, "next": null}),
            "as {who}"
        );
    }
}

#[tokio::test]
async fn repositories_page_with_n_and_last() {
    let h = Harness::with(Setup::bearer());
    let expected = three_repositories(&h).await;
    let r = h
        .bearer_as("admin", Method::GET, "/v1/repositories?n=2")
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"repositories": expected[..2], "next": "lib/base"})
    );
    let r = h
        .bearer_as("admin", Method::GET, "/v1/repositories?n=2&last=lib/base")
        .send()
        .await;
    assert_eq!(
        r.json(),
        json!({"repositories": expected[2..], "next": null})
    );
    // A page that ends exactly at the end says there is no more.
    let r = h
        .bearer_as("admin", Method::GET, "/v1/repositories?n=3")
        .send()
        .await;
    assert_eq!(r.json(), json!({"repositories": expected, "next": null}));
    let r = h
        .bearer_as("admin", Method::GET, "/v1/repositories?last=ci/app")
        .send()
        .await;
    assert_eq!(
        r.json(),
        json!({"repositories": expected[1..], "next": null})
    );
    let r = h
        .bearer_as("admin", Method::GET, "/v1/repositories?last=zeta")
        .send()
        .await;
    assert_eq!(r.json(), json!({"repositories": [], "next": null}));
}

#[tokio::test]
async fn repositories_refuse_guests_and_anonymous_callers() {
    let h = Harness::with(Setup::bearer());
    three_repositories(&h).await;
    let r = h
        .bearer_as("guest", Method::GET, "/v1/repositories")
        .send()
        .await;
    r.assert_admin_error(
        StatusCode::FORBIDDEN,
        &["guest may not registry:catalog the registry"],
    );
    let r = h.anon(Method::GET, "/v1/repositories").send().await;
    r.assert_admin_error(StatusCode::UNAUTHORIZED, &[NO_CREDENTIALS]);
    let r = h
        .anon(Method::GET, "/v1/repositories")
        .bearer("forged")
        .send()
        .await;
    r.assert_admin_error(StatusCode::UNAUTHORIZED, &["token not valid"]);
    let denied = h.audit(EventType::PolicyDeny).await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].event.actor_id.as_deref(), Some("guest"));
}

#[tokio::test]
async fn repositories_reject_a_malformed_page_size_as_json() {
    let h = Harness::with(Setup::bearer());
    for query in ["n=abc", "n=-1"] {
        let r = h
            .bearer_as("admin", Method::GET, format!("/v1/repositories?{query}"))
            .send()
            .await;
        r.assert_admin_error(StatusCode::BAD_REQUEST, &["n"]);
    }
}

#[tokio::test]
async fn repository_detail_of_a_nested_name_lists_tags_manifests_and_layers() {
    let h = Harness::with(Setup::bearer());
    h.clock.advance(Duration::from_secs(5));
    let config: &[u8] = b"{\"detail\":true}";
    let layers: [&[u8]; 2] = [b"detail layer one", b"detail layer two"];
    let image = h.push_image("team/sub/app", "v1", config, &layers).await;
    let r = h
        .bearer_as("user", Method::PUT, "/v2/team/sub/app/manifests/stable")
        .header("content-type", OCI_MANIFEST)
        .body(image.raw.clone())
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);

    let mut blobs = image.blobs.clone();
    blobs.sort();
    let layers_json: Vec<Value> = blobs
        .iter()
        .map(|(d, s)| json!({"digest": d, "size": s}))
        .collect();
    let created = at(5);
    let expected = json!({
        "name": "team/sub/app",
        "tag_count": 2,
        "manifest_count": 1,
        "total_size": image.raw.len() as u64 + blobs.iter().map(|b| b.1).sum::<u64>(),
        "created": created,
        "last_push": created,
        "tags": [
            {"name": "stable", "digest": image.digest},
            {"name": "v1", "digest": image.digest},
        ],
        "manifests": [{
            "digest": image.digest,
            "media_type": OCI_MANIFEST,
            "size": image.raw.len(),
            "created": created,
        }],
        "layers": layers_json,
    });
    for who in ["admin", "user"] {
        let r = h
            .bearer_as(who, Method::GET, "/v1/repositories/team/sub/app")
            .send()
            .await;
        r.assert_status(StatusCode::OK);
        assert_eq!(r.json(), expected, "as {who}");
    }
}

#[tokio::test]
async fn repository_detail_errors() {
    let h = Harness::with(Setup::bearer());
    h.push_image("ci/app", "v1", b"{}", &[b"l"]).await;
    let r = h
        .bearer_as("admin", Method::GET, "/v1/repositories/no/such")
        .send()
        .await;
    r.assert_admin_error(StatusCode::NOT_FOUND, &["repository no/such not known"]);
    let r = h
        .bearer_as("admin", Method::GET, "/v1/repositories/Bad/Name")
        .send()
        .await;
    r.assert_admin_error(StatusCode::BAD_REQUEST, &["repository name invalid"]);
    let r = h
        .bearer_as("guest", Method::GET, "/v1/repositories/ci/app")
        .send()
        .await;
    r.assert_admin_error(
        StatusCode::FORBIDDEN,
        &["guest may not registry:pull repository ci/app"],
    );
    let r = h.anon(Method::GET, "/v1/repositories/ci/app").send().await;
    r.assert_admin_error(StatusCode::UNAUTHORIZED, &[NO_CREDENTIALS]);
}

#[tokio::test]
async fn repository_delete_is_admin_only_audited_and_complete() {
    let h = Harness::with(Setup::bearer());
    let image = h
        .push_image("ci/app", "v1", b"{\"del\":1}", &[b"del layer"])
        .await;
    h.push_image("ci/other", "v1", b"{\"keep\":1}", &[b"keep layer"])
        .await;

    for (who, status, part) in [
        (
            "user",
            StatusCode::FORBIDDEN,
            "user may not policy:manage the registry",
        ),
        (
            "guest",
            StatusCode::FORBIDDEN,
            "guest may not registry:delete repository ci/app",
        ),
    ] {
        let r = h
            .bearer_as(who, Method::DELETE, "/v1/repositories/ci/app")
            .send()
            .await;
        r.assert_admin_error(status, &[part]);
    }
    let r = h
        .anon(Method::DELETE, "/v1/repositories/ci/app")
        .send()
        .await;
    r.assert_admin_error(StatusCode::UNAUTHORIZED, &[NO_CREDENTIALS]);
    // Still there.
    let r = h
        .bearer_as(
            "user",
            Method::GET,
            format!("/v2/ci/app/manifests/{}", image.digest),
        )
        .send()
        .await;
    r.assert_status(StatusCode::OK);

    // An upload session in progress goes with the repository.
    let r = h
        .bearer_as("user", Method::POST, "/v2/ci/app/blobs/uploads/")
        .send()
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    let session = r.header("location").expect("a Location").to_string();
    assert_eq!(h.upload_files().len(), 1);

    h.clock.advance(Duration::from_secs(1));
    let r = h
        .bearer_as("admin", Method::DELETE, "/v1/repositories/ci/app")
        .send()
        .await;
    r.assert_status(StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert!(h.upload_files().is_empty(), "{:?}", h.upload_files());
    let r = h.bearer_as("user", Method::GET, &session).send().await;
    r.assert_status(StatusCode::NOT_FOUND);

    let r = h
        .bearer_as("admin", Method::GET, "/v1/repositories/ci/app")
        .send()
        .await;
    r.assert_admin_error(StatusCode::NOT_FOUND, &["repository ci/app not known"]);
    let r = h
        .bearer_as("admin", Method::GET, "/v1/repositories")
        .send()
        .await;
    let names: Vec<String> = r.json()["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["ci/other"]);
    let r = h
        .bearer_as("user", Method::GET, "/v2/ci/app/manifests/v1")
        .send()
        .await;
    r.assert_status(StatusCode::NOT_FOUND);

    let deleted = h.audit(EventType::RepoDeleted).await;
    assert_eq!(deleted.len(), 1);
    let e = &deleted[0].event;
    assert_eq!(e.actor_id.as_deref(), Some("admin"));
    assert_eq!(e.repository.as_ref().map(|r| r.as_str()), Some("ci/app"));
    assert_eq!(e.time.to_rfc3339(), at(1));

    // Gone is gone; unknown is unknown; a bad name is a bad name.
    for name in ["ci/app", "never/was"] {
        let r = h
            .bearer_as("admin", Method::DELETE, format!("/v1/repositories/{name}"))
            .send()
            .await;
        r.assert_admin_error(
            StatusCode::NOT_FOUND,
            &[&format!("repository {name} not known")],
        );
    }
    let r = h
        .bearer_as("admin", Method::DELETE, "/v1/repositories/UPPER")
        .send()
        .await;
    r.assert_admin_error(StatusCode::BAD_REQUEST, &["repository name invalid"]);
    assert_eq!(h.audit(EventType::RepoDeleted).await.len(), 1);
}

// ---------------------------------------------------------------- policy rules

fn pull_rule_for_system() -> Value {
    json!({
        "priority": 10,
        "description": "CI pulls",
        "effect": "allow",
        "actions": ["registry:pull"],
        "account_types": ["system"],
        "repositories": ["ci/*"],
    })
}

#[tokio::test]
async fn policy_rules_crud_round_trip_audited() {
    let h = Harness::with(Setup::bearer());
    let r = h
        .bearer_as("admin", Method::GET, "/v1/policy/rules")
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json(), json!({"rules": builtin_rules()}));

    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/rules")
        .json(&pull_rule_for_system())
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    let created = r.json();
    let id = created["id"].as_i64().expect("an id");
    assert!(id >= 1);
    let expected = json!({
        "id": id,
        "priority": 10,
        "description": "CI pulls",
        "effect": "allow",
        "actions": ["registry:pull"],
        "roles": [],
        "account_types": ["system"],
        "subject": null,
        "repositories": ["ci/*"],
        "tags": [],
        "enabled": true,
    });
    assert_eq!(created, expected);

    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/rules")
        .json(&json!({"priority": 5, "effect": "deny", "actions": ["registry:push"], "subject": "ci-bot"}))
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    let second = r.json();
    let id2 = second["id"].as_i64().unwrap();
    assert_ne!(id, id2);

    // Listed by priority.
    let r = h
        .bearer_as("admin", Method::GET, "/v1/policy/rules")
        .send()
        .await;
    let mut listed = json!(builtin_rules());
    listed
        .as_array_mut()
        .unwrap()
        .extend([second, expected.clone()]);
    assert_eq!(r.json(), json!({ "rules": listed }));
    let r = h
        .bearer_as("admin", Method::GET, format!("/v1/policy/rules/{id}"))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json(), expected);

    let r = h
        .bearer_as("admin", Method::PATCH, format!("/v1/policy/rules/{id}"))
        .json(&json!({"priority": 3, "description": "CI pulls, first", "roles": ["guest"]}))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    let mut patched = expected.clone();
    patched["priority"] = json!(3);
    patched["description"] = json!("CI pulls, first");
    patched["roles"] = json!(["guest"]);
    assert_eq!(r.json(), patched);
    let r = h
        .bearer_as("admin", Method::GET, format!("/v1/policy/rules/{id}"))
        .send()
        .await;
    assert_eq!(r.json(), patched);
    // `subject: null` clears it; an absent field is left alone.
    let r = h
        .bearer_as("admin", Method::PATCH, format!("/v1/policy/rules/{id2}"))
        .json(&json!({"subject": null}))
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["subject"], Value::Null);
    assert_eq!(r.json()["actions"], json!(["registry:push"]));

    let r = h
        .bearer_as("admin", Method::DELETE, format!("/v1/policy/rules/{id}"))
        .send()
        .await;
    r.assert_status(StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    let r = h
        .bearer_as("admin", Method::GET, format!("/v1/policy/rules/{id}"))
        .send()
        .await;
    r.assert_admin_error(
        StatusCode::NOT_FOUND,
        &[&format!("policy rule {id} not found")],
    );
    let r = h
        .bearer_as("admin", Method::GET, "/v1/policy/rules")
        .send()
        .await;
    assert_eq!(
        r.json()["rules"].as_array().unwrap().len(),
        builtin_rules().len() + 1
    );

    let ids = |events: Vec<mcr_core::audit::AuditEvent>| -> Vec<String> {
        events
            .iter()
            .map(|e| {
                assert_eq!(e.event.actor_id.as_deref(), Some("admin"));
                e.event.details["rule_id"].clone()
            })
            .collect()
    };
    assert_eq!(
        ids(h.audit(EventType::PolicyRuleCreated).await),
        [id2.to_string(), id.to_string()]
    );
    assert_eq!(
        ids(h.audit(EventType::PolicyRuleUpdated).await),
        [id2.to_string(), id.to_string()]
    );
    assert_eq!(
        ids(h.audit(EventType::PolicyRuleDeleted).await),
        [id.to_string()]
    );
}

#[tokio::test]
async fn policy_rule_validation_names_the_field() {
    let h = Harness::with(Setup::bearer());
    let with = |field: &str, value: Value| {
        let mut v = pull_rule_for_system();
        v[field] = value;
        v
    };
    let without = |field: &str| {
        let mut v = pull_rule_for_system();
        v.as_object_mut().unwrap().remove(field);
        v
    };
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            with("priority", json!(0)),
            vec!["invalid priority", "must be 1 or more"],
        ),
        (with("priority", json!(-1)), vec!["invalid priority"]),
        (with("priority", json!("high")), vec!["invalid priority"]),
        (
            with("actions", json!(["registry:pull", "registry:fly"])),
            vec!["invalid actions", "unknown action \"registry:fly\""],
        ),
        (
            with("actions", json!([])),
            vec!["invalid actions", "name at least one action"],
        ),
        (without("actions"), vec!["missing field `actions`"]),
        (
            with("effect", json!("maybe")),
            vec![
                "invalid effect",
                "unknown effect \"maybe\"",
                "allow or deny",
            ],
        ),
        (without("effect"), vec!["missing field `effect`"]),
        (
            with("repositories", json!(["ci/["])),
            vec![
                "invalid repositories",
                "pattern \"ci/[\"",
                "not a valid glob",
            ],
        ),
        (
            with("repositories", json!(["CI/*"])),
            vec!["invalid repositories", "pattern \"CI/*\""],
        ),
        (
            with("roles", json!(["root"])),
            vec!["invalid roles", "unknown role \"root\""],
        ),
        (
            with("account_types", json!(["robot"])),
            vec!["invalid account_types", "unknown account type \"robot\""],
        ),
        (
            with("subject", json!("  ")),
            vec!["invalid subject", "must not be empty"],
        ),
        (
            with("colour", json!("blue")),
            vec!["unknown field `colour`"],
        ),
        (with("id", json!(7)), vec!["unknown field `id`"]),
    ];
    for (body, parts) in cases {
        let r = h
            .bearer_as("admin", Method::POST, "/v1/policy/rules")
            .json(&body)
            .send()
            .await;
        r.assert_admin_error(StatusCode::BAD_REQUEST, &parts);
    }
    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/rules")
        .header("content-type", "application/json")
        .body("{\"priority\": 1,")
        .send()
        .await;
    r.assert_admin_error(StatusCode::BAD_REQUEST, &["invalid JSON body"]);
    let mut huge = pull_rule_for_system();
    huge["description"] = json!("d".repeat(70 * 1024));
    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/rules")
        .json(&huge)
        .send()
        .await;
    r.assert_admin_error(StatusCode::PAYLOAD_TOO_LARGE, &["request body is over"]);
    // Nothing was stored, nothing audited.
    let r = h
        .bearer_as("admin", Method::GET, "/v1/policy/rules")
        .send()
        .await;
    assert_eq!(r.json(), json!({"rules": builtin_rules()}));
    assert!(h.audit(EventType::PolicyRuleCreated).await.is_empty());
}

#[tokio::test]
async fn policy_rule_patch_is_validated_as_a_whole_and_changes_nothing_on_error() {
    let h = Harness::with(Setup::bearer());
    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/rules")
        .json(&pull_rule_for_system())
        .send()
        .await;
    let rule = r.json();
    let id = rule["id"].as_i64().unwrap();
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"priority": 0}),
            vec!["invalid priority", "must be 1 or more"],
        ),
        (
            json!({"actions": []}),
            vec!["invalid actions", "name at least one action"],
        ),
        (
            json!({"actions": ["push"]}),
            vec!["invalid actions", "unknown action \"push\""],
        ),
        (
            json!({"effect": "permit"}),
            vec!["invalid effect", "allow or deny"],
        ),
        (
            json!({"repositories": ["ci/[a"]}),
            vec!["invalid repositories", "not a valid glob"],
        ),
        (
            json!({"repositories": ["ci//x"]}),
            vec!["invalid repositories", "empty path segment"],
        ),
        (json!({"subject": ""}), vec!["invalid subject"]),
        (json!({"name": "x"}), vec!["unknown field `name`"]),
    ];
    for (body, parts) in cases {
        let r = h
            .bearer_as("admin", Method::PATCH, format!("/v1/policy/rules/{id}"))
            .json(&body)
            .send()
            .await;
        r.assert_admin_error(StatusCode::BAD_REQUEST, &parts);
    }
    let r = h
        .bearer_as("admin", Method::GET, format!("/v1/policy/rules/{id}"))
        .send()
        .await;
    assert_eq!(r.json(), rule);
    assert!(h.audit(EventType::PolicyRuleUpdated).await.is_empty());
}

#[tokio::test]
async fn policy_rules_unknown_ids_are_404() {
    let h = Harness::with(Setup::bearer());
    for id in ["999", "-1", "0"] {
        let uri = format!("/v1/policy/rules/{id}");
        let expected = format!("policy rule {id} not found");
        let r = h.bearer_as("admin", Method::GET, &uri).send().await;
        r.assert_admin_error(StatusCode::NOT_FOUND, &[&expected]);
        let r = h
            .bearer_as("admin", Method::PATCH, &uri)
            .json(&json!({"priority": 4}))
            .send()
            .await;
        r.assert_admin_error(StatusCode::NOT_FOUND, &[&expected]);
        let r = h.bearer_as("admin", Method::DELETE, &uri).send().await;
        r.assert_admin_error(StatusCode::NOT_FOUND, &[&expected]);
    }
}

#[tokio::test]
async fn policy_rules_reject_a_malformed_id_as_json() {
    let h = Harness::with(Setup::bearer());
    for method in [Method::GET, Method::DELETE] {
        let r = h
            .bearer_as("admin", method, "/v1/policy/rules/abc")
            .send()
            .await;
        r.assert_admin_error(StatusCode::BAD_REQUEST, &["abc"]);
    }
}

#[tokio::test]
async fn policy_endpoints_are_admin_only() {
    let h = Harness::with(Setup::bearer());
    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/rules")
        .json(&pull_rule_for_system())
        .send()
        .await;
    let id = r.json()["id"].as_i64().unwrap();
    let explain = json!({"subject": "x", "account_type": "human", "action": "registry:pull"});
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/policy/rules".into(), None),
        (
            Method::POST,
            "/v1/policy/rules".into(),
            Some(pull_rule_for_system()),
        ),
        (Method::GET, format!("/v1/policy/rules/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/policy/rules/{id}"),
            Some(json!({"priority": 1})),
        ),
        (Method::DELETE, format!("/v1/policy/rules/{id}"), None),
        (Method::POST, "/v1/policy/explain".into(), Some(explain)),
    ];
    for (method, uri, body) in calls {
        for who in ["user", "guest", "system"] {
            let mut call = h.bearer_as(who, method.clone(), &uri);
            if let Some(b) = &body {
                call = call.json(b);
            }
            call.send().await.assert_admin_error(
                StatusCode::FORBIDDEN,
                &[&format!("{who} may not policy:manage the registry")],
            );
        }
        let mut call = h.anon(method.clone(), &uri);
        if let Some(b) = &body {
            call = call.json(b);
        }
        call.send()
            .await
            .assert_admin_error(StatusCode::UNAUTHORIZED, &[NO_CREDENTIALS]);
    }
    // Nothing changed.
    let r = h
        .bearer_as("admin", Method::GET, "/v1/policy/rules")
        .send()
        .await;
    // The built-ins, then the one stored rule.
    assert_eq!(r.json()["rules"].as_array().unwrap().len(), 5);
    assert_eq!(r.json()["rules"][4]["priority"], json!(10));
    assert_eq!(h.audit(EventType::PolicyRuleCreated).await.len(), 1);
    assert!(h.audit(EventType::PolicyRuleUpdated).await.is_empty());
    assert!(h.audit(EventType::PolicyRuleDeleted).await.is_empty());
}

#[tokio::test]
async fn each_policy_change_governs_the_next_request() {
    let h = Harness::with(Setup::bearer());
    let image = h
        .push_image("ci/app", "v1", b"{\"ci\":1}", &[b"ci layer"])
        .await;
    let layer = image.blobs[1].0.clone();
    let pull = |uri: String| h.bearer_as("system", Method::GET, uri).send();
    let manifest_uri = || "/v2/ci/app/manifests/v1".to_string();

    let r = pull(manifest_uri()).await;
    r.assert_status(StatusCode::FORBIDDEN);
    assert_eq!(r.json()["errors"][0]["code"], json!("DENIED"));

    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/rules")
        .json(&pull_rule_for_system())
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    let id = r.json()["id"].as_i64().unwrap();
    let r = pull(manifest_uri()).await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.body.as_ref(), image.raw.as_slice());
    let r = pull(format!("/v2/ci/app/blobs/{layer}")).await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.body.as_ref(), b"ci layer");
    // Pull only, and only under ci/.
    let r = h
        .bearer_as("system", Method::POST, "/v2/ci/app/blobs/uploads/")
        .send()
        .await;
    r.assert_status(StatusCode::FORBIDDEN);

    let patch = |body: Value| {
        h.bearer_as("admin", Method::PATCH, format!("/v1/policy/rules/{id}"))
            .json(&body)
            .send()
    };
    patch(json!({"repositories": ["other/*"]}))
        .await
        .assert_status(StatusCode::OK);
    pull(manifest_uri())
        .await
        .assert_status(StatusCode::FORBIDDEN);
    patch(json!({"repositories": ["ci/*"], "enabled": false}))
        .await
        .assert_status(StatusCode::OK);
    pull(manifest_uri())
        .await
        .assert_status(StatusCode::FORBIDDEN);
    patch(json!({"enabled": true}))
        .await
        .assert_status(StatusCode::OK);
    pull(manifest_uri()).await.assert_status(StatusCode::OK);
    // A deny at a later priority still wins.
    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/rules")
        .json(&json!({"priority": 99, "effect": "deny", "actions": ["registry:pull"], "subject": "system"}))
        .send()
        .await;
    let deny = r.json()["id"].as_i64().unwrap();
    pull(manifest_uri())
        .await
        .assert_status(StatusCode::FORBIDDEN);
    h.bearer_as("admin", Method::DELETE, format!("/v1/policy/rules/{deny}"))
        .send()
        .await
        .assert_status(StatusCode::NO_CONTENT);
    pull(manifest_uri()).await.assert_status(StatusCode::OK);

    h.bearer_as("admin", Method::DELETE, format!("/v1/policy/rules/{id}"))
        .send()
        .await
        .assert_status(StatusCode::NO_CONTENT);
    let r = pull(manifest_uri()).await;
    r.assert_status(StatusCode::FORBIDDEN);
    assert_eq!(r.json()["errors"][0]["code"], json!("DENIED"));
}

#[tokio::test]
async fn policy_explain_says_which_rules_matched_and_why() {
    let h = Harness::with(Setup::bearer());
    let ask = json!({
        "subject": "ci-bot",
        "account_type": "system",
        "action": "registry:pull",
        "repository": "ci/app",
    });
    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/explain")
        .json(&ask)
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    let e = r.json();
    assert_eq!(e["decision"], json!({"effect": "deny", "rule_id": null}));
    let verdicts = e["rules"].as_array().unwrap();
    let summary: Vec<(i64, bool, Value)> = verdicts
        .iter()
        .map(|v| {
            (
                v["rule"]["id"].as_i64().unwrap(),
                v["matched"].as_bool().unwrap(),
                v.get("mismatch").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (-1, false, json!("role")),
            (-2, false, json!("role")),
            (-3, false, json!("action")),
            (-4, false, json!("action")),
        ]
    );
    assert!(e["text"].as_str().unwrap().contains("deny"), "{e}");

    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/rules")
        .json(&pull_rule_for_system())
        .send()
        .await;
    let id = r.json()["id"].as_i64().unwrap();
    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/explain")
        .json(&ask)
        .send()
        .await;
    let e = r.json();
    assert_eq!(e["decision"], json!({"effect": "allow", "rule_id": id}));
    let matched: Vec<i64> = e["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["matched"] == json!(true))
        .map(|v| v["rule"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(matched, [id]);
    // A global operation never matches a repository-scoped rule.
    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/explain")
        .json(&json!({"subject": "ci-bot", "account_type": "system", "action": "registry:catalog"}))
        .send()
        .await;
    let e = r.json();
    assert_eq!(e["decision"], json!({"effect": "deny", "rule_id": null}));
    let ours = e["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["rule"]["id"] == json!(id))
        .unwrap();
    assert_eq!(ours["mismatch"], json!("action"));

    let bad: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"subject": "x", "account_type": "system", "action": "registry:fly"}),
            vec!["invalid JSON body", "registry:fly"],
        ),
        (
            json!({"subject": "x", "account_type": "robot", "action": "registry:pull"}),
            vec!["invalid JSON body", "robot"],
        ),
        (
            json!({"subject": "x", "account_type": "human", "roles": ["root"], "action": "registry:pull"}),
            vec!["invalid JSON body", "root"],
        ),
        (
            json!({"subject": "x", "account_type": "human", "action": "registry:pull", "repository": "Not/Valid"}),
            vec!["repository name invalid"],
        ),
        (
            json!({"subject": "x", "account_type": "human", "action": "registry:pull", "extra": 1}),
            vec!["unknown field `extra`"],
        ),
        (
            json!({"account_type": "human", "action": "registry:pull"}),
            vec!["missing field `subject`"],
        ),
    ];
    for (body, parts) in bad {
        let r = h
            .bearer_as("admin", Method::POST, "/v1/policy/explain")
            .json(&body)
            .send()
            .await;
        r.assert_admin_error(StatusCode::BAD_REQUEST, &parts);
    }
}

#[tokio::test]
async fn a_stored_rule_cannot_lock_the_admins_out_of_the_admin_api() {
    let h = Harness::with(Setup::bearer());
    let r = h
        .bearer_as("admin", Method::POST, "/v1/policy/rules")
        .json(&json!({"priority": 1, "effect": "deny", "actions": ["policy:manage"]}))
        .send()
        .await;
    // Either the rule is refused up front...
    if r.status == StatusCode::BAD_REQUEST {
        r.assert_admin_error(StatusCode::BAD_REQUEST, &["policy:manage"]);
        return;
    }
    r.assert_status(StatusCode::CREATED);
    let id = r.json()["id"].as_i64().unwrap();
    // ...or an admin can still take it back. Otherwise only SQL on the
    // database file can.
    let r = h
        .bearer_as("admin", Method::DELETE, format!("/v1/policy/rules/{id}"))
        .send()
        .await;
    r.assert_status(StatusCode::NO_CONTENT);
}

// ---------------------------------------------------------------- audit

/// Events at known times: user pushes ci/app at +0 s, guest is denied a
/// pull of ci/app at +1 s, user pushes lib/base at +2 s.
async fn audit_history(h: &Harness) {
    h.push_image("ci/app", "v1", b"{\"audit\":1}", &[b"audit layer 1"])
        .await;
    h.clock.advance(Duration::from_secs(1));
    h.bearer_as("guest", Method::GET, "/v2/ci/app/manifests/v1")
        .send()
        .await
        .assert_status(StatusCode::FORBIDDEN);
    h.clock.advance(Duration::from_secs(1));
    h.push_image("lib/base", "v1", b"{\"audit\":2}", &[b"audit layer 2"])
        .await;
}

/// `(event_type, actor_id, repository, time)` of each event answered.
fn events(r: &Reply) -> Vec<(String, String, String, String)> {
    r.assert_status(StatusCode::OK);
    let body = r.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let list = body["events"].as_array().expect("an events array");
    let ids: Vec<i64> = list.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    list.iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("-").to_string();
            (s("event_type"), s("actor_id"), s("repository"), s("time"))
        })
        .collect()
}

fn ev(t: &str, actor: &str, repo: &str, secs: u64) -> (String, String, String, String) {
    (t.into(), actor.into(), repo.into(), at(secs))
}

#[tokio::test]
async fn audit_lists_events_newest_first_with_every_filter() {
    let h = Harness::with(Setup::bearer());
    audit_history(&h).await;
    let all = vec![
        ev("manifest_pushed", "user", "lib/base", 2),
        ev("blob_uploaded", "user", "lib/base", 2),
        ev("blob_uploaded", "user", "lib/base", 2),
        ev("policy_deny", "guest", "ci/app", 1),
        ev("manifest_pushed", "user", "ci/app", 0),
        ev("blob_uploaded", "user", "ci/app", 0),
        ev("blob_uploaded", "user", "ci/app", 0),
    ];
    let get = |q: String| {
        h.bearer_as("admin", Method::GET, format!("/v1/audit{q}"))
            .send()
    };
    assert_eq!(events(&get(String::new()).await), all);

    let r = get(String::new()).await;
    let deny = &r.json()["events"][3];
    assert_eq!(deny["details"], json!({"action": "registry:pull"}));
    assert_eq!(deny["digest"], Value::Null);

    assert_eq!(
        events(&get("?event_type=manifest_pushed".into()).await),
        [all[0].clone(), all[4].clone()]
    );
    assert_eq!(
        events(&get("?actor_id=guest".into()).await),
        [all[3].clone()]
    );
    assert_eq!(
        events(&get("?repository=ci/app".into()).await),
        all[3..].to_vec()
    );
    assert_eq!(
        events(&get("?event_type=blob_uploaded&repository=lib/base".into()).await),
        all[1..3].to_vec()
    );
    assert_eq!(
        events(&get(format!("?since={}", at(1))).await),
        all[..4].to_vec()
    );
    assert_eq!(
        events(&get(format!("?until={}", at(1))).await),
        all[3..].to_vec()
    );
    assert_eq!(
        events(&get(format!("?since={}&until={}", at(1), at(1))).await),
        [all[3].clone()]
    );
    assert_eq!(events(&get("?n=2".into()).await), all[..2].to_vec());
    assert_eq!(
        events(&get("?n=2&offset=2".into()).await),
        all[2..4].to_vec()
    );
    assert_eq!(events(&get("?offset=6".into()).await), all[6..].to_vec());
    assert_eq!(events(&get("?offset=7".into()).await), []);
    assert_eq!(events(&get("?actor_id=nobody".into()).await), []);
}

#[tokio::test]
async fn audit_rejects_bad_filters_and_non_admins() {
    let h = Harness::with(Setup::bearer());
    audit_history(&h).await;
    let cases: [(&str, &[&str]); 5] = [
        (
            "?event_type=bogus",
            &["invalid event_type", "unknown event type \"bogus\""],
        ),
        ("?since=yesterday", &["invalid timestamp", "yesterday"]),
        ("?until=2024-13-01T00:00:00Z", &["invalid timestamp"]),
        ("?repository=Not/Valid", &["repository name invalid"]),
        ("?n=lots", &["n"]),
    ];
    for (q, parts) in cases {
        let r = h
            .bearer_as("admin", Method::GET, format!("/v1/audit{q}"))
            .send()
            .await;
        r.assert_admin_error(StatusCode::BAD_REQUEST, parts);
    }
    for who in ["user", "guest", "system"] {
        let r = h.bearer_as(who, Method::GET, "/v1/audit").send().await;
        r.assert_admin_error(
            StatusCode::FORBIDDEN,
            &[&format!("{who} may not policy:manage the registry")],
        );
    }
    let r = h.anon(Method::GET, "/v1/audit").send().await;
    r.assert_admin_error(StatusCode::UNAUTHORIZED, &[NO_CREDENTIALS]);
}

// ---------------------------------------------------------------- GC

#[tokio::test]
async fn gc_runs_in_the_background_and_reports_its_last_run() {
    let h = Harness::with(Setup {
        gc_grace: Duration::from_secs(60),
        ..Setup::bearer()
    });
    let r = h
        .bearer_as("admin", Method::GET, "/v1/gc/status")
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"running": false, "last_run": null, "next_run": null})
    );

    let image = h
        .push_image("ci/app", "v1", b"{\"gc\":1}", &[b"kept layer"])
        .await;
    h.push_blob("ci/app", b"garbage one").await;
    h.push_blob("ci/other", b"garbage number two").await;
    h.clock.advance(Duration::from_secs(61));

    let r = h.bearer_as("admin", Method::POST, "/v1/gc").send().await;
    r.assert_status(StatusCode::ACCEPTED);
    let body = r.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let id = body["id"].as_str().expect("an id").to_string();
    let status = h.wait_for_gc(&id).await;
    let started = at(61);
    assert_eq!(
        status,
        json!({
            "running": false,
            "next_run": null,
            "last_run": {
                "id": id,
                "started_at": started,
                "completed_at": started,
                "blobs_removed": 2,
                "bytes_freed": b"garbage one".len() + b"garbage number two".len(),
            }
        })
    );
    let files = h.blob_files();
    let kept: Vec<&String> = files.keys().collect();
    let mut expected: Vec<&String> = image.blobs.iter().map(|b| &b.0).collect();
    expected.sort();
    assert_eq!(kept, expected);

    let started = h.audit(EventType::GcStarted).await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].event.details["id"], id);
    let completed = h.audit(EventType::GcCompleted).await;
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].event.details["blobs_removed"], "2");

    // A second run with nothing to do.
    h.clock.advance(Duration::from_secs(1));
    let r = h.bearer_as("admin", Method::POST, "/v1/gc").send().await;
    r.assert_status(StatusCode::ACCEPTED);
    let id2 = r.json()["id"].as_str().unwrap().to_string();
    let status = h.wait_for_gc(&id2).await;
    assert_eq!(status["last_run"]["blobs_removed"], json!(0));
    assert_eq!(status["last_run"]["bytes_freed"], json!(0));
    assert_eq!(status["last_run"]["started_at"], json!(at(62)));
}

#[tokio::test]
async fn gc_status_survives_a_restart() {
    let mut h = Harness::with(Setup {
        gc_grace: Duration::from_secs(60),
        ..Setup::bearer()
    });
    h.push_blob("ci/app", b"garbage").await;
    h.clock.advance(Duration::from_secs(61));
    let r = h.bearer_as("admin", Method::POST, "/v1/gc").send().await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let before = h.wait_for_gc(&id).await;
    assert_eq!(before["last_run"]["blobs_removed"], json!(1));
    h.clock.advance(Duration::from_secs(5));
    h.restart().await;
    let r = h
        .bearer_as("admin", Method::GET, "/v1/gc/status")
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json(), before);
}

#[tokio::test]
async fn a_second_gc_while_one_runs_is_409() {
    let h = Harness::with(Setup::bearer());
    let hold = h
        .registry
        .start_gc(&admin())
        .await
        .expect("the slot is free");
    let r = h.bearer_as("admin", Method::POST, "/v1/gc").send().await;
    r.assert_admin_error(
        StatusCode::CONFLICT,
        &["garbage collection is already running"],
    );
    let r = h
        .bearer_as("admin", Method::GET, "/v1/gc/status")
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"running": true, "last_run": null, "next_run": null})
    );
    // Nothing started, nothing audited.
    assert!(h.audit(EventType::GcStarted).await.is_empty());

    drop(hold);
    let r = h
        .bearer_as("admin", Method::GET, "/v1/gc/status")
        .send()
        .await;
    assert_eq!(r.json()["running"], json!(false));
    let r = h.bearer_as("admin", Method::POST, "/v1/gc").send().await;
    r.assert_status(StatusCode::ACCEPTED);
    let id = r.json()["id"].as_str().unwrap().to_string();
    h.wait_for_gc(&id).await;
}

#[tokio::test]
async fn each_gc_run_has_its_own_id() {
    let h = Harness::with(Setup::bearer());
    let first = h.gc().await;
    let r = h.bearer_as("admin", Method::POST, "/v1/gc").send().await;
    r.assert_status(StatusCode::ACCEPTED);
    let second = r.json()["id"].as_str().unwrap().to_string();
    assert_ne!(
        first.id, second,
        "two runs started in the same millisecond share an id, so a caller \
         polling /v1/gc/status cannot tell the earlier run's report from its own"
    );
}

#[tokio::test]
async fn gc_endpoints_are_admin_only() {
    let h = Harness::with(Setup::bearer());
    for (method, uri) in [
        (Method::POST, "/v1/gc"),
        (Method::GET, "/v1/gc/status"),
        (Method::POST, "/v1/gc/reconcile"),
    ] {
        for who in ["user", "guest", "system"] {
            let r = h.bearer_as(who, method.clone(), uri).send().await;
            r.assert_admin_error(
                StatusCode::FORBIDDEN,
                &[&format!("{who} may not policy:manage the registry")],
            );
        }
        let r = h.anon(method.clone(), uri).send().await;
        r.assert_admin_error(StatusCode::UNAUTHORIZED, &[NO_CREDENTIALS]);
    }
    assert!(h.audit(EventType::GcStarted).await.is_empty());
    assert!(h.audit(EventType::Reconciled).await.is_empty());
    let r = h
        .bearer_as("admin", Method::GET, "/v1/gc/status")
        .send()
        .await;
    assert_eq!(
        r.json(),
        json!({"running": false, "last_run": null, "next_run": null})
    );
}

#[tokio::test]
async fn reconcile_removes_files_without_rows_and_reports_rows_without_files() {
    let h = Harness::with(Setup::bearer());
    let image = h
        .push_image(
            "ci/app",
            "v1",
            b"{\"rec\":1}",
            &[b"rec layer one", b"rec layer two"],
        )
        .await;
    let r = h
        .bearer_as("admin", Method::POST, "/v1/gc/reconcile")
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json(), json!({"files_removed": [], "missing_files": []}));

    // A file with no row, as a crash between rename and row leaves it.
    let orphan: &[u8] = b"left behind by a crash";
    let orphan_digest = sha256(orphan);
    let hex = &orphan_digest["sha256:".len()..];
    let dir = h.layers.join("sha256").join(&hex[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(hex), orphan).unwrap();
    // A row whose file vanished.
    let lost = &image.blobs[2].0;
    let lost_hex = &lost["sha256:".len()..];
    let lost_dir = h.layers.join("sha256").join(&lost_hex[..2]);
    std::fs::remove_file(lost_dir.join(lost_hex)).unwrap();
    // As an operator's mistake would leave it: no empty directory behind.
    let _ = std::fs::remove_dir(&lost_dir);

    let r = h
        .bearer_as("admin", Method::POST, "/v1/gc/reconcile")
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"files_removed": [orphan_digest], "missing_files": [lost]})
    );
    let files = h.blob_files();
    assert!(!files.contains_key(&orphan_digest));
    assert_eq!(files.len(), 2);

    let events = h.audit(EventType::Reconciled).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event.details["files_removed"], "1");
    assert_eq!(events[0].event.details["missing_files"], "1");
    assert_eq!(events[0].event.actor_id.as_deref(), Some("admin"));
}

// ---------------------------------------------------------------- snapshot

#[tokio::test]
async fn snapshot_copies_the_database_into_backups_and_is_audited() {
    let h = Harness::with(Setup::bearer());
    h.push_seeded_image("ci/app", "v1", "snap").await;
    let r = h
        .bearer_as("admin", Method::POST, "/v1/snapshot")
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    let copy = backup_path(&h.db_path(), ManualClock::START);
    let location = copy.to_str().unwrap();
    assert!(
        location.ends_with("/backups/mcr-20240101-000000.db"),
        "{location}"
    );
    assert_eq!(r.json(), json!({"location": location, "taken_at": at(0)}));
    let restored = SqliteMetaStore::open(&copy).expect("the copy is a database");
    assert!(restored
        .repository_exists(&RepoName::new("ci/app").unwrap())
        .await
        .unwrap());
    let events = h.audit(EventType::SnapshotTaken).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.actor_id.as_deref(), Some("admin"));
    assert_eq!(events[0].event.details["location"], location);

    // Within the same second the name is taken: refused, the copy kept.
    let before = std::fs::read(&copy).unwrap();
    let r = h
        .bearer_as("admin", Method::POST, "/v1/snapshot")
        .send()
        .await;
    r.assert_admin_error(StatusCode::CONFLICT, &["already exists"]);
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    h.clock.advance(Duration::from_secs(1));
    let r = h
        .bearer_as("admin", Method::POST, "/v1/snapshot")
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    assert!(r.json()["location"]
        .as_str()
        .unwrap()
        .ends_with("/backups/mcr-20240101-000001.db"));
}

#[tokio::test]
async fn snapshot_is_admin_only() {
    let h = Harness::with(Setup::bearer());
    for who in ["user", "guest", "system"] {
        let r = h.bearer_as(who, Method::POST, "/v1/snapshot").send().await;
        r.assert_admin_error(
            StatusCode::FORBIDDEN,
            &[&format!("{who} may not policy:manage the registry")],
        );
    }
    let r = h.anon(Method::POST, "/v1/snapshot").send().await;
    r.assert_admin_error(StatusCode::UNAUTHORIZED, &[NO_CREDENTIALS]);
    assert!(!h.db_path().with_file_name("backups").exists());
    assert!(h.audit(EventType::SnapshotTaken).await.is_empty());
}

// ---------------------------------------------------------------- the rest

#[tokio::test]
async fn unknown_admin_paths_and_methods_answer_json_errors() {
    let h = Harness::with(Setup::bearer());
    let r = h
        .bearer_as("admin", Method::GET, "/v1/nothing-here")
        .send()
        .await;
    r.assert_admin_error(StatusCode::NOT_FOUND, &[]);
    let r = h.bearer_as("admin", Method::PUT, "/v1/health").send().await;
    r.assert_admin_error(StatusCode::METHOD_NOT_ALLOWED, &[]);
}
