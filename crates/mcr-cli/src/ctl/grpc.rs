//! The admin API over gRPC (`mcr.v1`), through `mcr_grpc::client`.

use std::sync::Arc;

use mcr_core::audit::{AuditEvent, AuditQuery};
use mcr_core::events::{OutboxEvent, WebhookStatus};
use mcr_core::names::RepoName;
use mcr_core::policy::{Rule, RuleDraft, RulePatch};
use mcr_core::quota::{Quota, QuotaDraft, QuotaUsage};
use mcr_core::registry::{RetentionReport, RetentionRequest, RetentionStatus};
use mcr_core::retention::{RetentionPolicy, RetentionSpec};
use mcr_grpc::client::{self, BearerToken, Clients};
use mcr_grpc::convert::{from_timestamp, update_rule_request};
use mcr_grpc::pb;
use tokio_rustls::rustls::ClientConfig;
use tonic::{Code, Status};

use super::api::{Api, Failure, Kind};
use super::model::{
    AuditFilter, Dashboard, Decision, ExplainQuery, Explanation, GcReport, GcStatus, Login,
    ManifestDetail, Proxy, Reconcile, RepoDetail, RepoListing, RepoPage, Snapshot, Verdict,
};

/// Clients of one registry's gRPC services.
pub struct Grpc {
    clients: Clients,
}

impl Grpc {
    /// Connects to `addr`; with `tls`, over TLS 1.3.
    pub async fn connect(
        addr: &str,
        token: Option<&str>,
        tls: Option<Arc<ClientConfig>>,
    ) -> Result<Grpc, Failure> {
        let token = BearerToken::new(token).map_err(|e| Failure::usage(format!("--token: {e}")))?;
        let channel = client::connect(addr, tls)
            .await
            .map_err(|e| Failure::connect(addr, e))?;
        Ok(Grpc {
            clients: Clients::new(channel, token),
        })
    }
}

fn failure(s: Status) -> Failure {
    let kind = match s.code() {
        Code::Unauthenticated => Kind::Unauthenticated,
        Code::PermissionDenied => Kind::Denied,
        Code::NotFound => Kind::NotFound,
        Code::InvalidArgument | Code::OutOfRange | Code::AlreadyExists => Kind::Invalid,
        Code::FailedPrecondition | Code::Aborted => Kind::Conflict,
        Code::Unavailable if s.message().contains("transport") => Kind::Connect,
        Code::Unavailable => Kind::Unavailable,
        _ => Kind::Server,
    };
    let code = format!("{:?}", s.code());
    Failure::new(kind, screaming(&code), s.message())
}

/// `PermissionDenied` → `PERMISSION_DENIED`, as gRPC names its codes.
fn screaming(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn time(t: Option<mcr_grpc::prost_types::Timestamp>) -> mcr_core::time::Timestamp {
    t.as_ref().map(from_timestamp).unwrap_or_default()
}

/// An answer turned into the engine's types; one mcrctl cannot read is
/// the server's failure.
fn answer<T, M: TryInto<T, Error = mcr_core::Error>>(what: &str, message: M) -> Result<T, Failure> {
    message.try_into().map_err(|e| {
        Failure::new(
            Kind::Server,
            "answer",
            format!("the server sent {what} mcrctl cannot read: {e}"),
        )
    })
}

fn rule(r: pb::Rule) -> Result<Rule, Failure> {
    answer("a rule", r)
}

impl Api for Grpc {
    async fn health(&mut self) -> Result<String, Failure> {
        let h = self
            .clients
            .admin
            .health(pb::HealthRequest {})
            .await
            .map_err(failure)?;
        Ok(h.into_inner().status)
    }

    async fn ready(&mut self) -> Result<(), Failure> {
        self.clients
            .admin
            .ready(pb::ReadyRequest {})
            .await
            .map(drop)
            .map_err(failure)
    }

    async fn login(&mut self, username: &str, password: &str) -> Result<Login, Failure> {
        let r = self
            .clients
            .admin
            .login(pb::LoginRequest {
                username: username.to_string(),
                password: password.to_string(),
            })
            .await
            .map_err(failure)?
            .into_inner();
        Ok(Login {
            token: r.token,
            expires_at: time(r.expires_at),
        })
    }

    async fn repositories(&mut self, listing: &RepoListing) -> Result<RepoPage, Failure> {
        let r = self
            .clients
            .registry
            .list_repositories(pb::ListRepositoriesRequest::from(listing))
            .await
            .map_err(failure)?
            .into_inner();
        answer("a repository listing", r)
    }

    async fn repository(&mut self, name: &RepoName) -> Result<RepoDetail, Failure> {
        let d = self
            .clients
            .registry
            .get_repository(pb::GetRepositoryRequest {
                name: name.to_string(),
            })
            .await
            .map_err(failure)?
            .into_inner();
        answer("a repository", d)
    }

    async fn manifest(
        &mut self,
        name: &RepoName,
        reference: &str,
    ) -> Result<ManifestDetail, Failure> {
        let m = self
            .clients
            .registry
            .get_manifest(pb::GetManifestRequest {
                repository: name.to_string(),
                reference: reference.to_string(),
            })
            .await
            .map_err(failure)?
            .into_inner();
        answer("a manifest", m)
    }

    async fn dashboard(&mut self) -> Result<Dashboard, Failure> {
        let d = self
            .clients
            .registry
            .get_dashboard(pb::GetDashboardRequest {})
            .await
            .map_err(failure)?
            .into_inner();
        answer("a dashboard", d)
    }

    async fn delete_repository(&mut self, name: &RepoName) -> Result<(), Failure> {
        self.clients
            .registry
            .delete_repository(pb::DeleteRepositoryRequest {
                name: name.to_string(),
            })
            .await
            .map_err(failure)
            .map(drop)
    }

    async fn rules(&mut self) -> Result<Vec<Rule>, Failure> {
        let r = self
            .clients
            .policy
            .list_rules(pb::ListRulesRequest {})
            .await
            .map_err(failure)?;
        r.into_inner().rules.into_iter().map(rule).collect()
    }

    async fn rule(&mut self, id: i64) -> Result<Rule, Failure> {
        let r = self
            .clients
            .policy
            .get_rule(pb::GetRuleRequest { id })
            .await
            .map_err(failure)?;
        rule(r.into_inner())
    }

    async fn create_rule(&mut self, draft: &RuleDraft) -> Result<Rule, Failure> {
        let r = self
            .clients
            .policy
            .create_rule(pb::CreateRuleRequest::from(draft))
            .await
            .map_err(failure)?;
        rule(r.into_inner())
    }

    async fn update_rule(&mut self, id: i64, patch: &RulePatch) -> Result<Rule, Failure> {
        let r = self
            .clients
            .policy
            .update_rule(update_rule_request(id, patch))
            .await
            .map_err(failure)?;
        rule(r.into_inner())
    }

    async fn delete_rule(&mut self, id: i64) -> Result<(), Failure> {
        self.clients
            .policy
            .delete_rule(pb::DeleteRuleRequest { id })
            .await
            .map_err(failure)
            .map(drop)
    }

    async fn explain(&mut self, q: &ExplainQuery) -> Result<Explanation, Failure> {
        let e = self
            .clients
            .policy
            .explain(pb::ExplainRequest {
                subject: q.subject.clone(),
                account_type: q.account_type.clone(),
                roles: q.roles.clone(),
                action: q.action.clone(),
                repository: q.repository.clone(),
                tag: q.tag.clone(),
            })
            .await
            .map_err(failure)?
            .into_inner();
        let decision = e.decision.unwrap_or_default();
        Ok(Explanation {
            decision: Decision {
                effect: decision.effect,
                rule_id: decision.rule_id,
            },
            rules: e
                .rules
                .into_iter()
                .map(|v| {
                    Ok(Verdict {
                        rule: rule(v.rule.unwrap_or_default())?,
                        matched: v.matched,
                        mismatch: v.mismatch,
                    })
                })
                .collect::<Result<_, Failure>>()?,
            text: e.text,
        })
    }

    async fn audit(&mut self, f: &AuditFilter) -> Result<Vec<AuditEvent>, Failure> {
        let mut req = pb::ListAuditEventsRequest::from(&AuditQuery {
            since: f.since,
            limit: f.n,
            ..AuditQuery::default()
        });
        // Names go to the server as typed, for it to validate.
        req.event_type = f.event_type.clone();
        req.actor_id = f.actor_id.clone();
        req.repository = f.repository.clone();
        let r = self
            .clients
            .audit
            .list_audit_events(req)
            .await
            .map_err(failure)?;
        r.into_inner()
            .events
            .into_iter()
            .map(|e| {
                AuditEvent::try_from(e).map_err(|e| {
                    Failure::new(
                        Kind::Server,
                        "answer",
                        format!("unreadable audit event: {e}"),
                    )
                })
            })
            .collect()
    }

    async fn start_gc(&mut self) -> Result<String, Failure> {
        let r = self
            .clients
            .registry
            .garbage_collect(pb::GarbageCollectRequest {})
            .await
            .map_err(failure)?;
        Ok(r.into_inner().id)
    }

    async fn drop_proxy_cache(&mut self, name: &RepoName) -> Result<(), Failure> {
        self.clients
            .registry
            .drop_proxy_cache(pb::DropProxyCacheRequest {
                repository: name.to_string(),
            })
            .await
            .map_err(failure)
            .map(drop)
    }

    async fn retention_policies(&mut self) -> Result<Vec<RetentionPolicy>, Failure> {
        let r = self
            .clients
            .policy
            .list_retention_policies(pb::ListRetentionPoliciesRequest {})
            .await
            .map_err(failure)?;
        r.into_inner()
            .policies
            .into_iter()
            .map(|p| RetentionPolicy::try_from(p).map_err(Failure::from))
            .collect()
    }

    async fn create_retention_policy(
        &mut self,
        spec: &RetentionSpec,
    ) -> Result<RetentionPolicy, Failure> {
        let r = self
            .clients
            .policy
            .create_retention_policy(pb::CreateRetentionPolicyRequest {
                body: Some(spec.into()),
            })
            .await
            .map_err(failure)?;
        Ok(RetentionPolicy::try_from(r.into_inner())?)
    }

    async fn delete_retention_policy(&mut self, id: i64) -> Result<(), Failure> {
        self.clients
            .policy
            .delete_retention_policy(pb::DeleteRetentionPolicyRequest { id })
            .await
            .map_err(failure)
            .map(drop)
    }

    async fn run_retention(
        &mut self,
        request: &RetentionRequest,
    ) -> Result<RetentionReport, Failure> {
        let r = self
            .clients
            .policy
            .run_retention(pb::RunRetentionRequest::from(request))
            .await
            .map_err(failure)?;
        Ok(RetentionReport::try_from(r.into_inner())?)
    }

    async fn retention_status(&mut self) -> Result<RetentionStatus, Failure> {
        let r = self
            .clients
            .policy
            .get_retention_status(pb::GetRetentionStatusRequest {})
            .await
            .map_err(failure)?;
        Ok(RetentionStatus::try_from(r.into_inner())?)
    }

    async fn proxies(&mut self) -> Result<Vec<Proxy>, Failure> {
        let r = self
            .clients
            .registry
            .list_proxies(pb::ListProxiesRequest {})
            .await
            .map_err(failure)?
            .into_inner();
        Ok(r.proxies
            .into_iter()
            .map(|p| Proxy {
                prefix: p.prefix,
                upstream: p.upstream,
                hits: p.hits,
                misses: p.misses,
                repositories: p.repositories,
                cache_size: p.cache_size,
            })
            .collect())
    }

    async fn webhooks(&mut self) -> Result<Vec<WebhookStatus>, Failure> {
        let r = self
            .clients
            .registry
            .list_webhooks(pb::ListWebhooksRequest {})
            .await
            .map_err(failure)?
            .into_inner();
        Ok(r.webhooks
            .into_iter()
            .map(WebhookStatus::try_from)
            .collect::<Result<_, _>>()?)
    }

    async fn events(&mut self, after: i64, limit: usize) -> Result<Vec<OutboxEvent>, Failure> {
        let r = self
            .clients
            .registry
            .list_events(pb::ListEventsRequest {
                after,
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
            })
            .await
            .map_err(failure)?
            .into_inner();
        Ok(r.events
            .into_iter()
            .map(OutboxEvent::try_from)
            .collect::<Result<_, _>>()?)
    }

    async fn quotas(&mut self) -> Result<Vec<QuotaUsage>, Failure> {
        let r = self
            .clients
            .registry
            .list_quotas(pb::ListQuotasRequest {})
            .await
            .map_err(failure)?
            .into_inner();
        Ok(r.quotas
            .into_iter()
            .map(QuotaUsage::try_from)
            .collect::<Result<_, _>>()?)
    }

    async fn set_quota(&mut self, draft: &QuotaDraft) -> Result<Quota, Failure> {
        let r = self
            .clients
            .registry
            .set_quota(pb::SetQuotaRequest {
                scope: draft.scope.clone(),
                limit_bytes: draft.limit_bytes,
            })
            .await
            .map_err(failure)?
            .into_inner();
        Ok(QuotaUsage::try_from(r)?.quota)
    }

    async fn delete_quota(&mut self, id: i64) -> Result<(), Failure> {
        self.clients
            .registry
            .delete_quota(pb::DeleteQuotaRequest { id })
            .await
            .map_err(failure)
            .map(drop)
    }

    async fn gc_status(&mut self) -> Result<GcStatus, Failure> {
        let s = self
            .clients
            .registry
            .get_gc_status(pb::GetGcStatusRequest {})
            .await
            .map_err(failure)?
            .into_inner();
        answer("a GC status", s)
    }

    async fn gc_runs(&mut self, n: usize) -> Result<Vec<GcReport>, Failure> {
        let r = self
            .clients
            .registry
            .list_gc_runs(pb::ListGcRunsRequest {
                n: u32::try_from(n).unwrap_or(u32::MAX),
            })
            .await
            .map_err(failure)?
            .into_inner();
        r.runs
            .into_iter()
            .map(|run| answer("a GC run", run))
            .collect()
    }

    async fn reconcile(&mut self) -> Result<Reconcile, Failure> {
        let r = self
            .clients
            .registry
            .reconcile(pb::ReconcileRequest {})
            .await
            .map_err(failure)?
            .into_inner();
        Ok(Reconcile {
            files_removed: r.files_removed,
            missing_files: r.missing_files,
        })
    }

    async fn snapshot(&mut self) -> Result<Snapshot, Failure> {
        let r = self
            .clients
            .admin
            .snapshot(pb::SnapshotRequest {})
            .await
            .map_err(failure)?
            .into_inner();
        Ok(Snapshot {
            location: r.location,
            taken_at: time(r.taken_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(screaming("PermissionDenied"), "PERMISSION_DENIED");
        assert_eq!(screaming("Unauthenticated"), "UNAUTHENTICATED");
        let f = failure(Status::unauthenticated("token not valid"));
        assert_eq!(f.kind, Kind::Unauthenticated);
        assert_eq!(f.code.as_deref(), Some("UNAUTHENTICATED"));
    }
}
