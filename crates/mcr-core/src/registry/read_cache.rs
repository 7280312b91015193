//! The read caches of one process (issue 17): a repository's stored
//! manifests by reference, so a pull of a manifest this process served
//! before reads no database, and its blob links by digest, so a blob GET
//! does not ask the database whether the repository holds the blob. Only
//! the `MetaStore` read is cached: every pull is still authorized and
//! audited by the use case.
//!
//! # Why an entry is never older than a change that was answered
//!
//! One mutex holds a cache's entries and its epoch (a `u64`).
//!
//! - A **fill** ([`RepoCache::fill`]) reads the epoch *before* its
//!   database read, and [`Fill::insert`] stores the record only if the
//!   epoch is still the same, under the lock.
//! - A **change** ([`RepoCache::change`]) — every use case that writes
//!   what the cache holds of a repository (its manifests or tags; for the
//!   links, every step that removes a link) — drops that repository's
//!   entries and advances the epoch, under the lock, *after* its write
//!   returned and *before* the use case answers its caller. A change of
//!   unknown repositories (GC's sweep, which removes the links of every
//!   blob it takes) is [`RepoCache::change_all`]: it drops every entry.
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
//! caches are off ([`RegistryConfig::manifest_cache_entries`] and
//! [`RegistryConfig::blob_link_cache_entries`] = 0).
//!
//! Links are only ever cached as present: a link made after a miss (an
//! upload, a mount) needs no invalidation, since nothing cached says it
//! is absent.
//!
//! A write whose future is dropped (the client went away) may still
//! commit afterwards — adapters run it on a thread of their own. The
//! change's guard then marks the repository *unsettled*: its entries go and
//! it is never cached again in this process, since no later point is known
//! at which the commit has surely landed. Past [`MAX_UNSETTLED`] such
//! repositories, or when a change of all repositories is dropped, the
//! whole cache turns itself off.
//!
//! Bounds: at most `entries` records and `bytes` of their [`Weighed`]
//! size; an insertion that would pass either empties the cache first
//! (simple, and a full cache of a registry's hot entries refills within
//! one read each).
//!
//! [`RegistryConfig::manifest_cache_entries`]: super::RegistryConfig::manifest_cache_entries
//! [`RegistryConfig::blob_link_cache_entries`]: super::RegistryConfig::blob_link_cache_entries

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::names::RepoName;
use crate::ports::{BlobInfo, ManifestRecord};

/// What an entry counts against a cache's byte bound.
pub(super) trait Weighed {
    /// Bytes the entry holds beyond its fixed size.
    fn weight(&self) -> usize;
}

impl Weighed for ManifestRecord {
    fn weight(&self) -> usize {
        self.raw.len()
    }
}

impl Weighed for BlobInfo {
    /// A link is small and fixed: the entry bound alone limits them.
    fn weight(&self) -> usize {
        0
    }
}

/// Repositories a dropped change may leave unsettled before the cache
/// turns itself off for the life of the process.
const MAX_UNSETTLED: usize = 1024;

/// A cache of `V`s by repository and key `K`; off (every call a no-op)
/// when built with no entries.
#[derive(Debug)]
pub(super) struct RepoCache<K, V> {
    max_entries: usize,
    max_bytes: usize,
    state: Mutex<State<K, V>>,
}

#[derive(Debug)]
struct State<K, V> {
    epoch: u64,
    repos: HashMap<RepoName, HashMap<K, Arc<V>>>,
    entries: usize,
    bytes: usize,
    /// Repositories a dropped change may still be writing to.
    unsettled: HashSet<RepoName>,
    /// Set once `unsettled` would pass [`MAX_UNSETTLED`].
    off: bool,
}

impl<K, V> Default for State<K, V> {
    fn default() -> Self {
        State {
            epoch: 0,
            repos: HashMap::new(),
            entries: 0,
            bytes: 0,
            unsettled: HashSet::new(),
            off: false,
        }
    }
}

impl<K, V: Weighed> State<K, V> {
    fn invalidate(&mut self, repo: &RepoName) {
        if let Some(gone) = self.repos.remove(repo) {
            self.entries -= gone.len();
            self.bytes -= gone.values().map(|v| v.weight()).sum::<usize>();
        }
        self.epoch += 1;
    }

    fn clear(&mut self) {
        self.repos.clear();
        self.entries = 0;
        self.bytes = 0;
    }
}

impl<K: Hash + Eq + Clone, V: Weighed> RepoCache<K, V> {
    /// A cache of at most `max_entries` records and `max_bytes` bytes of
    /// their weight; `max_entries == 0` is off.
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> RepoCache<K, V> {
        RepoCache {
            max_entries,
            max_bytes,
            state: Mutex::default(),
        }
    }

    fn is_on(&self) -> bool {
        self.max_entries > 0
    }

    fn lock(&self) -> MutexGuard<'_, State<K, V>> {
        // Nothing under the lock can panic halfway through a change of
        // the counts, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached record of `key` in `repo`, if any.
    pub(super) fn get(&self, repo: &RepoName, key: &K) -> Option<Arc<V>> {
        if !self.is_on() {
            return None;
        }
        self.lock().repos.get(repo)?.get(key).cloned()
    }

    /// Starts a fill: call before the database read whose answer
    /// [`Fill::insert`] is given.
    pub(super) fn fill(&self) -> Fill<'_, K, V> {
        let epoch = if self.is_on() { self.lock().epoch } else { 0 };
        Fill { cache: self, epoch }
    }

    /// Starts a change of what the cache holds of `repo`: call before the
    /// write, and [`Change::done`] once the write returned (committed or
    /// failed), before answering.
    pub(super) fn change<'a>(&'a self, repo: &'a RepoName) -> Change<'a, K, V> {
        Change {
            cache: self,
            repo: Some(repo),
            done: false,
        }
    }

    /// Starts a change of any number of repositories (GC's sweep), as
    /// [`Self::change`] does of one.
    pub(super) fn change_all(&self) -> Change<'_, K, V> {
        Change {
            cache: self,
            repo: None,
            done: false,
        }
    }
}

/// A fill in progress: the epoch seen before its database read.
#[must_use = "a fill inserts nothing unless asked"]
pub(super) struct Fill<'a, K, V> {
    cache: &'a RepoCache<K, V>,
    epoch: u64,
}

impl<K: Hash + Eq + Clone, V: Weighed> Fill<'_, K, V> {
    /// Caches `value` as `key` in `repo`, unless something changed since
    /// the fill began (see the module docs) or the value cannot fit.
    pub(super) fn insert(self, repo: &RepoName, key: &K, value: V) {
        let cache = self.cache;
        let size = value.weight();
        if !cache.is_on() || size > cache.max_bytes {
            return;
        }
        let mut state = cache.lock();
        if state.epoch != self.epoch || state.off || state.unsettled.contains(repo) {
            return;
        }
        if state.entries >= cache.max_entries || state.bytes + size > cache.max_bytes {
            state.clear();
        }
        let previous = state
            .repos
            .entry(repo.clone())
            .or_default()
            .insert(key.clone(), Arc::new(value));
        // Two fills of one key under one epoch read the same rows.
        match previous {
            Some(old) => state.bytes -= old.weight(),
            None => state.entries += 1,
        }
        state.bytes += size;
    }
}

/// A change of one repository, or of all (`repo: None`), in progress.
#[must_use = "a change invalidates when it is done"]
pub(super) struct Change<'a, K: Hash + Eq + Clone, V: Weighed> {
    cache: &'a RepoCache<K, V>,
    repo: Option<&'a RepoName>,
    done: bool,
}

impl<K: Hash + Eq + Clone, V: Weighed> Change<'_, K, V> {
    /// The write returned: drops the repository's entries and advances
    /// the epoch. Call whatever the write's outcome, since a write that
    /// failed may have committed all the same (a connection lost after
    /// the commit).
    pub(super) fn done(mut self) {
        self.done = true;
    }

    /// The write returned having changed nothing the cache holds (a GC
    /// step that swept no blob): nothing is dropped.
    pub(super) fn unchanged(self) {
        std::mem::forget(self);
    }
}

impl<K: Hash + Eq + Clone, V: Weighed> Drop for Change<'_, K, V> {
    fn drop(&mut self) {
        if !self.cache.is_on() {
            return;
        }
        let mut state = self.cache.lock();
        match self.repo {
            Some(repo) => state.invalidate(repo),
            None => {
                state.clear();
                state.epoch += 1;
            }
        }
        if self.done || state.off {
            return;
        }
        // Dropped before the write returned: it may commit later.
        match self.repo {
            Some(repo) if state.unsettled.len() < MAX_UNSETTLED => {
                state.unsettled.insert(repo.clone());
            }
            _ => {
                tracing::warn!("changes were dropped mid-write; a read cache is off");
                state.off = true;
                state.clear();
                state.unsettled.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::media::MediaType;
    use crate::names::Reference;
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

    type Manifests = RepoCache<Reference, ManifestRecord>;

    fn key(s: &str) -> (RepoName, Reference) {
        (
            RepoName::new(s).unwrap(),
            Reference::parse("latest").unwrap(),
        )
    }

    #[test]
    fn a_fill_that_began_before_a_change_inserts_nothing() {
        let cache = Manifests::new(8, 1 << 20);
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
        let cache = Manifests::new(8, 1 << 20);
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
        let cache = Manifests::new(2, 10);
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
    fn a_change_of_all_drops_every_entry_and_turns_fills_away() {
        let cache = Manifests::new(8, 1 << 20);
        let (app, latest) = key("app");
        cache.fill().insert(&app, &latest, record(&app, b"x"));
        let fill = cache.fill();
        cache.change_all().done();
        assert!(cache.get(&app, &latest).is_none());
        fill.insert(&app, &latest, record(&app, b"x"));
        assert!(cache.get(&app, &latest).is_none());
        // Dropped mid-write, it may commit later: the cache turns off.
        drop(cache.change_all());
        cache.fill().insert(&app, &latest, record(&app, b"x"));
        assert!(cache.get(&app, &latest).is_none());
    }

    #[test]
    fn off_caches_nothing() {
        let cache = Manifests::new(0, 1 << 20);
        let (app, latest) = key("app");
        cache.fill().insert(&app, &latest, record(&app, b"x"));
        assert!(cache.get(&app, &latest).is_none());
    }
}
