//! `FakeMetaStore`: the reference semantics of the metadata ports (the
//! [`MetaStore`](crate::ports::MetaStore) umbrella).
//!
//! Every method takes one lock for its whole step, so each is atomic the
//! way an adapter's transaction must be. Where the port's docs leave a
//! choice open, the choice made here is the one the contract suite holds
//! every adapter to.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};

use super::hold::{Hold, PausePoint};
use crate::audit::{AuditEvent, AuditQuery, NewAuditEvent};
use crate::digest::Digest;
use crate::error::{Error, Result, StorageError};
use crate::events::{outbox_events, DeliveryState, OutboxEvent, PushFacts, StoreFacts};
use crate::ids::UploadId;
use crate::names::{Reference, RepoName, Tag};
use crate::policy::{Rule, RuleDraft, TagGuard};
use crate::ports::{
    check_tag_target, AuditLog, BlobIndex, BlobInfo, EventOutbox, GcStore, ListStream,
    ManifestDelete, ManifestRecord, ManifestStore, ManifestSummary, NewManifest, Page,
    PolicyRuleStore, Provenance, QuotaStore, RepoDetail, RepoQuery, RepoSummary, RepositoryStore,
    RetentionStore, Revocation, RevocationStore, SnapshotStore, StoreStatus, StoreTotals,
    StoredRules, SweepStep, TagRef, UploadCaps, UploadSession, UploadSessionStore, UploadState,
};
use crate::quota::{
    quota_cap_reached, Quota, QuotaCharge, QuotaContent as Content, QuotaLimit, QuotaScope,
    QuotaUsage,
};
use crate::retention::{GraphManifest, GraphTag, ManifestGraph, RetentionPolicy, RetentionSpec};
use crate::time::Timestamp;

/// Metadata held in memory.
#[derive(Debug, Default)]
pub struct FakeMetaStore {
    state: Mutex<State>,
    /// A tag whose `put_manifest` fails (storing nothing), for tests of a
    /// write failing partway through a push.
    refused_tag: Mutex<Option<Tag>>,
    /// Where [`FakeMetaStore::hold_next_rule_read`] stops a read of the
    /// rules: after it read, before it answers.
    rule_read_pause: PausePoint,
    /// Where [`FakeMetaStore::hold_next_manifest_read`] stops a read of a
    /// manifest: after it read, before it answers.
    manifest_read_pause: PausePoint,
    /// Where [`FakeMetaStore::hold_next_manifest_write`] stops a write of
    /// manifests or tags: before it writes.
    manifest_write_pause: PausePoint,
}

#[derive(Debug, Default)]
struct State {
    repos: BTreeMap<RepoName, Repo>,
    /// Blob rows: size and the time the row was created.
    blobs: BTreeMap<Digest, (u64, Timestamp)>,
    uploads: BTreeMap<UploadId, UploadSession>,
    /// Who opened each session in `uploads`.
    upload_owners: BTreeMap<UploadId, String>,
    rules: BTreeMap<i64, Rule>,
    /// The rule set's generation: one more with every change.
    rule_generation: u64,
    /// The last rule id handed out; ids are never reused.
    last_rule_id: i64,
    retention: BTreeMap<i64, RetentionPolicy>,
    /// The last retention policy id handed out; never reused either.
    last_retention_id: i64,
    /// In the order recorded; ids are positions + 1.
    audit: Vec<AuditEvent>,
    /// Revoked token ids and when each token expires.
    revocations: BTreeMap<String, Timestamp>,
    /// The instants snapshots were taken at; a copy is only recorded,
    /// since nothing can be restored from memory.
    snapshots: BTreeSet<Timestamp>,
    /// What the readiness probe reports, while set.
    probe_failure: Option<String>,
    /// Quotas by id.
    quotas: BTreeMap<i64, Quota>,
    /// The last quota id handed out; ids are never reused.
    last_quota_id: i64,
    /// Webhook events not yet pruned, by id.
    outbox: Vec<OutboxEvent>,
    /// The last outbox id handed out; ids are never reused.
    last_outbox_id: i64,
    /// Delivery states by webhook key.
    deliveries: BTreeMap<String, DeliveryState>,
}

#[derive(Debug)]
struct Repo {
    created: Timestamp,
    manifests: BTreeMap<Digest, StoredManifest>,
    tags: BTreeMap<Tag, Digest>,
    /// When each tag was last set.
    tag_times: BTreeMap<Tag, Timestamp>,
    /// Blobs the repository may serve, by their links.
    links: BTreeMap<Digest, Link>,
}

/// A blob link of a repository.
#[derive(Debug, Clone, Copy)]
struct Link {
    /// When it was last made.
    at: Timestamp,
    /// Made by a push, an upload or mount, at least once since it was
    /// first made (as the adapters' upsert that ORs the flag).
    pushed: bool,
}

#[derive(Debug)]
struct StoredManifest {
    record: ManifestRecord,
    blobs: Vec<Digest>,
    /// An index's child manifests.
    children: Vec<Digest>,
    /// Stored by a push, not mirrored (the first store of a digest
    /// decides, as the adapters' insert that does nothing on conflict).
    pushed: bool,
}

impl Repo {
    fn new(created: Timestamp) -> Repo {
        Repo {
            created,
            manifests: BTreeMap::new(),
            tags: BTreeMap::new(),
            tag_times: BTreeMap::new(),
            links: BTreeMap::new(),
        }
    }

    /// Whether content has landed: a manifest or a blob link. Only such
    /// a repository exists for readers; an upload session alone does not
    /// make one.
    fn holds_content(&self) -> bool {
        !self.manifests.is_empty() || !self.links.is_empty()
    }

    /// Makes the link to `digest`, or makes it again: re-stamped, and
    /// pushed if it was or if this is a push.
    fn link(&mut self, digest: &Digest, at: Timestamp, provenance: Provenance) {
        let pushed = provenance == Provenance::Pushed;
        self.links
            .entry(digest.clone())
            .and_modify(|l| {
                l.at = at;
                l.pushed |= pushed;
            })
            .or_insert(Link { at, pushed });
    }
}

impl State {
    /// Appends an audit event with the next id, and the outbox events
    /// reporting it.
    fn record(&mut self, event: &NewAuditEvent) {
        self.record_with(event, None);
    }

    /// [`State::record`] with what the store step adds to its events.
    fn record_with(&mut self, event: &NewAuditEvent, facts: Option<StoreFacts<'_>>) {
        let id = self.audit.len() as i64 + 1;
        self.audit.push(AuditEvent {
            id,
            event: event.clone(),
        });
        for e in outbox_events(event, facts) {
            self.last_outbox_id += 1;
            self.outbox.push(OutboxEvent {
                id: self.last_outbox_id,
                event_id: e.event_id,
                time: e.time,
                kind: e.kind,
                repository: e.repository,
                data: e.data,
            });
        }
    }

    /// Removes a session and its owner.
    fn remove_upload(&mut self, id: &UploadId) -> Option<UploadSession> {
        self.upload_owners.remove(id);
        self.uploads.remove(id)
    }

    /// The repository, created at `at` if this is its first write.
    fn repo_mut(&mut self, name: &RepoName, at: Timestamp) -> &mut Repo {
        self.repos
            .entry(name.clone())
            .or_insert_with(|| Repo::new(at))
    }

    fn blob_info(&self, digest: &Digest) -> Option<BlobInfo> {
        self.blobs.get(digest).map(|&(size, _)| BlobInfo {
            digest: digest.clone(),
            size,
        })
    }

    /// Bytes `scope` uses: each distinct blob linked into it and each
    /// distinct manifest stored in it, once.
    fn usage(&self, scope: &QuotaScope) -> u64 {
        let repos = || self.repos.iter().filter(|(n, _)| scope.covers(n));
        let blobs: BTreeSet<&Digest> = repos().flat_map(|(_, r)| r.links.keys()).collect();
        let mut manifests: BTreeMap<&Digest, u64> = BTreeMap::new();
        for (_, r) in repos() {
            for (d, m) in &r.manifests {
                manifests.insert(d, m.record.raw.len() as u64);
            }
        }
        blobs
            .into_iter()
            .filter_map(|d| self.blobs.get(d).map(|&(size, _)| size))
            .sum::<u64>()
            + manifests.values().sum::<u64>()
    }

    /// Puts `content` pushed into `repo` to every quota covering it, in
    /// the order of [`QuotaScope::covering`]; the first refusal is the
    /// answer.
    fn charge(&self, repo: &RepoName, content: Content<'_>) -> Result<()> {
        let covering = QuotaScope::covering(repo)
            .into_iter()
            .filter_map(|key| self.quotas.values().find(|q| q.scope.to_string() == key));
        for q in covering {
            let holds = |r: &Repo| match content {
                Content::Blob(d, _) => r.links.contains_key(d),
                Content::Manifest(d, _) => r.manifests.contains_key(d),
            };
            let counted = self
                .repos
                .iter()
                .any(|(n, r)| q.scope.covers(n) && holds(r));
            let used = self.usage(&q.scope);
            QuotaCharge::new(q.scope.clone(), q.limit_bytes, used, counted, content).check()?;
        }
        Ok(())
    }

    fn summary(&self, name: &RepoName, repo: &Repo) -> RepoSummary {
        let manifest_bytes: u64 = repo
            .manifests
            .values()
            .map(|m| m.record.raw.len() as u64)
            .sum();
        let blob_bytes: u64 = repo
            .links
            .keys()
            .filter_map(|d| self.blobs.get(d).map(|&(size, _)| size))
            .sum();
        RepoSummary {
            name: name.clone(),
            tag_count: repo.tags.len() as u64,
            last_push: repo
                .manifests
                .values()
                .map(|m| m.record.created)
                .chain(repo.tag_times.values().copied())
                .max(),
            manifest_count: repo.manifests.len() as u64,
            total_size: manifest_bytes + blob_bytes,
            created: repo.created,
        }
    }
}

/// The keys of `items` strictly after `page.last`, at most `page.limit`.
fn page_of<'a, K, V>(items: &'a BTreeMap<K, V>, page: &Page) -> impl Iterator<Item = (&'a K, &'a V)>
where
    K: AsRef<str> + Ord,
{
    page_where(items, page, |_| true)
}

/// [`page_of`], counting only the items `keep` keeps.
fn page_where<'a, K, V>(
    items: &'a BTreeMap<K, V>,
    page: &Page,
    keep: impl Fn(&V) -> bool + 'a,
) -> impl Iterator<Item = (&'a K, &'a V)>
where
    K: AsRef<str> + Ord,
{
    let last = page.last.clone();
    items
        .iter()
        .filter(move |(k, v)| last.as_deref().is_none_or(|l| k.as_ref() > l) && keep(v))
        .take(page.limit)
}

impl FakeMetaStore {
    /// An empty store.
    pub fn new() -> FakeMetaStore {
        FakeMetaStore::default()
    }

    /// The time the link (repository, digest) was last made, for tests of
    /// the grace period.
    pub fn link_time(&self, repo: &RepoName, digest: &Digest) -> Option<Timestamp> {
        self.lock()
            .repos
            .get(repo)
            .and_then(|r| r.links.get(digest).map(|l| l.at))
    }

    /// Makes every `put_manifest` that would point `tag` fail with an
    /// unavailable-storage error, storing nothing, as a database that
    /// fails mid-push would.
    pub fn refuse_tag(&self, tag: Tag) {
        *self.refused_tag.lock().unwrap_or_else(|p| p.into_inner()) = Some(tag);
    }

    /// Stops the next `list_rules` or `get_rule` once it has read, before
    /// it answers, until the returned [`Hold`] is released: to let a rule
    /// change happen between a read and what the reader does with it.
    pub fn hold_next_rule_read(&self) -> Hold {
        self.rule_read_pause.arm()
    }

    /// Stops the next `get_manifest` once it has read, before it answers,
    /// until the returned [`Hold`] is released: to let a tag move between
    /// a pull's read and what the pull does with it.
    pub fn hold_next_manifest_read(&self) -> Hold {
        self.manifest_read_pause.arm()
    }

    /// Stops the next `put_manifest`, `delete_manifest` or `delete_tag`
    /// before it writes, until the returned [`Hold`] is released: to drop
    /// a change in the middle of its write.
    pub fn hold_next_manifest_write(&self) -> Hold {
        self.manifest_write_pause.arm()
    }

    /// Every audit event, oldest first.
    pub fn audit_log(&self) -> Vec<AuditEvent> {
        self.lock().audit.clone()
    }

    /// The instants snapshots were taken at, oldest first.
    pub fn snapshots(&self) -> Vec<Timestamp> {
        self.lock().snapshots.iter().copied().collect()
    }

    /// Makes [`MetaStore::probe`] fail with `Error::Storage(reason)` (or
    /// succeed again with `None`), standing in for a database that became
    /// unusable.
    pub fn set_probe_failure(&self, reason: Option<&str>) {
        self.lock().probe_failure = reason.map(str::to_string);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every method validates before it mutates, so a panic elsewhere
        // while the lock was held cannot have left a half-made step.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl RepositoryStore for FakeMetaStore {
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        Ok(self.lock().repos.get(repo).is_some_and(Repo::holds_content))
    }

    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepoName>> {
        Ok(page_where(&self.lock().repos, page, Repo::holds_content)
            .map(|(name, _)| name.clone())
            .collect())
    }

    async fn pushed_repositories(&self, prefix: &RepoName, limit: usize) -> Result<Vec<RepoName>> {
        Ok(self
            .lock()
            .repos
            .iter()
            .filter(|(name, repo)| {
                crate::proxy::within(name, prefix)
                    && (repo.manifests.values().any(|m| m.pushed)
                        || repo.links.values().any(|l| l.pushed))
            })
            .map(|(name, _)| name.clone())
            .take(limit)
            .collect())
    }

    async fn repository_summaries(&self, query: &RepoQuery) -> Result<Vec<RepoSummary>> {
        let state = self.lock();
        let mut all: Vec<RepoSummary> = state
            .repos
            .iter()
            .filter(|(_, repo)| repo.holds_content())
            .map(|(name, repo)| state.summary(name, repo))
            .filter(|r| query.matches(r) && query.is_after_cursor(r))
            .collect();
        query.sort(&mut all);
        all.truncate(query.limit);
        Ok(all)
    }

    async fn repository_detail(&self, repo: &RepoName) -> Result<Option<RepoDetail>> {
        let state = self.lock();
        let Some(r) = state.repos.get(repo).filter(|r| r.holds_content()) else {
            return Ok(None);
        };
        let mut manifests: Vec<ManifestSummary> = r
            .manifests
            .values()
            .map(|m| ManifestSummary {
                digest: m.record.digest.clone(),
                media_type: m.record.media_type.clone(),
                size: m.record.raw.len() as u64,
                created: m.record.created,
            })
            .collect();
        // Newest first; equal times by digest, so the order is total.
        manifests.sort_by(|a, b| {
            b.created
                .cmp(&a.created)
                .then_with(|| a.digest.cmp(&b.digest))
        });
        Ok(Some(RepoDetail {
            summary: state.summary(repo, r),
            tags: r
                .tags
                .iter()
                .map(|(t, d)| TagRef {
                    name: t.clone(),
                    digest: d.clone(),
                })
                .collect(),
            manifests,
            layers: r.links.keys().filter_map(|d| state.blob_info(d)).collect(),
        }))
    }

    async fn delete_repository(
        &self,
        repo: &RepoName,
        guard: &TagGuard,
        event: &NewAuditEvent,
    ) -> Result<Option<Vec<UploadId>>> {
        let mut state = self.lock();
        if let Some(r) = state.repos.get(repo) {
            for tag in r.tags.keys() {
                guard.check(tag, None)?;
            }
        }
        if state.repos.remove(repo).is_none() {
            return Ok(None);
        }
        let ids: Vec<UploadId> = state
            .uploads
            .values()
            .filter(|s| &s.repository == repo)
            .map(|s| s.id.clone())
            .collect();
        for id in &ids {
            state.remove_upload(id);
        }
        state.record(event);
        Ok(Some(ids))
    }

    async fn empty_repository(&self, repo: &RepoName) -> Result<bool> {
        let mut state = self.lock();
        let busy = state.uploads.values().any(|u| &u.repository == repo);
        let Some(r) = state.repos.get_mut(repo) else {
            return Ok(false);
        };
        let held = r.holds_content();
        r.manifests.clear();
        r.tags.clear();
        r.tag_times.clear();
        r.links.clear();
        if !busy {
            state.repos.remove(repo);
        }
        Ok(held)
    }

    async fn prune_repository(&self, repo: &RepoName) -> Result<bool> {
        let mut state = self.lock();
        let busy = state.uploads.values().any(|u| &u.repository == repo);
        let empty = state
            .repos
            .get(repo)
            .is_some_and(|r| r.manifests.is_empty() && r.links.is_empty());
        if empty && !busy {
            state.repos.remove(repo);
            return Ok(true);
        }
        Ok(false)
    }

    async fn stored_bytes(&self) -> Result<u64> {
        let state = self.lock();
        let blobs: u64 = state.blobs.values().map(|&(size, _)| size).sum();
        let manifests: u64 = state
            .repos
            .values()
            .flat_map(|r| r.manifests.values())
            .map(|m| m.record.raw.len() as u64)
            .sum();
        Ok(blobs + manifests)
    }
}

#[async_trait]
impl ManifestStore for FakeMetaStore {
    async fn put_manifest(&self, m: NewManifest, event: &NewAuditEvent) -> Result<()> {
        self.manifest_write_pause.pass().await;
        let refused = self
            .refused_tag
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(refused) = refused.filter(|t| m.tags.contains(t)) {
            return Err(Error::Storage(StorageError::unavailable(
                "storing a manifest",
                format!("tag {refused} refused by the test"),
            )));
        }
        let mut state = self.lock();
        let existing = state.repos.get(&m.repository);
        if m.provenance == Provenance::Pushed {
            let linked = |d: &Digest| existing.is_some_and(|r| r.links.contains_key(d));
            if let Some(missing) = m.blobs.iter().find(|d| !linked(d)) {
                return Err(Error::ManifestBlobUnknown(missing.clone()));
            }
            let stored = |d: &Digest| existing.is_some_and(|r| r.manifests.contains_key(d));
            if let Some(missing) = m.children.iter().find(|d| !stored(d)) {
                return Err(Error::ManifestChildUnknown(missing.clone()));
            }
        }
        let mut moved = Vec::new();
        if let Some(r) = existing {
            for tag in &m.tags {
                if let Some(from) = r.tags.get(tag).filter(|d| *d != &m.digest) {
                    m.tag_guard.check(tag, None)?;
                    moved.push((tag.clone(), from.clone()));
                }
            }
        }
        if m.provenance == Provenance::Pushed {
            state.charge(
                &m.repository,
                Content::Manifest(&m.digest, m.raw.len() as u64),
            )?;
        }
        let repo = state.repo_mut(&m.repository, m.created);
        repo.manifests
            .entry(m.digest.clone())
            .or_insert_with(|| StoredManifest {
                record: ManifestRecord {
                    repository: m.repository.clone(),
                    digest: m.digest.clone(),
                    media_type: m.media_type.clone(),
                    raw: m.raw.clone(),
                    subject: m.subject.clone(),
                    artifact_type: m.artifact_type.clone(),
                    created: m.created,
                },
                blobs: m.blobs.clone(),
                children: m.children.clone(),
                pushed: m.provenance == Provenance::Pushed,
            });
        for tag in m.tags {
            repo.tag_times.insert(tag.clone(), m.created);
            repo.tags.insert(tag, m.digest.clone());
        }
        state.record_with(
            event,
            Some(StoreFacts::Push(PushFacts {
                media_type: &m.media_type,
                size: m.raw.len() as u64,
                moved: &moved,
            })),
        );
        Ok(())
    }

    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let record = {
            let state = self.lock();
            state.repos.get(repo).and_then(|r| {
                let digest = match reference {
                    Reference::Digest(d) => Some(d),
                    Reference::Tag(t) => r.tags.get(t),
                };
                digest
                    .and_then(|d| r.manifests.get(d))
                    .map(|m| m.record.clone())
            })
        };
        self.manifest_read_pause.pass().await;
        Ok(record)
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        guard: &TagGuard,
        mode: ManifestDelete,
        event: &NewAuditEvent,
    ) -> Result<bool> {
        self.manifest_write_pause.pass().await;
        let mut state = self.lock();
        let Some(r) = state.repos.get_mut(repo) else {
            return Ok(false);
        };
        if !r.manifests.contains_key(digest) {
            return Ok(false);
        }
        let referrer = r
            .manifests
            .values()
            .find(|m| m.record.subject.as_ref() == Some(digest) || m.children.contains(digest));
        let first_tag = r.tags.iter().find(|(_, d)| *d == digest).map(|(t, _)| t);
        mode.check(digest, first_tag, referrer.map(|m| &m.record.digest))?;
        for (tag, _) in r.tags.iter().filter(|(_, d)| *d == digest) {
            guard.check(tag, Some(digest))?;
        }
        if r.manifests.remove(digest).is_none() {
            return Ok(false);
        }
        let untagged: Vec<(Tag, Digest)> = r
            .tags
            .iter()
            .filter(|(_, d)| *d == digest)
            .map(|(t, d)| (t.clone(), d.clone()))
            .collect();
        r.tags.retain(|_, d| d != digest);
        let Repo {
            tags, tag_times, ..
        } = r;
        tag_times.retain(|t, _| tags.contains_key(t));
        state.record_with(event, Some(StoreFacts::Untagged(&untagged)));
        Ok(true)
    }

    async fn delete_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        expected: Option<&Digest>,
        event: &NewAuditEvent,
    ) -> Result<bool> {
        self.manifest_write_pause.pass().await;
        let mut state = self.lock();
        let Some(r) = state.repos.get_mut(repo) else {
            return Ok(false);
        };
        let Some(digest) = r.tags.get(tag).cloned() else {
            return Ok(false);
        };
        check_tag_target(tag, expected, &digest)?;
        r.tags.remove(tag);
        r.tag_times.remove(tag);
        state.record_with(event, Some(StoreFacts::Untagged(&[(tag.clone(), digest)])));
        Ok(true)
    }

    async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<Vec<Tag>> {
        let state = self.lock();
        Ok(state.repos.get(repo).map_or_else(Vec::new, |r| {
            page_of(&r.tags, page).map(|(t, _)| t.clone()).collect()
        }))
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ManifestRecord>> {
        let state = self.lock();
        Ok(state.repos.get(repo).map_or_else(Vec::new, |r| {
            r.manifests
                .values()
                .filter(|m| m.record.subject.as_ref() == Some(subject))
                .map(|m| m.record.clone())
                .collect()
        }))
    }
}

#[async_trait]
impl BlobIndex for FakeMetaStore {
    async fn blob_in_repository(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>> {
        let state = self.lock();
        let linked = state
            .repos
            .get(repo)
            .is_some_and(|r| r.links.contains_key(digest));
        Ok(if linked {
            state.blob_info(digest)
        } else {
            None
        })
    }

    async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        Ok(self.lock().blobs.contains_key(digest))
    }

    async fn mount_blob(
        &self,
        from: &RepoName,
        to: &RepoName,
        digest: &Digest,
        at: Timestamp,
        provenance: Provenance,
        event: &NewAuditEvent,
    ) -> Result<Option<BlobInfo>> {
        let mut state = self.lock();
        let held = state
            .repos
            .get(from)
            .is_some_and(|r| r.links.contains_key(digest));
        let Some(info) = state.blob_info(digest).filter(|_| held) else {
            return Ok(None);
        };
        if provenance == Provenance::Pushed {
            state.charge(to, Content::Blob(digest, info.size))?;
        }
        state.repo_mut(to, at).link(digest, at, provenance);
        state.record(event);
        Ok(Some(info))
    }

    async fn blob_holders(&self, digest: &Digest, page: &Page) -> Result<Vec<RepoName>> {
        Ok(
            page_where(&self.lock().repos, page, |r| r.links.contains_key(digest))
                .map(|(name, _)| name.clone())
                .collect(),
        )
    }

    async fn unlink_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        event: &NewAuditEvent,
    ) -> Result<bool> {
        let mut state = self.lock();
        let unlinked = state
            .repos
            .get_mut(repo)
            .is_some_and(|r| r.links.remove(digest).is_some());
        if unlinked {
            state.record(event);
        }
        Ok(unlinked)
    }

    fn list_blobs(&self) -> ListStream<BlobInfo> {
        let state = self.lock();
        let rows: Vec<BlobInfo> = state
            .blobs
            .keys()
            .filter_map(|d| state.blob_info(d))
            .collect();
        stream::iter(rows.into_iter().map(Ok)).boxed()
    }
}

#[async_trait]
impl UploadSessionStore for FakeMetaStore {
    async fn create_upload(
        &self,
        session: &UploadSession,
        owner: &str,
        caps: &UploadCaps,
    ) -> Result<()> {
        let mut state = self.lock();
        if state.uploads.contains_key(&session.id) {
            return Err(Error::Conflict(format!(
                "upload {} already exists",
                session.id
            )));
        }
        let owned = state.upload_owners.values().filter(|o| *o == owner).count() as u64;
        let in_repo = state
            .uploads
            .values()
            .filter(|u| u.repository == session.repository)
            .count() as u64;
        if let Some(refused) = caps.refusal(owned, in_repo, owner, &session.repository) {
            return Err(refused);
        }
        state
            .upload_owners
            .insert(session.id.clone(), owner.to_string());
        state.repo_mut(&session.repository, session.active);
        state.uploads.insert(session.id.clone(), session.clone());
        Ok(())
    }

    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadSession>> {
        Ok(self.lock().uploads.get(id).cloned())
    }

    async fn save_upload_state(
        &self,
        id: &UploadId,
        from: u64,
        upload: &UploadState,
        at: Timestamp,
    ) -> Result<()> {
        let mut state = self.lock();
        let session = state
            .uploads
            .get_mut(id)
            .ok_or_else(|| Error::upload_unknown(id))?;
        if session.state.size != from {
            return Err(Error::Conflict(format!(
                "upload {id} holds {} bytes, not {from}: another writer got there first",
                session.state.size
            )));
        }
        session.state = upload.clone();
        session.active = at;
        Ok(())
    }

    async fn complete_upload(
        &self,
        id: &UploadId,
        blob: &BlobInfo,
        at: Timestamp,
        provenance: Provenance,
        event: &NewAuditEvent,
    ) -> Result<()> {
        let mut state = self.lock();
        let repo = state
            .uploads
            .get(id)
            .map(|s| s.repository.clone())
            .ok_or_else(|| Error::upload_unknown(id))?;
        if provenance == Provenance::Pushed {
            state.charge(&repo, Content::Blob(&blob.digest, blob.size))?;
        }
        let session = state
            .remove_upload(id)
            .ok_or_else(|| Error::upload_unknown(id))?;
        state
            .blobs
            .entry(blob.digest.clone())
            .or_insert((blob.size, at));
        state
            .repo_mut(&session.repository, at)
            .link(&blob.digest, at, provenance);
        state.record(event);
        Ok(())
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        Ok(self.lock().remove_upload(id).is_some())
    }

    fn uploads_idle_since(&self, before: Timestamp) -> ListStream<UploadSession> {
        let mut sessions: Vec<UploadSession> = self
            .lock()
            .uploads
            .values()
            .filter(|s| s.active < before)
            .cloned()
            .collect();
        sessions.sort_by(|a, b| a.active.cmp(&b.active).then_with(|| a.id.cmp(&b.id)));
        stream::iter(sessions.into_iter().map(Ok)).boxed()
    }
}

#[async_trait]
impl QuotaStore for FakeMetaStore {
    async fn set_quota(&self, scope: &QuotaScope, limit: QuotaLimit, max: u64) -> Result<Quota> {
        let mut state = self.lock();
        if let Some(q) = state.quotas.values_mut().find(|q| &q.scope == scope) {
            q.limit_bytes = limit;
            return Ok(q.clone());
        }
        if state.quotas.len() as u64 >= max {
            return Err(quota_cap_reached(max));
        }
        state.last_quota_id += 1;
        let quota = Quota {
            id: state.last_quota_id,
            scope: scope.clone(),
            limit_bytes: limit,
        };
        state.quotas.insert(quota.id, quota.clone());
        Ok(quota)
    }

    async fn delete_quota(&self, id: i64) -> Result<Option<Quota>> {
        Ok(self.lock().quotas.remove(&id))
    }

    async fn quotas(&self) -> Result<Vec<QuotaUsage>> {
        let state = self.lock();
        let mut all: Vec<QuotaUsage> = state
            .quotas
            .values()
            .map(|q| QuotaUsage {
                quota: q.clone(),
                used_bytes: state.usage(&q.scope),
            })
            .collect();
        all.sort_by_key(|a| a.quota.scope.to_string());
        Ok(all)
    }
}

#[async_trait]
impl PolicyRuleStore for FakeMetaStore {
    async fn list_rules(&self) -> Result<StoredRules> {
        let stored = {
            let state = self.lock();
            StoredRules {
                generation: state.rule_generation,
                rules: state.rules.values().cloned().collect(),
            }
        };
        self.rule_read_pause.pass().await;
        Ok(stored)
    }

    async fn rule_generation(&self) -> Result<u64> {
        Ok(self.lock().rule_generation)
    }

    async fn get_rule(&self, id: i64) -> Result<Option<Rule>> {
        let rule = self.lock().rules.get(&id).cloned();
        self.rule_read_pause.pass().await;
        Ok(rule)
    }

    async fn create_rule(&self, draft: &RuleDraft) -> Result<Rule> {
        let mut state = self.lock();
        state.last_rule_id += 1;
        let rule = draft.clone().into_rule(state.last_rule_id);
        state.rules.insert(rule.id, rule.clone());
        state.rule_generation += 1;
        Ok(rule)
    }

    async fn update_rule(&self, current: &Rule, updated: &Rule) -> Result<()> {
        let mut state = self.lock();
        match state.rules.get_mut(&current.id) {
            Some(stored) if stored == current => {
                *stored = updated.clone();
                state.rule_generation += 1;
                Ok(())
            }
            Some(_) => Err(Error::Conflict(format!(
                "policy rule {} changed since it was read; read it again",
                current.id
            ))),
            None => Err(Error::not_found("policy rule", current.id)),
        }
    }

    async fn delete_rule(&self, id: i64) -> Result<bool> {
        let mut state = self.lock();
        let deleted = state.rules.remove(&id).is_some();
        if deleted {
            state.rule_generation += 1;
        }
        Ok(deleted)
    }
}

#[async_trait]
impl RetentionStore for FakeMetaStore {
    async fn list_retention_policies(&self) -> Result<Vec<RetentionPolicy>> {
        Ok(self.lock().retention.values().cloned().collect())
    }

    async fn get_retention_policy(&self, id: i64) -> Result<Option<RetentionPolicy>> {
        Ok(self.lock().retention.get(&id).cloned())
    }

    async fn create_retention_policy(
        &self,
        spec: &RetentionSpec,
        now: Timestamp,
    ) -> Result<RetentionPolicy> {
        let mut state = self.lock();
        state.last_retention_id += 1;
        let policy = RetentionPolicy {
            id: state.last_retention_id,
            spec: spec.clone(),
            created: now,
            updated: now,
        };
        state.retention.insert(policy.id, policy.clone());
        Ok(policy)
    }

    async fn replace_retention_policy(
        &self,
        id: i64,
        spec: &RetentionSpec,
        now: Timestamp,
    ) -> Result<Option<RetentionPolicy>> {
        Ok(self.lock().retention.get_mut(&id).map(|p| {
            p.spec = spec.clone();
            p.updated = now;
            p.clone()
        }))
    }

    async fn delete_retention_policy(&self, id: i64) -> Result<bool> {
        Ok(self.lock().retention.remove(&id).is_some())
    }

    async fn manifest_graph(&self, repo: &RepoName) -> Result<ManifestGraph> {
        let state = self.lock();
        let Some(r) = state.repos.get(repo) else {
            return Ok(ManifestGraph::default());
        };
        Ok(ManifestGraph {
            manifests: r
                .manifests
                .values()
                .map(|m| GraphManifest {
                    digest: m.record.digest.clone(),
                    created: m.record.created,
                    subject: m.record.subject.clone(),
                    children: {
                        let mut children = m.children.clone();
                        children.sort();
                        children
                    },
                })
                .collect(),
            tags: r
                .tags
                .iter()
                .map(|(name, digest)| GraphTag {
                    name: name.clone(),
                    digest: digest.clone(),
                    updated: r.tag_times.get(name).copied().unwrap_or(r.created),
                })
                .collect(),
        })
    }
}

#[async_trait]
impl RevocationStore for FakeMetaStore {
    async fn revoke_token(&self, revocation: &Revocation, now: Timestamp) -> Result<()> {
        let mut state = self.lock();
        state.revocations.retain(|_, expires| *expires > now);
        state
            .revocations
            .entry(revocation.token_id.clone())
            .or_insert(revocation.expires);
        Ok(())
    }

    async fn live_revocations(&self, now: Timestamp) -> Result<Vec<Revocation>> {
        Ok(self
            .lock()
            .revocations
            .iter()
            .filter(|(_, expires)| **expires > now)
            .map(|(id, expires)| Revocation {
                token_id: id.clone(),
                expires: *expires,
            })
            .collect())
    }
}

#[async_trait]
impl AuditLog for FakeMetaStore {
    async fn record_audit(&self, event: &NewAuditEvent) -> Result<()> {
        self.lock().record(event);
        Ok(())
    }

    async fn record_audits(&self, events: &[NewAuditEvent]) -> Result<()> {
        let mut state = self.lock();
        events.iter().for_each(|e| state.record(e));
        Ok(())
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let state = self.lock();
        let mut events: Vec<&AuditEvent> = state
            .audit
            .iter()
            .filter(|e| query.matches(&e.event))
            .collect();
        // Newest first; events of the same millisecond, last recorded first.
        events.sort_by(|a, b| b.event.time.cmp(&a.event.time).then(b.id.cmp(&a.id)));
        Ok(events
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl GcStore for FakeMetaStore {
    async fn sweep_unreferenced_blobs(
        &self,
        cutoff: Timestamp,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<SweepStep> {
        let mut state = self.lock();
        let referenced: BTreeSet<&Digest> = state
            .repos
            .values()
            .flat_map(|r| r.manifests.values())
            .flat_map(|m| m.blobs.iter())
            .collect();
        let touched_since = |d: &Digest| {
            state
                .repos
                .values()
                .filter_map(|r| r.links.get(d))
                .any(|l| l.at >= cutoff)
        };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let window: Vec<(&Digest, &(u64, Timestamp))> = state
            .blobs
            .range((start, Bound::Unbounded))
            .take(limit)
            .collect();
        let next = if window.len() < limit {
            None
        } else {
            window.last().map(|(d, _)| (*d).clone())
        };
        let doomed: Vec<BlobInfo> = window
            .into_iter()
            .filter(|&(d, &(_, created))| {
                created < cutoff && !referenced.contains(d) && !touched_since(d)
            })
            .map(|(d, &(size, _))| BlobInfo {
                digest: d.clone(),
                size,
            })
            .collect();
        for blob in &doomed {
            state.blobs.remove(&blob.digest);
            for repo in state.repos.values_mut() {
                repo.links.remove(&blob.digest);
            }
        }
        Ok(SweepStep {
            swept: doomed,
            next,
        })
    }

    async fn blobs_with_rows(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let state = self.lock();
        Ok(digests
            .iter()
            .filter(|d| state.blobs.contains_key(*d))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl EventOutbox for FakeMetaStore {
    async fn outbox_after(&self, after: i64, limit: usize) -> Result<Vec<OutboxEvent>> {
        let state = self.lock();
        Ok(state
            .outbox
            .iter()
            .filter(|e| e.id > after)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn outbox_count_after(&self, after: i64) -> Result<u64> {
        Ok(self.lock().outbox.iter().filter(|e| e.id > after).count() as u64)
    }

    async fn last_outbox_id(&self) -> Result<i64> {
        Ok(self.lock().last_outbox_id)
    }

    async fn delivery_states(&self) -> Result<Vec<DeliveryState>> {
        Ok(self.lock().deliveries.values().cloned().collect())
    }

    async fn save_delivery_state(&self, state: &DeliveryState) -> Result<()> {
        self.lock()
            .deliveries
            .insert(state.webhook.clone(), state.clone());
        Ok(())
    }

    async fn forget_delivery_states(&self, keep: &[String]) -> Result<u64> {
        let mut state = self.lock();
        let before = state.deliveries.len();
        state.deliveries.retain(|k, _| keep.contains(k));
        Ok((before - state.deliveries.len()) as u64)
    }

    async fn prune_outbox(&self, through: i64, before: Timestamp) -> Result<u64> {
        let mut state = self.lock();
        let n = state.outbox.len();
        state
            .outbox
            .retain(|e| !(e.id <= through && e.time < before));
        Ok((n - state.outbox.len()) as u64)
    }
}

#[async_trait]
impl SnapshotStore for FakeMetaStore {
    async fn snapshot(&self, at: Timestamp) -> Result<String> {
        let location = format!("memory:snapshot-{}", at.as_millis());
        if !self.lock().snapshots.insert(at) {
            return Err(Error::Conflict(format!(
                "snapshot {location} already exists; refusing to overwrite it"
            )));
        }
        Ok(location)
    }
}

#[async_trait]
impl StoreStatus for FakeMetaStore {
    async fn totals(&self) -> Result<StoreTotals> {
        let state = self.lock();
        Ok(StoreTotals {
            blobs: state.blobs.len() as u64,
            blob_bytes: state.blobs.values().map(|(size, _)| size).sum(),
            upload_sessions: state.uploads.len() as u64,
        })
    }

    async fn probe(&self) -> Result<()> {
        match &self.lock().probe_failure {
            Some(reason) => Err(Error::storage("probing the fake store", reason.clone())),
            None => Ok(()),
        }
    }
}
