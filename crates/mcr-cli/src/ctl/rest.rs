//! The admin REST API (`/v1`) over reqwest.

use std::time::Duration;

use mcr_core::audit::AuditEvent;
use mcr_core::events::{OutboxEvent, WebhookStatus};
use mcr_core::names::RepoName;
use mcr_core::policy::{Rule, RuleDraft, RulePatch};
use mcr_core::quota::{Quota, QuotaDraft, QuotaUsage};
use mcr_core::registry::{RetentionReport, RetentionRequest, RetentionStatus};
use mcr_core::retention::{RetentionPolicy, RetentionSpec};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use tokio_rustls::rustls::ClientConfig;

use super::api::{Api, Failure, Kind};
use super::model::{
    AuditFilter, Dashboard, ExplainQuery, Explanation, GcReport, GcStarted, GcStatus, Login,
    ManifestDetail, Proxy, Reconcile, RepoDetail, RepoListing, RepoPage, Snapshot,
};

/// A client of one registry's REST API.
pub struct Rest {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Rest {
    /// `server` is the base URL (`http://127.0.0.1:5000`); `tls` is used
    /// for `https://`.
    pub fn new(server: &str, token: Option<String>, tls: ClientConfig) -> Result<Rest, Failure> {
        let base = server.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base).map_err(|e| {
            Failure::usage(format!(
                "--server {server:?} is not a URL like http://127.0.0.1:5000: {e}"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Failure::usage(format!(
                "--server {server:?} must be an http:// or https:// URL"
            )));
        }
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Failure::usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Rest { http, base, token })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends, and reads a JSON answer or the `{"error"}` of a failure.
    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, Failure> {
        let resp = self.send_raw(req).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Failure::connect(&self.base, chain(&e)))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Failure::new(
                Kind::Server,
                "answer",
                format!("the server's answer is not what mcrctl expects: {e}"),
            )
        })
    }

    async fn send_raw(&self, req: RequestBuilder) -> Result<reqwest::Response, Failure> {
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::connect(&self.base, chain(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            error: String,
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| {
                let t = text.trim();
                if t.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_string()
                } else {
                    t.chars().take(200).collect()
                }
            });
        Err(Failure::new(
            kind(status),
            status.as_u16().to_string(),
            message,
        ))
    }

    async fn send_empty(&self, req: RequestBuilder) -> Result<(), Failure> {
        self.send_raw(req).await.map(drop)
    }
}

fn kind(status: StatusCode) -> Kind {
    match status {
        StatusCode::UNAUTHORIZED => Kind::Unauthenticated,
        StatusCode::FORBIDDEN => Kind::Denied,
        StatusCode::NOT_FOUND => Kind::NotFound,
        StatusCode::CONFLICT => Kind::Conflict,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => Kind::Unavailable,
        s if s.is_client_error() => Kind::Invalid,
        _ => Kind::Server,
    }
}

/// An error and its causes: reqwest's own message is only the outermost.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

impl Api for Rest {
    async fn health(&mut self) -> Result<String, Failure> {
        #[derive(Deserialize)]
        struct Health {
            status: String,
        }
        let h: Health = self.send(self.request(Method::GET, "/v1/health")).await?;
        Ok(h.status)
    }

    async fn ready(&mut self) -> Result<(), Failure> {
        self.send_empty(self.request(Method::GET, "/v1/ready"))
            .await
    }

    async fn login(&mut self, username: &str, password: &str) -> Result<Login, Failure> {
        let req = self
            .http
            .post(format!("{}/v1/auth/login", self.base))
            .json(&json!({"username": username, "password": password}));
        self.send(req).await
    }

    async fn repositories(&mut self, l: &RepoListing) -> Result<RepoPage, Failure> {
        let query: Vec<(&str, String)> = [
            ("filter", l.filter.clone()),
            ("sort", Some(l.sort.to_string())),
            ("order", Some(l.order.to_string())),
            ("last", l.last.clone()),
            ("n", l.n.map(|n| n.to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        self.send(self.request(Method::GET, "/v1/repositories").query(&query))
            .await
    }

    async fn repository(&mut self, name: &RepoName) -> Result<RepoDetail, Failure> {
        self.send(self.request(Method::GET, &format!("/v1/repositories/{name}")))
            .await
    }

    async fn manifest(
        &mut self,
        name: &RepoName,
        reference: &str,
    ) -> Result<ManifestDetail, Failure> {
        // A reference is a tag or a digest: neither holds a character a
        // path must escape, and a bad one is the server's to refuse.
        let path = format!("/v1/repositories/{name}/-/manifests/{reference}");
        self.send(self.request(Method::GET, &path)).await
    }

    async fn dashboard(&mut self) -> Result<Dashboard, Failure> {
        self.send(self.request(Method::GET, "/v1/dashboard")).await
    }

    async fn delete_repository(&mut self, name: &RepoName) -> Result<(), Failure> {
        self.send_empty(self.request(Method::DELETE, &format!("/v1/repositories/{name}")))
            .await
    }

    async fn rules(&mut self) -> Result<Vec<Rule>, Failure> {
        #[derive(Deserialize)]
        struct Rules {
            rules: Vec<Rule>,
        }
        let r: Rules = self
            .send(self.request(Method::GET, "/v1/policy/rules"))
            .await?;
        Ok(r.rules)
    }

    async fn rule(&mut self, id: i64) -> Result<Rule, Failure> {
        self.send(self.request(Method::GET, &format!("/v1/policy/rules/{id}")))
            .await
    }

    async fn create_rule(&mut self, draft: &RuleDraft) -> Result<Rule, Failure> {
        self.send(self.request(Method::POST, "/v1/policy/rules").json(draft))
            .await
    }

    async fn update_rule(&mut self, id: i64, patch: &RulePatch) -> Result<Rule, Failure> {
        let req = self
            .request(Method::PATCH, &format!("/v1/policy/rules/{id}"))
            .json(patch);
        self.send(req).await
    }

    async fn delete_rule(&mut self, id: i64) -> Result<(), Failure> {
        self.send_empty(self.request(Method::DELETE, &format!("/v1/policy/rules/{id}")))
            .await
    }

    async fn explain(&mut self, query: &ExplainQuery) -> Result<Explanation, Failure> {
        self.send(self.request(Method::POST, "/v1/policy/explain").json(query))
            .await
    }

    async fn audit(&mut self, f: &AuditFilter) -> Result<Vec<AuditEvent>, Failure> {
        #[derive(Deserialize)]
        struct Events {
            events: Vec<AuditEvent>,
        }
        let mut query = vec![("n", f.n.to_string())];
        let optional = [
            ("event_type", f.event_type.clone()),
            ("actor_id", f.actor_id.clone()),
            ("repository", f.repository.clone()),
            ("since", f.since.map(|t| t.to_rfc3339())),
        ];
        query.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        let e: Events = self
            .send(self.request(Method::GET, "/v1/audit").query(&query))
            .await?;
        Ok(e.events)
    }

    async fn start_gc(&mut self) -> Result<String, Failure> {
        let started: GcStarted = self.send(self.request(Method::POST, "/v1/gc")).await?;
        Ok(started.id)
    }

    async fn gc_status(&mut self) -> Result<GcStatus, Failure> {
        self.send(self.request(Method::GET, "/v1/gc/status")).await
    }

    async fn gc_runs(&mut self, n: usize) -> Result<Vec<GcReport>, Failure> {
        #[derive(Deserialize)]
        struct Runs {
            runs: Vec<GcReport>,
        }
        let req = self
            .request(Method::GET, "/v1/gc/runs")
            .query(&[("n", n.to_string())]);
        let r: Runs = self.send(req).await?;
        Ok(r.runs)
    }

    async fn reconcile(&mut self) -> Result<Reconcile, Failure> {
        self.send(self.request(Method::POST, "/v1/gc/reconcile"))
            .await
    }

    async fn snapshot(&mut self) -> Result<Snapshot, Failure> {
        self.send(self.request(Method::POST, "/v1/snapshot")).await
    }

    async fn drop_proxy_cache(&mut self, name: &RepoName) -> Result<(), Failure> {
        self.send_empty(self.request(Method::DELETE, &format!("/v1/proxies/cache/{name}")))
            .await
    }

    async fn retention_policies(&mut self) -> Result<Vec<RetentionPolicy>, Failure> {
        #[derive(Deserialize)]
        struct Policies {
            policies: Vec<RetentionPolicy>,
        }
        let r: Policies = self
            .send(self.request(Method::GET, "/v1/retention"))
            .await?;
        Ok(r.policies)
    }

    async fn create_retention_policy(
        &mut self,
        spec: &RetentionSpec,
    ) -> Result<RetentionPolicy, Failure> {
        self.send(self.request(Method::POST, "/v1/retention").json(spec))
            .await
    }

    async fn delete_retention_policy(&mut self, id: i64) -> Result<(), Failure> {
        self.send_empty(self.request(Method::DELETE, &format!("/v1/retention/{id}")))
            .await
    }

    async fn run_retention(
        &mut self,
        request: &RetentionRequest,
    ) -> Result<RetentionReport, Failure> {
        self.send(
            self.request(Method::POST, "/v1/retention/run")
                .json(request),
        )
        .await
    }

    async fn retention_status(&mut self) -> Result<RetentionStatus, Failure> {
        self.send(self.request(Method::GET, "/v1/retention/status"))
            .await
    }

    async fn proxies(&mut self) -> Result<Vec<Proxy>, Failure> {
        #[derive(Deserialize)]
        struct Proxies {
            proxies: Vec<Proxy>,
        }
        let p: Proxies = self.send(self.request(Method::GET, "/v1/proxies")).await?;
        Ok(p.proxies)
    }

    async fn webhooks(&mut self) -> Result<Vec<WebhookStatus>, Failure> {
        #[derive(Deserialize)]
        struct Webhooks {
            webhooks: Vec<WebhookStatus>,
        }
        let w: Webhooks = self
            .send(self.request(Method::GET, "/v1/events/webhooks"))
            .await?;
        Ok(w.webhooks)
    }

    async fn events(&mut self, after: i64, limit: usize) -> Result<Vec<OutboxEvent>, Failure> {
        #[derive(Deserialize)]
        struct Events {
            events: Vec<OutboxEvent>,
        }
        let path = format!("/v1/events?after={after}&limit={limit}");
        let e: Events = self.send(self.request(Method::GET, &path)).await?;
        Ok(e.events)
    }

    async fn quotas(&mut self) -> Result<Vec<QuotaUsage>, Failure> {
        #[derive(Deserialize)]
        struct Quotas {
            quotas: Vec<QuotaUsage>,
        }
        let q: Quotas = self.send(self.request(Method::GET, "/v1/quotas")).await?;
        Ok(q.quotas)
    }

    async fn set_quota(&mut self, draft: &QuotaDraft) -> Result<Quota, Failure> {
        self.send(self.request(Method::POST, "/v1/quotas").json(draft))
            .await
    }

    async fn delete_quota(&mut self, id: i64) -> Result<(), Failure> {
        self.send_empty(self.request(Method::DELETE, &format!("/v1/quotas/{id}")))
            .await
    }
}
