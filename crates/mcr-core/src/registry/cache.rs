//! The pull-through cache's upkeep (spec § "Pull-through cache"): the
//! admin listing of the mirrors and dropping one repository's cache.

use std::collections::BTreeMap;

use super::{details, Caller, Registry};
use crate::audit::EventType;
use crate::error::{Error, Result};
use crate::names::RepoName;
use crate::ports::{Page, RepoSummary};
use crate::proxy::{self, Mirror, ProxyStatus};

/// Repository summaries read per step when the listing walks a mirror's
/// cached repositories.
pub const PROXY_SIZE_PAGE: usize = 500;

/// Why a repository's cache was dropped, in its `proxy_cache_dropped`
/// event.
#[derive(Debug, Clone, Copy)]
enum DropReason {
    /// An admin asked ([`Registry::drop_proxy_cache`]).
    Admin,
}

impl DropReason {
    fn as_str(self) -> &'static str {
        match self {
            DropReason::Admin => "admin",
        }
    }
}

impl Registry {
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

    /// Empties `repo` of `mirror` and forgets its tags' confirmations; audits
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
        // Mirrors are never in the manifest cache, but every change of
        // manifests goes through it (see `registry::manifest_cache`).
        let change = self.manifests.change(repo);
        let emptied = self.meta.empty_repository(repo).await;
        change.done();
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
            let page = Page {
                last: last.take(),
                limit: PROXY_SIZE_PAGE,
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
