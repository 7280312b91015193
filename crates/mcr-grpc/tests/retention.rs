//! Retention over gRPC: policies created, listed, replaced and deleted
//! through PolicyService with the REST API's validation, admin only; a
//! dry run lists what the real run then deletes; the status shows the
//! last real run.

mod support;

use std::time::Duration;

use mcr_grpc::pb;
use support::Server;
use tonic::Code;

fn body() -> pb::RetentionPolicyBody {
    pb::RetentionPolicyBody {
        description: "cleanup".into(),
        repositories: vec!["app".into()],
        keep_last: Some(1),
        delete_tags_older_than: Some("30d".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn policies_crud_is_validated_and_admin_only() {
    let s = Server::start().await;
    let mut c = s.as_admin().await;
    let created = c
        .policy
        .create_retention_policy(pb::CreateRetentionPolicyRequest { body: Some(body()) })
        .await
        .expect("an admin creates a policy")
        .into_inner();
    let stored = created.body.clone().unwrap();
    assert_eq!(stored.enabled, Some(true));
    assert_eq!(stored.delete_tags_older_than.as_deref(), Some("30days"));
    let listed = c
        .policy
        .list_retention_policies(pb::ListRetentionPoliciesRequest {})
        .await
        .unwrap()
        .into_inner()
        .policies;
    assert_eq!(listed, vec![created.clone()]);

    let mut replaced = body();
    replaced.enabled = Some(false);
    replaced.delete_untagged_older_than = Some("7d".into());
    let r = c
        .policy
        .replace_retention_policy(pb::ReplaceRetentionPolicyRequest {
            id: created.id,
            body: Some(replaced),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.body.unwrap().enabled, Some(false));

    for (bad, field) in [
        (
            pb::RetentionPolicyBody {
                delete_tags_older_than: None,
                ..body()
            },
            "a policy must delete something",
        ),
        (
            pb::RetentionPolicyBody {
                keep_last: Some(0),
                ..body()
            },
            "keep_last",
        ),
        (
            pb::RetentionPolicyBody {
                repositories: vec!["Bad!".into()],
                ..body()
            },
            "repositories",
        ),
    ] {
        let e = c
            .policy
            .create_retention_policy(pb::CreateRetentionPolicyRequest { body: Some(bad) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{e:?}");
    }
    let e = c
        .policy
        .create_retention_policy(pb::CreateRetentionPolicyRequest { body: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    let mut u = s.as_user().await;
    let e = u
        .policy
        .list_retention_policies(pb::ListRetentionPoliciesRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = u
        .policy
        .run_retention(pb::RunRetentionRequest {
            dry_run: true,
            policy: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    c.policy
        .delete_retention_policy(pb::DeleteRetentionPolicyRequest { id: created.id })
        .await
        .unwrap();
    let e = c
        .policy
        .get_retention_policy(pb::GetRetentionPolicyRequest { id: created.id })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

#[tokio::test]
async fn a_dry_run_lists_what_the_real_run_deletes() {
    let s = Server::start().await;
    let old = s.push_image("app", "old", "one").await;
    s.t.clock.advance(Duration::from_secs(40 * 86_400));
    s.push_image("app", "new", "two").await;
    // Logged in now: a token from before the clock moved has expired.
    let mut c = s.as_admin().await;
    c.policy
        .create_retention_policy(pb::CreateRetentionPolicyRequest {
            body: Some(pb::RetentionPolicyBody {
                delete_untagged_older_than: Some("7d".into()),
                ..body()
            }),
        })
        .await
        .unwrap();
    let run = |dry_run| pb::RunRetentionRequest {
        dry_run,
        policy: None,
    };
    let dry = c
        .policy
        .run_retention(run(true))
        .await
        .unwrap()
        .into_inner();
    assert!(dry.dry_run);
    assert_eq!(dry.items.len(), 1, "{dry:?}");
    let item = &dry.items[0];
    assert_eq!(
        (
            item.repository.as_str(),
            item.digest.clone(),
            item.tags.clone(),
            item.manifest
        ),
        ("app", old.to_string(), vec!["old".to_string()], true)
    );
    assert_eq!(item.outcome, "planned");
    let real = c
        .policy
        .run_retention(run(false))
        .await
        .unwrap()
        .into_inner();
    let strip = |items: &[pb::RetentionItem]| -> Vec<(String, String, Vec<String>, bool)> {
        items
            .iter()
            .map(|i| {
                (
                    i.repository.clone(),
                    i.digest.clone(),
                    i.tags.clone(),
                    i.manifest,
                )
            })
            .collect()
    };
    assert_eq!(strip(&real.items), strip(&dry.items));
    assert_eq!(real.items[0].outcome, "deleted");
    assert_eq!(
        real.totals,
        Some(pb::RetentionTotals {
            manifests: 1,
            tags: 1,
            refused: 0,
            changed: 0
        })
    );
    let status = c
        .policy
        .get_retention_status(pb::GetRetentionStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!status.running);
    assert_eq!(status.last_run.map(|l| l.id), Some(real.id));
    assert_eq!(status.next_run, None, "no schedule");
}
