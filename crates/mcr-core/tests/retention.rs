//! Retention in the use cases: policies are admin-only, validated and
//! audited; a dry run lists exactly what the real run then deletes,
//! through the delete use case (so an immutable tag is refused and
//! reported, not deleted); the schedule keeps one interval between runs.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{self, Either};
use mcr_core::audit::{AuditQuery, EventType};
use mcr_core::digest::Digest;
use mcr_core::events::EventKind;
use mcr_core::policy::{Effect, RuleDraft, TagPattern};
use mcr_core::ports::EventOutbox;
use mcr_core::principal::Action;
use mcr_core::registry::{
    Outcome, Registry, RegistryConfig, RetentionItem, RetentionReport, RetentionRequest,
    RETENTION_SCHEDULE_SUBJECT,
};
use mcr_core::retention::RetentionSpec;
use mcr_core::testing::{admin, user, TestRegistry};
use mcr_core::time::Clock;
use mcr_core::Error;
use support::*;

const DAY: Duration = Duration::from_secs(86_400);

fn spec(json: &str) -> RetentionSpec {
    serde_json::from_str(json).expect("a valid policy")
}

/// The policy the tests run: in `app/*`, keep the newest tag and `v*`
/// tags, delete other tags pushed over 30 days ago and untagged manifests
/// pushed over 7 days ago.
const POLICY: &str = r#"{"repositories":["app/*"],"keep_last":1,"keep_tags":["v*"],
    "delete_tags_older_than":"30d","delete_untagged_older_than":"7d"}"#;

struct Seeded {
    old_dev: Digest,
    release: Digest,
    signature: Digest,
    orphan: Digest,
    child: Digest,
}

/// `app/web` 40 days ago: `dev-1` (an image, deleted with its tag),
/// `v1.0` (kept by pattern) with a signature referring to it (kept as a
/// referrer of a kept image), an untagged image (deleted), an index
/// tagged `multi` whose child is untagged (tag deleted, then index and
/// child too); today: `dev-9` (the newest tag, kept). `other/x` holds an
/// old untagged image the policy does not reach.
async fn seed(t: &TestRegistry) -> Seeded {
    let r = &t.registry;
    let (who, repo) = (admin(), support::repo("app/web"));
    let (old_dev, _, _) = push_image(r, &who, &repo, "dev-1", "dev").await;
    let (release, raw, _) = push_image(r, &who, &repo, "v1.0", "release").await;
    let config = push_blob(r, &who, &repo, b"{\"sig\":1}").await;
    let sig_raw = image_manifest(
        &config,
        &[],
        &format!(
            r#","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}"#,
            release.digest,
            raw.len()
        ),
    );
    let signature = r
        .put_manifest(
            &who,
            &repo,
            &reference(&Digest::sha256_of(sig_raw.as_bytes()).to_string()),
            None,
            Bytes::from(sig_raw),
        )
        .await
        .expect("signature push")
        .digest;
    let (orphan, _, _) = push_image(r, &who, &repo, "gone", "orphan").await;
    r.delete_manifest(&who, &repo, &reference("gone"))
        .await
        .unwrap();
    let (child, child_raw, _) = push_image(r, &who, &repo, "child", "child").await;
    r.delete_manifest(&who, &repo, &reference("child"))
        .await
        .unwrap();
    let idx = index_manifest(&[(&child.digest, child_raw.len())]);
    r.put_manifest(&who, &repo, &reference("multi"), None, Bytes::from(idx))
        .await
        .expect("index push");
    let other = support::repo("other/x");
    push_image(r, &who, &other, "tmp", "other").await;
    r.delete_manifest(&who, &other, &reference("tmp"))
        .await
        .unwrap();
    t.clock.advance(40 * DAY);
    push_image(r, &who, &repo, "dev-9", "new").await;
    Seeded {
        old_dev: old_dev.digest,
        release: release.digest,
        signature,
        orphan: orphan.digest,
        child: child.digest,
    }
}

fn listed(items: &[RetentionItem]) -> Vec<(String, Digest, Vec<String>, bool)> {
    items
        .iter()
        .map(|i| {
            (
                i.repository.to_string(),
                i.digest.clone(),
                i.tags.iter().map(|t| t.to_string()).collect(),
                i.manifest,
            )
        })
        .collect()
}

/// Every enabled policy, as `admin`.
async fn run_all(r: &Registry, dry_run: bool) -> RetentionReport {
    r.run_retention(
        &admin(),
        RetentionRequest {
            dry_run,
            policy: None,
        },
    )
    .await
    .expect("the run")
}

async fn has(r: &Registry, repo: &str, reference_: &str) -> bool {
    r.get_manifest(&admin(), &support::repo(repo), &reference(reference_))
        .await
        .is_ok()
}

#[test]
fn policies_are_admin_only_validated_and_audited() {
    run(async {
        let t = TestRegistry::new();
        let r = &t.registry;
        let denied = r.create_retention_policy(&user(), spec(POLICY)).await;
        assert!(matches!(denied, Err(Error::Denied { .. })), "{denied:?}");
        let invalid: Result<RetentionSpec, _> =
            serde_json::from_str(r#"{"repositories":["app/*"],"keep_last":3}"#);
        let e = invalid.unwrap_err().to_string();
        assert!(e.contains("a policy must delete something"), "{e}");
        for (json, field) in [
            (
                r#"{"repositories":[],"delete_tags_older_than":"30d"}"#,
                "repositories",
            ),
            (
                r#"{"repositories":["a"],"keep_last":0,"delete_tags_older_than":"30d"}"#,
                "keep_last",
            ),
            (
                r#"{"repositories":["a"],"delete_tags_older_than":"10s"}"#,
                "delete_tags_older_than",
            ),
            (
                r#"{"repositories":["a"],"delete_untagged_older_than":"soon"}"#,
                "delete_untagged_older_than",
            ),
            (
                r#"{"repositories":["A!"],"delete_tags_older_than":"30d"}"#,
                "repositories",
            ),
            (
                r#"{"repositories":["a"],"keep_tags":["v/1"],"delete_tags_older_than":"30d"}"#,
                "tags",
            ),
        ] {
            let e = serde_json::from_str::<RetentionSpec>(json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{json}: {e}");
        }

        let p = r
            .create_retention_policy(&admin(), spec(POLICY))
            .await
            .unwrap();
        assert_eq!(
            r.list_retention_policies(&admin()).await.unwrap(),
            vec![p.clone()]
        );
        let replaced = r
            .replace_retention_policy(
                &admin(),
                p.id,
                spec(r#"{"repositories":["*"],"delete_untagged_older_than":"1d"}"#),
            )
            .await
            .unwrap();
        assert_eq!(replaced.id, p.id);
        assert_eq!(
            r.get_retention_policy(&admin(), p.id).await.unwrap(),
            replaced
        );
        r.delete_retention_policy(&admin(), p.id).await.unwrap();
        let gone = r.delete_retention_policy(&admin(), p.id).await;
        assert!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");
        let events: Vec<EventType> = t
            .registry
            .audit_events(&admin(), AuditQuery::default())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event.event_type)
            .filter(|e| e.as_str().starts_with("retention"))
            .collect();
        assert_eq!(
            events,
            [
                EventType::RetentionPolicyDeleted,
                EventType::RetentionPolicyUpdated,
                EventType::RetentionPolicyCreated
            ]
        );
    });
}

#[test]
fn a_dry_run_lists_exactly_what_the_real_run_deletes() {
    run(async {
        let t = TestRegistry::new();
        let r = &t.registry;
        let s = seed(&t).await;
        r.create_retention_policy(&admin(), spec(POLICY))
            .await
            .unwrap();
        let dry = run_all(r, true).await;
        assert!(dry.items.iter().all(|i| i.outcome == Outcome::Planned));
        let want_manifests = [&s.old_dev, &s.orphan, &s.child];
        for d in want_manifests {
            assert!(
                dry.items.iter().any(|i| &i.digest == d && i.manifest),
                "{d} is not planned: {:?}",
                listed(&dry.items)
            );
        }
        for d in [&s.release, &s.signature] {
            assert!(!dry.items.iter().any(|i| &i.digest == d), "{d} is planned");
        }
        assert_eq!(
            (dry.totals.manifests, dry.totals.tags, dry.totals.refused),
            (4, 2, 0)
        );
        assert!(has(r, "app/web", "dev-1").await, "a dry run deleted");

        let real = run_all(r, false).await;
        assert_eq!(listed(&real.items), listed(&dry.items));
        assert!(
            real.items.iter().all(|i| i.outcome == Outcome::Deleted),
            "{:?}",
            real.items
        );
        assert_eq!(real.totals, dry.totals);
        for gone in ["dev-1", "multi"] {
            assert!(!has(r, "app/web", gone).await, "{gone} is still there");
        }
        for kept in ["v1.0", "dev-9"] {
            assert!(has(r, "app/web", kept).await, "{kept} was deleted");
        }
        for d in [&s.release, &s.signature] {
            assert!(has(r, "app/web", &d.to_string()).await, "{d} was deleted");
        }
        for d in want_manifests {
            assert!(
                !has(r, "app/web", &d.to_string()).await,
                "{d} is still there"
            );
        }
        // Each deletion was audited as the admin's.
        let deleted = r
            .audit_events(
                &admin(),
                AuditQuery {
                    event_type: Some(EventType::ManifestDeleted),
                    ..AuditQuery::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(deleted.len(), 4);
        // And reported to webhooks: each tag as `tag.deleted` naming the
        // digest it pointed at, each manifest as `manifest.deleted`.
        let events = t.meta.outbox_after(0, 1000).await.unwrap();
        let reported = |kind: EventKind, tag: Option<&str>, digest: &Digest| {
            events.iter().any(|e| {
                e.kind == kind
                    && e.data["digest"] == digest.to_string()
                    && tag.is_none_or(|tag| e.data["tag"] == tag)
            })
        };
        for i in &real.items {
            for tag in &i.tags {
                assert!(
                    reported(EventKind::TagDeleted, Some(tag.as_str()), &i.digest),
                    "no tag.deleted for {tag} at {}",
                    i.digest
                );
            }
            if i.manifest {
                assert!(reported(EventKind::ManifestDeleted, None, &i.digest));
            }
        }
        let again = run_all(r, true).await;
        assert_eq!(again.items, vec![], "a second run finds nothing");
        let status = r.retention_status(&admin()).await.unwrap();
        let last = status.last_run.expect("the real run is remembered");
        assert_eq!((last.id, last.totals), (real.id, real.totals));
        assert_eq!(last.actor.as_deref(), Some("admin"));
    });
}

#[test]
fn an_immutable_tag_is_refused_and_reported_while_the_rest_goes() {
    run(async {
        let t = TestRegistry::new();
        let r = &t.registry;
        seed(&t).await;
        let rule = r
            .create_rule(
                &admin(),
                RuleDraft {
                    priority: 10,
                    description: "dev-1 is immutable".into(),
                    effect: Effect::Deny,
                    actions: vec![Action::TagDelete],
                    roles: vec![],
                    account_types: vec![],
                    subject: None,
                    repositories: vec![],
                    tags: vec![TagPattern::new("dev-1").unwrap()],
                    enabled: true,
                },
            )
            .await
            .unwrap();
        let p = r
            .create_retention_policy(&admin(), spec(POLICY))
            .await
            .unwrap();
        let report = r
            .run_retention(
                &admin(),
                RetentionRequest {
                    dry_run: false,
                    policy: Some(p.id),
                },
            )
            .await
            .unwrap();
        let refused: Vec<&RetentionItem> = report
            .items
            .iter()
            .filter(|i| i.outcome == Outcome::Refused)
            .collect();
        assert_eq!(refused.len(), 1, "{:?}", report.items);
        let e = refused[0].error.as_deref().unwrap();
        assert!(
            e.contains("dev-1") && e.contains(&format!("rule {}", rule.id)),
            "{e}"
        );
        assert_eq!(report.totals.refused, 1);
        assert!(
            has(r, "app/web", "dev-1").await,
            "the immutable tag was deleted"
        );
        assert!(
            !has(r, "app/web", "multi").await,
            "the rest of the run did not go on"
        );
    });
}

/// A push between a run's plan and its deletions loses nothing: the run
/// is held at its first delete (after planning the whole repository)
/// while one planned image is tagged again and a planned tag moves to a
/// new image. The new tag and its manifest, and the moved tag, survive;
/// the report says what changed and counts only what was deleted.
#[test]
fn a_push_during_a_run_keeps_what_it_changed() {
    run(async {
        let t = TestRegistry::new();
        let r = &t.registry;
        let (who, app) = (admin(), support::repo("app/x"));
        let (a, raw_a, _) = push_image(r, &who, &app, "old-a", "a").await;
        let (b, _, _) = push_image(r, &who, &app, "old-b", "b").await;
        let (c, _, _) = push_image(r, &who, &app, "old-c", "c").await;
        t.clock.advance(2 * DAY);
        let p = r
            .create_retention_policy(
                &admin(),
                spec(
                    r#"{"repositories":["app/*"],"delete_tags_older_than":"1d",
                        "delete_untagged_older_than":"1d"}"#,
                ),
            )
            .await
            .unwrap();
        let hold = t.meta.hold_next_manifest_write();
        let request = RetentionRequest {
            dry_run: false,
            policy: Some(p.id),
        };
        let retention = Box::pin(r.run_retention(&who, request));
        let reached = std::pin::pin!(hold.reached());
        let Either::Right(((), retention)) = future::select(retention, reached).await else {
            panic!("the run finished through its hold");
        };
        // Planned, not yet deleted: `a` is tagged again, `old-b` moves.
        r.put_manifest(&who, &app, &reference("fresh-a"), None, Bytes::from(raw_a))
            .await
            .expect("re-push of a");
        let (d, _, _) = push_image(r, &who, &app, "old-b", "d").await;
        hold.release();
        let report = retention.await.expect("the run");

        assert_eq!(
            r.get_manifest(&who, &app, &reference("fresh-a"))
                .await
                .expect("the pushed tag survives")
                .digest,
            a.digest
        );
        assert_eq!(
            r.get_manifest(&who, &app, &reference("old-b"))
                .await
                .expect("the moved tag survives")
                .digest,
            d.digest
        );
        assert!(!has(r, "app/x", "old-a").await, "the planned tag stays");
        assert!(!has(r, "app/x", "old-c").await);
        for gone in [&b.digest, &c.digest] {
            assert!(!has(r, "app/x", &gone.to_string()).await, "{gone} stays");
        }
        let outcome = |d: &Digest| {
            let i = report
                .items
                .iter()
                .find(|i| &i.digest == d)
                .expect("listed");
            (i.outcome, i.error.clone().unwrap_or_default())
        };
        let (o, e) = outcome(&a.digest);
        assert_eq!(o, Outcome::Changed, "{e}");
        assert!(
            e.contains("skipped: changed since planned") && e.contains("fresh-a"),
            "{e}"
        );
        let (o, e) = outcome(&b.digest);
        assert_eq!(o, Outcome::Changed, "{e}");
        assert!(
            e.contains("old-b") && e.contains(&d.digest.to_string()),
            "{e}"
        );
        assert_eq!(outcome(&c.digest), (Outcome::Deleted, String::new()));
        // Deleted: tags old-a and old-c, manifests b and c; kept as
        // changed: manifest a and tag old-b.
        let totals = report.totals;
        assert_eq!(
            (
                totals.tags,
                totals.manifests,
                totals.changed,
                totals.refused
            ),
            (2, 2, 2, 0),
            "{totals:?}"
        );
        let mut deleted_tags: Vec<String> = t
            .meta
            .audit_log()
            .iter()
            .filter(|e| e.event.event_type == EventType::TagDeleted)
            .filter_map(|e| e.event.details.get("reference").cloned())
            .collect();
        deleted_tags.sort();
        assert_eq!(deleted_tags, ["old-a", "old-c"], "tag.deleted as audited");
    });
}

#[test]
fn the_schedule_runs_one_interval_after_the_last_run() {
    run(async {
        let t = TestRegistry::with_config(RegistryConfig {
            retention_interval: Some(DAY),
            ..RegistryConfig::default()
        });
        let r = &t.registry;
        let start = t.clock.now();
        assert_eq!(
            r.next_scheduled_retention().await.unwrap(),
            Some(start.saturating_add(DAY))
        );
        seed(&t).await;
        r.create_retention_policy(&admin(), spec(POLICY))
            .await
            .unwrap();
        let report = r.run_scheduled_retention().await.unwrap();
        assert_eq!(report.totals.manifests, 4);
        let status = r.retention_status(&admin()).await.unwrap();
        assert_eq!(
            status.last_run.unwrap().actor.as_deref(),
            Some(RETENTION_SCHEDULE_SUBJECT)
        );
        assert_eq!(status.next_run, Some(report.started_at.saturating_add(DAY)));
        assert!(!status.running);
        let off = TestRegistry::new();
        assert_eq!(off.registry.next_scheduled_retention().await.unwrap(), None);
    });
}
