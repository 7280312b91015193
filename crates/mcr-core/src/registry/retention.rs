//! Retention: policy administration and runs.
//!
//! A run reads each repository's manifest graph, asks
//! [`retention::plan`] what the policies delete, and — unless it is a
//! dry run — deletes it through `Registry::delete_planned`, the use
//! case a client's `DELETE` takes: tag rules hold (a deletion an
//! immutable tag refuses is reported in the run's result, not a failure
//! of the run) and every deletion is audited. Only what is still as
//! planned goes, decided in the store's step: a tag or manifest a push
//! changed meanwhile stays and is reported as [`Outcome::Changed`]. GC
//! frees the bytes later.
//! A dry run plans the same way and stops there, so it lists exactly
//! what a real run over the same contents deletes.
//!
//! Real runs are one at a time, whoever starts them (an admin, or the
//! daemon's schedule, `RegistryConfig::retention_interval`), through the
//! `Coordination` port's [`LockKey::Retention`]; a dry run changes
//! nothing and takes no lock.

use serde::{Deserialize, Serialize};

use super::{details, Caller, Registry};
use crate::audit::{EventType, NewAuditEvent};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::names::{Reference, RepoName, Tag};
use crate::ports::{LockKey, Page};
use crate::principal::{AccountType, Principal, Role};
use crate::retention::{
    self, PlannedDeletion, Policies, RetentionPolicy, RetentionSpec, MAX_POLICIES,
};
use crate::time::Timestamp;

/// The subject the schedule's runs are audited under (and delete as).
pub const RETENTION_SCHEDULE_SUBJECT: &str = "mcr:retention-schedule";

/// Most deletions a run's result lists; the totals count them all.
pub const MAX_LISTED: usize = 10_000;

/// Repositories read per page while a run walks them.
const REPOSITORY_PAGE: usize = 500;

/// What to run: every enabled policy, or the one named (even disabled,
/// so a policy can be tried with a dry run before it is enabled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequest {
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub policy: Option<i64>,
}

/// What became of one planned deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A dry run: what a real run would delete.
    Planned,
    Deleted,
    /// A rule refused it (an immutable tag, a deny on `registry:delete`);
    /// `error` says which.
    Refused,
    /// Gone before the run reached it (deleted meanwhile).
    Gone,
    /// Skipped, wholly or in part, because it changed since the plan: a
    /// planned tag moved to another manifest, or the manifest gained a
    /// tag or a referring index or referrer (a push meanwhile); `error`
    /// says what. What was skipped stays; what was still as planned is
    /// deleted and counted.
    Changed,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Planned,
        Outcome::Deleted,
        Outcome::Refused,
        Outcome::Gone,
        Outcome::Changed,
    ];

    /// `planned`, `deleted`, `refused`, `gone` or `changed`, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Planned => "planned",
            Outcome::Deleted => "deleted",
            Outcome::Refused => "refused",
            Outcome::Gone => "gone",
            Outcome::Changed => "changed",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "outcome",
                    format!(
                        "unknown outcome {s:?} \
                         (expected planned, deleted, refused, gone or changed)"
                    ),
                )
            })
    }
}

/// One deletion of a run, planned or done: a manifest's tags, and the
/// manifest itself when `manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionItem {
    pub repository: RepoName,
    pub digest: Digest,
    /// Tags of the manifest deleted (or to delete), in name order.
    pub tags: Vec<Tag>,
    /// Whether the manifest itself is deleted (after its tags).
    pub manifest: bool,
    /// The policy whose clause selected it.
    pub policy: i64,
    /// The clause, e.g. `policy 3: delete_untagged_older_than 7days`.
    pub reason: String,
    pub outcome: Outcome,
    /// Why it was refused, or what changed since the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counts of a run: manifests and tags really deleted (or, for a dry
/// run, to delete), refused deletions, and planned tags or manifests
/// skipped because they changed since the plan ([`Outcome::Changed`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionTotals {
    pub manifests: u64,
    pub tags: u64,
    pub refused: u64,
    /// Planned tags and manifests kept because they changed meanwhile.
    #[serde(default)]
    pub changed: u64,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionReport {
    pub id: String,
    pub dry_run: bool,
    pub started_at: Timestamp,
    pub completed_at: Timestamp,
    /// The policies whose delete clauses applied.
    pub policies: Vec<i64>,
    /// Repositories the policies applied to.
    pub repositories: u64,
    /// The deletions in the order done (at most [`MAX_LISTED`]).
    pub items: Vec<RetentionItem>,
    /// Whether `items` stopped at [`MAX_LISTED`].
    pub truncated: bool,
    pub totals: RetentionTotals,
}

/// A real run as the audit log remembers it (its `retention_completed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionSummary {
    pub id: String,
    /// Who ran it: an admin's subject or [`RETENTION_SCHEDULE_SUBJECT`].
    pub actor: Option<String>,
    pub started_at: Timestamp,
    pub completed_at: Timestamp,
    pub repositories: u64,
    pub totals: RetentionTotals,
}

/// Whether a real run is under way, the last one, and the schedule's next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionStatus {
    pub running: bool,
    pub last_run: Option<RetentionSummary>,
    /// `None` without a schedule; in the past when a run is due.
    pub next_run: Option<Timestamp>,
}

impl Registry {
    /// Every stored policy, by id (admin only).
    pub async fn list_retention_policies(&self, caller: &Caller) -> Result<Vec<RetentionPolicy>> {
        self.authorize_admin(caller).await?;
        self.meta.list_retention_policies().await
    }

    pub async fn get_retention_policy(&self, caller: &Caller, id: i64) -> Result<RetentionPolicy> {
        self.authorize_admin(caller).await?;
        self.meta
            .get_retention_policy(id)
            .await?
            .ok_or_else(|| Error::not_found("retention policy", id))
    }

    /// Stores a policy (admin only); `Error::Conflict` once
    /// [`MAX_POLICIES`] are stored.
    pub async fn create_retention_policy(
        &self,
        caller: &Caller,
        spec: RetentionSpec,
    ) -> Result<RetentionPolicy> {
        self.authorize_admin(caller).await?;
        if self.meta.list_retention_policies().await?.len() >= MAX_POLICIES {
            return Err(Error::Conflict(format!(
                "{MAX_POLICIES} retention policies are stored, the most allowed; \
                 delete one or widen an existing one's patterns"
            )));
        }
        let policy = self
            .meta
            .create_retention_policy(&spec, self.clock.now())
            .await?;
        self.retention_changed(caller, EventType::RetentionPolicyCreated, policy.id)
            .await?;
        Ok(policy)
    }

    /// Replaces a policy's body (admin only).
    pub async fn replace_retention_policy(
        &self,
        caller: &Caller,
        id: i64,
        spec: RetentionSpec,
    ) -> Result<RetentionPolicy> {
        self.authorize_admin(caller).await?;
        let policy = self
            .meta
            .replace_retention_policy(id, &spec, self.clock.now())
            .await?
            .ok_or_else(|| Error::not_found("retention policy", id))?;
        self.retention_changed(caller, EventType::RetentionPolicyUpdated, id)
            .await?;
        Ok(policy)
    }

    pub async fn delete_retention_policy(&self, caller: &Caller, id: i64) -> Result<()> {
        self.authorize_admin(caller).await?;
        if !self.meta.delete_retention_policy(id).await? {
            return Err(Error::not_found("retention policy", id));
        }
        self.retention_changed(caller, EventType::RetentionPolicyDeleted, id)
            .await
    }

    async fn retention_changed(&self, caller: &Caller, event: EventType, id: i64) -> Result<()> {
        self.audit(
            caller,
            event,
            None,
            None,
            details([("policy_id", id.to_string())]),
        )
        .await
    }

    /// Runs retention now (admin only): see the module docs.
    /// `Error::Conflict` if a real run is under way (here or on another
    /// replica), `NotFound` for an unknown policy.
    pub async fn run_retention(
        &self,
        caller: &Caller,
        request: RetentionRequest,
    ) -> Result<RetentionReport> {
        self.authorize_admin(caller).await?;
        self.retention_run(caller, request).await
    }

    /// A real run of every enabled policy for the daemon's schedule,
    /// audited (and deleting) as [`RETENTION_SCHEDULE_SUBJECT`];
    /// `Error::Conflict` if a run is under way (the schedule skips its
    /// turn).
    pub async fn run_scheduled_retention(&self) -> Result<RetentionReport> {
        let scheduler = Principal::new(
            RETENTION_SCHEDULE_SUBJECT,
            AccountType::System,
            vec![Role::Admin],
        );
        self.retention_run(&Caller::new(scheduler), RetentionRequest::default())
            .await
    }

    /// When the schedule runs retention next: one `retention_interval`
    /// after the last real run started (the audit log's last
    /// `retention_started`, any replica's), or after the schedule was
    /// first asked if none ever did. `None` without an interval.
    pub async fn next_scheduled_retention(&self) -> Result<Option<Timestamp>> {
        self.next_scheduled(
            self.config.retention_interval,
            &self.retention_schedule_since,
            EventType::RetentionStarted,
        )
        .await
    }

    /// Whether a real run is under way, the last one (from the audit
    /// log, so every replica sees it) and the schedule's next (admin
    /// only).
    pub async fn retention_status(&self, caller: &Caller) -> Result<RetentionStatus> {
        self.authorize_admin(caller).await?;
        let running = self.coordination.is_locked(&LockKey::Retention).await?;
        let last_run = self
            .last_event(EventType::RetentionCompleted)
            .await?
            .and_then(|e| summary_from_event(&e));
        Ok(RetentionStatus {
            running,
            last_run,
            next_run: self.next_scheduled_retention().await?,
        })
    }

    async fn retention_run(
        &self,
        caller: &Caller,
        request: RetentionRequest,
    ) -> Result<RetentionReport> {
        let all = self.meta.list_retention_policies().await?;
        let select: Vec<&RetentionPolicy> = match request.policy {
            Some(id) => vec![all
                .iter()
                .find(|p| p.id == id)
                .ok_or_else(|| Error::not_found("retention policy", id))?],
            None => all.iter().filter(|p| p.spec.enabled()).collect(),
        };
        let _claim = match request.dry_run {
            true => None,
            false => Some(
                self.coordination
                    .try_lock(&LockKey::Retention)
                    .await?
                    .ok_or_else(|| {
                        Error::Conflict("a retention run is already under way".into())
                    })?,
            ),
        };
        let started_at = self.clock.now();
        let mut tag = [0u8; 4];
        getrandom::getrandom(&mut tag).map_err(|e| {
            Error::storage("drawing randomness for a retention run id", e.to_string())
        })?;
        let mut report = RetentionReport {
            id: format!("retention-{}-{}", started_at.as_millis(), hex::encode(tag)),
            dry_run: request.dry_run,
            started_at,
            completed_at: started_at,
            policies: select.iter().map(|p| p.id).collect(),
            repositories: 0,
            items: Vec::new(),
            truncated: false,
            totals: RetentionTotals::default(),
        };
        if !request.dry_run {
            self.audit(
                caller,
                EventType::RetentionStarted,
                None,
                None,
                details([
                    ("id", report.id.clone()),
                    ("policies", ids(&report.policies)),
                ]),
            )
            .await?;
        }
        let mut last = None;
        loop {
            let page = self
                .meta
                .list_repositories(&Page {
                    last: last.clone(),
                    limit: REPOSITORY_PAGE,
                })
                .await?;
            for repo in &page {
                self.retain_in(caller, repo, &all, &select, &mut report)
                    .await?;
            }
            if page.len() < REPOSITORY_PAGE {
                break;
            }
            last = page.last().map(|r| r.as_str().to_string());
        }
        report.completed_at = self.clock.now();
        if !request.dry_run {
            let t = report.totals;
            self.audit(
                caller,
                EventType::RetentionCompleted,
                None,
                None,
                details([
                    ("id", report.id.clone()),
                    ("started_at", report.started_at.to_rfc3339()),
                    ("repositories", report.repositories.to_string()),
                    ("manifests_deleted", t.manifests.to_string()),
                    ("tags_deleted", t.tags.to_string()),
                    ("refused", t.refused.to_string()),
                    ("changed", t.changed.to_string()),
                ]),
            )
            .await?;
            tracing::info!(
                id = %report.id,
                manifests_deleted = t.manifests,
                tags_deleted = t.tags,
                refused = t.refused,
                changed = t.changed,
                "retention run done"
            );
        }
        Ok(report)
    }

    /// Plans one repository and, in a real run, carries the plan out.
    async fn retain_in(
        &self,
        caller: &Caller,
        repo: &RepoName,
        all: &[RetentionPolicy],
        select: &[&RetentionPolicy],
        report: &mut RetentionReport,
    ) -> Result<()> {
        // Mirrors follow their upstream and shed content by max_size.
        if self.mirrors.owner(repo).is_some() {
            return Ok(());
        }
        let select: Vec<&RetentionPolicy> = select
            .iter()
            .copied()
            .filter(|p| p.spec.applies_to(repo))
            .collect();
        if select.is_empty() {
            return Ok(());
        }
        // Every enabled policy's keep clauses save tags, and the selected
        // ones' even when disabled: a tag is kept if any clause keeps it.
        let keep = all
            .iter()
            .filter(|p| p.spec.enabled() || select.iter().any(|s| s.id == p.id))
            .filter(|p| p.spec.applies_to(repo))
            .collect();
        let graph = self.meta.manifest_graph(repo).await?;
        let planned = retention::plan(&graph, &Policies { select, keep }, report.started_at);
        report.repositories += 1;
        for deletion in planned {
            let item = if report.dry_run {
                report.totals.tags += deletion.tags.len() as u64;
                report.totals.manifests += u64::from(deletion.manifest);
                item(repo, &deletion, Outcome::Planned, None)
            } else {
                self.carry_out(caller, repo, &deletion, &mut report.totals)
                    .await?
            };
            if report.items.len() < MAX_LISTED {
                report.items.push(item);
            } else {
                report.truncated = true;
            }
        }
        Ok(())
    }

    /// Deletes a planned deletion's tags, then its manifest, through the
    /// delete use case, each only as planned (`Registry::delete_planned`):
    /// a tag while it still points at the planned digest, the manifest
    /// while nothing refers to it, decided in the store's step, so a push
    /// during the run loses nothing. What changed is skipped and reported
    /// ([`Outcome::Changed`]). A rule's refusal stops this deletion (the
    /// tag stays, so the manifest would not be untagged) and is reported.
    async fn carry_out(
        &self,
        caller: &Caller,
        repo: &RepoName,
        deletion: &PlannedDeletion,
        totals: &mut RetentionTotals,
    ) -> Result<RetentionItem> {
        let mut references: Vec<Reference> =
            deletion.tags.iter().cloned().map(Reference::Tag).collect();
        if deletion.manifest {
            references.push(Reference::Digest(deletion.digest.clone()));
        }
        let mut done = 0;
        let mut changed = Vec::new();
        for reference in &references {
            let planned = Some(&deletion.digest);
            match self.delete_planned(caller, repo, reference, planned).await {
                Ok(()) => {
                    done += 1;
                    match reference {
                        Reference::Tag(_) => totals.tags += 1,
                        Reference::Digest(_) => totals.manifests += 1,
                    }
                }
                Err(Error::ManifestUnknown(_) | Error::NameUnknown(_)) => {}
                Err(Error::Conflict(what)) => {
                    totals.changed += 1;
                    changed.push(what);
                }
                Err(e @ (Error::TagRefused(_) | Error::Denied { .. })) => {
                    totals.refused += 1;
                    return Ok(item(repo, deletion, Outcome::Refused, Some(e.to_string())));
                }
                Err(e) => return Err(e),
            }
        }
        if !changed.is_empty() {
            let what = format!("skipped: changed since planned: {}", changed.join("; "));
            return Ok(item(repo, deletion, Outcome::Changed, Some(what)));
        }
        let outcome = if done == 0 {
            Outcome::Gone
        } else {
            Outcome::Deleted
        };
        Ok(item(repo, deletion, outcome, None))
    }
}

fn item(
    repo: &RepoName,
    d: &PlannedDeletion,
    outcome: Outcome,
    error: Option<String>,
) -> RetentionItem {
    RetentionItem {
        repository: repo.clone(),
        digest: d.digest.clone(),
        tags: d.tags.clone(),
        manifest: d.manifest,
        policy: d.reason.policy,
        reason: d.reason.to_string(),
        outcome,
        error,
    }
}

fn ids(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

fn summary_from_event(e: &NewAuditEvent) -> Option<RetentionSummary> {
    let get = |k: &str| e.details.get(k);
    Some(RetentionSummary {
        id: get("id")?.clone(),
        actor: e.actor_id.clone(),
        started_at: Timestamp::parse_rfc3339(get("started_at")?).ok()?,
        completed_at: e.time,
        repositories: get("repositories")?.parse().ok()?,
        totals: RetentionTotals {
            manifests: get("manifests_deleted")?.parse().ok()?,
            tags: get("tags_deleted")?.parse().ok()?,
            refused: get("refused")?.parse().ok()?,
            // Absent from runs recorded before changes were counted.
            changed: get("changed").map_or(Some(0), |c| c.parse().ok())?,
        },
    })
}
