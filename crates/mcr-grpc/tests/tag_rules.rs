//! Tag rules over gRPC: a rule with `tags` created and listed through
//! PolicyService, `Explain` asked with a tag, and a repository delete that
//! would take an immutable tag refused with `PERMISSION_DENIED` naming the
//! rule.

mod support;

use mcr_grpc::pb;
use support::Server;
use tonic::Code;

#[tokio::test]
async fn an_immutable_tag_is_kept_from_a_repository_delete() {
    let s = Server::start().await;
    let mut c = s.as_admin().await;
    let rule = c
        .policy
        .create_rule(pb::CreateRuleRequest {
            priority: 10,
            description: "release tags are immutable".into(),
            effect: "deny".into(),
            actions: vec![
                "registry:tag_overwrite".into(),
                "registry:tag_delete".into(),
            ],
            tags: vec!["v*".into()],
            ..Default::default()
        })
        .await
        .expect("an admin creates the rule")
        .into_inner();
    assert_eq!(rule.tags, ["v*"]);
    let listed = c
        .policy
        .list_rules(pb::ListRulesRequest {})
        .await
        .unwrap()
        .into_inner()
        .rules;
    assert_eq!(
        listed.last().map(|r| r.tags.clone()),
        Some(vec!["v*".into()])
    );

    s.push_image("app", "v1", "one").await;
    let refused = c
        .registry
        .delete_repository(pb::DeleteRepositoryRequest { name: "app".into() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let message = refused.message();
    assert!(
        message.contains(&format!(
            "immutable by rule {} \"release tags are immutable\"",
            rule.id
        )),
        "{message}"
    );
    assert!(message.contains("tag v1"), "{message}");
    c.registry
        .get_repository(pb::GetRepositoryRequest { name: "app".into() })
        .await
        .expect("the repository is still there");

    let e = c
        .policy
        .explain(pb::ExplainRequest {
            subject: "admin".into(),
            account_type: "human".into(),
            roles: vec!["admin".into()],
            action: "registry:tag_delete".into(),
            repository: Some("app".into()),
            tag: Some("v1".into()),
        })
        .await
        .unwrap()
        .into_inner();
    let decision = e.decision.unwrap();
    assert_eq!(
        (decision.effect.as_str(), decision.rule_id),
        ("deny", Some(rule.id))
    );
    let bad = c
        .policy
        .create_rule(pb::CreateRuleRequest {
            priority: 11,
            effect: "deny".into(),
            actions: vec!["registry:tag_delete".into()],
            tags: vec!["v/1".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("invalid tags"), "{}", bad.message());

    // Lifted: the rule deleted, the repository goes.
    c.policy
        .delete_rule(pb::DeleteRuleRequest { id: rule.id })
        .await
        .unwrap();
    c.registry
        .delete_repository(pb::DeleteRepositoryRequest { name: "app".into() })
        .await
        .expect("deleted once the rule is gone");
}
