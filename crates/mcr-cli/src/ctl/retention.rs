//! `mcrctl retention`: list, create and delete retention policies, run
//! them (`--dry-run` lists what a run would delete), and the run status.

use clap::{Args, Subcommand};
use mcr_core::registry::{RetentionReport, RetentionRequest, RetentionStatus};
use mcr_core::retention::{RetentionPolicy, RetentionSpec};
use serde_json::{json, Map, Value};

use super::api::{Api, Failure};
use super::commands::{parse_body, Out};
use super::table::{list_or_any, Table};

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Every stored policy, by id.
    List,
    /// Create a policy from flags or from --body JSON (as POST
    /// /v1/retention takes it). It needs at least one --repository and one
    /// of --delete-tags-older-than and --delete-untagged-older-than.
    Create {
        #[command(flatten)]
        flags: PolicyFlags,
        /// The policy as JSON; `-` reads standard input, `@FILE` a file.
        #[arg(long, value_name = "JSON", conflicts_with = "PolicyFlags")]
        body: Option<String>,
    },
    /// Delete a policy.
    Delete { id: i64 },
    /// Run every enabled policy now (or only --policy), printing each
    /// deletion; with --dry-run nothing is deleted and the list is what a
    /// run would delete. GC frees the bytes afterwards.
    Run {
        #[arg(long)]
        dry_run: bool,
        /// Only this policy's delete clauses (even if disabled).
        #[arg(long)]
        policy: Option<i64>,
    },
    /// Whether a run is under way, the last run and the schedule's next.
    Status,
}

/// A policy's fields as flags.
#[derive(Debug, Default, Args)]
pub struct PolicyFlags {
    /// Repository glob, e.g. 'team-a/*' (repeat, or separate with commas).
    #[arg(long = "repository", value_delimiter = ',', value_name = "GLOB")]
    pub repositories: Vec<String>,
    /// Keep this many most recently pushed tags of each repository.
    #[arg(long)]
    pub keep_last: Option<u32>,
    /// Keep tags matching this glob, e.g. 'v*' (repeat, or commas).
    #[arg(long = "keep-tags", value_delimiter = ',', value_name = "GLOB")]
    pub keep_tags: Vec<String>,
    /// Delete tags last pushed longer ago than this, e.g. 30d.
    #[arg(long, value_name = "AGE")]
    pub delete_tags_older_than: Option<String>,
    /// Delete manifests left without a tag, pushed longer ago than this.
    #[arg(long, value_name = "AGE")]
    pub delete_untagged_older_than: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Store it disabled: it runs only when a run names it.
    #[arg(long)]
    pub disabled: bool,
}

impl PolicyFlags {
    /// The flags as the JSON the REST API takes, for the engine's own
    /// deserializer to check.
    fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("repositories".into(), json!(self.repositories));
        m.insert("keep_tags".into(), json!(self.keep_tags));
        m.insert("enabled".into(), json!(!self.disabled));
        let optional = [
            ("keep_last", self.keep_last.map(|n| json!(n))),
            (
                "delete_tags_older_than",
                self.delete_tags_older_than.as_ref().map(|a| json!(a)),
            ),
            (
                "delete_untagged_older_than",
                self.delete_untagged_older_than.as_ref().map(|a| json!(a)),
            ),
            ("description", self.description.as_ref().map(|d| json!(d))),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        }
        Value::Object(m)
    }
}

pub(super) async fn retention<A: Api>(
    api: &mut A,
    out: Out,
    cmd: &RetentionCommand,
) -> Result<(), Failure> {
    match cmd {
        RetentionCommand::List => {
            let policies = api.retention_policies().await?;
            out.print(&policies, || policies_table(&policies))
        }
        RetentionCommand::Create { flags, body } => {
            let spec: RetentionSpec = match body {
                Some(body) => parse_body(body, "retention policy")?,
                None => serde_json::from_value(flags.json())
                    .map_err(|e| Failure::usage(format!("invalid retention policy: {e}")))?,
            };
            let policy = api.create_retention_policy(&spec).await?;
            out.print(&policy, || {
                format!(
                    "created retention policy {}\n{}",
                    policy.id,
                    policies_table(std::slice::from_ref(&policy))
                )
            })
        }
        RetentionCommand::Delete { id } => {
            api.delete_retention_policy(*id).await?;
            out.print(&json!({ "deleted": id }), || {
                format!("deleted retention policy {id}\n")
            })
        }
        RetentionCommand::Run { dry_run, policy } => {
            let report = api
                .run_retention(&RetentionRequest {
                    dry_run: *dry_run,
                    policy: *policy,
                })
                .await?;
            out.print(&report, || report_text(&report))
        }
        RetentionCommand::Status => {
            let status = api.retention_status().await?;
            out.print(&status, || status_text(&status))
        }
    }
}

fn policies_table(policies: &[RetentionPolicy]) -> String {
    let mut t = Table::new(&[
        "ID",
        "REPOSITORIES",
        "KEEP LAST",
        "KEEP TAGS",
        "DELETE TAGS AFTER",
        "DELETE UNTAGGED AFTER",
        "ENABLED",
        "DESCRIPTION",
    ]);
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for p in policies {
        let s = &p.spec;
        t.row(vec![
            p.id.to_string(),
            list_or_any(s.repositories()),
            or_dash(s.keep_last().map(|n| n.to_string())),
            if s.keep_tags().is_empty() {
                "-".into()
            } else {
                list_or_any(s.keep_tags())
            },
            or_dash(s.delete_tags_older_than().map(|a| a.to_string())),
            or_dash(s.delete_untagged_older_than().map(|a| a.to_string())),
            if s.enabled() { "yes" } else { "no" }.into(),
            s.description().to_string(),
        ]);
    }
    t.render()
}

fn report_text(r: &RetentionReport) -> String {
    let mut t = Table::new(&[
        "REPOSITORY",
        "DIGEST",
        "TAGS",
        "MANIFEST",
        "OUTCOME",
        "REASON",
    ]);
    for i in &r.items {
        let outcome = match &i.error {
            Some(e) => format!("{}: {e}", i.outcome.as_str()),
            None => i.outcome.as_str().to_string(),
        };
        t.row(vec![
            i.repository.to_string(),
            i.digest.to_string(),
            if i.tags.is_empty() {
                "-".into()
            } else {
                list_or_any(&i.tags)
            },
            if i.manifest { "yes" } else { "no" }.into(),
            outcome,
            i.reason.clone(),
        ]);
    }
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    let mut text = if r.items.is_empty() {
        String::new()
    } else {
        t.render()
    };
    text.push_str(&format!(
        "{}: {verb} {} manifests and {} tags in {} repositories; {} refused; \
         {} skipped: changed since planned{}\n",
        r.id,
        r.totals.manifests,
        r.totals.tags,
        r.repositories,
        r.totals.refused,
        r.totals.changed,
        if r.truncated {
            " (the list stops at the first 10000)"
        } else {
            ""
        }
    ));
    if !r.dry_run && r.totals.manifests > 0 {
        text.push_str("run `mcrctl gc` to free their bytes\n");
    }
    text
}

fn status_text(s: &RetentionStatus) -> String {
    let mut text = format!("running: {}\n", if s.running { "yes" } else { "no" });
    match &s.last_run {
        Some(l) => text.push_str(&format!(
            "last run: {} by {} at {}: deleted {} manifests and {} tags in {} repositories; \
             {} refused; {} skipped: changed since planned\n",
            l.id,
            l.actor.as_deref().unwrap_or("-"),
            l.completed_at,
            l.totals.manifests,
            l.totals.tags,
            l.repositories,
            l.totals.refused,
            l.totals.changed
        )),
        None => text.push_str("last run: none\n"),
    }
    match s.next_run {
        Some(next) => text.push_str(&format!("next run: {next}\n")),
        None => text.push_str("next run: not scheduled ([retention] interval is off)\n"),
    }
    text
}

#[cfg(test)]
mod tests {
    use mcr_core::digest::Digest;
    use mcr_core::names::{RepoName, Tag};
    use mcr_core::registry::{Outcome, RetentionItem, RetentionTotals};
    use mcr_core::time::Timestamp;

    use super::*;

    /// An item kept because a push changed it shows as `changed` with
    /// what changed, and the totals line counts it apart from deletions.
    #[test]
    fn a_changed_item_is_shown_and_counted_apart() {
        let at = Timestamp::from_millis(0);
        let report = RetentionReport {
            id: "retention-0-00".into(),
            dry_run: false,
            started_at: at,
            completed_at: at,
            policies: vec![2],
            repositories: 1,
            items: vec![RetentionItem {
                repository: RepoName::new("team-r/x").unwrap(),
                digest: Digest::sha256_of(b"a"),
                tags: vec![Tag::new("old-1").unwrap()],
                manifest: true,
                policy: 2,
                reason: "policy 2: delete_tags_older_than 1m".into(),
                outcome: Outcome::Changed,
                error: Some("skipped: changed since planned: tag \"fresh-1\" points at it".into()),
            }],
            truncated: false,
            totals: RetentionTotals {
                manifests: 0,
                tags: 1,
                refused: 0,
                changed: 1,
            },
        };
        let text = report_text(&report);
        assert!(
            text.contains("changed: skipped: changed since planned: tag \"fresh-1\""),
            "{text}"
        );
        assert!(
            text.contains("deleted 0 manifests and 1 tags in 1 repositories; 0 refused; 1 skipped: changed since planned"),
            "{text}"
        );
    }
}
