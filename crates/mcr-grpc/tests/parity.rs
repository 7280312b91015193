//! REST and gRPC answer alike: for one registry state, `mcr_http::router`
//! (driven in-process) and the gRPC services (over a real connection)
//! return the same repositories, repository detail, rules, explanation,
//! audit events and GC status. gRPC answers are turned into the engine's
//! types (or the REST JSON shape) and compared as JSON.

mod support;

use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use mcr_core::audit::AuditEvent;
use mcr_core::policy::Rule;
use mcr_core::testing::admin;
use mcr_grpc::convert::from_timestamp;
use mcr_grpc::pb;
use mcr_http::{AppState, HttpConfig};
use serde_json::{json, Value};
use support::Server;
use tower::ServiceExt;

/// `GET`/`POST` on the REST API as the bearer of `token`; the JSON body.
async fn rest(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(match body {
            Some(b) => Body::from(b.to_string()),
            None => Body::empty(),
        })
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert!(
        resp.status().is_success(),
        "{method} {path}: {}",
        resp.status()
    );
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn time(t: &Option<prost_types::Timestamp>) -> Value {
    json!(from_timestamp(t.as_ref().expect("a time")))
}

fn summary_json(r: &pb::RepositorySummary) -> Value {
    json!({
        "name": r.name,
        "tag_count": r.tag_count,
        "manifest_count": r.manifest_count,
        "total_size": r.total_size,
        "created": time(&r.created),
    })
}

#[tokio::test]
async fn rest_and_grpc_return_the_same_data() {
    let s = Server::start().await;
    s.push_image("app", "v1", "one").await;
    s.push_image("app", "v2", "two").await;
    s.push_image("team/tool", "latest", "three").await;
    let token = s.token(admin());
    let app = mcr_http::router(AppState::new(
        s.t.registry.clone(),
        HttpConfig::default(),
        tokio_util::task::TaskTracker::new(),
    ));
    let mut grpc = s.clients(Some(&token)).await;

    // A rule, created over REST; a GC run, over gRPC, finished.
    rest(
        &app,
        "POST",
        "/v1/policy/rules",
        &token,
        Some(json!({
            "priority": 5, "effect": "deny", "actions": ["registry:push"],
            "roles": ["user"], "repositories": ["team/*"], "description": "freeze team"
        })),
    )
    .await;
    s.t.clock.advance(Duration::from_secs(1));
    let id = grpc
        .registry
        .garbage_collect(pb::GarbageCollectRequest {})
        .await
        .unwrap()
        .into_inner()
        .id;
    loop {
        let st = grpc
            .registry
            .get_gc_status(pb::GetGcStatusRequest {})
            .await
            .unwrap();
        if st.get_ref().last_run.as_ref().is_some_and(|r| r.id == id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Repositories.
    let r = rest(&app, "GET", "/v1/repositories", &token, None).await;
    let g = grpc
        .registry
        .list_repositories(pb::ListRepositoriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let g_json: Vec<Value> = g.repositories.iter().map(summary_json).collect();
    assert_eq!(r["repositories"], json!(g_json));
    assert_eq!(r["next"], json!(g.next));
    assert_eq!(g.repositories.len(), 2);

    // One repository in detail.
    let r = rest(&app, "GET", "/v1/repositories/app", &token, None).await;
    let d = grpc
        .registry
        .get_repository(pb::GetRepositoryRequest { name: "app".into() })
        .await
        .unwrap()
        .into_inner();
    let mut g_json = summary_json(d.summary.as_ref().unwrap());
    g_json["tags"] = json!(d
        .tags
        .iter()
        .map(|t| json!({"name": t.name, "digest": t.digest}))
        .collect::<Vec<_>>());
    g_json["manifests"] = json!(d
        .manifests
        .iter()
        .map(|m| json!({"digest": m.digest, "media_type": m.media_type, "size": m.size, "created": time(&m.created)}))
        .collect::<Vec<_>>());
    g_json["layers"] = json!(d
        .layers
        .iter()
        .map(|l| json!({"digest": l.digest, "size": l.size}))
        .collect::<Vec<_>>());
    assert_eq!(r, g_json);

    // Rules.
    let r = rest(&app, "GET", "/v1/policy/rules", &token, None).await;
    let g: Vec<Rule> = grpc
        .policy
        .list_rules(pb::ListRulesRequest {})
        .await
        .unwrap()
        .into_inner()
        .rules
        .into_iter()
        .map(|r| Rule::try_from(r).unwrap())
        .collect();
    assert_eq!(r["rules"], serde_json::to_value(&g).unwrap());
    // The built-ins, then the stored rule.
    assert_eq!(g.iter().filter(|r| r.is_builtin()).count(), 3);
    assert_eq!(g.len(), 4);

    // Explain.
    let ask = json!({"subject": "u", "account_type": "human", "roles": ["user"],
                     "action": "registry:push", "repository": "team/tool"});
    let r = rest(&app, "POST", "/v1/policy/explain", &token, Some(ask)).await;
    let g = grpc
        .policy
        .explain(pb::ExplainRequest {
            subject: "u".into(),
            account_type: "human".into(),
            roles: vec!["user".into()],
            action: "registry:push".into(),
            repository: Some("team/tool".into()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r["text"], json!(g.text));
    let decision = g.decision.unwrap();
    assert_eq!(
        r["decision"],
        json!({"effect": decision.effect, "rule_id": decision.rule_id})
    );
    assert_eq!(r["decision"]["effect"], "deny");
    let g_rules: Vec<Value> = g
        .rules
        .into_iter()
        .map(|v| {
            let mut j = json!({
                "rule": Rule::try_from(v.rule.unwrap()).unwrap(),
                "matched": v.matched,
            });
            if let Some(m) = v.mismatch {
                j["mismatch"] = json!(m);
            }
            j
        })
        .collect();
    assert_eq!(r["rules"], json!(g_rules));

    // Audit events, whole and filtered.
    for query in [
        "",
        "?event_type=manifest_pushed&repository=app",
        "?n=3&offset=2",
    ] {
        let r = rest(&app, "GET", &format!("/v1/audit{query}"), &token, None).await;
        let req = match query {
            "" => pb::ListAuditEventsRequest::default(),
            "?n=3&offset=2" => pb::ListAuditEventsRequest {
                n: 3,
                offset: 2,
                ..Default::default()
            },
            _ => pb::ListAuditEventsRequest {
                event_type: Some("manifest_pushed".into()),
                repository: Some("app".into()),
                ..Default::default()
            },
        };
        let g: Vec<AuditEvent> = grpc
            .audit
            .list_audit_events(req)
            .await
            .unwrap()
            .into_inner()
            .events
            .into_iter()
            .map(|e| AuditEvent::try_from(e).unwrap())
            .collect();
        assert!(!g.is_empty(), "{query}");
        assert_eq!(r["events"], serde_json::to_value(&g).unwrap(), "{query}");
    }

    // GC status.
    let r = rest(&app, "GET", "/v1/gc/status", &token, None).await;
    let g = grpc
        .registry
        .get_gc_status(pb::GetGcStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let last = g.last_run.unwrap();
    assert_eq!(
        r,
        json!({
            "running": g.running,
            "next_run": null,
            "last_run": {
                "id": last.id,
                "started_at": time(&last.started_at),
                "completed_at": time(&last.completed_at),
                "blobs_removed": last.blobs_removed,
                "bytes_freed": last.bytes_freed,
            }
        })
    );
}
