//! The admin API as mcrctl uses it, whichever transport carries it, and
//! how its failures are told to a person.

use std::fmt;

use mcr_core::audit::AuditEvent;
use mcr_core::events::{OutboxEvent, WebhookStatus};
use mcr_core::names::RepoName;
use mcr_core::policy::{Rule, RuleDraft, RulePatch};
use mcr_core::quota::{Quota, QuotaDraft, QuotaUsage};
use mcr_core::registry::{RetentionReport, RetentionRequest, RetentionStatus};
use mcr_core::retention::{RetentionPolicy, RetentionSpec};

use super::model::{
    AuditFilter, Dashboard, ExplainQuery, Explanation, GcReport, GcStatus, Login, ManifestDetail,
    Proxy, Reconcile, RepoDetail, RepoListing, RepoPage, Snapshot,
};

/// One call per admin operation; [`super::rest::Rest`] and
/// [`super::grpc::Grpc`] implement it.
pub(crate) trait Api {
    async fn health(&mut self) -> Result<String, Failure>;
    /// `Ok` when the registry can serve; a [`Kind::Unavailable`] failure
    /// saying what is wrong otherwise.
    async fn ready(&mut self) -> Result<(), Failure>;
    async fn login(&mut self, username: &str, password: &str) -> Result<Login, Failure>;
    async fn repositories(&mut self, listing: &RepoListing) -> Result<RepoPage, Failure>;
    async fn repository(&mut self, name: &RepoName) -> Result<RepoDetail, Failure>;
    /// A manifest by tag or digest, as typed (the server parses it).
    async fn manifest(
        &mut self,
        name: &RepoName,
        reference: &str,
    ) -> Result<ManifestDetail, Failure>;
    async fn dashboard(&mut self) -> Result<Dashboard, Failure>;
    async fn delete_repository(&mut self, name: &RepoName) -> Result<(), Failure>;
    async fn rules(&mut self) -> Result<Vec<Rule>, Failure>;
    async fn rule(&mut self, id: i64) -> Result<Rule, Failure>;
    async fn create_rule(&mut self, draft: &RuleDraft) -> Result<Rule, Failure>;
    async fn update_rule(&mut self, id: i64, patch: &RulePatch) -> Result<Rule, Failure>;
    async fn delete_rule(&mut self, id: i64) -> Result<(), Failure>;
    async fn explain(&mut self, query: &ExplainQuery) -> Result<Explanation, Failure>;
    /// Newest first, as the server answers.
    async fn audit(&mut self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, Failure>;
    /// Starts a run; its id.
    async fn start_gc(&mut self) -> Result<String, Failure>;
    async fn gc_status(&mut self) -> Result<GcStatus, Failure>;
    /// The last `n` completed runs, newest first.
    async fn gc_runs(&mut self, n: usize) -> Result<Vec<GcReport>, Failure>;
    async fn reconcile(&mut self) -> Result<Reconcile, Failure>;
    async fn snapshot(&mut self) -> Result<Snapshot, Failure>;
    /// The pull-through cache's mirrors, in configuration order.
    async fn proxies(&mut self) -> Result<Vec<Proxy>, Failure>;
    /// Drops one mirrored repository's cache.
    async fn drop_proxy_cache(&mut self, name: &RepoName) -> Result<(), Failure>;
    /// Each configured webhook's delivery state, in configuration order.
    async fn webhooks(&mut self) -> Result<Vec<WebhookStatus>, Failure>;
    /// The outbox's events after `after`, oldest first, at most `limit`.
    async fn events(&mut self, after: i64, limit: usize) -> Result<Vec<OutboxEvent>, Failure>;
    /// Every quota by scope, with what its scope uses.
    async fn quotas(&mut self) -> Result<Vec<QuotaUsage>, Failure>;
    /// Sets a scope's quota (the server validates it).
    async fn set_quota(&mut self, draft: &QuotaDraft) -> Result<Quota, Failure>;
    async fn delete_quota(&mut self, id: i64) -> Result<(), Failure>;
    /// Retention policies, by id.
    async fn retention_policies(&mut self) -> Result<Vec<RetentionPolicy>, Failure>;
    async fn create_retention_policy(
        &mut self,
        spec: &RetentionSpec,
    ) -> Result<RetentionPolicy, Failure>;
    async fn delete_retention_policy(&mut self, id: i64) -> Result<(), Failure>;
    /// Runs retention (dry or real) and waits for its report.
    async fn run_retention(
        &mut self,
        request: &RetentionRequest,
    ) -> Result<RetentionReport, Failure>;
    async fn retention_status(&mut self) -> Result<RetentionStatus, Failure>;
}

/// What went wrong, in kinds a person can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The registry could not be reached at all.
    Connect,
    Unauthenticated,
    Denied,
    NotFound,
    Invalid,
    Conflict,
    Unavailable,
    /// The server failed (or answered something mcrctl cannot read).
    Server,
    /// The command line asks for something mcrctl will not do.
    Usage,
}

/// A failure: its kind, the transport's code for it (`401`,
/// `UNAUTHENTICATED`), and the server's (or mcrctl's) message.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: Kind,
    pub code: Option<String>,
    pub message: String,
}

impl Failure {
    pub fn new(kind: Kind, code: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            code: Some(code.into()),
            message: message.into(),
        }
    }

    /// A failure of mcrctl itself (bad flags, a refused confirmation).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            kind: Kind::Usage,
            code: None,
            message: message.into(),
        }
    }

    pub fn connect(target: &str, detail: impl fmt::Display) -> Failure {
        Failure {
            kind: Kind::Connect,
            code: None,
            message: format!("cannot reach the registry at {target}: {detail}"),
        }
    }

    /// What to do about it.
    fn hint(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Connect => Some(
                "is mcrsrv running there? pass --server URL for REST or --grpc ADDR for gRPC \
                 (and --ca-cert FILE if its certificate is from a private CA)",
            ),
            Kind::Unauthenticated => Some(
                "token missing or expired; run `mcrctl login` and pass --token or set MCR_TOKEN",
            ),
            Kind::Denied => Some(
                "this needs the admin role, or a policy rule that allows it \
                 (`mcrctl policy explain` shows which rules apply)",
            ),
            // A GC run under way, or a snapshot of this very second.
            Kind::Conflict => Some(
                "wait for the running operation to finish and try again \
                 (`mcrctl gc status` shows a running GC)",
            ),
            Kind::Unavailable => {
                Some("the registry cannot reach a service it depends on; try again later")
            }
            Kind::Server => Some("see the registry's log"),
            Kind::NotFound | Kind::Invalid | Kind::Usage => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        match self.hint() {
            // The hint leads: it is what to do; the server's words follow.
            Some(hint) if self.kind == Kind::Unauthenticated => {
                write!(f, "{hint}\n  (server: {})", self.message)
            }
            Some(hint) => write!(f, "{}\n  {hint}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl From<mcr_core::Error> for Failure {
    /// A value refused before anything was sent, in the engine's words.
    fn from(e: mcr_core::Error) -> Failure {
        Failure {
            kind: Kind::Invalid,
            code: None,
            message: e.to_string(),
        }
    }
}
