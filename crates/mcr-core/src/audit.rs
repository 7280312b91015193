//! Audit events: what happened, who did it, to what.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Error;
use crate::names::RepoName;
use crate::time::Timestamp;

macro_rules! event_types {
    ($($variant:ident => $name:literal,)*) => {
        /// The kinds of event the registry records.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventType {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }
        }
    };
}

event_types! {
    VersionCheck => "version_check",
    ManifestPulled => "manifest_pulled",
    ManifestPushed => "manifest_pushed",
    ManifestDeleted => "manifest_deleted",
    TagDeleted => "tag_deleted",
    BlobPulled => "blob_pulled",
    BlobUploaded => "blob_uploaded",
    BlobMounted => "blob_mounted",
    BlobDeleted => "blob_deleted",
    UploadStarted => "upload_started",
    UploadCancelled => "upload_cancelled",
    TagsListed => "tags_listed",
    CatalogListed => "catalog_listed",
    ReferrersListed => "referrers_listed",
    RepoDeleted => "repo_deleted",
    PolicyDeny => "policy_deny",
    PolicyRuleCreated => "policy_rule_created",
    PolicyRuleUpdated => "policy_rule_updated",
    PolicyRuleDeleted => "policy_rule_deleted",
    GcStarted => "gc_started",
    GcCompleted => "gc_completed",
    Reconciled => "reconciled",
    UploadsPurged => "uploads_purged",
    SnapshotTaken => "snapshot_taken",
    Login => "login",
    LoginFailed => "login_failed",
    Logout => "logout",
    ProxyFetched => "proxy_fetched",
    ProxyCacheDropped => "proxy_cache_dropped",
    QuotaSet => "quota_set",
    QuotaDeleted => "quota_deleted",
    QuotaExceeded => "quota_exceeded",
    RetentionPolicyCreated => "retention_policy_created",
    RetentionPolicyUpdated => "retention_policy_updated",
    RetentionPolicyDeleted => "retention_policy_deleted",
    RetentionStarted => "retention_started",
    RetentionCompleted => "retention_completed",
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        EventType::ALL
            .iter()
            .copied()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| Error::invalid("event_type", format!("unknown event type {s:?}")))
    }
}

/// An event about to be recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    pub time: Timestamp,
    pub event_type: EventType,
    /// Subject id of the principal, when there is one.
    pub actor_id: Option<String>,
    pub repository: Option<RepoName>,
    pub digest: Option<Digest>,
    pub ip: Option<String>,
    pub details: BTreeMap<String, String>,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: i64,
    #[serde(flatten)]
    pub event: NewAuditEvent,
}

/// Filters for reading the audit log; newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub event_type: Option<EventType>,
    pub actor_id: Option<String>,
    pub repository: Option<RepoName>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub limit: usize,
    pub offset: usize,
}

impl AuditQuery {
    pub const DEFAULT_LIMIT: usize = 50;
    pub const MAX_LIMIT: usize = 1000;

    /// Whether `e` passes the filters (not the window); fakes use this, and
    /// adapters must agree with it.
    pub fn matches(&self, e: &NewAuditEvent) -> bool {
        self.event_type.is_none_or(|t| t == e.event_type)
            && self
                .actor_id
                .as_ref()
                .is_none_or(|a| e.actor_id.as_ref() == Some(a))
            && self
                .repository
                .as_ref()
                .is_none_or(|r| e.repository.as_ref() == Some(r))
            && self.since.is_none_or(|s| e.time >= s)
            && self.until.is_none_or(|u| e.time <= u)
    }
}
