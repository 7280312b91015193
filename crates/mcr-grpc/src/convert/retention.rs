//! Retention policies, runs and their status, both ways.

use mcr_core::digest::Digest;
use mcr_core::names::{RepoName, Tag};
use mcr_core::policy::TagPattern;
use mcr_core::registry::{
    RetentionItem, RetentionReport, RetentionRequest, RetentionStatus, RetentionSummary,
    RetentionTotals,
};
use mcr_core::retention::{AgeText, RetentionDraft, RetentionPolicy, RetentionSpec};
use mcr_core::{Error, Result};

use super::{from_timestamp, names, patterns, required_time, timestamp};
use crate::pb;

impl From<&RetentionSpec> for pb::RetentionPolicyBody {
    fn from(s: &RetentionSpec) -> Self {
        let d = RetentionDraft::from(s.clone());
        pb::RetentionPolicyBody {
            description: d.description,
            enabled: Some(d.enabled),
            repositories: names(&d.repositories),
            keep_last: d.keep_last,
            keep_tags: names(&d.keep_tags),
            delete_tags_older_than: d.delete_tags_older_than.map(|a| a.0),
            delete_untagged_older_than: d.delete_untagged_older_than.map(|a| a.0),
        }
    }
}

/// A body as a request carries it, checked as over REST.
impl TryFrom<pb::RetentionPolicyBody> for RetentionSpec {
    type Error = Error;
    fn try_from(b: pb::RetentionPolicyBody) -> Result<RetentionSpec> {
        RetentionSpec::new(RetentionDraft {
            description: b.description,
            enabled: b.enabled.unwrap_or(true),
            repositories: patterns(&b.repositories)?,
            keep_last: b.keep_last,
            keep_tags: b
                .keep_tags
                .iter()
                .map(|t| TagPattern::new(t))
                .collect::<Result<_>>()?,
            delete_tags_older_than: b.delete_tags_older_than.map(AgeText),
            delete_untagged_older_than: b.delete_untagged_older_than.map(AgeText),
        })
    }
}

/// The body a request needs: absent is an error naming the field.
pub fn required_body(body: Option<pb::RetentionPolicyBody>) -> Result<RetentionSpec> {
    body.ok_or_else(|| Error::invalid("body", "the retention policy's body is missing"))?
        .try_into()
}

impl From<&RetentionPolicy> for pb::RetentionPolicy {
    fn from(p: &RetentionPolicy) -> Self {
        pb::RetentionPolicy {
            id: p.id,
            body: Some((&p.spec).into()),
            created: Some(timestamp(p.created)),
            updated: Some(timestamp(p.updated)),
        }
    }
}

impl TryFrom<pb::RetentionPolicy> for RetentionPolicy {
    type Error = Error;
    fn try_from(p: pb::RetentionPolicy) -> Result<RetentionPolicy> {
        Ok(RetentionPolicy {
            id: p.id,
            spec: required_body(p.body)?,
            created: required_time(p.created.as_ref(), "created")?,
            updated: required_time(p.updated.as_ref(), "updated")?,
        })
    }
}

impl From<pb::RunRetentionRequest> for RetentionRequest {
    fn from(r: pb::RunRetentionRequest) -> Self {
        RetentionRequest {
            dry_run: r.dry_run,
            policy: r.policy,
        }
    }
}

impl From<&RetentionRequest> for pb::RunRetentionRequest {
    fn from(r: &RetentionRequest) -> Self {
        pb::RunRetentionRequest {
            dry_run: r.dry_run,
            policy: r.policy,
        }
    }
}

impl From<&RetentionTotals> for pb::RetentionTotals {
    fn from(t: &RetentionTotals) -> Self {
        pb::RetentionTotals {
            manifests: t.manifests,
            tags: t.tags,
            refused: t.refused,
            changed: t.changed,
        }
    }
}

fn totals(t: Option<pb::RetentionTotals>) -> RetentionTotals {
    t.map(|t| RetentionTotals {
        manifests: t.manifests,
        tags: t.tags,
        refused: t.refused,
        changed: t.changed,
    })
    .unwrap_or_default()
}

impl From<&RetentionItem> for pb::RetentionItem {
    fn from(i: &RetentionItem) -> Self {
        pb::RetentionItem {
            repository: i.repository.to_string(),
            digest: i.digest.to_string(),
            tags: names(&i.tags),
            manifest: i.manifest,
            policy: i.policy,
            reason: i.reason.clone(),
            outcome: i.outcome.as_str().to_string(),
            error: i.error.clone(),
        }
    }
}

impl TryFrom<pb::RetentionItem> for RetentionItem {
    type Error = Error;
    fn try_from(i: pb::RetentionItem) -> Result<RetentionItem> {
        Ok(RetentionItem {
            repository: RepoName::new(&i.repository)?,
            digest: Digest::parse(&i.digest)?,
            tags: i.tags.iter().map(|t| Tag::new(t)).collect::<Result<_>>()?,
            manifest: i.manifest,
            policy: i.policy,
            reason: i.reason,
            outcome: i.outcome.parse()?,
            error: i.error,
        })
    }
}

impl From<&RetentionReport> for pb::RetentionReport {
    fn from(r: &RetentionReport) -> Self {
        pb::RetentionReport {
            id: r.id.clone(),
            dry_run: r.dry_run,
            started_at: Some(timestamp(r.started_at)),
            completed_at: Some(timestamp(r.completed_at)),
            policies: r.policies.clone(),
            repositories: r.repositories,
            items: r.items.iter().map(Into::into).collect(),
            truncated: r.truncated,
            totals: Some((&r.totals).into()),
        }
    }
}

impl TryFrom<pb::RetentionReport> for RetentionReport {
    type Error = Error;
    fn try_from(r: pb::RetentionReport) -> Result<RetentionReport> {
        Ok(RetentionReport {
            id: r.id,
            dry_run: r.dry_run,
            started_at: required_time(r.started_at.as_ref(), "started_at")?,
            completed_at: required_time(r.completed_at.as_ref(), "completed_at")?,
            policies: r.policies,
            repositories: r.repositories,
            items: r
                .items
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_>>()?,
            truncated: r.truncated,
            totals: totals(r.totals),
        })
    }
}

impl From<&RetentionStatus> for pb::RetentionStatus {
    fn from(s: &RetentionStatus) -> Self {
        pb::RetentionStatus {
            running: s.running,
            last_run: s.last_run.as_ref().map(|l| pb::RetentionRunSummary {
                id: l.id.clone(),
                actor: l.actor.clone(),
                started_at: Some(timestamp(l.started_at)),
                completed_at: Some(timestamp(l.completed_at)),
                repositories: l.repositories,
                totals: Some((&l.totals).into()),
            }),
            next_run: s.next_run.map(timestamp),
        }
    }
}

impl TryFrom<pb::RetentionStatus> for RetentionStatus {
    type Error = Error;
    fn try_from(s: pb::RetentionStatus) -> Result<RetentionStatus> {
        let last_run = match s.last_run {
            Some(l) => Some(RetentionSummary {
                id: l.id,
                actor: l.actor,
                started_at: required_time(l.started_at.as_ref(), "started_at")?,
                completed_at: required_time(l.completed_at.as_ref(), "completed_at")?,
                repositories: l.repositories,
                totals: totals(l.totals),
            }),
            None => None,
        };
        Ok(RetentionStatus {
            running: s.running,
            last_run,
            next_run: s.next_run.as_ref().map(from_timestamp),
        })
    }
}
