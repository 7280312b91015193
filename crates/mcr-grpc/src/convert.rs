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
use mcr_core::names::RepoName;
use mcr_core::policy::{Effect, Explanation, RepoPattern, Rule, RuleDraft, RulePatch};
use mcr_core::ports::{RepoDetail, RepoSummary};
use mcr_core::principal::{Action, Principal};
use mcr_core::proxy::ProxyStatus;
use mcr_core::registry::{GcReport, GcStatus, ReconcileReport};
use mcr_core::time::Timestamp;
use mcr_core::{Error, Result};

use crate::pb;

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
                .map(|(tag, digest)| pb::TagRef {
                    name: tag.to_string(),
                    digest: digest.to_string(),
                })
                .collect(),
            manifests: d
                .manifests
                .iter()
                .map(|(digest, media_type, size, created)| pb::ManifestInfo {
                    digest: digest.to_string(),
                    media_type: media_type.to_string(),
                    size: *size,
                    created: Some(timestamp(*created)),
                })
                .collect(),
            layers: d
                .blobs
                .iter()
                .map(|b| pb::BlobInfo {
                    digest: b.digest.to_string(),
                    size: b.size,
                })
                .collect(),
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

/// Who, doing what, where, as an explain request asks.
pub fn explain_input(r: pb::ExplainRequest) -> Result<(Principal, Action, Option<RepoName>)> {
    let principal = Principal::new(r.subject, r.account_type.parse()?, parse_all(&r.roles)?);
    let action = r.action.parse()?;
    let repository = r.repository.as_deref().map(RepoName::new).transpose()?;
    Ok((principal, action, repository))
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
            enabled: false,
        };
        let wire = pb::CreateRuleRequest::from(&draft);
        assert_eq!(RuleDraft::try_from(wire).unwrap(), draft);
        let rule = draft.into_rule(3);
        assert_eq!(Rule::try_from(pb::Rule::from(&rule)).unwrap(), rule);
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
