//! Pull-through cache configuration and its per-mirror state (spec §
//! "Pull-through cache"): which repositories mirror which upstream, how an
//! MCR name becomes the upstream's, how long a tag answer is trusted, and
//! the hit and miss counts.
//!
//! Each mirror also counts, through the `metrics` facade (labelled
//! `proxy` = the prefix; the handles are made once, when the mirrors are):
//!
//! | name | type | counts |
//! |---|---|---|
//! | `mcr_proxy_cache_hits_total` | counter | pulls answered from the cache (a tag revalidated by `HEAD` included) |
//! | `mcr_proxy_cache_misses_total` | counter | pulls that fetched a manifest or blob from the upstream |
//! | `mcr_proxy_upstream_errors_total` | counter | upstream requests that failed, and manifests or blobs it sent that were unusable |
//!
//! The use cases that consult it are in `registry::proxy` (pulls) and
//! `registry::cache` (the admin listing, dropping a repository's cache,
//! eviction past `max_size`).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::Counter;

use crate::error::{Error, Result};
use crate::names::{RepoName, Tag};
use crate::ports::Upstream;
use crate::time::Timestamp;

/// Pulls answered from a mirror's cache, by `proxy`.
pub const CACHE_HITS: &str = "mcr_proxy_cache_hits_total";
/// Pulls that fetched from a mirror's upstream, by `proxy`.
pub const CACHE_MISSES: &str = "mcr_proxy_cache_misses_total";
/// Failed or unusable upstream answers, by `proxy`.
pub const UPSTREAM_ERRORS: &str = "mcr_proxy_upstream_errors_total";

/// One mirrored upstream, as the composition root configures it (one
/// `[[proxy]]` table).
#[derive(Clone)]
pub struct ProxyConfig {
    /// Repositories under `<prefix>/` mirror the upstream: MCR's
    /// `hub/library/alpine` is the upstream's `library/alpine`.
    pub prefix: RepoName,
    pub upstream: Arc<dyn Upstream>,
    /// How long a tag's answer is trusted with no upstream request at all;
    /// after it, one `HEAD` revalidates it.
    pub tag_ttl: Duration,
    /// Whether cached answers are served when the upstream cannot be
    /// asked (the default); without it, such pulls fail.
    pub offline: bool,
    /// The upstream is Docker Hub, where a one-component name means
    /// `library/<name>` (`hub/alpine` is `library/alpine`), as Docker
    /// clients do.
    pub docker_hub: bool,
    /// The most bytes the mirror's cache may hold (the sum of its
    /// repositories' sizes, as [`ProxyStatus::cache_size`] counts them)
    /// after a GC run: each run first drops least-recently-pulled
    /// repositories until it is under. `None`: no limit.
    pub max_size: Option<u64>,
}

/// A mirrored repository pulled this recently is never evicted, however
/// far its mirror is over `max_size`: its pull may still be reading what
/// eviction would free (a blob streaming to the client, the blobs of a
/// manifest just served). A fill from the upstream needs no such guard
/// (see `registry::cache`).
pub const EVICTION_PULL_GUARD: Duration = Duration::from_secs(15 * 60);

/// How long a tag served offline (its revalidation failed and the mirror
/// is `offline`) is trusted before the upstream is asked again, unless
/// its `tag_ttl` is shorter. Without it every pull of the tag would wait
/// out a failing revalidation, which for an upstream that black-holes is
/// the whole `timeout`; with it a down upstream costs one failed `HEAD`
/// per tag per period, and an upstream that comes back is followed again
/// within the period.
pub const OFFLINE_RETRY: Duration = Duration::from_secs(30);

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("prefix", &self.prefix)
            .field("upstream", &self.upstream.location())
            .field("tag_ttl", &self.tag_ttl)
            .field("offline", &self.offline)
            .field("docker_hub", &self.docker_hub)
            .field("max_size", &self.max_size)
            .finish()
    }
}

/// A mirror's figures, for the admin listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProxyStatus {
    pub prefix: RepoName,
    /// The upstream's location (no credentials).
    pub upstream: String,
    /// Pulls answered from the cache (a tag revalidated by `HEAD` counts).
    pub hits: u64,
    /// Pulls that fetched from the upstream.
    pub misses: u64,
    /// Repositories of the mirror holding cached content.
    pub repositories: u64,
    /// Bytes cached: the sum of those repositories' sizes (manifests plus
    /// linked blobs; a blob in two of them counts twice).
    pub cache_size: u64,
}

/// A mirror at run time: its configuration, when each cached tag was last
/// confirmed, when each repository was last pulled, and its counts.
pub(crate) struct Mirror {
    pub(crate) config: ProxyConfig,
    /// (repository, tag) → until when the cached answer is trusted
    /// without asking the upstream: `tag_ttl` after the upstream confirmed
    /// it, [`OFFLINE_RETRY`] after it was served offline. In process
    /// memory: after a restart every tag is revalidated once, which costs
    /// one `HEAD` and loses nothing.
    confirmed: Mutex<HashMap<(RepoName, Tag), Timestamp>>,
    /// Repository → when a pull of it (manifest or blob, `HEAD` too) last
    /// started here, the order eviction goes by. In process memory, so a
    /// hit writes nothing to the database; `registry::cache` says what a
    /// restart loses.
    pulled: Mutex<HashMap<RepoName, Timestamp>>,
    hits: AtomicU64,
    misses: AtomicU64,
    metrics: MirrorMetrics,
}

/// A mirror's `mcr_proxy_*` handles, labelled with its prefix.
struct MirrorMetrics {
    hits: Counter,
    misses: Counter,
    upstream_errors: Counter,
}

impl MirrorMetrics {
    fn new(prefix: &RepoName) -> MirrorMetrics {
        let label = || prefix.as_str().to_string();
        MirrorMetrics {
            hits: metrics::counter!(CACHE_HITS, "proxy" => label()),
            misses: metrics::counter!(CACHE_MISSES, "proxy" => label()),
            upstream_errors: metrics::counter!(UPSTREAM_ERRORS, "proxy" => label()),
        }
    }
}

/// Describes the `mcr_proxy_*` metrics to the installed recorder (their
/// `# HELP`).
fn describe_metrics() {
    metrics::describe_counter!(
        CACHE_HITS,
        "Pulls a pull-through cache answered from what it holds, by proxy prefix"
    );
    metrics::describe_counter!(
        CACHE_MISSES,
        "Pulls a pull-through cache fetched from its upstream, by proxy prefix"
    );
    metrics::describe_counter!(
        UPSTREAM_ERRORS,
        "Upstream requests of a pull-through cache that failed or sent something unusable, by proxy prefix"
    );
}

impl Mirror {
    fn confirmed(&self) -> std::sync::MutexGuard<'_, HashMap<(RepoName, Tag), Timestamp>> {
        // Each change is one insert or remove: never left half-made.
        self.confirmed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the cached answer for the tag is trusted at `now`: within
    /// `tag_ttl` of its last confirmation, or within the offline retry
    /// period of being served offline.
    pub(crate) fn is_fresh(&self, repo: &RepoName, tag: &Tag, now: Timestamp) -> bool {
        self.confirmed()
            .get(&(repo.clone(), tag.clone()))
            .is_some_and(|until| now < *until)
    }

    /// The upstream confirmed the cached answer at `now`.
    pub(crate) fn confirm(&self, repo: &RepoName, tag: &Tag, now: Timestamp) {
        let until = now.saturating_add(self.config.tag_ttl);
        self.confirmed().insert((repo.clone(), tag.clone()), until);
    }

    /// The cached answer was served at `now` because the upstream could
    /// not be asked: trusted for [`OFFLINE_RETRY`] or `tag_ttl`, whichever
    /// is shorter.
    pub(crate) fn served_offline(&self, repo: &RepoName, tag: &Tag, now: Timestamp) {
        let until = now.saturating_add(self.config.tag_ttl.min(OFFLINE_RETRY));
        self.confirmed().insert((repo.clone(), tag.clone()), until);
    }

    pub(crate) fn forget(&self, repo: &RepoName, tag: &Tag) {
        self.confirmed().remove(&(repo.clone(), tag.clone()));
    }

    fn pulled(&self) -> std::sync::MutexGuard<'_, HashMap<RepoName, Timestamp>> {
        // Each change is one insert or remove: never left half-made.
        self.pulled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stamps the start of a pull of `repo` at `now`.
    pub(crate) fn pull_started(&self, repo: &RepoName, now: Timestamp) {
        self.pulled().insert(repo.clone(), now);
    }

    /// When a pull of `repo` last started in this process, if one did.
    pub(crate) fn last_pulled(&self, repo: &RepoName) -> Option<Timestamp> {
        self.pulled().get(repo).copied()
    }

    /// Forgets what is known of `repo`, whose cache was dropped: its pull
    /// stamp and its tags' confirmations.
    pub(crate) fn dropped(&self, repo: &RepoName) {
        self.pulled().remove(repo);
        self.confirmed().retain(|(r, _), _| r != repo);
    }

    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.metrics.hits.increment(1);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.metrics.misses.increment(1);
    }

    /// Counts an upstream answer that failed (`Err`), logs it (an
    /// operator asked why a pull failed greps for the upstream; clients
    /// such as skopeo do not print a 503's body) and passes it on.
    pub(crate) fn asked<T>(&self, answer: Result<T>) -> Result<T> {
        if let Err(e) = &answer {
            self.metrics.upstream_errors.increment(1);
            tracing::warn!(
                proxy = %self.config.prefix, upstream = self.location(), error = %e,
                "upstream request failed"
            );
        }
        answer
    }

    /// The upstream-error counter, for a fill that outlives the use case.
    pub(crate) fn upstream_errors(&self) -> Counter {
        self.metrics.upstream_errors.clone()
    }

    pub(crate) fn location(&self) -> &str {
        self.config.upstream.location()
    }

    fn status(&self) -> ProxyStatus {
        ProxyStatus {
            prefix: self.config.prefix.clone(),
            upstream: self.location().to_string(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            repositories: 0,
            cache_size: 0,
        }
    }
}

/// A repository inside a mirror, and its name upstream.
pub(crate) struct Mirrored<'a> {
    pub(crate) mirror: &'a Mirror,
    pub(crate) upstream_name: RepoName,
}

/// Every configured mirror.
#[derive(Default)]
pub(crate) struct Mirrors {
    mirrors: Vec<Mirror>,
}

impl Mirrors {
    /// Checks the configuration: prefixes must not nest (`hub` and
    /// `hub/library` would both claim `hub/library/x`).
    pub(crate) fn new(configs: Vec<ProxyConfig>) -> Result<Mirrors> {
        for (i, a) in configs.iter().enumerate() {
            for b in &configs[i + 1..] {
                if within(&a.prefix, &b.prefix) || within(&b.prefix, &a.prefix) {
                    return Err(Error::invalid(
                        "proxy.prefix",
                        format!(
                            "prefixes {} and {} overlap: give each upstream its own prefix",
                            a.prefix, b.prefix
                        ),
                    ));
                }
            }
        }
        if !configs.is_empty() {
            describe_metrics();
        }
        Ok(Mirrors {
            mirrors: configs
                .into_iter()
                .map(|config| Mirror {
                    metrics: MirrorMetrics::new(&config.prefix),
                    config,
                    confirmed: Mutex::default(),
                    pulled: Mutex::default(),
                    hits: AtomicU64::new(0),
                    misses: AtomicU64::new(0),
                })
                .collect(),
        })
    }

    /// The mirror `repo` belongs to, if any (the prefix itself included:
    /// nothing may be pushed there either).
    pub(crate) fn owner(&self, repo: &RepoName) -> Option<&Mirror> {
        self.mirrors.iter().find(|m| within(repo, &m.config.prefix))
    }

    /// The mirror `repo` is in and the name it has upstream; `None` for a
    /// repository outside every mirror, and for a prefix itself (which
    /// names nothing upstream).
    pub(crate) fn find(&self, repo: &RepoName) -> Option<Mirrored<'_>> {
        let mirror = self.owner(repo)?;
        let rest = repo
            .as_str()
            .strip_prefix(mirror.config.prefix.as_str())?
            .strip_prefix('/')?;
        let name = if mirror.config.docker_hub && !rest.contains('/') {
            format!("library/{rest}")
        } else {
            rest.to_string()
        };
        // The tail of a valid name, or `library/` and a valid component,
        // is itself a valid name.
        let upstream_name = RepoName::new(&name).ok()?;
        Some(Mirrored {
            mirror,
            upstream_name,
        })
    }

    pub(crate) fn statuses(&self) -> Vec<ProxyStatus> {
        self.mirrors.iter().map(Mirror::status).collect()
    }

    /// Every mirror, in configuration order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Mirror> {
        self.mirrors.iter()
    }
}

/// Whether `repo` is `prefix` or under it.
pub(crate) fn within(repo: &RepoName, prefix: &RepoName) -> bool {
    repo.as_str()
        .strip_prefix(prefix.as_str())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeUpstream;

    fn config(prefix: &str, docker_hub: bool) -> ProxyConfig {
        ProxyConfig {
            prefix: RepoName::new(prefix).unwrap(),
            upstream: Arc::new(FakeUpstream::new("https://upstream.example")),
            tag_ttl: Duration::from_secs(300),
            offline: true,
            docker_hub,
            max_size: None,
        }
    }

    fn name(s: &str) -> RepoName {
        RepoName::new(s).unwrap()
    }

    #[test]
    fn names_map_under_their_prefix_only() {
        let m = Mirrors::new(vec![config("hub", true), config("quay", false)]).unwrap();
        let up = |s: &str| m.find(&name(s)).map(|f| f.upstream_name.to_string());
        assert_eq!(up("hub/library/alpine").as_deref(), Some("library/alpine"));
        assert_eq!(up("hub/alpine").as_deref(), Some("library/alpine"));
        assert_eq!(up("quay/alpine").as_deref(), Some("alpine"));
        assert_eq!(up("quay/org/app").as_deref(), Some("org/app"));
        assert_eq!(up("hubble/alpine"), None);
        assert_eq!(up("hub"), None);
        assert!(
            m.owner(&name("hub")).is_some(),
            "the prefix is the mirror's"
        );
        assert!(m.owner(&name("local/app")).is_none());
    }

    #[test]
    fn nested_prefixes_are_refused() {
        let e = Mirrors::new(vec![config("hub", true), config("hub/library", false)])
            .err()
            .expect("nested prefixes are refused")
            .to_string();
        assert!(e.contains("overlap"), "{e}");
        assert!(Mirrors::new(vec![config("hub", true), config("hubble", false)]).is_ok());
    }

    #[test]
    fn a_tag_is_fresh_for_its_ttl() {
        let m = Mirrors::new(vec![config("hub", true)]).unwrap();
        let mirror = m.owner(&name("hub")).unwrap();
        let (r, t) = (name("hub/alpine"), Tag::new("3").unwrap());
        let at = Timestamp::from_millis(1_000_000);
        assert!(!mirror.is_fresh(&r, &t, at));
        mirror.confirm(&r, &t, at);
        assert!(mirror.is_fresh(&r, &t, at.saturating_add(Duration::from_secs(299))));
        assert!(!mirror.is_fresh(&r, &t, at.saturating_add(Duration::from_secs(300))));
        mirror.forget(&r, &t);
        assert!(!mirror.is_fresh(&r, &t, at));
    }
}
