//! What mcrctl shows, in the admin REST API's JSON shape whichever
//! transport brought it, so `--json` prints the same over REST and gRPC.
//! Repositories, manifests, the dashboard, rules, audit events, GC status
//! and snapshots are the engine's own types.

use mcr_core::policy::Rule;
pub use mcr_core::ports::{RepoDetail, RepoSummary};
pub use mcr_core::registry::{
    Dashboard, GcReport, GcStatus, ManifestDetail, RepoListing, RepoPage, Snapshot,
};
use mcr_core::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Login {
    pub token: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcStarted {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    pub files_removed: Vec<String>,
    pub missing_files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub effect: String,
    pub rule_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub rule: Rule,
    pub matched: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub decision: Decision,
    pub rules: Vec<Verdict>,
    pub text: String,
}

/// What `policy explain` asks about; the server validates the names.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainQuery {
    pub subject: String,
    pub account_type: String,
    pub roles: Vec<String>,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Filters of `audit tail`; the server validates the names.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub event_type: Option<String>,
    pub actor_id: Option<String>,
    pub repository: Option<String>,
    pub since: Option<Timestamp>,
    pub n: usize,
}

/// A pull-through cache mirror, as `GET /v1/proxies` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proxy {
    pub prefix: String,
    /// The upstream's URL, without credentials.
    pub upstream: String,
    /// Pulls answered from the cache since the server started.
    pub hits: u64,
    /// Pulls that fetched from the upstream since the server started.
    pub misses: u64,
    /// Repositories of the mirror holding cached content.
    pub repositories: u64,
    /// Bytes cached (the sum of those repositories' sizes).
    pub cache_size: u64,
}
