//! The use cases: everything a transport or an embedding service asks of
//! the registry goes through [`Registry`].
//!
//! Each operation takes the [`Caller`], checks the policy, does its work
//! through the ports, and records an audit event. Transports only parse
//! requests and map results; no rule is written twice.

mod admin;
mod audit_queue;
mod browse;
mod cache;
mod delete;
mod events;
mod fill;
mod gc;
mod health;
mod identity;
mod logins;
mod proxy;
mod pull;
mod push;
mod quota;
mod rate;
mod read_cache;
mod retention;
mod snapshot;
mod tag_rules;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use admin::RepoPage;
pub use audit_queue::{AuditWriter, MAX_QUEUED as MAX_QUEUED_AUDIT_EVENTS};
pub use browse::{Dashboard, ManifestDetail, Push, RepoListing, MAX_CONFIG_SHOWN};
pub use cache::PROXY_SIZE_PAGE;
pub use events::{DeliveryPass, DEFAULT_EVENTS_LISTED, DELIVERED_EVENTS_KEPT, MAX_EVENTS_LISTED};
pub use gc::{
    GcReport, GcRun, GcStatus, ReconcileReport, GC_RUNS_DEFAULT, GC_SWEEP_WINDOW, SCHEDULE_SUBJECT,
};
pub use health::Readiness;
pub use logins::LoginLimit;
pub use pull::{Listing, ManifestContent};
pub use push::{MountOutcome, PushedManifest};
pub use rate::{RateLimit, RequestSlot};
pub use retention::{
    Outcome, RetentionItem, RetentionReport, RetentionRequest, RetentionStatus, RetentionSummary,
    RetentionTotals, MAX_LISTED as MAX_RETENTION_LISTED, RETENTION_SCHEDULE_SUBJECT,
};
pub use snapshot::Snapshot;

use crate::audit::{AuditQuery, EventType, NewAuditEvent};
use crate::coordination::LocalCoordination;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::MAX_MANIFEST_SIZE;
use crate::names::{Reference, RepoName};
use crate::policy::{PolicyEngine, PolicyInput};
use crate::ports::{
    BlobInfo, BlobStore, Coordination, LockGuard, LockKey, ManifestRecord, MetaStore, Page,
    SnapshotStore, Spawn, TokenValidator,
};
use crate::principal::{Action, Principal};
use crate::proxy::{Mirrors, ProxyConfig};
use crate::time::{Clock, SystemClock, Timestamp};

/// Who is calling, as the transport established it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The client's address, for the audit log.
    pub ip: Option<String>,
}

impl Caller {
    pub fn new(principal: Principal) -> Caller {
        Caller {
            principal,
            ip: None,
        }
    }

    pub fn with_ip(mut self, ip: impl Into<String>) -> Caller {
        self.ip = Some(ip.into());
        self
    }
}

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// How long an unreferenced blob is kept after its last upload or mount.
    pub gc_grace_period: Duration,
    /// Largest manifest a push may store.
    pub max_manifest_size: u64,
    /// Largest blob an upload may grow to, over all its chunks: a chunk
    /// that would pass it is refused whole (`Error::BlobTooLarge`).
    pub max_blob_size: u64,
    /// Upload sessions idle longer than this are purged.
    pub upload_max_age: Duration,
    /// Sessions that never received a byte are purged after this, much
    /// sooner than `upload_max_age`: they only hold a slot of the caps.
    pub unused_upload_max_age: Duration,
    /// Upload sessions one principal may hold open at once; one more is
    /// `Error::TooManyRequests` (issue 16, case 4).
    pub max_uploads_per_principal: u64,
    /// Upload sessions one repository may hold open at once, whoever
    /// opened them.
    pub max_uploads_per_repository: u64,
    /// Largest page a listing returns, whatever `n` asks for.
    pub max_page_size: usize,
    /// How often the daemon's schedule runs GC ([`Registry::next_scheduled_gc`]);
    /// `None`: only when an admin asks.
    pub gc_interval: Option<Duration>,
    /// How often the daemon's schedule runs retention
    /// ([`Registry::next_scheduled_retention`]); `None`: only when an
    /// admin asks.
    pub retention_interval: Option<Duration>,
    /// Blob rows GC phase one looks at per transaction (at least 1): the
    /// bound on how long a push waits behind a sweep step. Tests make it
    /// small so a few dozen blobs take many steps.
    pub gc_sweep_window: NonZeroUsize,
    /// Requests each principal may make; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Requests each principal may have in flight at once (while a
    /// [`RequestSlot`] from [`Registry::begin_request`] lives); one more
    /// is `Error::TooManyRequests`. `None`: no limit.
    pub max_requests_in_flight: Option<NonZeroUsize>,
    /// Failed logins allowed per username and per client address before
    /// the rest of a window is refused (`Error::TooManyRequests`, without
    /// checking the password); `None`: no limit.
    pub login_limit: Option<LoginLimit>,
    /// Manifests (by repository and tag or digest) kept in memory so a
    /// pull answers without reading the `MetaStore`; 0 turns the cache
    /// off. It must be 0 when other processes change the same metadata
    /// store (replicas sharing PostgreSQL): their pushes and deletes do
    /// not reach this process's cache, which only this process's own
    /// use cases keep true (`registry::read_cache` has the argument).
    /// Mirrored repositories are never cached (their tags are
    /// revalidated upstream).
    pub manifest_cache_entries: usize,
    /// The most manifest bytes the cache holds; a manifest larger than
    /// this is never cached.
    pub manifest_cache_bytes: usize,
    /// Blob links (repository, digest → size) kept in memory so a blob
    /// pull answers without asking the `MetaStore` whether the repository
    /// holds the blob; 0 turns the cache off. Like
    /// [`Self::manifest_cache_entries`], it must be 0 when other processes
    /// change the same metadata store: their deletes and GC sweeps do not
    /// reach this process's cache.
    pub blob_link_cache_entries: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            gc_grace_period: Duration::from_secs(3600),
            max_manifest_size: MAX_MANIFEST_SIZE,
            max_blob_size: 64 << 30,
            upload_max_age: Duration::from_secs(24 * 3600),
            unused_upload_max_age: Duration::from_secs(15 * 60),
            max_uploads_per_principal: 100,
            max_uploads_per_repository: 1000,
            max_page_size: 1000,
            gc_interval: None,
            retention_interval: None,
            gc_sweep_window: GC_SWEEP_WINDOW,
            rate_limit: None,
            max_requests_in_flight: None,
            login_limit: None,
            manifest_cache_entries: DEFAULT_MANIFEST_CACHE_ENTRIES,
            manifest_cache_bytes: DEFAULT_MANIFEST_CACHE_BYTES,
            blob_link_cache_entries: DEFAULT_BLOB_LINK_CACHE_ENTRIES,
        }
    }
}

/// [`RegistryConfig::manifest_cache_entries`] by default.
pub const DEFAULT_MANIFEST_CACHE_ENTRIES: usize = 4096;

/// [`RegistryConfig::blob_link_cache_entries`] by default: about 1 MiB of
/// links.
pub const DEFAULT_BLOB_LINK_CACHE_ENTRIES: usize = 4096;

/// [`RegistryConfig::manifest_cache_bytes`] by default: 64 MiB, sixteen
/// of the largest manifests a push may store.
pub const DEFAULT_MANIFEST_CACHE_BYTES: usize = 64 << 20;

/// How old the policy engine's rules may be when a request is authorized:
/// a rule change made through another replica (another process sharing
/// the metadata store) is enforced here at most this long after it was
/// acknowledged. Once this long has passed since the last look, the next
/// authorization reads the stored generation
/// ([`PolicyRuleStore::rule_generation`](crate::ports::PolicyRuleStore::rule_generation))
/// and reloads the rules if it is newer; a failed read fails the request
/// rather than decide on rules of unknown age.
pub const POLICY_MAX_STALENESS: Duration = Duration::from_secs(2);

/// The registry engine, wired to its ports.
pub struct Registry {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    /// Absent when the metadata store cannot copy itself.
    snapshots: Option<Arc<dyn SnapshotStore>>,
    identity: Arc<dyn TokenValidator>,
    policy: Arc<dyn PolicyEngine>,
    clock: Arc<dyn Clock>,
    config: RegistryConfig,
    coordination: Arc<dyn Coordination>,
    /// Pull events waiting for the audit writer.
    audit_queue: audit_queue::AuditQueue,
    /// When the GC schedule was first asked for its next run: a registry
    /// that never collected waits one interval from then.
    gc_schedule_since: OnceLock<Timestamp>,
    /// The same for the retention schedule.
    retention_schedule_since: OnceLock<Timestamp>,
    /// When the stored rules' generation was last compared with the
    /// engine's (`Timestamp` milliseconds; `i64::MIN`: never).
    policy_checked: AtomicI64,
    /// The pull-through cache's mirrors; none unless configured.
    mirrors: Mirrors,
    /// Built from `config.rate_limit` over `clock`.
    rate: Option<rate::RateLimiter>,
    /// Built from `config.max_requests_in_flight`.
    in_flight: Option<rate::InFlight>,
    /// Built from `config.login_limit` over `clock`.
    logins: Option<logins::FailedLogins>,
    /// Built from `config.manifest_cache_*`.
    manifests: read_cache::RepoCache<Reference, ManifestRecord>,
    /// Built from `config.blob_link_cache_entries`.
    blob_links: read_cache::RepoCache<Digest, BlobInfo>,
    /// Where the outbox's events go; none unless configured.
    webhooks: Option<events::Webhooks>,
    /// The pull-through fills running in this process.
    fills: Arc<fill::Fills>,
    /// Runs a fill apart from the pull that started it; none unless
    /// configured ([`Registry::with_spawner`]).
    spawner: Option<Arc<dyn Spawn>>,
}

/// The ports a task outliving a use case call needs (a blob fill driven
/// by the client's reads).
struct Parts {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    coordination: Arc<dyn Coordination>,
}

impl Registry {
    /// Wires the engine. The policy engine is loaded with the stored rules
    /// by [`Registry::reload_policy`], which the composition root calls once
    /// at start. Locks are in process memory ([`LocalCoordination`]) until
    /// [`Registry::with_coordination`] says otherwise.
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        identity: Arc<dyn TokenValidator>,
        policy: Arc<dyn PolicyEngine>,
    ) -> Registry {
        Registry {
            meta,
            blobs,
            snapshots: None,
            identity,
            policy,
            clock: Arc::new(SystemClock),
            config: RegistryConfig::default(),
            coordination: Arc::new(LocalCoordination::new()),
            audit_queue: audit_queue::AuditQueue::default(),
            gc_schedule_since: OnceLock::new(),
            retention_schedule_since: OnceLock::new(),
            policy_checked: AtomicI64::new(i64::MIN),
            mirrors: Mirrors::default(),
            rate: None,
            in_flight: None,
            logins: None,
            manifests: manifest_cache(&RegistryConfig::default()),
            blob_links: blob_link_cache(&RegistryConfig::default()),
            webhooks: None,
            fills: Arc::default(),
            spawner: None,
        }
    }

    /// Makes repositories under each proxy's prefix read-only mirrors of
    /// its upstream (spec § "Pull-through cache"). `Error::Invalid` if two
    /// prefixes overlap.
    pub fn with_proxies(mut self, proxies: Vec<ProxyConfig>) -> Result<Registry> {
        self.mirrors = Mirrors::new(proxies)?;
        Ok(self)
    }

    /// Runs each pull-through fill as a task of its own through `spawner`,
    /// so it goes on to its verified commit whether or not the pull that
    /// started it keeps reading, and pulls joining it never slow it down.
    /// Without a spawner the starting pull's stream drives the fill as it
    /// reads (others still join it), and dropping that stream abandons it:
    /// right for an embedder without a runtime, wrong for a server.
    pub fn with_spawner(mut self, spawner: Arc<dyn Spawn>) -> Registry {
        self.spawner = Some(spawner);
        self
    }

    fn parts(&self) -> Parts {
        Parts {
            meta: Arc::clone(&self.meta),
            blobs: Arc::clone(&self.blobs),
            clock: Arc::clone(&self.clock),
            coordination: Arc::clone(&self.coordination),
        }
    }

    /// Lets admins take snapshots of the metadata through `snapshots`
    /// (usually the metadata store itself); without it,
    /// [`Registry::snapshot`] answers `Error::Unsupported`.
    pub fn with_snapshots(mut self, snapshots: Arc<dyn SnapshotStore>) -> Registry {
        self.snapshots = Some(snapshots);
        self
    }

    /// Takes locks through `coordination`: what replicas sharing the stores
    /// must do (the default, [`LocalCoordination`], serves one process).
    /// Replicas must also turn the read caches off
    /// ([`RegistryConfig::manifest_cache_entries`] and
    /// [`RegistryConfig::blob_link_cache_entries`] = 0).
    pub fn with_coordination(mut self, coordination: Arc<dyn Coordination>) -> Registry {
        self.coordination = coordination;
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Registry {
        self.clock = clock;
        self.rate_limits_changed();
        self
    }

    pub fn with_config(mut self, config: RegistryConfig) -> Registry {
        self.config = config;
        self.rate_limits_changed();
        self.manifests = manifest_cache(&self.config);
        self.blob_links = blob_link_cache(&self.config);
        self
    }

    fn rate_limits_changed(&mut self) {
        self.rate = self
            .config
            .rate_limit
            .map(|limit| rate::RateLimiter::new(limit, Arc::clone(&self.clock)));
        self.in_flight = self.config.max_requests_in_flight.map(rate::InFlight::new);
        self.logins = self
            .config
            .login_limit
            .map(|limit| logins::FailedLogins::new(limit, Arc::clone(&self.clock)));
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The engine's clock, so edges stamp times the way the engine does.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The raw metadata store, around policy and audit: for tests only
    /// (feature `testing`), never a side door for an embedder.
    #[cfg(any(test, feature = "testing"))]
    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }

    /// The raw blob store, for tests only (feature `testing`).
    #[cfg(any(test, feature = "testing"))]
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Loads the stored policy rules into the engine. A load that lost a
    /// race to a later one (its listing is of an older generation) changes
    /// nothing, so a reload never undoes a rule change another one already
    /// installed.
    pub async fn reload_policy(&self) -> Result<()> {
        // Read before the listing: the rules are at least this fresh.
        let now = self.clock.now().as_millis();
        let stored = self.meta.list_rules().await?;
        self.policy_checked.store(now, Ordering::Release);
        if !self.policy.install_rules(stored.generation, stored.rules) {
            tracing::debug!(
                generation = stored.generation,
                "a later policy generation is already installed"
            );
        }
        Ok(())
    }

    /// Reloads the rules if another replica changed them and the engine's
    /// were last checked [`POLICY_MAX_STALENESS`] ago or more. Requests
    /// that find the check due at once each make it: a read of one row,
    /// rarer than the requests by far.
    async fn fresh_policy(&self) -> Result<()> {
        let now = self.clock.now().as_millis();
        let checked = self.policy_checked.load(Ordering::Acquire);
        let bound = i64::try_from(POLICY_MAX_STALENESS.as_millis()).unwrap_or(i64::MAX);
        // A clock set back counts as due too.
        let age = now.saturating_sub(checked);
        if (0..bound).contains(&age) {
            return Ok(());
        }
        if self.meta.rule_generation().await? > self.policy.generation() {
            return self.reload_policy().await;
        }
        self.policy_checked.store(now, Ordering::Release);
        Ok(())
    }

    /// Checks the policy (with rules at most [`POLICY_MAX_STALENESS`]
    /// old); a denial is audited and returned as `Error::Denied`.
    /// Checks the policy (see [`Registry::check_policy`]); pushes and
    /// deletes into a mirror are then refused (`Error::ReadOnlyMirror`)
    /// whatever the policy says.
    async fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        repository: Option<&RepoName>,
    ) -> Result<()> {
        self.check_policy(caller, action, repository).await?;
        let Some(repository) = repository else {
            return Ok(());
        };
        match (action, self.mirrors.owner(repository)) {
            (Action::Push | Action::Delete, Some(mirror)) => Err(Error::ReadOnlyMirror {
                repository: repository.clone(),
                upstream: mirror.location().to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Checks the policy alone (with rules at most
    /// [`POLICY_MAX_STALENESS`] old); a denial is audited and returned as
    /// `Error::Denied`.
    async fn check_policy(
        &self,
        caller: &Caller,
        action: Action,
        repository: Option<&RepoName>,
    ) -> Result<()> {
        self.fresh_policy().await?;
        let decision = self.policy.evaluate(&PolicyInput {
            principal: &caller.principal,
            action,
            repository,
            tag: None,
        });
        if decision.is_allowed() {
            return Ok(());
        }
        let mut details = BTreeMap::new();
        details.insert("action".to_string(), action.as_str().to_string());
        if let Some(id) = decision.rule_id {
            details.insert("rule_id".to_string(), id.to_string());
        }
        self.audit(caller, EventType::PolicyDeny, repository, None, details)
            .await?;
        Err(Error::Denied {
            subject: caller.principal.subject.clone(),
            action,
            repository: repository.cloned(),
        })
    }

    /// A silent policy check, for what is only left out rather than
    /// refused: a listing's entries the caller may not read, a mount
    /// source it may not pull from.
    fn may_pull(&self, caller: &Caller, repo: &RepoName) -> bool {
        self.policy
            .evaluate(&PolicyInput {
                principal: &caller.principal,
                action: Action::Pull,
                repository: Some(repo),
                tag: None,
            })
            .is_allowed()
    }

    /// A page of repositories from `fetch` holding only those the caller
    /// may pull (issue 16, case 1): `fetch` is asked for pages of the
    /// requested size until enough are kept or it runs out, and each
    /// next page resumes after the last entry seen, so filtered entries
    /// never shift the pagination. `name` says which repository an entry
    /// is, `key` its cursor in the listing's order (what `fetch` is handed
    /// back as `Page::last`).
    pub(super) async fn pullable_page<T, F, Fut>(
        &self,
        caller: &Caller,
        last: Option<String>,
        n: Option<usize>,
        name: impl Fn(&T) -> &RepoName,
        key: impl Fn(&T) -> String,
        fetch: F,
    ) -> Result<Listing<T>>
    where
        F: Fn(Page) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>>>,
    {
        let Page { mut last, limit } = self.page(last, n);
        let mut kept = Vec::new();
        loop {
            // One more than asked, to know whether a next page exists.
            let batch = fetch(Page {
                last: last.clone(),
                limit: limit + 1,
            })
            .await?;
            let exhausted = batch.len() <= limit;
            if let Some(end) = batch.last() {
                last = Some(key(end));
            }
            kept.extend(batch.into_iter().filter(|t| self.may_pull(caller, name(t))));
            if kept.len() > limit || exhausted {
                return Ok(Listing::from_overfetch(kept, limit, &key));
            }
        }
    }

    /// Admin-only operations need the admin role as well as the policy's
    /// `policy:manage`, so a stored rule cannot hand them to a non-admin.
    /// Either refusal is audited as a `policy_deny`. Every admin use case
    /// checks this itself; transports that guard a whole admin surface
    /// (the gRPC interceptor) call it too, so their refusals are audited
    /// alike.
    pub async fn authorize_admin(&self, caller: &Caller) -> Result<()> {
        self.check_policy(caller, Action::PolicyManage, None)
            .await?;
        if caller.principal.is_admin() {
            return Ok(());
        }
        self.audit(
            caller,
            EventType::PolicyDeny,
            None,
            None,
            details([
                ("action", Action::PolicyManage.as_str().to_string()),
                ("reason", "not an admin".to_string()),
            ]),
        )
        .await?;
        Err(Error::Denied {
            subject: caller.principal.subject.clone(),
            action: Action::PolicyManage,
            repository: None,
        })
    }

    /// Records an event before the request is answered.
    async fn audit(
        &self,
        caller: &Caller,
        event_type: EventType,
        repository: Option<&RepoName>,
        digest: Option<&Digest>,
        details: BTreeMap<String, String>,
    ) -> Result<()> {
        self.meta
            .record_audit(&self.event(caller, event_type, repository, digest, details))
            .await
    }

    /// Records a read's event: through the audit writer's queue when one
    /// runs (see `audit_queue`), else at once.
    async fn audit_read(
        &self,
        caller: &Caller,
        event_type: EventType,
        repository: Option<&RepoName>,
        digest: Option<&Digest>,
        details: BTreeMap<String, String>,
    ) -> Result<()> {
        self.record_read(self.event(caller, event_type, repository, digest, details))
            .await
    }

    fn event(
        &self,
        caller: &Caller,
        event_type: EventType,
        repository: Option<&RepoName>,
        digest: Option<&Digest>,
        details: BTreeMap<String, String>,
    ) -> NewAuditEvent {
        NewAuditEvent {
            time: self.clock.now(),
            event_type,
            actor_id: Some(caller.principal.subject.clone()),
            repository: repository.cloned(),
            digest: digest.cloned(),
            ip: caller.ip.clone(),
            details,
        }
    }

    /// The newest audit event of `event_type`, if any.
    async fn last_event(&self, event_type: EventType) -> Result<Option<NewAuditEvent>> {
        Ok(self
            .meta
            .query_audit(&AuditQuery {
                event_type: Some(event_type),
                limit: 1,
                ..AuditQuery::default()
            })
            .await?
            .into_iter()
            .next()
            .map(|e| e.event))
    }

    /// When a schedule of `interval` runs next: one interval after its
    /// last run started (the audit log's last `started` event, whoever
    /// started it and on whichever replica, so a restart keeps the
    /// rhythm), or after `since` was first set (the schedule's first
    /// question) if it never ran. `None` without an interval.
    async fn next_scheduled(
        &self,
        interval: Option<Duration>,
        since: &OnceLock<Timestamp>,
        started: EventType,
    ) -> Result<Option<Timestamp>> {
        let Some(interval) = interval else {
            return Ok(None);
        };
        let since = *since.get_or_init(|| self.clock.now());
        let last = self.last_event(started).await?.map(|e| e.time);
        Ok(Some(last.unwrap_or(since).saturating_add(interval)))
    }

    /// The lock between committing a blob's file and row and deleting
    /// them (see GC's safety argument in docs/ARCHITECTURE.md).
    async fn lock_blob(&self, digest: &Digest) -> Result<LockGuard> {
        self.coordination.lock(&LockKey::Blob(digest.clone())).await
    }

    fn page(&self, last: Option<String>, n: Option<usize>) -> Page {
        Page {
            last,
            limit: n
                .unwrap_or(self.config.max_page_size)
                .min(self.config.max_page_size),
        }
    }
}

fn manifest_cache(config: &RegistryConfig) -> read_cache::RepoCache<Reference, ManifestRecord> {
    read_cache::RepoCache::new(config.manifest_cache_entries, config.manifest_cache_bytes)
}

fn blob_link_cache(config: &RegistryConfig) -> read_cache::RepoCache<Digest, BlobInfo> {
    read_cache::RepoCache::new(config.blob_link_cache_entries, usize::MAX)
}

/// Builds a details map from pairs.
fn details<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
