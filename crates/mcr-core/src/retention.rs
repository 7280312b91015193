//! Retention policies and the plan of what a retention run deletes.
//!
//! A [`RetentionPolicy`] names repositories (the policy rules' glob
//! patterns, [`RepoPattern`]) and says which of their tags and untagged
//! manifests go: tags pushed longer ago than `delete_tags_older_than`,
//! manifests left without a tag whose push is older than
//! `delete_untagged_older_than`; `keep_last` and `keep_tags` save tags
//! from the first. [`plan`] turns the policies and one repository's
//! [`ManifestGraph`] into the deletions; the use case
//! (`Registry::run_retention`) lists them for a dry run and carries them
//! out through the normal delete use case for a real one, so both come
//! from this one function.
//!
//! The rules of [`plan`], precisely:
//!
//! - A tag's age is its last push (the time the store recorded when the
//!   tag was last set). A tag is deleted when a selecting policy's
//!   `delete_tags_older_than` reaches it and no keep clause of any policy
//!   over the repository saves it: `keep_tags` (any pattern matches) or
//!   `keep_last` (among that policy's N most recently pushed tags; ties
//!   by name). A tag is kept if ANY clause keeps it.
//! - A manifest is deleted when no tag is left on it, its push
//!   (`created`) is older than a selecting policy's
//!   `delete_untagged_older_than`, and it is not *protected*. Protected
//!   is everything reachable from a manifest that stays (one with a tag
//!   left, or too young, or under no untagged clause) through an index's
//!   children, a manifest's subject, and the referrers of a manifest that
//!   stays — repeated until nothing changes. So no manifest that stays
//!   loses a child, a subject or a referrer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::names::{RepoName, Tag};
use crate::policy::{RepoPattern, TagPattern};
use crate::time::Timestamp;

/// Most repository patterns, and most keep patterns, a policy may carry.
pub const MAX_PATTERNS: usize = 64;
/// The largest `keep_last`.
pub const MAX_KEEP_LAST: u32 = 10_000;
/// Most retention policies stored at once.
pub const MAX_POLICIES: usize = 100;
/// Longest description accepted, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// An age a delete clause reaches: a duration from one minute (a
/// shorter one would race pushes still in progress) to 100 years,
/// written as humantime (`30d`, `12h`, `90m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetentionAge(Duration);

impl RetentionAge {
    /// The shortest age a clause may name.
    pub const MIN: Duration = Duration::from_secs(60);
    /// The longest age a clause may name.
    pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

    /// `Error::Invalid` on `field` outside [`Self::MIN`]..=[`Self::MAX`].
    pub fn new(field: &'static str, d: Duration) -> Result<RetentionAge> {
        if d < Self::MIN || d > Self::MAX {
            return Err(Error::invalid(
                field,
                format!(
                    "{} is out of range; use from 1m to 100y (36500d)",
                    humantime::format_duration(d)
                ),
            ));
        }
        Ok(RetentionAge(d))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl fmt::Display for RetentionAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for RetentionAge {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An age as written, checked when the draft becomes a [`RetentionSpec`]
/// (which knows the field's name for the error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgeText(pub String);

/// The body of a policy to create or replace, as written: call
/// [`RetentionSpec::new`] (serde does, through `try_from`) to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionDraft {
    #[serde(default)]
    pub description: String,
    /// A disabled policy runs only when named by a run.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Repositories the policy applies to (any pattern matches).
    pub repositories: Vec<RepoPattern>,
    /// Keep this many most recently pushed tags of each repository.
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// Keep the tags matching any of these.
    #[serde(default)]
    pub keep_tags: Vec<TagPattern>,
    /// Delete tags last pushed longer ago than this.
    #[serde(default)]
    pub delete_tags_older_than: Option<AgeText>,
    /// Delete manifests left without a tag, pushed longer ago than this.
    #[serde(default)]
    pub delete_untagged_older_than: Option<AgeText>,
}

fn enabled() -> bool {
    true
}

/// A checked policy body: at least one repository pattern and one delete
/// clause, every count within its limit, every age in range. Only
/// [`RetentionSpec::new`] makes one, and serde goes through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RetentionDraft", into = "RetentionDraft")]
pub struct RetentionSpec {
    description: String,
    enabled: bool,
    repositories: Vec<RepoPattern>,
    keep_last: Option<u32>,
    keep_tags: Vec<TagPattern>,
    delete_tags_older_than: Option<RetentionAge>,
    delete_untagged_older_than: Option<RetentionAge>,
}

impl TryFrom<RetentionDraft> for RetentionSpec {
    type Error = Error;
    fn try_from(d: RetentionDraft) -> Result<Self> {
        RetentionSpec::new(d)
    }
}

impl From<RetentionSpec> for RetentionDraft {
    fn from(s: RetentionSpec) -> Self {
        RetentionDraft {
            description: s.description,
            enabled: s.enabled,
            repositories: s.repositories,
            keep_last: s.keep_last,
            keep_tags: s.keep_tags,
            delete_tags_older_than: s.delete_tags_older_than.map(|a| AgeText(a.to_string())),
            delete_untagged_older_than: s
                .delete_untagged_older_than
                .map(|a| AgeText(a.to_string())),
        }
    }
}

impl RetentionSpec {
    /// Checks a draft; `Error::Invalid` names the field and what to do.
    pub fn new(d: RetentionDraft) -> Result<RetentionSpec> {
        if d.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(Error::invalid(
                "description",
                format!("is over {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if d.repositories.is_empty() || d.repositories.len() > MAX_PATTERNS {
            return Err(Error::invalid(
                "repositories",
                format!("needs 1 to {MAX_PATTERNS} patterns, such as \"team-a/*\""),
            ));
        }
        if d.keep_tags.len() > MAX_PATTERNS {
            return Err(Error::invalid(
                "keep_tags",
                format!("has over {MAX_PATTERNS} patterns"),
            ));
        }
        if let Some(n) = d.keep_last {
            if n == 0 || n > MAX_KEEP_LAST {
                return Err(Error::invalid(
                    "keep_last",
                    format!("{n} is out of range; use 1 to {MAX_KEEP_LAST}, or leave it out"),
                ));
            }
        }
        let age = |field: &'static str, text: Option<AgeText>| {
            text.map(|t| {
                let d = crate::time::parse_duration(field, &t.0)?;
                RetentionAge::new(field, d)
            })
            .transpose()
        };
        let delete_tags_older_than = age("delete_tags_older_than", d.delete_tags_older_than)?;
        let delete_untagged_older_than =
            age("delete_untagged_older_than", d.delete_untagged_older_than)?;
        if delete_tags_older_than.is_none() && delete_untagged_older_than.is_none() {
            return Err(Error::invalid(
                "delete_tags_older_than",
                "a policy must delete something: set delete_tags_older_than, \
                 delete_untagged_older_than, or both",
            ));
        }
        Ok(RetentionSpec {
            description: d.description,
            enabled: d.enabled,
            repositories: d.repositories,
            keep_last: d.keep_last,
            keep_tags: d.keep_tags,
            delete_tags_older_than,
            delete_untagged_older_than,
        })
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn repositories(&self) -> &[RepoPattern] {
        &self.repositories
    }

    pub fn keep_last(&self) -> Option<u32> {
        self.keep_last
    }

    pub fn keep_tags(&self) -> &[TagPattern] {
        &self.keep_tags
    }

    pub fn delete_tags_older_than(&self) -> Option<RetentionAge> {
        self.delete_tags_older_than
    }

    pub fn delete_untagged_older_than(&self) -> Option<RetentionAge> {
        self.delete_untagged_older_than
    }

    /// Whether the policy applies to `repo`.
    pub fn applies_to(&self, repo: &RepoName) -> bool {
        self.repositories.iter().any(|p| p.matches(repo.as_str()))
    }
}

/// A stored policy: its id (assigned by the store, never reused), its
/// body, and when it was created and last replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    pub id: i64,
    #[serde(flatten)]
    pub spec: RetentionSpec,
    pub created: Timestamp,
    pub updated: Timestamp,
}

/// A tag as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphTag {
    pub name: Tag,
    pub digest: Digest,
    /// When the tag was last set (pushed or moved).
    pub updated: Timestamp,
}

/// A manifest as retention sees it: what it points at and when it was
/// pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphManifest {
    pub digest: Digest,
    /// When the manifest was stored.
    pub created: Timestamp,
    /// The manifest it refers to (a referrer's subject).
    pub subject: Option<Digest>,
    /// An index's child manifests.
    pub children: Vec<Digest>,
}

/// One repository's manifests and tags, read in one step
/// (`RetentionStore::manifest_graph`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManifestGraph {
    pub manifests: Vec<GraphManifest>,
    pub tags: Vec<GraphTag>,
}

/// Why a deletion is planned, naming the policy and its clause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub policy: i64,
    /// `delete_tags_older_than` or `delete_untagged_older_than`.
    pub clause: String,
    /// The clause's age, as written back (`30days`).
    pub older_than: String,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy {}: {} {}",
            self.policy, self.clause, self.older_than
        )
    }
}

/// One planned deletion in a repository: tags of one manifest, and the
/// manifest itself when it is left untagged and unprotected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDeletion {
    pub digest: Digest,
    /// The manifest's tags to delete (by name), in name order.
    pub tags: Vec<Tag>,
    /// Whether the manifest itself goes too (after its tags).
    pub manifest: bool,
    /// The first selecting policy's clause for the tags (if any), or for
    /// the manifest.
    pub reason: Reason,
}

/// What a run applies to one repository: the policies whose delete
/// clauses select (`select`), and every policy whose keep clauses save
/// (`keep`, the selecting ones included).
pub struct Policies<'a> {
    pub select: Vec<&'a RetentionPolicy>,
    pub keep: Vec<&'a RetentionPolicy>,
}

/// The deletions `policies` make in a repository whose contents are
/// `graph`, at `now`, in the order to carry them out: tag-only deletions
/// first, then manifests, each before anything it references (an index
/// before its children, a referrer before its subject). See the module
/// docs for the rules. Pure: a dry run and a real run over the same
/// contents plan the same.
pub fn plan(
    graph: &ManifestGraph,
    policies: &Policies<'_>,
    now: Timestamp,
) -> Vec<PlannedDeletion> {
    let kept_tags = kept_tags(graph, &policies.keep);
    // Tags each selecting policy reaches, with the first one's reason.
    let mut tag_reason: BTreeMap<&Tag, Reason> = BTreeMap::new();
    for p in &policies.select {
        let Some(age) = p.spec.delete_tags_older_than else {
            continue;
        };
        let cutoff = now.saturating_sub(age.as_duration());
        for t in &graph.tags {
            if t.updated < cutoff && !kept_tags.contains(&t.name) {
                tag_reason.entry(&t.name).or_insert_with(|| Reason {
                    policy: p.id,
                    clause: "delete_tags_older_than".into(),
                    older_than: age.to_string(),
                });
            }
        }
    }
    let manifests: BTreeMap<&Digest, &GraphManifest> =
        graph.manifests.iter().map(|m| (&m.digest, m)).collect();
    // Manifests with a tag left after the run.
    let tagged: BTreeSet<&Digest> = graph
        .tags
        .iter()
        .filter(|t| !tag_reason.contains_key(&t.name))
        .map(|t| &t.digest)
        .collect();
    // Untagged manifests old enough for a selecting policy's clause.
    let mut eligible: BTreeMap<&Digest, Reason> = BTreeMap::new();
    for p in &policies.select {
        let Some(age) = p.spec.delete_untagged_older_than else {
            continue;
        };
        let cutoff = now.saturating_sub(age.as_duration());
        for m in &graph.manifests {
            if m.created < cutoff && !tagged.contains(&m.digest) {
                eligible.entry(&m.digest).or_insert_with(|| Reason {
                    policy: p.id,
                    clause: "delete_untagged_older_than".into(),
                    older_than: age.to_string(),
                });
            }
        }
    }
    let protected = protected(graph, &manifests, &eligible);
    let deleted: BTreeMap<&Digest, Reason> = eligible
        .into_iter()
        .filter(|(d, _)| !protected.contains(d))
        .collect();

    // Tags grouped by their manifest.
    let mut by_manifest: BTreeMap<&Digest, (Vec<Tag>, Reason)> = BTreeMap::new();
    for t in &graph.tags {
        if let Some(reason) = tag_reason.get(&t.name) {
            let entry = by_manifest
                .entry(&t.digest)
                .or_insert_with(|| (Vec::new(), reason.clone()));
            entry.0.push(t.name.clone());
        }
    }
    let mut out: Vec<PlannedDeletion> = by_manifest
        .iter()
        .filter(|(d, _)| !deleted.contains_key(*d))
        .map(|(d, (tags, reason))| PlannedDeletion {
            digest: (*d).clone(),
            tags: sorted(tags.clone()),
            manifest: false,
            reason: reason.clone(),
        })
        .collect();
    for d in referrers_first(&deleted, &manifests) {
        let (tags, reason) = match by_manifest.get(d) {
            Some((tags, reason)) => (sorted(tags.clone()), reason.clone()),
            None => (Vec::new(), deleted[d].clone()),
        };
        out.push(PlannedDeletion {
            digest: d.clone(),
            tags,
            manifest: true,
            reason,
        });
    }
    out
}

fn sorted(mut tags: Vec<Tag>) -> Vec<Tag> {
    tags.sort();
    tags
}

/// Tags some keep clause saves.
fn kept_tags<'g>(graph: &'g ManifestGraph, keep: &[&RetentionPolicy]) -> BTreeSet<&'g Tag> {
    let mut newest: Vec<&GraphTag> = graph.tags.iter().collect();
    // Most recently pushed first; ties by name, so the order is total.
    newest.sort_by(|a, b| b.updated.cmp(&a.updated).then(a.name.cmp(&b.name)));
    let mut kept = BTreeSet::new();
    for p in keep {
        if let Some(n) = p.spec.keep_last {
            kept.extend(newest.iter().take(n as usize).map(|t| &t.name));
        }
        for t in &graph.tags {
            if p.spec.keep_tags.iter().any(|k| k.matches(&t.name)) {
                kept.insert(&t.name);
            }
        }
    }
    kept
}

/// Everything reachable from the manifests that stay (all but the
/// eligible ones) through children, subjects and referrers.
fn protected<'g>(
    graph: &'g ManifestGraph,
    manifests: &BTreeMap<&'g Digest, &'g GraphManifest>,
    eligible: &BTreeMap<&'g Digest, Reason>,
) -> BTreeSet<&'g Digest> {
    let mut referrers: BTreeMap<&Digest, Vec<&Digest>> = BTreeMap::new();
    for m in &graph.manifests {
        if let Some(s) = &m.subject {
            referrers.entry(s).or_default().push(&m.digest);
        }
    }
    let mut seen: BTreeSet<&Digest> = BTreeSet::new();
    let mut todo: Vec<&Digest> = graph
        .manifests
        .iter()
        .map(|m| &m.digest)
        .filter(|d| !eligible.contains_key(d))
        .collect();
    while let Some(d) = todo.pop() {
        if !seen.insert(d) {
            continue;
        }
        if let Some(m) = manifests.get(d) {
            todo.extend(m.children.iter());
            todo.extend(m.subject.iter());
        }
        if let Some(rs) = referrers.get(d) {
            todo.extend(rs.iter().copied());
        }
    }
    seen
}

/// The deleted manifests, each before any deleted manifest it references
/// (Kahn's order over child and subject edges, ties by digest).
fn referrers_first<'g>(
    deleted: &BTreeMap<&'g Digest, Reason>,
    manifests: &BTreeMap<&'g Digest, &'g GraphManifest>,
) -> Vec<&'g Digest> {
    let edges = |d: &Digest| -> Vec<&'g Digest> {
        manifests
            .get(d)
            .map(|m| {
                m.children
                    .iter()
                    .chain(m.subject.iter())
                    .filter(|t| deleted.contains_key(t))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut incoming: BTreeMap<&Digest, usize> = deleted.keys().map(|d| (*d, 0)).collect();
    for d in deleted.keys() {
        for t in edges(d) {
            *incoming.entry(t).or_default() += 1;
        }
    }
    let mut ready: BTreeSet<&Digest> = incoming
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(d, _)| *d)
        .collect();
    let mut order = Vec::with_capacity(deleted.len());
    while let Some(d) = ready.pop_first() {
        order.push(d);
        for t in edges(d) {
            let n = incoming
                .get_mut(t)
                .expect("every edge ends in the deleted set");
            *n -= 1;
            if *n == 0 {
                ready.insert(t);
            }
        }
    }
    // A cycle (which content addressing makes impossible: a manifest names
    // digests of manifests that existed before it) would leave some out;
    // they still go, after the rest.
    let placed: BTreeSet<&Digest> = order.iter().copied().collect();
    let rest: Vec<&Digest> = deleted
        .keys()
        .copied()
        .filter(|d| !placed.contains(d))
        .collect();
    order.extend(rest);
    order
}
