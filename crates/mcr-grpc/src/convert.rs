//! Between the engine's types and the messages of `mcr.v1`.
//!
//! Strings from a request are parsed with the engine's own parsers
//! (`FromStr`, `RepoName::new`, `RepoPattern::new`), so a bad value is
//! refused with the same words as over REST; no rule is restated here.
//! The conversions go both ways: the server turns engine results into
//! messages, and clients (`mcrctl`, `mcr-web`) turn messages back into
//! engine types.

use std::str::FromStr;

use mcr_core::audit::{AuditEvent, AuditQuery, NewAuditEvent};
use mcr_core::digest::Digest;
use mcr_core::events::{OutboxEvent, WebhookStatus};
use mcr_core::manifest::{Descriptor, Platform};
use mcr_core::media::MediaType;
use mcr_core::names::{RepoName, Tag};
use mcr_core::policy::{Effect, Explanation, RepoPattern, Rule, RuleDraft, RulePatch};
use mcr_core::ports::{BlobInfo, ManifestSummary, RepoDetail, RepoSummary, TagRef};
use mcr_core::principal::{Action, Principal};
use mcr_core::proxy::ProxyStatus;
use mcr_core::quota::{Quota, QuotaLimit, QuotaScope, QuotaUsage};
use mcr_core::registry::{
    Dashboard, GcReport, GcStatus, ManifestDetail, Push, ReconcileReport, RepoListing, RepoPage,
};
use mcr_core::time::Timestamp;
use mcr_core::{Error, Result};

use crate::pb;

mod retention;

pub use retention::required_body;

/// A protobuf timestamp for an engine one (milliseconds).
pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    let ms = t.as_millis();
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        // 0..=999_000_000, so it fits.
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// The engine timestamp (milliseconds, truncated) for a protobuf one.
pub fn from_timestamp(t: &prost_types::Timestamp) -> Timestamp {
    let ms = t
        .seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos.div_euclid(1_000_000)));
    Timestamp::from_millis(ms)
}

fn parse_all<T: FromStr<Err = Error>>(values: &[String]) -> Result<Vec<T>> {
    values.iter().map(|v| v.parse()).collect()
}

fn names<T: ToString>(values: &[T]) -> Vec<String> {
    values.iter().map(ToString::to_string).collect()
}

fn patterns(values: &[String]) -> Result<Vec<RepoPattern>> {
    values.iter().map(|v| RepoPattern::new(v)).collect()
}

// ---- engine → messages (the server's answers) ----

impl From<&RepoSummary> for pb::RepositorySummary {
    fn from(r: &RepoSummary) -> Self {
        pb::RepositorySummary {
            name: r.name.to_string(),
            tag_count: r.tag_count,
            manifest_count: r.manifest_count,
            total_size: r.total_size,
            created: Some(timestamp(r.created)),
            last_push: r.last_push.map(timestamp),
        }
    }
}

impl From<&RepoDetail> for pb::RepositoryDetail {
    fn from(d: &RepoDetail) -> Self {
        pb::RepositoryDetail {
            summary: Some((&d.summary).into()),
            tags: d
                .tags
                .iter()
                .map(|t| pb::TagRef {
                    name: t.name.to_string(),
                    digest: t.digest.to_string(),
                })
                .collect(),
            manifests: d
                .manifests
                .iter()
                .map(|m| pb::ManifestInfo {
                    digest: m.digest.to_string(),
                    media_type: m.media_type.to_string(),
                    size: m.size,
                    created: Some(timestamp(m.created)),
                })
                .collect(),
            layers: d.layers.iter().map(Into::into).collect(),
        }
    }
}

impl From<&BlobInfo> for pb::BlobInfo {
    fn from(b: &BlobInfo) -> Self {
        pb::BlobInfo {
            digest: b.digest.to_string(),
            size: b.size,
        }
    }
}

impl From<&Platform> for pb::Platform {
    fn from(p: &Platform) -> Self {
        pb::Platform {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            os_version: p.os_version.clone(),
            os_features: p.os_features.clone(),
            variant: p.variant.clone(),
            features: p.features.clone(),
        }
    }
}

impl From<&Descriptor> for pb::Descriptor {
    fn from(d: &Descriptor) -> Self {
        pb::Descriptor {
            media_type: d.media_type.to_string(),
            digest: d.digest.to_string(),
            size: d.size,
            artifact_type: d.artifact_type.as_ref().map(ToString::to_string),
            annotations: d.annotations.clone(),
            urls: d.urls.clone(),
            platform: d.platform().as_ref().map(Into::into),
        }
    }
}

impl From<&ManifestDetail> for pb::ManifestDetail {
    fn from(m: &ManifestDetail) -> Self {
        let descriptors = |v: &[Descriptor]| v.iter().map(Into::into).collect();
        pb::ManifestDetail {
            repository: m.repository.to_string(),
            digest: m.digest.to_string(),
            media_type: m.media_type.to_string(),
            size: m.size,
            created: Some(timestamp(m.created)),
            raw: m.raw.clone(),
            artifact_type: m.artifact_type.as_ref().map(ToString::to_string),
            subject: m.subject.as_ref().map(ToString::to_string),
            annotations: m.annotations.clone(),
            config: m.config.as_ref().map(Into::into),
            config_content: m.config_content.clone(),
            layers: descriptors(&m.layers),
            manifests: descriptors(&m.manifests),
            referrers: descriptors(&m.referrers),
        }
    }
}

impl From<&Dashboard> for pb::Dashboard {
    fn from(d: &Dashboard) -> Self {
        pb::Dashboard {
            repositories: d.repositories,
            stored_bytes: d.stored_bytes,
            recent_pushes: d
                .recent_pushes
                .iter()
                .map(|p| pb::Push {
                    time: Some(timestamp(p.time)),
                    repository: p.repository.to_string(),
                    digest: p.digest.to_string(),
                    tags: p.tags.clone(),
                    actor: p.actor.clone(),
                })
                .collect(),
            gc: d.gc.as_ref().map(Into::into),
        }
    }
}

impl From<&Principal> for pb::Principal {
    fn from(p: &Principal) -> Self {
        pb::Principal {
            subject: p.subject.clone(),
            username: p.username.clone(),
            account_type: p.account_type.to_string(),
            roles: names(&p.roles),
        }
    }
}

impl From<&RepoPage> for pb::ListRepositoriesResponse {
    fn from(p: &RepoPage) -> Self {
        pb::ListRepositoriesResponse {
            repositories: p.repositories.iter().map(Into::into).collect(),
            next: p.next.clone(),
        }
    }
}

impl From<&Rule> for pb::Rule {
    fn from(r: &Rule) -> Self {
        pb::Rule {
            id: r.id,
            priority: r.priority,
            description: r.description.clone(),
            effect: r.effect.to_string(),
            actions: names(&r.actions),
            roles: names(&r.roles),
            account_types: names(&r.account_types),
            subject: r.subject.clone(),
            repositories: names(&r.repositories),
            tags: names(&r.tags),
            enabled: r.enabled,
        }
    }
}

impl From<&GcReport> for pb::GcReport {
    fn from(r: &GcReport) -> Self {
        pb::GcReport {
            id: r.id.clone(),
            started_at: Some(timestamp(r.started_at)),
            completed_at: Some(timestamp(r.completed_at)),
            blobs_removed: r.blobs_removed,
            bytes_freed: r.bytes_freed,
        }
    }
}

impl From<&ProxyStatus> for pb::Proxy {
    fn from(p: &ProxyStatus) -> Self {
        pb::Proxy {
            prefix: p.prefix.to_string(),
            upstream: p.upstream.clone(),
            hits: p.hits,
            misses: p.misses,
            repositories: p.repositories,
            cache_size: p.cache_size,
        }
    }
}

impl From<&WebhookStatus> for pb::Webhook {
    fn from(w: &WebhookStatus) -> Self {
        pb::Webhook {
            url: w.url.clone(),
            events: w.events.iter().map(|k| k.as_str().to_string()).collect(),
            repositories: w.repositories.clone(),
            delivered: w.delivered,
            pending: w.pending,
            attempts: w.attempts,
            last_attempt: w.last_attempt.map(timestamp),
            last_error: w.last_error.clone(),
            next_attempt: w.next_attempt.map(timestamp),
        }
    }
}

impl From<&OutboxEvent> for pb::Event {
    fn from(e: &OutboxEvent) -> Self {
        pb::Event {
            id: e.id,
            event_id: e.event_id.to_string(),
            time: Some(timestamp(e.time)),
            r#type: e.kind.as_str().to_string(),
            repository: e.repository.as_ref().map(|r| r.to_string()),
            data_json: e.data.to_string(),
        }
    }
}

impl From<&Quota> for pb::Quota {
    fn from(q: &Quota) -> Self {
        pb::Quota {
            id: q.id,
            scope: q.scope.to_string(),
            limit_bytes: q.limit_bytes.bytes(),
            used_bytes: 0,
        }
    }
}

impl From<&QuotaUsage> for pb::Quota {
    fn from(q: &QuotaUsage) -> Self {
        pb::Quota {
            used_bytes: q.used_bytes,
            ..pb::Quota::from(&q.quota)
        }
    }
}

/// A listed quota, read back (mcrctl over gRPC), validated as on input.
impl TryFrom<pb::Quota> for QuotaUsage {
    type Error = Error;
    fn try_from(q: pb::Quota) -> Result<QuotaUsage> {
        Ok(QuotaUsage {
            quota: Quota {
                id: q.id,
                scope: QuotaScope::parse(&q.scope)?,
                limit_bytes: QuotaLimit::new(q.limit_bytes)?,
            },
            used_bytes: q.used_bytes,
        })
    }
}

impl From<&GcStatus> for pb::GcStatus {
    fn from(s: &GcStatus) -> Self {
        pb::GcStatus {
            running: s.running,
            last_run: s.last_run.as_ref().map(Into::into),
            next_run: s.next_run.map(timestamp),
        }
    }
}

impl From<&ReconcileReport> for pb::ReconcileResponse {
    fn from(r: &ReconcileReport) -> Self {
        pb::ReconcileResponse {
            files_removed: names(&r.files_removed),
            missing_files: names(&r.missing_files),
        }
    }
}

impl From<&AuditEvent> for pb::AuditEvent {
    fn from(e: &AuditEvent) -> Self {
        let ev = &e.event;
        pb::AuditEvent {
            id: e.id,
            time: Some(timestamp(ev.time)),
            event_type: ev.event_type.to_string(),
            actor_id: ev.actor_id.clone(),
            repository: ev.repository.as_ref().map(ToString::to_string),
            digest: ev.digest.as_ref().map(ToString::to_string),
            ip: ev.ip.clone(),
            details: ev.details.clone(),
        }
    }
}

impl From<&Explanation> for pb::ExplainResponse {
    fn from(e: &Explanation) -> Self {
        pb::ExplainResponse {
            decision: Some(pb::Decision {
                effect: e.decision.effect.to_string(),
                rule_id: e.decision.rule_id,
            }),
            rules: e
                .rules
                .iter()
                .map(|v| pb::RuleVerdict {
                    rule: Some((&v.rule).into()),
                    matched: v.matched,
                    // The name the REST API gives it.
                    mismatch: v.mismatch.and_then(|m| {
                        serde_json::to_value(m)
                            .ok()
                            .and_then(|j| j.as_str().map(str::to_string))
                    }),
                })
                .collect(),
            text: e.to_string(),
        }
    }
}

// ---- requests → engine (the server's parsing) ----

impl TryFrom<pb::CreateRuleRequest> for RuleDraft {
    type Error = Error;

    fn try_from(r: pb::CreateRuleRequest) -> Result<RuleDraft> {
        Ok(RuleDraft {
            priority: r.priority,
            description: r.description,
            effect: r.effect.parse()?,
            actions: parse_all(&r.actions)?,
            roles: parse_all(&r.roles)?,
            account_types: parse_all(&r.account_types)?,
            subject: r.subject,
            repositories: patterns(&r.repositories)?,
            tags: parse_all(&r.tags)?,
            enabled: r.enabled.unwrap_or(true),
        })
    }
}

/// The patch an update request asks for (the id is the request's `id`).
pub fn rule_patch(r: pb::UpdateRuleRequest) -> Result<RulePatch> {
    let subject = match (r.subject, r.clear_subject) {
        (Some(_), true) => {
            return Err(Error::invalid(
                "subject",
                "give a subject or clear_subject, not both",
            ))
        }
        (Some(s), false) => Some(Some(s)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    let list = |l: Option<pb::StringList>| l.map(|l| l.values);
    Ok(RulePatch {
        priority: r.priority,
        description: r.description,
        effect: r.effect.as_deref().map(Effect::from_str).transpose()?,
        actions: list(r.actions).map(|v| parse_all(&v)).transpose()?,
        roles: list(r.roles).map(|v| parse_all(&v)).transpose()?,
        account_types: list(r.account_types).map(|v| parse_all(&v)).transpose()?,
        subject,
        repositories: list(r.repositories).map(|v| patterns(&v)).transpose()?,
        tags: list(r.tags).map(|v| parse_all(&v)).transpose()?,
        enabled: r.enabled,
    })
}

impl TryFrom<pb::ListAuditEventsRequest> for AuditQuery {
    type Error = Error;

    fn try_from(r: pb::ListAuditEventsRequest) -> Result<AuditQuery> {
        Ok(AuditQuery {
            event_type: r.event_type.as_deref().map(str::parse).transpose()?,
            actor_id: r.actor_id,
            repository: r.repository.as_deref().map(RepoName::new).transpose()?,
            since: r.since.as_ref().map(from_timestamp),
            until: r.until.as_ref().map(from_timestamp),
            limit: r.n as usize,
            offset: r.offset as usize,
        })
    }
}

impl TryFrom<pb::ListRepositoriesRequest> for RepoListing {
    type Error = Error;

    fn try_from(r: pb::ListRepositoriesRequest) -> Result<RepoListing> {
        RepoListing::from_params(
            r.filter,
            r.sort.as_deref(),
            r.order.as_deref(),
            r.last,
            r.n.map(|n| n as usize),
        )
    }
}

impl From<&RepoListing> for pb::ListRepositoriesRequest {
    fn from(l: &RepoListing) -> Self {
        pb::ListRepositoriesRequest {
            n: l.n.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            last: l.last.clone(),
            filter: l.filter.clone(),
            sort: Some(l.sort.to_string()),
            order: Some(l.order.to_string()),
        }
    }
}

/// What an explain request asks about.
pub struct ExplainInput {
    pub principal: Principal,
    pub action: Action,
    pub repository: Option<RepoName>,
    pub tag: Option<Tag>,
}

/// Who, doing what, where (and on which tag), as an explain request asks.
pub fn explain_input(r: pb::ExplainRequest) -> Result<ExplainInput> {
    Ok(ExplainInput {
        principal: Principal::new(r.subject, r.account_type.parse()?, parse_all(&r.roles)?),
        action: r.action.parse()?,
        repository: r.repository.as_deref().map(RepoName::new).transpose()?,
        tag: r.tag.as_deref().map(Tag::new).transpose()?,
    })
}

// ---- engine → requests and messages → engine (clients) ----

impl From<&RuleDraft> for pb::CreateRuleRequest {
    fn from(d: &RuleDraft) -> Self {
        pb::CreateRuleRequest {
            priority: d.priority,
            description: d.description.clone(),
            effect: d.effect.to_string(),
            actions: names(&d.actions),
            roles: names(&d.roles),
            account_types: names(&d.account_types),
            subject: d.subject.clone(),
            repositories: names(&d.repositories),
            enabled: Some(d.enabled),
            tags: names(&d.tags),
        }
    }
}

/// The request that applies `patch` to rule `id`.
pub fn update_rule_request(id: i64, patch: &RulePatch) -> pb::UpdateRuleRequest {
    let list = |v: &Option<Vec<String>>| v.clone().map(|values| pb::StringList { values });
    pb::UpdateRuleRequest {
        id,
        priority: patch.priority,
        description: patch.description.clone(),
        effect: patch.effect.map(|e| e.to_string()),
        actions: list(&patch.actions.as_deref().map(names)),
        roles: list(&patch.roles.as_deref().map(names)),
        account_types: list(&patch.account_types.as_deref().map(names)),
        subject: patch.subject.clone().flatten(),
        clear_subject: matches!(patch.subject, Some(None)),
        repositories: list(&patch.repositories.as_deref().map(names)),
        enabled: patch.enabled,
        tags: list(&patch.tags.as_deref().map(names)),
    }
}

impl From<&AuditQuery> for pb::ListAuditEventsRequest {
    fn from(q: &AuditQuery) -> Self {
        pb::ListAuditEventsRequest {
            event_type: q.event_type.map(|e| e.to_string()),
            actor_id: q.actor_id.clone(),
            repository: q.repository.as_ref().map(ToString::to_string),
            since: q.since.map(timestamp),
            until: q.until.map(timestamp),
            n: u32::try_from(q.limit).unwrap_or(u32::MAX),
            offset: u32::try_from(q.offset).unwrap_or(u32::MAX),
        }
    }
}

/// A time the server must send; its absence is the server's fault.
fn required_time(t: Option<&prost_types::Timestamp>, field: &'static str) -> Result<Timestamp> {
    t.map(from_timestamp)
        .ok_or_else(|| Error::invalid(field, "missing from the server's answer"))
}

impl TryFrom<pb::RepositorySummary> for RepoSummary {
    type Error = Error;

    fn try_from(r: pb::RepositorySummary) -> Result<RepoSummary> {
        Ok(RepoSummary {
            name: RepoName::new(&r.name)?,
            tag_count: r.tag_count,
            manifest_count: r.manifest_count,
            total_size: r.total_size,
            created: required_time(r.created.as_ref(), "created")?,
            last_push: r.last_push.as_ref().map(from_timestamp),
        })
    }
}

impl TryFrom<pb::Descriptor> for Descriptor {
    type Error = Error;

    fn try_from(d: pb::Descriptor) -> Result<Descriptor> {
        Ok(Descriptor {
            media_type: MediaType::new(&d.media_type)?,
            digest: Digest::parse(&d.digest)?,
            size: d.size,
            artifact_type: d.artifact_type.as_deref().map(MediaType::new).transpose()?,
            urls: d.urls,
            annotations: d.annotations,
            data: None,
            platform: d
                .platform
                .map(|p| {
                    serde_json::to_value(Platform {
                        architecture: p.architecture,
                        os: p.os,
                        os_version: p.os_version,
                        os_features: p.os_features,
                        variant: p.variant,
                        features: p.features,
                    })
                })
                .transpose()
                .map_err(|e| Error::invalid("platform", e.to_string()))?,
        })
    }
}

fn descriptors(v: Vec<pb::Descriptor>) -> Result<Vec<Descriptor>> {
    v.into_iter().map(Descriptor::try_from).collect()
}

impl TryFrom<pb::ManifestDetail> for ManifestDetail {
    type Error = Error;

    fn try_from(m: pb::ManifestDetail) -> Result<ManifestDetail> {
        Ok(ManifestDetail {
            repository: RepoName::new(&m.repository)?,
            digest: Digest::parse(&m.digest)?,
            media_type: MediaType::new(&m.media_type)?,
            size: m.size,
            created: required_time(m.created.as_ref(), "created")?,
            raw: m.raw,
            artifact_type: m.artifact_type.as_deref().map(MediaType::new).transpose()?,
            subject: m.subject.as_deref().map(Digest::parse).transpose()?,
            annotations: m.annotations,
            config: m.config.map(Descriptor::try_from).transpose()?,
            config_content: m.config_content,
            layers: descriptors(m.layers)?,
            manifests: descriptors(m.manifests)?,
            referrers: descriptors(m.referrers)?,
        })
    }
}

impl TryFrom<pb::GcReport> for GcReport {
    type Error = Error;

    fn try_from(r: pb::GcReport) -> Result<GcReport> {
        Ok(GcReport {
            started_at: required_time(r.started_at.as_ref(), "started_at")?,
            completed_at: required_time(r.completed_at.as_ref(), "completed_at")?,
            id: r.id,
            blobs_removed: r.blobs_removed,
            bytes_freed: r.bytes_freed,
        })
    }
}

impl TryFrom<pb::GcStatus> for GcStatus {
    type Error = Error;

    fn try_from(s: pb::GcStatus) -> Result<GcStatus> {
        Ok(GcStatus {
            running: s.running,
            last_run: s.last_run.map(GcReport::try_from).transpose()?,
            next_run: s.next_run.as_ref().map(from_timestamp),
        })
    }
}

impl TryFrom<pb::Dashboard> for Dashboard {
    type Error = Error;

    fn try_from(d: pb::Dashboard) -> Result<Dashboard> {
        Ok(Dashboard {
            repositories: d.repositories,
            stored_bytes: d.stored_bytes,
            recent_pushes: d
                .recent_pushes
                .into_iter()
                .map(|p| {
                    Ok(Push {
                        time: required_time(p.time.as_ref(), "time")?,
                        repository: RepoName::new(&p.repository)?,
                        digest: Digest::parse(&p.digest)?,
                        tags: p.tags,
                        actor: p.actor,
                    })
                })
                .collect::<Result<_>>()?,
            gc: d.gc.map(GcStatus::try_from).transpose()?,
        })
    }
}

impl TryFrom<pb::Principal> for Principal {
    type Error = Error;

    fn try_from(p: pb::Principal) -> Result<Principal> {
        let mut principal =
            Principal::new(p.subject, p.account_type.parse()?, parse_all(&p.roles)?);
        principal.username = p.username;
        Ok(principal)
    }
}

impl TryFrom<pb::ListRepositoriesResponse> for RepoPage {
    type Error = Error;

    fn try_from(r: pb::ListRepositoriesResponse) -> Result<RepoPage> {
        Ok(RepoPage {
            repositories: r
                .repositories
                .into_iter()
                .map(RepoSummary::try_from)
                .collect::<Result<_>>()?,
            next: r.next,
        })
    }
}

impl TryFrom<pb::BlobInfo> for BlobInfo {
    type Error = Error;

    fn try_from(b: pb::BlobInfo) -> Result<BlobInfo> {
        Ok(BlobInfo {
            digest: Digest::parse(&b.digest)?,
            size: b.size,
        })
    }
}

impl TryFrom<pb::RepositoryDetail> for RepoDetail {
    type Error = Error;

    fn try_from(d: pb::RepositoryDetail) -> Result<RepoDetail> {
        let summary = d
            .summary
            .ok_or_else(|| Error::invalid("summary", "missing from the server's answer"))?;
        Ok(RepoDetail {
            summary: summary.try_into()?,
            tags: d
                .tags
                .into_iter()
                .map(|t| {
                    Ok(TagRef {
                        name: Tag::new(&t.name)?,
                        digest: Digest::parse(&t.digest)?,
                    })
                })
                .collect::<Result<_>>()?,
            manifests: d
                .manifests
                .into_iter()
                .map(|m| {
                    Ok(ManifestSummary {
                        digest: Digest::parse(&m.digest)?,
                        media_type: MediaType::new(&m.media_type)?,
                        size: m.size,
                        created: required_time(m.created.as_ref(), "created")?,
                    })
                })
                .collect::<Result<_>>()?,
            layers: d
                .layers
                .into_iter()
                .map(BlobInfo::try_from)
                .collect::<Result<_>>()?,
        })
    }
}

impl TryFrom<pb::Rule> for Rule {
    type Error = Error;

    fn try_from(r: pb::Rule) -> Result<Rule> {
        Ok(Rule {
            id: r.id,
            priority: r.priority,
            description: r.description,
            effect: r.effect.parse()?,
            actions: parse_all(&r.actions)?,
            roles: parse_all(&r.roles)?,
            account_types: parse_all(&r.account_types)?,
            subject: r.subject,
            repositories: patterns(&r.repositories)?,
            tags: parse_all(&r.tags)?,
            enabled: r.enabled,
        })
    }
}

impl TryFrom<pb::AuditEvent> for AuditEvent {
    type Error = Error;

    fn try_from(e: pb::AuditEvent) -> Result<AuditEvent> {
        Ok(AuditEvent {
            id: e.id,
            event: NewAuditEvent {
                time: e.time.as_ref().map(from_timestamp).unwrap_or_default(),
                event_type: e.event_type.parse()?,
                actor_id: e.actor_id,
                repository: e.repository.as_deref().map(RepoName::new).transpose()?,
                digest: e.digest.as_deref().map(Digest::parse).transpose()?,
                ip: e.ip,
                details: e.details,
            },
        })
    }
}

impl TryFrom<pb::Webhook> for WebhookStatus {
    type Error = Error;

    fn try_from(w: pb::Webhook) -> Result<WebhookStatus> {
        Ok(WebhookStatus {
            url: w.url,
            events: w.events.iter().map(|e| e.parse()).collect::<Result<_>>()?,
            repositories: w.repositories,
            delivered: w.delivered,
            pending: w.pending,
            attempts: w.attempts,
            last_attempt: w.last_attempt.as_ref().map(from_timestamp),
            last_error: w.last_error,
            next_attempt: w.next_attempt.as_ref().map(from_timestamp),
        })
    }
}

impl TryFrom<pb::Event> for OutboxEvent {
    type Error = Error;

    fn try_from(e: pb::Event) -> Result<OutboxEvent> {
        Ok(OutboxEvent {
            id: e.id,
            event_id: e.event_id.parse()?,
            time: e.time.as_ref().map(from_timestamp).unwrap_or_default(),
            kind: e.r#type.parse()?,
            repository: e.repository.as_deref().map(RepoName::new).transpose()?,
            data: serde_json::from_str(&e.data_json).map_err(|err| Error::Invalid {
                field: "data_json",
                reason: err.to_string(),
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        for ms in [0, 1, 999, 1_700_000_000_123, -1, -1001] {
            let t = Timestamp::from_millis(ms);
            assert_eq!(from_timestamp(&timestamp(t)), t, "{ms}");
            let p = timestamp(t);
            assert!((0..1_000_000_000).contains(&p.nanos), "{p:?}");
        }
    }

    #[test]
    fn a_rule_survives_the_wire_both_ways() {
        let draft = RuleDraft {
            priority: 5,
            description: "ci pulls".into(),
            effect: Effect::Allow,
            actions: vec![Action::Pull, Action::Push],
            roles: vec![],
            account_types: vec![mcr_core::principal::AccountType::System],
            subject: Some("ci".into()),
            repositories: vec![RepoPattern::new("ci/**").unwrap()],
            tags: vec![],
            enabled: false,
        };
        let wire = pb::CreateRuleRequest::from(&draft);
        assert_eq!(RuleDraft::try_from(wire).unwrap(), draft);
        let rule = draft.into_rule(3);
        assert_eq!(Rule::try_from(pb::Rule::from(&rule)).unwrap(), rule);
        let immutable = RuleDraft {
            effect: Effect::Deny,
            actions: Action::TAG_ACTIONS.to_vec(),
            tags: vec!["v*".parse().unwrap(), "release-[0-9]*".parse().unwrap()],
            ..draft_of(&rule)
        };
        let wire = pb::CreateRuleRequest::from(&immutable);
        assert_eq!(wire.tags, ["v*", "release-[0-9]*"]);
        assert_eq!(RuleDraft::try_from(wire).unwrap(), immutable);
        let rule = immutable.into_rule(4);
        assert_eq!(Rule::try_from(pb::Rule::from(&rule)).unwrap(), rule);
        let bad = pb::CreateRuleRequest {
            tags: vec!["v/1".into()],
            ..pb::CreateRuleRequest::from(&draft_of(&rule))
        };
        let err = RuleDraft::try_from(bad).unwrap_err();
        assert!(err.to_string().contains("invalid tags"), "{err}");
    }

    fn draft_of(r: &Rule) -> RuleDraft {
        r.into()
    }

    #[test]
    fn a_patch_keeps_absent_apart_from_cleared() {
        for patch in [
            RulePatch::default(),
            RulePatch {
                subject: Some(None),
                actions: Some(vec![]),
                ..RulePatch::default()
            },
            RulePatch {
                subject: Some(Some("ci".into())),
                priority: Some(4),
                enabled: Some(false),
                ..RulePatch::default()
            },
            RulePatch {
                tags: Some(vec!["v*".parse().unwrap()]),
                ..RulePatch::default()
            },
            RulePatch {
                tags: Some(vec![]),
                ..RulePatch::default()
            },
        ] {
            let wire = update_rule_request(9, &patch);
            assert_eq!(wire.id, 9);
            assert_eq!(rule_patch(wire).unwrap(), patch);
        }
        let both = pb::UpdateRuleRequest {
            subject: Some("x".into()),
            clear_subject: true,
            ..Default::default()
        };
        assert!(matches!(
            rule_patch(both),
            Err(Error::Invalid {
                field: "subject",
                ..
            })
        ));
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        let req = pb::CreateRuleRequest {
            priority: 1,
            effect: "allow".into(),
            actions: vec!["registry:fly".into()],
            ..Default::default()
        };
        let err = RuleDraft::try_from(req).unwrap_err();
        assert!(
            err.to_string().contains("unknown action \"registry:fly\""),
            "{err}"
        );
    }
}
