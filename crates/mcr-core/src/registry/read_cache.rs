//! The manifest cache: (repository, reference) → the stored manifest, so a
//! pull of a manifest this process served before reads no database (issue
//! 17). Only the `MetaStore` read is cached: every pull is still
//! authorized and audited by the use case.
//!
//! # Why an entry is never older than a change that was answered
//!
//! One mutex holds the entries and a cache-wide epoch (a `u64`).
//!
//! - A **fill** ([`ManifestCache::fill`]) reads the epoch *before* its
//!   database read, and [`Fill::insert`] stores the record only if the
//!   epoch is still the same, under the lock.
//! - A **change** ([`ManifestCache::change`]) — every use case that
//!   writes a repository's manifests or tags — drops that repository's
//!   entries and advances the epoch, under the lock, *after* its write
//!   returned and *before* the use case answers its caller.
//!
//! Take a change C whose write committed at `c` and whose invalidation ran
//! at `i > c`, and an entry present after `i`. The entry was inserted
//! after `i` (C removed the repository's older ones), by a fill whose
//! epoch matched at insertion, so nothing advanced the epoch between that
//! fill's first look and its insertion; C advanced it at `i`, so the fill
//! looked after `i`, and read the database after that, after `c`. An
//! entry served once C answered therefore shows C (or something later);
//! a fill that read before `c` finds the epoch moved and inserts nothing.
//! This needs only that a read started after a commit sees it, which holds
//! for one process on one database; it does not hold for replicas sharing
//! PostgreSQL, whose changes this process never hears of — there the
//! cache is off ([`RegistryConfig::manifest_cache_entries`] = 0).
//!
//! A write whose future is dropped (the client went away) may still
//! commit afterwards — adapters run it on a thread of their own. The
//! change's guard then marks the repository *unsettled*: its entries go and
//! it is never cached again in this process, since no later point is known
//! at which the commit has surely landed. Past [`MAX_UNSETTLED`] such
//! repositories the whole cache turns itself off.
//!
//! Bounds: at most `entries` records and `bytes` of manifest bytes; an
//! insertion that would pass either empties the cache first (simple, and
//! a full cache of a registry's hot tags refills within one pull each).
//!
//! [`RegistryConfig::manifest_cache_entries`]: super::RegistryConfig::manifest_cache_entries

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::names::{Reference, RepoName};
use crate::ports::ManifestRecord;

/// Repositories a dropped change may leave unsettled before the cache
/// turns itself off for the life of the process.
const MAX_UNSETTLED: usize = 1024;

/// The cache; off (every call a no-op) when built with no entries.
#[derive(Debug)]
pub(super) struct ManifestCache {
    max_entries: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    epoch: u64,
    repos: HashMap<RepoName, HashMap<Reference, Arc<ManifestRecord>>>,
    entries: usize,
    bytes: usize,
    /// Repositories a dropped change may still be writing to.
    unsettled: HashSet<RepoName>,
    /// Set once `unsettled` would pass [`MAX_UNSETTLED`].
    off: bool,
}

impl State {
    fn invalidate(&mut self, repo: &RepoName) {
        if let Some(gone) = self.repos.remove(repo) {
            self.entries -= gone.len();
            self.bytes -= gone.values().map(|r| r.raw.len()).sum::<usize>();
        }
        self.epoch += 1;
    }
}

impl ManifestCache {
    /// A cache of at most `max_entries` records and `max_bytes` bytes of
    /// manifests; `max_entries == 0` is off.
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> ManifestCache {
        ManifestCache {
            max_entries,
            max_bytes,
            state: Mutex::default(),
        }
    }

    fn is_on(&self) -> bool {
        self.max_entries > 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under the lock can panic halfway through a change of
        // the counts, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached record of `reference` in `repo`, if any.
    pub(super) fn get(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Option<Arc<ManifestRecord>> {
        if !self.is_on() {
            return None;
        }
        self.lock().repos.get(repo)?.get(reference).cloned()
    }

    /// Starts a fill: call before the database read whose answer
    /// [`Fill::insert`] is given.
    pub(super) fn fill(&self) -> Fill<'_> {
        let epoch = if self.is_on() { self.lock().epoch } else { 0 };
        Fill { cache: self, epoch }
    }

    /// Starts a change of `repo`'s manifests or tags: call before the
    /// write, and [`Change::done`] once the write returned (committed or
    /// failed), before answering.
    pub(super) fn change<'a>(&'a self, repo: &'a RepoName) -> Change<'a> {
        Change {
            cache: self,
            repo,
            done: false,
        }
    }
}

/// A fill in progress: the epoch seen before its database read.
#[must_use = "a fill inserts nothing unless asked"]
pub(super) struct Fill<'a> {
    cache: &'a ManifestCache,
    epoch: u64,
}

impl Fill<'_> {
    /// Caches `record` as `reference` in `repo`, unless something changed
    /// since the fill began (see the module docs) or the record cannot fit.
    pub(super) fn insert(self, repo: &RepoName, reference: &Reference, record: ManifestRecord) {
        let cache = self.cache;
        if !cache.is_on() || record.raw.len() > cache.max_bytes {
            return;
        }
        let mut state = cache.lock();
        if state.epoch != self.epoch || state.off || state.unsettled.contains(repo) {
            return;
        }
        if state.entries >= cache.max_entries || state.bytes + record.raw.len() > cache.max_bytes {
            state.repos.clear();
            state.entries = 0;
            state.bytes = 0;
        }
        let size = record.raw.len();
        let previous = state
            .repos
            .entry(repo.clone())
            .or_default()
            .insert(reference.clone(), Arc::new(record));
        // Two fills of one key under one epoch read the same rows.
        match previous {
            Some(old) => state.bytes -= old.raw.len(),
            None => state.entries += 1,
        }
        state.bytes += size;
    }
}

/// A change of one repository's manifests or tags in progress.
#[must_use = "a change invalidates when it is done"]
pub(super) struct Change<'a> {
    cache: &'a ManifestCache,
    repo: &'a RepoName,
    done: bool,
}

impl Change<'_> {
    /// The write returned: drops the repository's entries and advances
    /// the epoch. Call whatever the write's outcome, since a write that
    /// failed may have committed all the same (a connection lost after
    /// the commit).
    pub(super) fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        if !self.cache.is_on() {
            return;
        }
        let mut state = self.cache.lock();
        state.invalidate(self.repo);
        if self.done || state.off {
            return;
        }
        // Dropped before the write returned: it may commit later.
        if state.unsettled.len() >= MAX_UNSETTLED {
            tracing::warn!("too many changes were dropped mid-write; the manifest cache is off");
            state.off = true;
            state.repos.clear();
            state.unsettled.clear();
            state.entries = 0;
            state.bytes = 0;
        } else {
            state.unsettled.insert(self.repo.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::media::MediaType;
    use crate::time::Timestamp;
    use bytes::Bytes;

    fn record(repo: &RepoName, raw: &'static [u8]) -> ManifestRecord {
        ManifestRecord {
            repository: repo.clone(),
            digest: Digest::sha256_of(raw),
            media_type: MediaType::new("application/vnd.oci.image.manifest.v1+json").unwrap(),
            raw: Bytes::from_static(raw),
            subject: None,
            artifact_type: None,
            created: Timestamp::from_millis(0),
        }
    }

    fn key(s: &str) -> (RepoName, Reference) {
        (
            RepoName::new(s).unwrap(),
            Reference::parse("latest").unwrap(),
        )
    }

    #[test]
    fn a_fill_that_began_before_a_change_inserts_nothing() {
        let cache = ManifestCache::new(8, 1 << 20);
        let (app, latest) = key("app");
        let fill = cache.fill();
        cache.change(&app).done();
        fill.insert(&app, &latest, record(&app, b"old"));
        assert!(cache.get(&app, &latest).is_none());
        // A change of another repository counts too: the epoch is the
        // cache's, not the repository's.
        let (other, _) = key("other");
        let fill = cache.fill();
        cache.change(&other).done();
        fill.insert(&app, &latest, record(&app, b"old"));
        assert!(cache.get(&app, &latest).is_none());
        let fill = cache.fill();
        fill.insert(&app, &latest, record(&app, b"new"));
        assert_eq!(cache.get(&app, &latest).unwrap().raw, &b"new"[..]);
        cache.change(&app).done();
        assert!(cache.get(&app, &latest).is_none());
    }

    #[test]
    fn a_change_dropped_mid_write_leaves_its_repository_uncached() {
        let cache = ManifestCache::new(8, 1 << 20);
        let (app, latest) = key("app");
        drop(cache.change(&app));
        cache.fill().insert(&app, &latest, record(&app, b"x"));
        assert!(cache.get(&app, &latest).is_none());
        let (other, _) = key("other");
        cache.fill().insert(&other, &latest, record(&other, b"x"));
        assert!(cache.get(&other, &latest).is_some());
    }

    #[test]
    fn bounds_hold_by_entries_and_by_bytes() {
        let cache = ManifestCache::new(2, 10);
        let names: Vec<_> = ["a", "b", "c"].map(key).into();
        for (repo, r) in &names {
            cache.fill().insert(repo, r, record(repo, b"1234"));
        }
        let state = cache.lock();
        assert!(state.entries <= 2 && state.bytes <= 10, "{state:?}");
        drop(state);
        // Too large for the cache at all.
        let (big, r) = key("big");
        cache.fill().insert(&big, &r, record(&big, b"12345678901"));
        assert!(cache.get(&big, &r).is_none());
        // Filling past the bytes empties first.
        let (d, r) = key("d");
        cache.fill().insert(&d, &r, record(&d, b"1234567890"));
        let state = cache.lock();
        assert_eq!((state.entries, state.bytes), (1, 10));
    }

    #[test]
    fn off_caches_nothing() {
        let cache = ManifestCache::new(0, 1 << 20);
        let (app, latest) = key("app");
        cache.fill().insert(&app, &latest, record(&app, b"x"));
        assert!(cache.get(&app, &latest).is_none());
    }
}
