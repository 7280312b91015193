//! Every RPC over a real connection: what it answers, and who it refuses
//! (no token → UNAUTHENTICATED; a non-admin on an admin RPC →
//! PERMISSION_DENIED; Health, Ready and Login need no token). TLS 1.3 only.

mod support;

use std::sync::Arc;
use std::time::Duration;

use mcr_core::audit::EventType;
use mcr_core::registry::RegistryConfig;
use mcr_core::testing::{admin, TEST_PASSWORD};
use mcr_core::time::Clock;
use mcr_grpc::client::{self, BearerToken, Clients};
use mcr_grpc::pb;
use support::Server;
use tonic::{Code, Status};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rpc {
    ListRepositories,
    GetRepository,
    DeleteRepository,
    GarbageCollect,
    GetGcStatus,
    Reconcile,
    ListRules,
    GetRule,
    CreateRule,
    UpdateRule,
    DeleteRule,
    Explain,
    ListAuditEvents,
    Snapshot,
    Health,
    Ready,
    Login,
}

const ALL: [Rpc; 17] = [
    Rpc::ListRepositories,
    Rpc::GetRepository,
    Rpc::DeleteRepository,
    Rpc::GarbageCollect,
    Rpc::GetGcStatus,
    Rpc::Reconcile,
    Rpc::ListRules,
    Rpc::GetRule,
    Rpc::CreateRule,
    Rpc::UpdateRule,
    Rpc::DeleteRule,
    Rpc::Explain,
    Rpc::ListAuditEvents,
    Rpc::Snapshot,
    Rpc::Health,
    Rpc::Ready,
    Rpc::Login,
];

impl Rpc {
    fn public(self) -> bool {
        matches!(self, Rpc::Health | Rpc::Ready | Rpc::Login)
    }

    fn admin(self) -> bool {
        !self.public() && !matches!(self, Rpc::ListRepositories | Rpc::GetRepository)
    }
}

fn rule_request() -> pb::CreateRuleRequest {
    pb::CreateRuleRequest {
        priority: 10,
        description: "ci pulls".into(),
        effect: "allow".into(),
        actions: vec!["registry:pull".into()],
        account_types: vec!["system".into()],
        repositories: vec!["ci/**".into()],
        ..Default::default()
    }
}

/// Calls `rpc` with valid arguments (rule 1 and repository `app`).
async fn call(c: &mut Clients, rpc: Rpc) -> Result<(), Status> {
    let name = || "app".to_string();
    match rpc {
        Rpc::ListRepositories => c
            .registry
            .list_repositories(pb::ListRepositoriesRequest::default())
            .await
            .map(drop),
        Rpc::GetRepository => c
            .registry
            .get_repository(pb::GetRepositoryRequest { name: name() })
            .await
            .map(drop),
        Rpc::DeleteRepository => c
            .registry
            .delete_repository(pb::DeleteRepositoryRequest { name: name() })
            .await
            .map(drop),
        Rpc::GarbageCollect => c
            .registry
            .garbage_collect(pb::GarbageCollectRequest {})
            .await
            .map(drop),
        Rpc::GetGcStatus => c
            .registry
            .get_gc_status(pb::GetGcStatusRequest {})
            .await
            .map(drop),
        Rpc::Reconcile => c
            .registry
            .reconcile(pb::ReconcileRequest {})
            .await
            .map(drop),
        Rpc::ListRules => c.policy.list_rules(pb::ListRulesRequest {}).await.map(drop),
        Rpc::GetRule => c
            .policy
            .get_rule(pb::GetRuleRequest { id: 1 })
            .await
            .map(drop),
        Rpc::CreateRule => c.policy.create_rule(rule_request()).await.map(drop),
        Rpc::UpdateRule => c
            .policy
            .update_rule(pb::UpdateRuleRequest {
                id: 1,
                priority: Some(20),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::DeleteRule => c
            .policy
            .delete_rule(pb::DeleteRuleRequest { id: 1 })
            .await
            .map(drop),
        Rpc::Explain => c
            .policy
            .explain(pb::ExplainRequest {
                subject: "ci".into(),
                account_type: "system".into(),
                action: "registry:pull".into(),
                repository: Some("ci/app".into()),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::ListAuditEvents => c
            .audit
            .list_audit_events(pb::ListAuditEventsRequest::default())
            .await
            .map(drop),
        Rpc::Snapshot => c.admin.snapshot(pb::SnapshotRequest {}).await.map(drop),
        Rpc::Health => c.admin.health(pb::HealthRequest {}).await.map(drop),
        Rpc::Ready => c.admin.ready(pb::ReadyRequest {}).await.map(drop),
        Rpc::Login => c
            .admin
            .login(pb::LoginRequest {
                username: "admin".into(),
                password: TEST_PASSWORD.into(),
            })
            .await
            .map(drop),
    }
}

/// A server with repository `app` and rule 1.
async fn seeded() -> Server {
    let s = Server::start().await;
    s.push_image("app", "v1", "one").await;
    s.as_admin()
        .await
        .policy
        .create_rule(rule_request())
        .await
        .expect("rule 1");
    s
}

fn code<T: std::fmt::Debug>(r: Result<T, Status>) -> Code {
    r.expect_err("expected an error").code()
}

#[tokio::test]
async fn every_rpc_but_health_and_login_needs_a_token() {
    let s = seeded().await;
    let mut anon = s.anonymous().await;
    for rpc in ALL {
        let result = call(&mut anon, rpc).await;
        if rpc.public() {
            assert!(result.is_ok(), "{rpc:?}: {result:?}");
        } else {
            let status = result.expect_err("refused");
            assert_eq!(status.code(), Code::Unauthenticated, "{rpc:?}: {status:?}");
            assert!(status.message().contains("bearer token"), "{status:?}");
        }
    }
    // A token the identity service does not know, and one that expired.
    let mut forged = s.clients(Some("not-a-token")).await;
    let mut expired = s.as_admin().await;
    s.t.clock.advance(Duration::from_secs(2 * 3600));
    for rpc in ALL.into_iter().filter(|r| !r.public()) {
        assert_eq!(
            code(call(&mut forged, rpc).await),
            Code::Unauthenticated,
            "{rpc:?}"
        );
        assert_eq!(
            code(call(&mut expired, rpc).await),
            Code::Unauthenticated,
            "{rpc:?}"
        );
    }
}

#[tokio::test]
async fn admin_rpcs_refuse_a_non_admin_and_change_nothing() {
    let s = seeded().await;
    let mut user = s.as_user().await;
    for rpc in ALL {
        let result = call(&mut user, rpc).await;
        if rpc.admin() {
            assert_eq!(code(result), Code::PermissionDenied, "{rpc:?}");
        } else {
            assert!(result.is_ok(), "{rpc:?}: {result:?}");
        }
    }
    // Each refusal is audited, as the REST API's are.
    let denials =
        s.t.meta
            .audit_log()
            .iter()
            .filter(|e| {
                e.event.event_type == EventType::PolicyDeny
                    && e.event.actor_id.as_deref() == Some("user")
            })
            .count();
    assert_eq!(denials, ALL.iter().filter(|r| r.admin()).count());
    let mut admin = s.as_admin().await;
    let rules = admin
        .policy
        .list_rules(pb::ListRulesRequest {})
        .await
        .unwrap();
    let stored: Vec<_> = rules.get_ref().rules.iter().filter(|r| r.id > 0).collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].priority, 10);
    call(&mut admin, Rpc::GetRepository)
        .await
        .expect("app is still there");
    // A guest may not even list: the policy refuses, not the interceptor.
    let mut guest = s.as_guest().await;
    assert_eq!(
        code(call(&mut guest, Rpc::ListRepositories).await),
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn every_rpc_succeeds_for_an_admin() {
    let s = seeded().await;
    let mut admin = s.as_admin().await;
    // Delete last, and rule 1 before its delete.
    for rpc in ALL.into_iter().filter(|r| *r != Rpc::DeleteRepository) {
        call(&mut admin, rpc)
            .await
            .unwrap_or_else(|e| panic!("{rpc:?}: {e:?}"));
    }
    call(&mut admin, Rpc::DeleteRepository).await.unwrap();
}

#[tokio::test]
async fn health_answers_ok_without_a_token() {
    let s = Server::start().await;
    let h = s
        .anonymous()
        .await
        .admin
        .health(pb::HealthRequest {})
        .await
        .unwrap();
    assert_eq!(h.get_ref().status, "ok");
}

#[tokio::test]
async fn ready_is_unavailable_naming_the_store_until_it_is_usable_again() {
    let s = Server::start().await;
    let mut anon = s.anonymous().await;
    let r = anon.admin.ready(pb::ReadyRequest {}).await.unwrap();
    assert_eq!(r.get_ref().status, "ready");

    s.t.blobs
        .set_probe_failure(Some("blob directory /srv/mcr/layers is gone"));
    let refused = anon.admin.ready(pb::ReadyRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(
        refused.message(),
        "not ready: storage: probing the fake store: blob directory /srv/mcr/layers is gone"
    );
    s.t.meta.set_probe_failure(Some("database file is gone"));
    let refused = anon.admin.ready(pb::ReadyRequest {}).await.unwrap_err();
    assert_eq!(
        refused.message(),
        "not ready: database: probing the fake store: database file is gone; \
         storage: probing the fake store: blob directory /srv/mcr/layers is gone"
    );

    s.t.blobs.set_probe_failure(None);
    s.t.meta.set_probe_failure(None);
    anon.admin.ready(pb::ReadyRequest {}).await.unwrap();
}

#[tokio::test]
async fn login_gives_a_token_that_authenticates() {
    let s = Server::start().await;
    let mut anon = s.anonymous().await;
    let login = anon
        .admin
        .login(pb::LoginRequest {
            username: "admin".into(),
            password: TEST_PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(login.expires_at.is_some());
    let mut c = s.clients(Some(&login.token)).await;
    c.registry
        .get_gc_status(pb::GetGcStatusRequest {})
        .await
        .expect("an admin token");
    let wrong = anon
        .admin
        .login(pb::LoginRequest {
            username: "admin".into(),
            password: "wrong".into(),
        })
        .await;
    assert_eq!(code(wrong), Code::Unauthenticated);
    let failed = s.t.meta.audit_log();
    assert!(failed
        .iter()
        .any(|e| e.event.event_type == EventType::LoginFailed));
    assert!(failed
        .iter()
        .any(|e| e.event.event_type == EventType::Login));
}

#[tokio::test]
async fn repositories_are_listed_a_page_at_a_time_with_counts() {
    let s = Server::start().await;
    for (repo, seed) in [("a/one", "1"), ("b", "2"), ("c", "3")] {
        s.push_image(repo, "v1", seed).await;
    }
    s.push_image("b", "v2", "2").await;
    let mut user = s.as_user().await;
    let page = user
        .registry
        .list_repositories(pb::ListRepositoriesRequest {
            n: Some(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = page.repositories.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a/one", "b"]);
    assert_eq!(page.next.as_deref(), Some("b"));
    let b = &page.repositories[1];
    assert_eq!((b.tag_count, b.manifest_count), (2, 1));
    assert!(b.total_size > 0 && b.created.is_some());
    let rest = user
        .registry
        .list_repositories(pb::ListRepositoriesRequest {
            n: Some(2),
            last: page.next,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.repositories.len(), 1);
    assert_eq!(rest.repositories[0].name, "c");
    assert_eq!(rest.next, None);
}

#[tokio::test]
async fn a_repository_shows_tags_manifests_and_layers() {
    let s = Server::start().await;
    let digest = s.push_image("team/app", "v1", "x").await;
    let mut user = s.as_user().await;
    let d = user
        .registry
        .get_repository(pb::GetRepositoryRequest {
            name: "team/app".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.summary.as_ref().unwrap().name, "team/app");
    assert_eq!(d.tags.len(), 1);
    assert_eq!(
        (d.tags[0].name.as_str(), d.tags[0].digest.clone()),
        ("v1", digest.to_string())
    );
    assert_eq!(d.manifests.len(), 1);
    assert_eq!(
        d.manifests[0].media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(d.layers.len(), 2);
    let missing = user
        .registry
        .get_repository(pb::GetRepositoryRequest {
            name: "nope".into(),
        })
        .await;
    assert_eq!(code(missing), Code::NotFound);
    let invalid = user
        .registry
        .get_repository(pb::GetRepositoryRequest {
            name: "Bad Name".into(),
        })
        .await;
    assert_eq!(code(invalid), Code::InvalidArgument);
}

#[tokio::test]
async fn delete_then_gc_frees_the_layers() {
    let s = Server::start_with(
        RegistryConfig {
            gc_grace_period: Duration::from_secs(60),
            ..RegistryConfig::default()
        },
        None,
    )
    .await;
    s.push_image("app", "v1", "one").await;
    let mut admin = s.as_admin().await;
    admin
        .registry
        .delete_repository(pb::DeleteRepositoryRequest { name: "app".into() })
        .await
        .unwrap();
    let gone = admin
        .registry
        .get_repository(pb::GetRepositoryRequest { name: "app".into() })
        .await;
    assert_eq!(code(gone), Code::NotFound);
    let again = admin
        .registry
        .delete_repository(pb::DeleteRepositoryRequest { name: "app".into() })
        .await;
    assert_eq!(code(again), Code::NotFound);

    s.t.clock.advance(Duration::from_secs(120));
    let id = admin
        .registry
        .garbage_collect(pb::GarbageCollectRequest {})
        .await
        .unwrap()
        .into_inner()
        .id;
    let report = loop {
        let st = admin
            .registry
            .get_gc_status(pb::GetGcStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        match st.last_run {
            Some(r) if !st.running && r.id == id => break r,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    assert_eq!(report.blobs_removed, 2);
    assert!(report.bytes_freed > 0);
    assert!(report.started_at.is_some() && report.completed_at.is_some());
}

#[tokio::test]
async fn a_second_gc_while_one_runs_is_a_failed_precondition() {
    let s = Server::start().await;
    let held = s.t.registry.start_gc(&admin()).await.unwrap();
    let mut admin = s.as_admin().await;
    let status = admin
        .registry
        .get_gc_status(pb::GetGcStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.running);
    assert_eq!(status.last_run, None);
    let second = admin
        .registry
        .garbage_collect(pb::GarbageCollectRequest {})
        .await;
    let err = second.expect_err("refused");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("already running"), "{err:?}");
    drop(held);
    admin
        .registry
        .garbage_collect(pb::GarbageCollectRequest {})
        .await
        .expect("free again");
}

#[tokio::test]
async fn reconcile_removes_files_without_a_row() {
    let s = Server::start().await;
    s.push_image("app", "v1", "one").await;
    let stray = s.t.blobs.insert(&b"a file nobody recorded"[..]);
    let r = s
        .as_admin()
        .await
        .registry
        .reconcile(pb::ReconcileRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.files_removed, [stray.to_string()]);
    assert!(r.missing_files.is_empty());
}

#[tokio::test]
async fn a_snapshot_answers_where_it_went_and_when() {
    let s = Server::start().await;
    let mut admin = s.as_admin().await;
    let snap = admin
        .admin
        .snapshot(pb::SnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let now = s.t.clock.now();
    assert_eq!(
        snap.location,
        format!("memory:snapshot-{}", now.as_millis())
    );
    assert_eq!(snap.taken_at, Some(mcr_grpc::convert::timestamp(now)));
    assert_eq!(s.t.meta.snapshots(), [now]);
    let again = admin.admin.snapshot(pb::SnapshotRequest {}).await;
    assert_eq!(code(again), Code::FailedPrecondition);
    let audited = s.t.meta.audit_log();
    let taken: Vec<_> = audited
        .iter()
        .filter(|e| e.event.event_type == EventType::SnapshotTaken)
        .collect();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].event.details["location"], snap.location);
}

#[tokio::test]
async fn rules_are_created_read_updated_and_deleted() {
    let s = Server::start().await;
    let mut admin = s.as_admin().await;
    let created = admin
        .policy
        .create_rule(rule_request())
        .await
        .unwrap()
        .into_inner();
    assert!(created.id > 0);
    assert_eq!(created.actions, ["registry:pull"]);
    assert_eq!(created.repositories, ["ci/**"]);
    assert!(created.enabled);
    let got = admin
        .policy
        .get_rule(pb::GetRuleRequest { id: created.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    let updated = admin
        .policy
        .update_rule(pb::UpdateRuleRequest {
            id: created.id,
            priority: Some(3),
            subject: Some("ci-bot".into()),
            actions: Some(pb::StringList {
                values: vec!["registry:pull".into(), "registry:push".into()],
            }),
            enabled: Some(false),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.priority, 3);
    assert_eq!(updated.subject.as_deref(), Some("ci-bot"));
    assert_eq!(updated.actions.len(), 2);
    assert!(!updated.enabled);
    assert_eq!(updated.repositories, ["ci/**"], "absent fields are kept");
    let cleared = admin
        .policy
        .update_rule(pb::UpdateRuleRequest {
            id: created.id,
            clear_subject: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.subject, None);
    assert_eq!(cleared.priority, 3);

    let list = admin
        .policy
        .list_rules(pb::ListRulesRequest {})
        .await
        .unwrap();
    // The built-ins (negative ids) come first, then the stored rule.
    let builtins: Vec<pb::Rule> = mcr_core::policy::builtin_rules()
        .iter()
        .map(Into::into)
        .collect();
    assert_eq!(list.get_ref().rules[..builtins.len()], builtins[..]);
    assert_eq!(list.get_ref().rules[builtins.len()..], [cleared]);
    admin
        .policy
        .delete_rule(pb::DeleteRuleRequest { id: created.id })
        .await
        .unwrap();
    let gone = admin
        .policy
        .get_rule(pb::GetRuleRequest { id: created.id })
        .await;
    assert_eq!(code(gone), Code::NotFound);
    let gone = admin
        .policy
        .delete_rule(pb::DeleteRuleRequest { id: created.id })
        .await;
    assert_eq!(code(gone), Code::NotFound);
    let events: Vec<_> =
        s.t.meta
            .audit_log()
            .iter()
            .map(|e| e.event.event_type)
            .collect();
    for t in [
        EventType::PolicyRuleCreated,
        EventType::PolicyRuleUpdated,
        EventType::PolicyRuleDeleted,
    ] {
        assert!(events.contains(&t), "{t:?} audited");
    }
}

#[tokio::test]
async fn invalid_rules_are_refused_naming_the_field() {
    let s = Server::start().await;
    let mut admin = s.as_admin().await;
    let cases = [
        (
            pb::CreateRuleRequest {
                priority: 0,
                ..rule_request()
            },
            "priority",
        ),
        (
            pb::CreateRuleRequest {
                actions: vec!["registry:fly".into()],
                ..rule_request()
            },
            "unknown action",
        ),
        (
            pb::CreateRuleRequest {
                effect: "maybe".into(),
                ..rule_request()
            },
            "effect",
        ),
        (
            pb::CreateRuleRequest {
                repositories: vec!["UPPER/*".into()],
                ..rule_request()
            },
            "repositories",
        ),
    ];
    for (req, want) in cases {
        let err = admin.policy.create_rule(req).await.expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(want), "{want}: {err:?}");
    }
    let both = admin
        .policy
        .update_rule(pb::UpdateRuleRequest {
            id: 1,
            subject: Some("x".into()),
            clear_subject: true,
            ..Default::default()
        })
        .await;
    assert_eq!(code(both), Code::InvalidArgument);
    let list = admin
        .policy
        .list_rules(pb::ListRulesRequest {})
        .await
        .unwrap();
    assert!(list.get_ref().rules.iter().all(|r| r.id < 0));
}

#[tokio::test]
async fn explain_says_which_rule_decided() {
    let s = Server::start().await;
    let mut admin = s.as_admin().await;
    let ask = || pb::ExplainRequest {
        subject: "ci".into(),
        account_type: "system".into(),
        action: "registry:pull".into(),
        repository: Some("ci/app".into()),
        ..Default::default()
    };
    let before = admin.policy.explain(ask()).await.unwrap().into_inner();
    let decision = before.decision.unwrap();
    assert_eq!((decision.effect.as_str(), decision.rule_id), ("deny", None));
    assert!(before
        .rules
        .iter()
        .all(|v| !v.matched && v.mismatch.is_some()));
    assert!(!before.text.is_empty());

    let rule = admin
        .policy
        .create_rule(rule_request())
        .await
        .unwrap()
        .into_inner();
    let after = admin.policy.explain(ask()).await.unwrap().into_inner();
    let decision = after.decision.unwrap();
    assert_eq!(
        (decision.effect.as_str(), decision.rule_id),
        ("allow", Some(rule.id))
    );
    let verdict = after
        .rules
        .iter()
        .find(|v| v.rule.as_ref().unwrap().id == rule.id)
        .unwrap();
    assert!(verdict.matched && verdict.mismatch.is_none());
    assert!(after
        .rules
        .iter()
        .any(|v| v.mismatch.as_deref() == Some("role")));

    let bad = admin
        .policy
        .explain(pb::ExplainRequest {
            action: "registry:fly".into(),
            ..ask()
        })
        .await;
    assert_eq!(code(bad), Code::InvalidArgument);
}

#[tokio::test]
async fn audit_events_are_filtered_like_the_rest_api() {
    let s = Server::start().await;
    s.push_image("app", "v1", "one").await;
    s.push_image("other", "v1", "two").await;
    let admin = s.as_admin().await;
    let list = |req: pb::ListAuditEventsRequest| {
        let mut c = admin.clone();
        async move {
            c.audit
                .list_audit_events(req)
                .await
                .map(|r| r.into_inner().events)
        }
    };
    let all = list(Default::default()).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let pushed = list(pb::ListAuditEventsRequest {
        event_type: Some("manifest_pushed".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(pushed.len(), 2);
    assert!(pushed.iter().all(|e| e.event_type == "manifest_pushed"));
    let in_app = list(pb::ListAuditEventsRequest {
        repository: Some("app".into()),
        actor_id: Some("admin".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(!in_app.is_empty());
    assert!(in_app
        .iter()
        .all(|e| e.repository.as_deref() == Some("app")));
    let one = list(pb::ListAuditEventsRequest {
        n: 1,
        offset: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, all[1].id);
    let future = list(pb::ListAuditEventsRequest {
        since: Some(mcr_grpc::convert::timestamp(
            s.t.clock.advance(Duration::from_secs(1)),
        )),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(future.is_empty());
    let bad = list(pb::ListAuditEventsRequest {
        event_type: Some("nothing_happened".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(code(bad), Code::InvalidArgument);
}

#[tokio::test]
async fn tls_is_1_3_only_with_the_server_certificate() {
    use tokio_rustls::rustls::{self, pki_types::PrivatePkcs8KeyDer, RootCertStore};

    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key.into())
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let s = Server::start_with(
        RegistryConfig::default(),
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))),
    )
    .await;
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let addr = format!("https://{}", s.addr);

    let tls = client::tls_config(roots.clone()).unwrap();
    let channel = client::connect(&addr, Some(tls)).await.expect("TLS 1.3");
    let mut c = Clients::new(channel, BearerToken::default());
    let h = c.admin.health(pb::HealthRequest {}).await.unwrap();
    assert_eq!(h.get_ref().status, "ok");

    // A client that speaks only TLS 1.2 gets no connection.
    let mut old = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    old.alpn_protocols = vec![b"h2".to_vec()];
    assert!(client::connect(&addr, Some(Arc::new(old))).await.is_err());
    // Nor does one without TLS.
    let plain = client::connect(&format!("http://{}", s.addr), None).await;
    if let Ok(ch) = plain {
        let mut c = Clients::new(ch, BearerToken::default());
        assert!(c.admin.health(pb::HealthRequest {}).await.is_err());
    }
}

#[tokio::test]
async fn a_principal_over_its_rate_is_told_to_wait() {
    use mcr_core::registry::RateLimit;
    use std::num::NonZeroU32;

    let s = Server::start_with(
        RegistryConfig {
            rate_limit: Some(RateLimit {
                per_second: NonZeroU32::new(1).expect("1"),
                burst: NonZeroU32::new(1).expect("1"),
            }),
            ..RegistryConfig::default()
        },
        None,
    )
    .await;
    let mut user = s.as_user().await;
    user.registry
        .list_repositories(pb::ListRepositoriesRequest::default())
        .await
        .expect("the first call");
    let refused = user
        .registry
        .list_repositories(pb::ListRepositoriesRequest::default())
        .await
        .expect_err("a second call at once");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        refused
            .metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    s.t.clock.advance(Duration::from_secs(1));
    user.registry
        .list_repositories(pb::ListRepositoriesRequest::default())
        .await
        .expect("refilled after a second");
}

#[tokio::test(start_paused = true)]
async fn a_call_to_a_server_that_never_answers_gives_up() {
    // A listener that accepts and then says nothing at all.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("address");
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let channel = client::connect(&addr.to_string(), None)
        .await
        .expect("TCP connects");
    let mut clients = Clients::new(channel, BearerToken::new(None).expect("no token"));
    let call = clients.admin.health(pb::HealthRequest {});
    let refused = tokio::time::timeout(client::CALL_TIMEOUT * 2, call)
        .await
        .expect("the client gives up by itself")
        .expect_err("no answer");
    assert!(
        matches!(
            refused.code(),
            Code::Cancelled | Code::DeadlineExceeded | Code::Unavailable
        ),
        "{refused:?}"
    );
    held.abort();
}

/// Review of issue 16 (connection slots, D6): a client that connects to
/// the gRPC listener and sends nothing is dropped after the preface
/// timeout instead of holding one of `max_connections` for ever.
#[tokio::test(start_paused = true)]
async fn a_connection_that_never_sends_its_preface_is_closed() {
    use tokio::io::AsyncReadExt;
    let s = Server::start().await;
    let mut silent = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(3600), async {
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a silent connection is still open after an hour"
    );
}
