//! Retention over the real router (SQLite and files): policy CRUD with
//! its validation errors and admin-only access; a dry run and the real
//! run on a seeded repository list the same deletions, and the GC after
//! it frees exactly the bytes of the blobs only the deleted manifests
//! referenced; an immutable tag (a deny rule on `registry:tag_delete`) is
//! not deleted and the run reports it.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;

const DAY: Duration = Duration::from_secs(86_400);

/// In `app*`: keep the newest tag and `v*` tags, delete other tags pushed
/// over 30 days ago and untagged manifests pushed over 7 days ago.
fn policy() -> Value {
    json!({
        "description": "cleanup",
        "repositories": ["app*"],
        "keep_last": 1,
        "keep_tags": ["v*"],
        "delete_tags_older_than": "30d",
        "delete_untagged_older_than": "7d",
    })
}

async fn create(h: &Harness, body: &Value) -> Value {
    let r = h
        .as_("admin", Method::POST, "/v1/retention")
        .json(body)
        .send()
        .await;
    r.assert_status(StatusCode::CREATED);
    r.json()
}

async fn run(h: &Harness, body: Value) -> Value {
    let r = h
        .as_("admin", Method::POST, "/v1/retention/run")
        .json(&body)
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    r.json()
}

/// (repository, digest, tags, manifest) of each listed deletion.
fn listed(report: &Value) -> Vec<(String, String, Vec<String>, bool)> {
    report["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["repository"].as_str().unwrap().to_string(),
                i["digest"].as_str().unwrap().to_string(),
                strings(&i["tags"]),
                i["manifest"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn policies_crud_is_validated_admin_only_and_audited() {
    let h = Harness::new();
    let created = create(&h, &policy()).await;
    let id = created["id"].as_i64().expect("an id");
    assert_eq!(created["keep_last"], json!(1));
    assert_eq!(created["delete_tags_older_than"], json!("30days"));
    assert_eq!(created["enabled"], json!(true));

    let r = h.as_("admin", Method::GET, "/v1/retention").send().await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["policies"], json!([created.clone()]));
    let r = h
        .as_("admin", Method::GET, format!("/v1/retention/{id}"))
        .send()
        .await;
    assert_eq!(r.json(), created);

    let mut replaced = policy();
    replaced["enabled"] = json!(false);
    replaced["keep_last"] = json!(5);
    let r = h
        .as_("admin", Method::PUT, format!("/v1/retention/{id}"))
        .json(&replaced)
        .send()
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(
        (r.json()["keep_last"].clone(), r.json()["enabled"].clone()),
        (json!(5), json!(false))
    );

    for (body, parts) in [
        (
            json!({"repositories": ["app"], "keep_last": 3}),
            vec!["a policy must delete something"],
        ),
        (
            json!({"repositories": [], "delete_tags_older_than": "1d"}),
            vec!["repositories", "needs 1 to 64"],
        ),
        (
            json!({"repositories": ["app"], "keep_last": 0, "delete_tags_older_than": "1d"}),
            vec!["keep_last", "use 1 to 10000"],
        ),
        (
            json!({"repositories": ["app"], "delete_untagged_older_than": "5s"}),
            vec!["delete_untagged_older_than", "from 1m"],
        ),
        (
            json!({"repositories": ["App!"], "delete_tags_older_than": "1d"}),
            vec!["repositories", "App!"],
        ),
        (
            json!({"repositories": ["app"], "delete_tags_older_than": "1d", "colour": "red"}),
            vec!["colour"],
        ),
    ] {
        let r = h
            .as_("admin", Method::POST, "/v1/retention")
            .json(&body)
            .send()
            .await;
        r.assert_admin_error(StatusCode::BAD_REQUEST, &parts);
    }

    for (method, uri, body) in [
        (Method::GET, "/v1/retention".to_string(), None),
        (Method::POST, "/v1/retention".to_string(), Some(policy())),
        (Method::PUT, format!("/v1/retention/{id}"), Some(policy())),
        (Method::DELETE, format!("/v1/retention/{id}"), None),
        (
            Method::POST,
            "/v1/retention/run".to_string(),
            Some(json!({"dry_run": true})),
        ),
        (Method::GET, "/v1/retention/status".to_string(), None),
    ] {
        let mut call = h.as_("user", method, uri);
        if let Some(body) = &body {
            call = call.json(body);
        }
        call.send()
            .await
            .assert_admin_error(StatusCode::FORBIDDEN, &["user may not"]);
    }

    let r = h
        .as_("admin", Method::DELETE, format!("/v1/retention/{id}"))
        .send()
        .await;
    r.assert_status(StatusCode::NO_CONTENT);
    let r = h
        .as_("admin", Method::GET, format!("/v1/retention/{id}"))
        .send()
        .await;
    r.assert_admin_error(
        StatusCode::NOT_FOUND,
        &["retention policy", &id.to_string()],
    );
    let r = h
        .as_("admin", Method::POST, "/v1/retention/run")
        .json(&json!({"dry_run": true, "policy": id}))
        .send()
        .await;
    r.assert_admin_error(StatusCode::NOT_FOUND, &["retention policy"]);

    let mut audited = Vec::new();
    for e in [
        mcr_core::audit::EventType::RetentionPolicyCreated,
        mcr_core::audit::EventType::RetentionPolicyUpdated,
        mcr_core::audit::EventType::RetentionPolicyDeleted,
    ] {
        audited.push(format!("{e}: {}", h.audit(e).await.len()));
    }
    assert_eq!(
        audited,
        [
            "retention_policy_created: 1",
            "retention_policy_updated: 1",
            "retention_policy_deleted: 1"
        ]
    );
}

/// What [`seed`] pushed.
struct Seeded {
    /// Every image manifest pushed, with its blobs.
    images: Vec<Image>,
    /// Manifests a run must delete.
    doomed: BTreeSet<String>,
}

/// `app` 40 days ago: `dev-1` (deleted, tag and manifest), `v1` (kept by
/// pattern) with a signature referring to it (kept), an image pushed by
/// digest alone (deleted), an index tagged `multi` over an untagged child
/// (tag, index and child deleted); all sharing one layer. Today: `dev-9`
/// (the newest tag, kept).
async fn seed(h: &Harness) -> Seeded {
    let shared: &[u8] = b"a layer every image shares";
    let dev = h
        .push_image("app", "dev-1", b"{\"c\":\"dev\"}", &[shared, b"dev layer"])
        .await;
    let release = h
        .push_image("app", "v1", b"{\"c\":\"v1\"}", &[shared, b"v1 layer"])
        .await;
    // The signature's config and layer are its own; its subject is v1.
    let (sig_config, sig_layer): (&[u8], &[u8]) = (b"{\"c\":\"sig\"}", b"signature");
    h.push_blob("app", sig_config).await;
    h.push_blob("app", sig_layer).await;
    let sig = to_bytes(&image_manifest(
        descriptor(OCI_CONFIG, sig_config),
        &[descriptor(OCI_LAYER, sig_layer)],
        json!({"subject": descriptor(OCI_MANIFEST, &release.raw)}),
    ));
    h.put_manifest("app", &sha256(&sig), OCI_MANIFEST, &sig)
        .await
        .assert_status(StatusCode::CREATED);
    let loose = h
        .push_image(
            "app",
            "placeholder",
            b"{\"c\":\"loose\"}",
            &[shared, b"loose layer"],
        )
        .await;
    let child = h
        .push_image(
            "app",
            "placeholder",
            b"{\"c\":\"child\"}",
            &[shared, b"child layer"],
        )
        .await;
    // The placeholder tag now names the child; deleting it leaves both
    // images untagged.
    h.as_("admin", Method::DELETE, "/v2/app/manifests/placeholder")
        .send()
        .await
        .assert_status(StatusCode::ACCEPTED);
    let index = to_bytes(&image_index(
        &[descriptor(OCI_MANIFEST, &child.raw)],
        json!({}),
    ));
    h.put_manifest("app", "multi", OCI_INDEX, &index)
        .await
        .assert_status(StatusCode::CREATED);
    h.clock.advance(40 * DAY);
    let fresh = h.push_seeded_image("app", "dev-9", "fresh").await;
    let doomed = [&dev.digest, &loose.digest, &child.digest, &sha256(&index)]
        .into_iter()
        .cloned()
        .collect();
    let mut signature = release.clone();
    signature.digest = sha256(&sig);
    signature.blobs = vec![
        (sha256(sig_config), sig_config.len() as u64),
        (sha256(sig_layer), sig_layer.len() as u64),
    ];
    Seeded {
        images: vec![dev, release, signature, loose, child, fresh],
        doomed,
    }
}

#[tokio::test]
async fn a_dry_run_and_the_real_run_list_the_same_and_gc_frees_their_bytes() {
    let h = Harness::new();
    let seeded = seed(&h).await;
    create(&h, &policy()).await;
    let files_before = h.blob_files();

    let dry = run(&h, json!({"dry_run": true})).await;
    assert_eq!(dry["dry_run"], json!(true));
    let planned = listed(&dry);
    let planned_manifests: BTreeSet<String> = planned
        .iter()
        .filter(|p| p.3)
        .map(|p| p.1.clone())
        .collect();
    assert_eq!(planned_manifests, seeded.doomed, "{planned:?}");
    assert_eq!(
        dry["totals"],
        json!({"manifests": 4, "tags": 2, "refused": 0, "changed": 0})
    );
    assert!(dry["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["outcome"] == json!("planned")));
    for item in dry["items"].as_array().unwrap() {
        assert!(
            item["reason"].as_str().unwrap().contains("older_than"),
            "{item}"
        );
    }
    assert_eq!(
        h.manifest_status("app", "dev-1").await,
        StatusCode::OK,
        "a dry run deleted"
    );
    assert_eq!(h.blob_files(), files_before, "a dry run changed the files");

    let real = run(&h, json!({"dry_run": false})).await;
    assert_eq!(
        listed(&real),
        planned,
        "the real run deleted what the dry run listed"
    );
    assert_eq!(real["totals"], dry["totals"]);
    assert!(real["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["outcome"] == json!("deleted")));
    for gone in ["dev-1", "multi"] {
        assert_eq!(
            h.manifest_status("app", gone).await,
            StatusCode::NOT_FOUND,
            "{gone}"
        );
    }
    for image in &seeded.images {
        let want = if seeded.doomed.contains(&image.digest) {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(
            h.manifest_status("app", &image.digest).await,
            want,
            "{}",
            image.digest
        );
    }
    let status = h
        .as_("admin", Method::GET, "/v1/retention/status")
        .send()
        .await;
    status.assert_status(StatusCode::OK);
    assert_eq!(status.json()["last_run"]["id"], real["id"]);
    assert_eq!(status.json()["last_run"]["totals"], real["totals"]);
    assert_eq!(status.json()["running"], json!(false));

    // The blobs only the deleted manifests referenced, and their bytes.
    let kept: BTreeSet<&(String, u64)> = seeded
        .images
        .iter()
        .filter(|i| !seeded.doomed.contains(&i.digest))
        .flat_map(|i| i.blobs.iter())
        .collect();
    let freed: BTreeSet<&(String, u64)> = seeded
        .images
        .iter()
        .filter(|i| seeded.doomed.contains(&i.digest))
        .flat_map(|i| i.blobs.iter())
        .filter(|b| !kept.contains(b))
        .collect();
    let report = h.gc().await;
    assert_eq!(report.blobs_removed, freed.len() as u64);
    assert_eq!(report.bytes_freed, freed.iter().map(|b| b.1).sum::<u64>());
    let mut files_after = files_before.clone();
    for (digest, _) in &freed {
        files_after.remove(digest);
    }
    assert_eq!(h.blob_files(), files_after, "GC removed other files");
}

#[tokio::test]
async fn an_immutable_tag_is_not_deleted_and_is_reported() {
    let h = Harness::new();
    seed(&h).await;
    let rule = h
        .as_("admin", Method::POST, "/v1/policy/rules")
        .json(&json!({
            "priority": 10,
            "description": "dev-1 stays",
            "effect": "deny",
            "actions": ["registry:tag_delete"],
            "tags": ["dev-1"],
        }))
        .send()
        .await;
    rule.assert_status(StatusCode::CREATED);
    let rule = rule.json()["id"].as_i64().unwrap();
    let id = create(&h, &policy()).await["id"].as_i64().unwrap();

    let report = run(&h, json!({"dry_run": false, "policy": id})).await;
    let items = report["items"].as_array().unwrap();
    let refused: Vec<&Value> = items
        .iter()
        .filter(|i| i["outcome"] == json!("refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{report}");
    assert_eq!(refused[0]["tags"], json!(["dev-1"]));
    let error = refused[0]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("immutable by rule {rule}")),
        "{error}"
    );
    assert_eq!(
        report["totals"],
        json!({"manifests": 3, "tags": 1, "refused": 1, "changed": 0})
    );
    assert_eq!(h.manifest_status("app", "dev-1").await, StatusCode::OK);
    assert_eq!(
        h.manifest_status("app", "multi").await,
        StatusCode::NOT_FOUND
    );
    // The refusal is audited as any other.
    assert!(h
        .audit(mcr_core::audit::EventType::PolicyDeny)
        .await
        .iter()
        .any(|e| e.event.details.get("tag").map(String::as_str) == Some("dev-1")));
}
