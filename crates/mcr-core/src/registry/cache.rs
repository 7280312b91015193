//! The pull-through cache's upkeep (spec § "Pull-through cache"): the
//! check at start that no prefix lies over pushed content, the admin
//! listing of the mirrors, dropping one repository's cache, and evicting
//! least-recently-pulled repositories of a mirror over its `max_size`,
//! which GC does before its sweep.
//!
//! **The unit is a repository**, not a manifest: a repository's cache is
//! what the admin drops, its size is what the listing already sums
//! (`RepoSummary::total_size`), and emptying it is one `MetaStore` step
//! ([`RepositoryStore::empty_repository`](crate::ports::RepositoryStore::empty_repository)).
//! Evicting single manifests would need to know which blob links only
//! that manifest uses, which the links (per repository) do not say.
//!
//! **Last pulled** is stamped in process memory when a pull of a mirrored
//! repository starts (`proxy::Mirror::pull_started`): a hit writes nothing
//! to the database. A repository with no stamp counts as last pulled when
//! it was first cached (its `created`). So a restart loses the order among
//! the repositories not pulled since: they are evicted oldest-cached
//! first, before any pulled since the restart. Replicas each stamp their
//! own pulls, and the replica running GC sees only its own: a repository
//! pulled only through another replica is ordered by when it was first
//! cached. Either way an eviction that guessed wrong costs one fetch from
//! the upstream at the next pull, never a failed pull.

use std::collections::BTreeMap;

use super::{details, Caller, Registry};
use crate::audit::EventType;
use crate::error::{Error, Result};
use crate::names::RepoName;
use crate::ports::{RepoCursor, RepoQuery, RepoSummary};
use crate::proxy::{self, Mirror, ProxyStatus};
use crate::time::Timestamp;

/// Repository summaries read per step when the listing or eviction walks
/// a mirror's cached repositories.
pub const PROXY_SIZE_PAGE: usize = 500;

/// Repositories with pushed content named when a prefix is refused at
/// start.
const PUSHED_NAMED: usize = 5;

/// Repositories named when eviction leaves a mirror over its `max_size`.
const KEPT_NAMED: usize = 10;

/// Why a repository's cache was dropped, in its `proxy_cache_dropped`
/// event.
#[derive(Debug, Clone, Copy)]
enum DropReason {
    /// An admin asked ([`Registry::drop_proxy_cache`]).
    Admin,
    /// GC evicted it: its mirror was over `max_size`.
    MaxSize,
}

impl DropReason {
    fn as_str(self) -> &'static str {
        match self {
            DropReason::Admin => "admin",
            DropReason::MaxSize => "max_size",
        }
    }
}

/// A repository eviction passed over because a pull of it started
/// within [`proxy::EVICTION_PULL_GUARD`]: its name, bytes, last pull
/// start, and whether it holds manifests (one holding blobs alone keeps
/// nothing from the sweep that follows).
struct Passed {
    name: RepoName,
    size: u64,
    last: Timestamp,
    has_manifests: bool,
}

/// Names the first [`KEPT_NAMED`] of `passed` with their bytes and last
/// pull start.
fn name_passed(passed: &[&Passed]) -> String {
    let mut named: Vec<String> = passed
        .iter()
        .take(KEPT_NAMED)
        .map(|p| {
            format!(
                "{} ({} bytes, last pull started {})",
                p.name,
                p.size,
                p.last.to_rfc3339()
            )
        })
        .collect();
    if passed.len() > KEPT_NAMED {
        named.push(format!("and {} more", passed.len() - KEPT_NAMED));
    }
    named.join(", ")
}

/// Logs why `mirror`'s cache is still at `total` bytes, over `max_size`,
/// after eviction passed over `passed`. Repositories holding manifests are
/// kept, and named as such with why and what the operator can do (a
/// warning). Those holding blobs alone are not: no manifest references
/// their blobs, so the sweep of the same GC run frees each one older than
/// the grace period that no other repository's manifest uses; they are
/// named apart, and if the cache is over only by them the note is not a
/// warning. Names the upstream by its location, which never holds
/// credentials (`Upstream::location`).
fn log_over(mirror: &Mirror, total: u64, max_size: u64, passed: &[Passed]) {
    let (kept, blobs_only): (Vec<&Passed>, Vec<&Passed>) =
        passed.iter().partition(|p| p.has_manifests);
    let blobs_only_size: u64 = blobs_only.iter().map(|p| p.size).sum();
    let blobs_note = if blobs_only.is_empty() {
        String::new()
    } else {
        format!(
            " Of cache_size, {blobs_only_size} bytes are in repositories holding blobs without \
             manifests ({}): they are not kept, this run's sweep frees each such blob older than \
             the grace period that no other repository's manifest uses.",
            name_passed(&blobs_only)
        )
    };
    if kept.is_empty() {
        tracing::info!(
            proxy = %mirror.config.prefix,
            upstream = %mirror.location(),
            cache_size = total,
            max_size,
            "the cache is over max_size only by blobs no manifest references, which eviction \
             leaves to the sweep.{blobs_note}"
        );
        return;
    }
    let guard_minutes = proxy::EVICTION_PULL_GUARD.as_secs() / 60;
    tracing::warn!(
        proxy = %mirror.config.prefix,
        upstream = %mirror.location(),
        cache_size = total,
        max_size,
        over_by = total - max_size,
        kept = %name_passed(&kept),
        "the cache stays over max_size: eviction never removes what a running pull may use, and \
         a pull of each repository kept started within the last {guard_minutes} minutes; the \
         next GC evicts them once that has passed, unless they are pulled again. To keep the \
         cache under max_size, raise max_size above cache_size (docs/RUNBOOK.md, \
         \"Pull-through cache\").{blobs_note}"
    );
}

impl Registry {
    /// Refuses a `[[proxy]]` prefix laid over repositories that hold
    /// pushed content, images or blobs alone (`Error::Invalid` naming the
    /// first few and what to do): a mirror treats everything under its
    /// prefix as its cache, so it would delete their tags when the
    /// upstream lacks them, drop or evict them, and serve pushed blobs as
    /// if they were the upstream's. Composition roots call it at start, after
    /// [`Registry::with_proxies`]; pushes under a prefix are refused from
    /// then on, so only a prefix added later can meet pushed content.
    pub async fn check_proxy_prefixes(&self) -> Result<()> {
        for mirror in self.mirrors.iter() {
            let prefix = &mirror.config.prefix;
            let pushed = self
                .meta
                .pushed_repositories(prefix, PUSHED_NAMED + 1)
                .await?;
            if pushed.is_empty() {
                continue;
            }
            let mut names: Vec<String> = pushed
                .iter()
                .take(PUSHED_NAMED)
                .map(ToString::to_string)
                .collect();
            if pushed.len() > PUSHED_NAMED {
                names.push("…".to_string());
            }
            return Err(Error::invalid(
                "proxy.prefix",
                format!(
                    "prefix {prefix} holds pushed images or blobs ({}); a mirror there would \
                     take them over as its cache (delete their tags when {} lacks them, evict them). \
                     Give the proxy a prefix of its own, or move these repositories out of \
                     {prefix}/ first (docs/RUNBOOK.md, \"Pull-through cache\")",
                    names.join(", "),
                    mirror.location(),
                ),
            ));
        }
        Ok(())
    }

    /// Each mirror with its hit and miss counts since start, and its
    /// cached repositories and bytes (admin only; spec § "Pull-through
    /// cache"). Reads the repository summaries under each prefix, a page
    /// of [`PROXY_SIZE_PAGE`] at a time.
    pub async fn proxies(&self, caller: &Caller) -> Result<Vec<ProxyStatus>> {
        self.authorize_admin(caller).await?;
        let mut statuses = self.mirrors.statuses();
        for status in &mut statuses {
            self.each_cached(&status.prefix, |s| {
                status.repositories += 1;
                status.cache_size = status.cache_size.saturating_add(s.total_size);
            })
            .await?;
        }
        Ok(statuses)
    }

    /// Drops the cache of one mirrored repository (admin only): its tags,
    /// manifests and blob links go, so the next GC frees the blobs no
    /// other repository uses and the next pull fetches from the upstream
    /// again. A fill in progress finishes (its upload session is kept).
    /// Audited as `proxy_cache_dropped`.
    ///
    /// `Error::NotFound` if `repo` is not under a `[[proxy]]` prefix
    /// ("mirrored repository") or nothing of it is cached ("cached
    /// repository").
    pub async fn drop_proxy_cache(&self, caller: &Caller, repo: &RepoName) -> Result<()> {
        self.authorize_admin(caller).await?;
        let at = self
            .mirrors
            .find(repo)
            .ok_or_else(|| Error::not_found("mirrored repository", repo))?;
        if !self
            .drop_cached(caller, at.mirror, repo, DropReason::Admin, BTreeMap::new())
            .await?
        {
            return Err(Error::not_found("cached repository", repo));
        }
        Ok(())
    }

    /// For each mirror over its `max_size` at `now`, drops the caches of
    /// its least-recently-pulled repositories until the rest fits, and
    /// returns how many it dropped. GC calls it before its sweep, which
    /// then frees the dropped repositories' blobs (those no other
    /// repository uses, and older than the grace period: a blob cached
    /// more recently is freed by a later run).
    ///
    /// What a running pull uses is never removed:
    /// - a repository whose last pull started within
    ///   [`proxy::EVICTION_PULL_GUARD`] of `now` is kept, however far over
    ///   its mirror is (checked again just before each drop, so a pull that
    ///   started while eviction ran counts);
    /// - a fill from the upstream holds an upload session in the
    ///   repository, which emptying it keeps: the fill still commits its
    ///   blob under the blob's lock (`LockKey::Blob`, GC's safety
    ///   argument), and a later concurrent pull of it joins the running
    ///   fill as before; the blob is newly linked, so the sweep leaves it.
    ///
    /// A mirror still over `max_size` after its run is logged as a
    /// warning naming what was kept, why, and what to do; repositories
    /// passed over that hold blobs alone are named apart as what the
    /// sweep frees, not as kept.
    pub(super) async fn evict(&self, caller: &Caller, now: Timestamp) -> Result<u64> {
        let mut evicted = 0;
        for mirror in self.mirrors.iter() {
            let Some(max_size) = mirror.config.max_size else {
                continue;
            };
            let mut total = 0u64;
            let mut cached = Vec::new();
            self.each_cached(&mirror.config.prefix, |s| {
                total = total.saturating_add(s.total_size);
                let last = mirror.last_pulled(&s.name).unwrap_or(s.created);
                cached.push((last, s.name, s.total_size, s.manifest_count > 0));
            })
            .await?;
            if total <= max_size {
                continue;
            }
            // Least recently pulled first; equal times by name.
            cached.sort();
            let guard = now.saturating_sub(proxy::EVICTION_PULL_GUARD);
            // Those passed over because a pull of them may be running.
            let mut passed = Vec::new();
            for (last, name, size, has_manifests) in cached {
                if total <= max_size {
                    break;
                }
                let last = mirror.last_pulled(&name).map_or(last, |l| l.max(last));
                if last > guard {
                    passed.push(Passed {
                        name,
                        size,
                        last,
                        has_manifests,
                    });
                    continue;
                }
                let reason = details([
                    ("size", size.to_string()),
                    ("last_pulled", last.to_rfc3339()),
                    ("max_size", max_size.to_string()),
                ]);
                if self
                    .drop_cached(caller, mirror, &name, DropReason::MaxSize, reason)
                    .await?
                {
                    evicted += 1;
                }
                // Emptied now, by this drop or by one that came first: its
                // bytes no longer count either way.
                total = total.saturating_sub(size);
            }
            if total > max_size {
                log_over(mirror, total, max_size, &passed);
            }
        }
        Ok(evicted)
    }

    /// Empties `repo` of `mirror` and forgets its stamps; audits
    /// `proxy_cache_dropped` with `reason` and `extra` if it held
    /// anything. Returns whether it did.
    async fn drop_cached(
        &self,
        caller: &Caller,
        mirror: &Mirror,
        repo: &RepoName,
        reason: DropReason,
        extra: BTreeMap<String, String>,
    ) -> Result<bool> {
        // Mirrors are never in the read caches, but every change of what
        // they hold goes through them (see `registry::read_cache`).
        let change = self.manifests.change(repo);
        let links = self.blob_links.change(repo);
        let emptied = self.meta.empty_repository(repo).await;
        change.done();
        links.done();
        let held = emptied?;
        mirror.dropped(repo);
        if !held {
            return Ok(false);
        }
        let mut details = details([
            ("upstream", mirror.location().to_string()),
            ("reason", reason.as_str().to_string()),
        ]);
        details.extend(extra);
        tracing::info!(repository = %repo, reason = reason.as_str(), "proxy cache dropped");
        self.audit(
            caller,
            EventType::ProxyCacheDropped,
            Some(repo),
            None,
            details,
        )
        .await?;
        Ok(true)
    }

    /// Calls `f` with the summary of every repository under `prefix`
    /// holding content, in name order, reading [`PROXY_SIZE_PAGE`] at a
    /// time.
    async fn each_cached(&self, prefix: &RepoName, mut f: impl FnMut(RepoSummary)) -> Result<()> {
        // Names under `prefix/` sort right after `prefix/` itself.
        let mut last = Some(format!("{prefix}/"));
        loop {
            let page = RepoQuery {
                after: last.take().map(|name| RepoCursor { key: None, name }),
                limit: PROXY_SIZE_PAGE,
                ..RepoQuery::default()
            };
            let summaries = self.meta.repository_summaries(&page).await?;
            let full = summaries.len() == PROXY_SIZE_PAGE;
            for s in summaries {
                if !proxy::within(&s.name, prefix) {
                    return Ok(());
                }
                last = Some(s.name.to_string());
                f(s);
            }
            if !full {
                return Ok(());
            }
        }
    }
}
