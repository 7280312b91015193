//! REST and gRPC answer alike: for one registry state, `mcr_http::router`
//! (driven in-process) and the gRPC services (over a real connection)
//! return the same repositories, repository detail, rules, explanation,
//! audit events, GC status and the pull-through cache's mirrors, and drop
//! a mirrored repository's cache alike. gRPC answers are turned into the
//! engine's types (or the REST JSON shape) and compared as JSON.

mod support;

use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use mcr_core::audit::AuditEvent;
use mcr_core::policy::Rule;
use mcr_core::ports::RepoDetail;
use mcr_core::registry::{Dashboard, GcReport, GcStatus, ManifestDetail, RepoPage};
use mcr_core::testing::admin;
use mcr_grpc::convert::from_timestamp;
use mcr_grpc::pb;
use mcr_http::{AppState, HttpConfig};
use serde_json::{json, Value};
use support::Server;
use tower::ServiceExt;

/// `GET`/`POST` on the REST API as the bearer of `token`, which must
/// succeed; the JSON body.
async fn rest(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let (status, body) = rest_answer(app, method, path, token, body).await;
    assert!(status.is_success(), "{method} {path}: {status}");
    body
}

/// A request on the REST API as the bearer of `token`: the status and the
/// JSON body (`null` when there is none).
async fn rest_answer(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (http::StatusCode, Value) {
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
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, body)
}

/// The REST API over the same registry as the gRPC server `s`.
fn rest_app(s: &Server) -> axum::Router {
    mcr_http::router(AppState::new(
        s.t.registry.clone(),
        HttpConfig::default(),
        tokio_util::task::TaskTracker::new(),
    ))
}

fn time(t: &Option<prost_types::Timestamp>) -> Value {
    json!(from_timestamp(t.as_ref().expect("a time")))
}

#[tokio::test]
async fn rest_and_grpc_return_the_same_data() {
    let s = Server::start().await;
    let v1 = s.push_image("app", "v1", "one").await;
    s.push_image("app", "v2", "two").await;
    s.push_image("team/tool", "latest", "three").await;
    let token = s.token(admin());
    let app = rest_app(&s);
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
    // A tag rule, created over gRPC.
    grpc.policy
        .create_rule(pb::CreateRuleRequest {
            priority: 6,
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
        .unwrap();
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

    // Repositories: the gRPC answer read back into the engine's shapes
    // serialises to exactly the REST JSON.
    let r = rest(&app, "GET", "/v1/repositories", &token, None).await;
    let g = grpc
        .registry
        .list_repositories(pb::ListRepositoriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let g = RepoPage::try_from(g).unwrap();
    assert_eq!(r, serde_json::to_value(&g).unwrap());
    assert_eq!(g.repositories.len(), 2);
    let r = rest(&app, "GET", "/v1/repositories?n=1", &token, None).await;
    let g = grpc
        .registry
        .list_repositories(pb::ListRepositoriesRequest {
            n: Some(1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.next.as_deref(), Some("app"), "a next page from both");
    assert_eq!(
        r,
        serde_json::to_value(RepoPage::try_from(g).unwrap()).unwrap()
    );

    // One repository in detail.
    let r = rest(&app, "GET", "/v1/repositories/app", &token, None).await;
    let d = grpc
        .registry
        .get_repository(pb::GetRepositoryRequest { name: "app".into() })
        .await
        .unwrap()
        .into_inner();
    let d = RepoDetail::try_from(d).unwrap();
    assert_eq!(d.tags.len(), 2);
    assert_eq!(r, serde_json::to_value(&d).unwrap());

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
    // The built-ins, then the stored rules; the tag rule's patterns on both.
    assert_eq!(g.iter().filter(|r| r.is_builtin()).count(), 4);
    assert_eq!(g.len(), 6);
    assert_eq!(r["rules"][5]["tags"], json!(["v*"]));

    // Explain, without and with a tag.
    for (action, tag, effect) in [
        ("registry:push", None, "deny"),
        ("registry:tag_overwrite", Some("v1"), "deny"),
        ("registry:tag_overwrite", Some("latest"), "allow"),
    ] {
        let mut ask = json!({"subject": "u", "account_type": "human", "roles": ["user"],
                             "action": action, "repository": "team/tool"});
        if let Some(t) = tag {
            ask["tag"] = json!(t);
        }
        let r = rest(&app, "POST", "/v1/policy/explain", &token, Some(ask)).await;
        let g = grpc
            .policy
            .explain(pb::ExplainRequest {
                subject: "u".into(),
                account_type: "human".into(),
                roles: vec!["user".into()],
                action: action.into(),
                repository: Some("team/tool".into()),
                tag: tag.map(str::to_string),
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
        assert_eq!(r["decision"]["effect"], effect, "{action} {tag:?}");
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
    }

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
    let last = g.last_run.clone().unwrap();
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

    let g = GcStatus::try_from(g).unwrap();
    assert_eq!(r, serde_json::to_value(&g).unwrap());

    // Past GC runs.
    let r = rest(&app, "GET", "/v1/gc/runs?n=5", &token, None).await;
    let g = grpc
        .registry
        .list_gc_runs(pb::ListGcRunsRequest { n: 5 })
        .await
        .unwrap()
        .into_inner();
    let runs: Vec<GcReport> = g
        .runs
        .into_iter()
        .map(|r| GcReport::try_from(r).unwrap())
        .collect();
    assert_eq!(runs.len(), 1);
    assert_eq!(r["runs"], serde_json::to_value(&runs).unwrap());

    // A sorted, filtered page of repositories.
    let r = rest(
        &app,
        "GET",
        "/v1/repositories?sort=size&order=desc&filter=a&n=1",
        &token,
        None,
    )
    .await;
    let g = grpc
        .registry
        .list_repositories(pb::ListRepositoriesRequest {
            n: Some(1),
            filter: Some("a".into()),
            sort: Some("size".into()),
            order: Some("desc".into()),
            last: None,
        })
        .await
        .unwrap()
        .into_inner();
    let g = RepoPage::try_from(g).unwrap();
    assert!(g.next.as_deref().is_some_and(|n| n.contains(':')), "{g:?}");
    assert_eq!(r, serde_json::to_value(&g).unwrap());

    // One manifest in detail, by tag and by digest.
    for reference in ["v1".to_string(), v1.to_string()] {
        let r = rest(
            &app,
            "GET",
            &format!("/v1/repositories/app/-/manifests/{reference}"),
            &token,
            None,
        )
        .await;
        let g = grpc
            .registry
            .get_manifest(pb::GetManifestRequest {
                repository: "app".into(),
                reference: reference.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let g = ManifestDetail::try_from(g).unwrap();
        assert_eq!(g.digest, v1);
        assert_eq!(g.layers.len(), 1);
        assert_eq!(r, serde_json::to_value(&g).unwrap(), "{reference}");
    }

    // The dashboard.
    let r = rest(&app, "GET", "/v1/dashboard", &token, None).await;
    let g = grpc
        .registry
        .get_dashboard(pb::GetDashboardRequest {})
        .await
        .unwrap()
        .into_inner();
    let g = Dashboard::try_from(g).unwrap();
    assert_eq!(g.repositories, 2);
    assert_eq!(g.recent_pushes.len(), 3);
    assert!(g.gc.is_some());
    assert_eq!(r, serde_json::to_value(&g).unwrap());
}

fn proxy_json(p: &pb::Proxy) -> Value {
    json!({
        "prefix": p.prefix,
        "upstream": p.upstream,
        "hits": p.hits,
        "misses": p.misses,
        "repositories": p.repositories,
        "cache_size": p.cache_size,
    })
}

#[tokio::test]
async fn rest_and_grpc_list_mirrors_and_drop_a_repositorys_cache_alike() {
    use mcr_core::names::{Reference, RepoName, Tag};
    use mcr_core::proxy::ProxyConfig;
    use mcr_core::testing::{user, FakeUpstream};
    use std::sync::Arc;

    let up = Arc::new(FakeUpstream::new("https://upstream.example"));
    let s = Server::mirroring(vec![ProxyConfig {
        prefix: RepoName::new("hub").unwrap(),
        upstream: up.clone(),
        tag_ttl: Duration::from_secs(300),
        offline: true,
        docker_hub: true,
        max_size: None,
    }])
    .await;
    let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    for name in ["alpine", "debian"] {
        let upstream_name = RepoName::new(&format!("library/{name}")).unwrap();
        let tag = Tag::new("1").unwrap();
        up.put_manifest(
            &upstream_name,
            Some(&tag),
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
        );
        s.t.registry
            .get_manifest(
                &user(),
                &RepoName::new(&format!("hub/{name}")).unwrap(),
                &Reference::Tag(tag),
            )
            .await
            .unwrap();
    }
    let token = s.token(admin());
    let app = rest_app(&s);
    let mut grpc = s.clients(Some(&token)).await;
    let listings = |mut grpc: mcr_grpc::client::Clients| {
        let app = app.clone();
        let token = token.clone();
        async move {
            let r = rest(&app, "GET", "/v1/proxies", &token, None).await;
            let g = grpc
                .registry
                .list_proxies(pb::ListProxiesRequest {})
                .await
                .unwrap()
                .into_inner();
            let g_json: Vec<Value> = g.proxies.iter().map(proxy_json).collect();
            assert_eq!(r["proxies"], json!(g_json));
            r["proxies"][0]["repositories"].clone()
        }
    };
    assert_eq!(listings(s.clients(Some(&token)).await).await, json!(2));

    // One repository dropped through each.
    let (status, body) =
        rest_answer(&app, "DELETE", "/v1/proxies/cache/hub/alpine", &token, None).await;
    assert_eq!((status, body), (http::StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(listings(s.clients(Some(&token)).await).await, json!(1));
    grpc.registry
        .drop_proxy_cache(pb::DropProxyCacheRequest {
            repository: "hub/debian".into(),
        })
        .await
        .unwrap();
    assert_eq!(listings(s.clients(Some(&token)).await).await, json!(0));
    let dropped: Vec<String> =
        s.t.meta
            .audit_log()
            .into_iter()
            .filter(|e| e.event.event_type == mcr_core::audit::EventType::ProxyCacheDropped)
            .filter_map(|e| e.event.repository.map(|r| r.to_string()))
            .collect();
    assert_eq!(dropped, ["hub/alpine", "hub/debian"]);

    // The same refusals, with the same words.
    let user_token = s.token(user());
    let mut as_user = s.clients(Some(&user_token)).await;
    for (name, who, status, code, says) in [
        (
            "app",
            &token,
            404,
            tonic::Code::NotFound,
            "mirrored repository app not found",
        ),
        (
            "hub/alpine",
            &token,
            404,
            tonic::Code::NotFound,
            "cached repository hub/alpine not found",
        ),
        (
            "hub/alpine",
            &user_token,
            403,
            tonic::Code::PermissionDenied,
            "user may not policy:manage",
        ),
    ] {
        let (got, body) = rest_answer(
            &app,
            "DELETE",
            &format!("/v1/proxies/cache/{name}"),
            who,
            None,
        )
        .await;
        assert_eq!(got.as_u16(), status, "{name}: {body}");
        let message = body["error"].as_str().unwrap().to_string();
        assert!(message.contains(says), "{name}: {message}");
        let client = if who == &token {
            &mut grpc
        } else {
            &mut as_user
        };
        let e = client
            .registry
            .drop_proxy_cache(pb::DropProxyCacheRequest {
                repository: name.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{name}: {e:?}");
        assert_eq!(e.message(), message, "{name}");
    }
}

/// The event outbox and the webhooks' delivery state answer alike over
/// REST and gRPC, admins only on both.
#[tokio::test]
async fn rest_and_grpc_list_the_same_events() {
    let s = Server::start().await;
    s.push_image("app", "v1", "one").await;
    s.push_image("app", "v1", "two").await;
    s.push_image("team/tool", "latest", "three").await;
    let token = s.token(admin());
    let app = rest_app(&s);
    let mut grpc = s.clients(Some(&token)).await;

    let rest_events = rest(&app, "GET", "/v1/events?after=1&limit=10", &token, None).await;
    let grpc_events: Vec<Value> = grpc
        .registry
        .list_events(pb::ListEventsRequest {
            after: 1,
            limit: 10,
        })
        .await
        .unwrap()
        .into_inner()
        .events
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "event_id": e.event_id,
                "time": time(&e.time),
                "type": e.r#type,
                "repository": e.repository,
                "data": serde_json::from_str::<Value>(&e.data_json).unwrap(),
            })
        })
        .collect();
    assert_eq!(rest_events["events"], json!(grpc_events));
    let types: Vec<&str> = grpc_events
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["manifest.pushed", "tag.moved", "manifest.pushed"]);

    let rest_hooks = rest(&app, "GET", "/v1/events/webhooks", &token, None).await;
    let grpc_hooks = grpc
        .registry
        .list_webhooks(pb::ListWebhooksRequest {})
        .await
        .unwrap()
        .into_inner()
        .webhooks;
    assert_eq!(rest_hooks, json!({ "webhooks": [] }));
    assert!(grpc_hooks.is_empty());

    let mut user = s.as_user().await;
    let refused = user
        .registry
        .list_events(pb::ListEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let refused = user
        .registry
        .list_webhooks(pb::ListWebhooksRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}
