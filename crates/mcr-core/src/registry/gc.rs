//! Garbage collection, reconcile and the purge of stale uploads.
//!
//! GC runs online in two phases. Phase one is one `MetaStore` step: the
//! rows (and repository links) of every blob that no manifest references
//! and that no upload or mount touched within the grace period are
//! deleted, walking the blob rows in digest order a window of
//! [`GC_SWEEP_WINDOW`] rows per transaction, so no transaction (and no wait
//! of a push behind one) grows with the registry. Phase two deletes the
//! window's files before the next window, after its transaction committed
//! (no database transaction is open while files are unlinked), each
//! under its digest's lock (the `Coordination` port's
//! [`LockKey::Blob`]) and only if no row for it has reappeared — an upload of the same
//! content that finished in between re-creates the row under the same
//! lock, and then the file stays. A window's files are deleted under all
//! their locks at once, after one lookup of which rows reappeared. Pulls
//! are never blocked; an upload waits only if GC is deleting its very
//! digest, for the rest of that window's deletions.
//!
//! Runs are one at a time, whoever starts them: an admin (REST, gRPC) or
//! the daemon's schedule (`RegistryConfig::gc_interval`), which runs GC
//! one interval after the last run started.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::Arc;

use futures_core::Stream;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{details, Caller, Registry};
use crate::audit::{AuditQuery, EventType, NewAuditEvent};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::ports::{BlobInfo, LockGuard, LockKey};
use crate::principal::{AccountType, Principal, Role};
use crate::time::Timestamp;

/// The outcome of one GC run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub id: String,
    pub started_at: Timestamp,
    pub completed_at: Timestamp,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
}

/// Whether GC is running, how the last run went, and when the schedule
/// runs it next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcStatus {
    pub running: bool,
    pub last_run: Option<GcReport>,
    /// When the schedule starts the next run; `None` without a schedule.
    /// In the past when a run is due.
    #[serde(default)]
    pub next_run: Option<Timestamp>,
}

/// The subject the schedule's runs are audited under.
pub const SCHEDULE_SUBJECT: &str = "mcr:gc-schedule";

/// How many past runs `gc_runs` lists when a caller names no number.
pub const GC_RUNS_DEFAULT: usize = 10;

/// What reconcile found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Files that had no row, now deleted.
    pub files_removed: Vec<Digest>,
    /// Rows whose file is missing (reported; an operator must look).
    pub missing_files: Vec<Digest>,
}

/// A GC run that has claimed the right to run (the
/// [`LockKey::GarbageCollection`] lock, shared by every replica); dropping
/// it releases the claim. Transports start one (answering 409 if another
/// runs) and run it in the background.
pub struct GcRun {
    registry: Arc<Registry>,
    caller: Caller,
    id: String,
    started_at: Timestamp,
    _claim: LockGuard,
}

impl GcRun {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs GC to the end and logs how it went, so a run started in the
    /// background (whose result no one awaits) still leaves a trace; the
    /// outcome is recorded as metrics ([`record_metrics`]).
    pub async fn run(self) -> Result<GcReport> {
        let registry = Arc::clone(&self.registry);
        let outcome = registry.collect(&self).await;
        record_metrics(&outcome);
        match &outcome {
            Ok(report) => tracing::info!(
                id = %report.id,
                blobs_removed = report.blobs_removed,
                bytes_freed = report.bytes_freed,
                "garbage collection done"
            ),
            Err(e) => tracing::error!(id = %self.id, error = %e, "garbage collection failed"),
        }
        outcome
    }
}

/// GC's metrics, through the `metrics` facade (a no-op unless the
/// embedding program installs a recorder):
///
/// | name | type | labels |
/// |---|---|---|
/// | `mcr_gc_runs_total` | counter | `result`: `completed`, `failed` |
/// | `mcr_gc_blobs_removed_total` | counter | — |
/// | `mcr_gc_freed_bytes_total` | counter | — |
/// | `mcr_gc_last_run_duration_seconds` | gauge | — (the last completed run) |
/// | `mcr_gc_last_success_timestamp_seconds` | gauge | — (Unix time the last completed run ended) |
fn record_metrics(outcome: &Result<GcReport>) {
    describe_metrics();
    let Ok(report) = outcome else {
        metrics::counter!("mcr_gc_runs_total", "result" => "failed").increment(1);
        return;
    };
    metrics::counter!("mcr_gc_blobs_removed_total").increment(report.blobs_removed);
    metrics::counter!("mcr_gc_freed_bytes_total").increment(report.bytes_freed);
    set_last_run(report);
    // Last: a scrape that sees the run counted sees its figures too
    // (tests/metrics.rs in mcr-cli once read the count before the bytes).
    metrics::counter!("mcr_gc_runs_total", "result" => "completed").increment(1);
}

fn describe_metrics() {
    metrics::describe_counter!("mcr_gc_runs_total", "Garbage collection runs, by result");
    metrics::describe_counter!(
        "mcr_gc_blobs_removed_total",
        "Blobs garbage collection removed"
    );
    metrics::describe_counter!(
        "mcr_gc_freed_bytes_total",
        metrics::Unit::Bytes,
        "Bytes garbage collection freed"
    );
    metrics::describe_gauge!(
        "mcr_gc_last_run_duration_seconds",
        metrics::Unit::Seconds,
        "How long the last completed garbage collection took"
    );
    metrics::describe_gauge!(
        "mcr_gc_last_success_timestamp_seconds",
        metrics::Unit::Seconds,
        "Unix time the last completed garbage collection ended"
    );
}

/// The gauges of the last completed run.
fn set_last_run(report: &GcReport) {
    let took_ms = report
        .completed_at
        .as_millis()
        .saturating_sub(report.started_at.as_millis());
    metrics::gauge!("mcr_gc_last_run_duration_seconds").set(took_ms as f64 / 1000.0);
    metrics::gauge!("mcr_gc_last_success_timestamp_seconds")
        .set(report.completed_at.as_millis() as f64 / 1000.0);
}

impl Registry {
    /// Claims the single GC slot (admin only); `Error::Conflict` if a run
    /// is under way here or on another replica.
    pub async fn start_gc(self: &Arc<Self>, caller: &Caller) -> Result<GcRun> {
        self.authorize_admin(caller).await?;
        self.claim_gc(caller.clone()).await
    }

    /// Claims the GC slot for the daemon's schedule, which is audited as
    /// [`SCHEDULE_SUBJECT`]; `Error::Conflict` if a run is under way (the
    /// schedule skips its turn).
    pub async fn start_scheduled_gc(self: &Arc<Self>) -> Result<GcRun> {
        let scheduler = Principal::new(SCHEDULE_SUBJECT, AccountType::System, vec![Role::Admin]);
        self.claim_gc(Caller::new(scheduler)).await
    }

    /// When the schedule runs GC next: one `gc_interval` after the last
    /// run started (the audit log's last `gc_started`, whoever started it
    /// and on whichever replica, so a restart keeps the rhythm), or after
    /// the schedule was first asked if GC never ran. `None` without an
    /// interval. A time in the past means a run is due.
    pub async fn next_scheduled_gc(&self) -> Result<Option<Timestamp>> {
        self.next_scheduled(
            self.config.gc_interval,
            &self.gc_schedule_since,
            EventType::GcStarted,
        )
        .await
    }

    async fn claim_gc(self: &Arc<Self>, caller: Caller) -> Result<GcRun> {
        let claim = self
            .coordination
            .try_lock(&LockKey::GarbageCollection)
            .await?
            .ok_or_else(|| Error::Conflict("garbage collection is already running".into()))?;
        let started_at = self.clock.now();
        // Random, not a counter: replicas start runs too.
        let mut tag = [0u8; 4];
        getrandom::getrandom(&mut tag)
            .map_err(|e| Error::storage("drawing randomness for a GC run id", e.to_string()))?;
        Ok(GcRun {
            registry: Arc::clone(self),
            caller,
            id: format!("gc-{}-{}", started_at.as_millis(), hex::encode(tag)),
            started_at,
            _claim: claim,
        })
    }

    /// Starts and runs GC to the end.
    pub async fn collect_garbage(self: &Arc<Self>, caller: &Caller) -> Result<GcReport> {
        self.start_gc(caller).await?.run().await
    }

    async fn collect(&self, run: &GcRun) -> Result<GcReport> {
        self.audit(
            &run.caller,
            EventType::GcStarted,
            None,
            None,
            details([("id", run.id.clone())]),
        )
        .await?;
        // Mirrors over their max_size shed repositories first, so this
        // run's sweep frees their blobs.
        let evicted = self.evict(&run.caller, run.started_at).await?;
        let cutoff = run.started_at.saturating_sub(self.config.gc_grace_period);
        let (mut blobs_removed, mut bytes_freed) = (0, 0);
        let mut after = None;
        loop {
            // The sweep takes every link of the blobs it takes, in
            // repositories it does not name; a step that took none leaves
            // the cached links alone, so they outlive a long run.
            let links = self.blob_links.change_all();
            let step = self
                .meta
                .sweep_unreferenced_blobs(cutoff, after.as_ref(), self.config.gc_sweep_window.get())
                .await;
            match &step {
                Ok(step) if step.swept.is_empty() => links.unchanged(),
                _ => links.done(),
            }
            let step = step?;
            let (removed, freed) = self.delete_swept_files(&step.swept).await?;
            blobs_removed += removed;
            bytes_freed += freed;
            match step.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let report = GcReport {
            id: run.id.clone(),
            started_at: run.started_at,
            completed_at: self.clock.now(),
            blobs_removed,
            bytes_freed,
        };
        self.audit(
            &run.caller,
            EventType::GcCompleted,
            None,
            None,
            details([
                ("id", report.id.clone()),
                ("started_at", report.started_at.to_rfc3339()),
                ("blobs_removed", blobs_removed.to_string()),
                ("bytes_freed", bytes_freed.to_string()),
                ("repositories_evicted", evicted.to_string()),
            ]),
        )
        .await?;
        Ok(report)
    }

    /// GC phase two for one step's blobs: under their digests' locks,
    /// deletes the files of those whose row has not reappeared, and
    /// returns how many files and bytes went. One lookup for the step
    /// rather than one per blob. Every other holder of a blob lock holds
    /// one at a time and waits for no lock while holding it, so no one
    /// waits in a cycle with GC.
    async fn delete_swept_files(&self, swept: &[BlobInfo]) -> Result<(u64, u64)> {
        // Held until the files are gone.
        let mut guards = Vec::with_capacity(swept.len());
        for blob in swept {
            guards.push(self.lock_blob(&blob.digest).await?);
        }
        let digests: Vec<Digest> = swept.iter().map(|b| b.digest.clone()).collect();
        let back: HashSet<Digest> = self
            .meta
            .blobs_with_rows(&digests)
            .await?
            .into_iter()
            .collect();
        let (mut removed, mut freed) = (0, 0);
        for blob in swept.iter().filter(|b| !back.contains(&b.digest)) {
            if self.blobs.delete(&blob.digest).await? {
                removed += 1;
                freed += blob.size;
            }
        }
        Ok((removed, freed))
    }

    /// Deletes the file under the digest's lock unless a row exists.
    async fn delete_file_if_orphan(&self, digest: &Digest) -> Result<bool> {
        let _guard = self.lock_blob(digest).await?;
        if self.meta.blob_exists(digest).await? {
            return Ok(false);
        }
        self.blobs.delete(digest).await
    }

    /// Whether GC runs now (on any replica sharing the stores), the last
    /// run, from the audit log's `gc_completed`, so every replica sees it
    /// and it survives a restart, and the schedule's next run.
    pub async fn gc_status(&self, caller: &Caller) -> Result<GcStatus> {
        self.authorize_admin(caller).await?;
        self.gc_state().await
    }

    /// GC's state, for a caller already allowed to see it.
    pub(super) async fn gc_state(&self) -> Result<GcStatus> {
        let running = self
            .coordination
            .is_locked(&LockKey::GarbageCollection)
            .await?;
        let last_run = self.gc_runs_from_audit(1).await?.into_iter().next();
        Ok(GcStatus {
            running,
            last_run,
            next_run: self.next_scheduled_gc().await?,
        })
    }

    /// Publishes GC's metrics before any run of this process: the
    /// counters at 0 and the last-run gauges from the last run the audit
    /// log holds (any replica's, before a restart too). Without it they
    /// appear only after the first run here, so an alert on "no
    /// successful GC for days" or on the first failure after a restart
    /// could not fire. For the daemon to call once at start.
    pub async fn publish_gc_metrics(&self) -> Result<()> {
        describe_metrics();
        for result in ["completed", "failed"] {
            metrics::counter!("mcr_gc_runs_total", "result" => result).increment(0);
        }
        metrics::counter!("mcr_gc_blobs_removed_total").increment(0);
        metrics::counter!("mcr_gc_freed_bytes_total").increment(0);
        if let Some(report) = self.gc_runs_from_audit(1).await?.into_iter().next() {
            set_last_run(&report);
        }
        Ok(())
    }

    /// The last `n` completed GC runs, newest first, from the audit log
    /// (admin only); `n` is capped like any audit read.
    pub async fn gc_runs(&self, caller: &Caller, n: usize) -> Result<Vec<GcReport>> {
        self.authorize_admin(caller).await?;
        self.gc_runs_from_audit(n.clamp(1, AuditQuery::MAX_LIMIT))
            .await
    }

    async fn gc_runs_from_audit(&self, n: usize) -> Result<Vec<GcReport>> {
        let events = self
            .meta
            .query_audit(&AuditQuery {
                event_type: Some(EventType::GcCompleted),
                limit: n,
                ..AuditQuery::default()
            })
            .await?;
        Ok(events
            .iter()
            .filter_map(|e| report_from_event(&e.event))
            .collect())
    }

    /// Deletes blob files that have no row (left by a crash between a file
    /// and its row) and reports rows whose file is missing (admin only).
    ///
    /// Both listings stream in digest order and are merged as they come,
    /// so reconcile runs in constant memory however many blobs there are
    /// (beyond what it reports). Every difference is checked again under
    /// the digest's lock before anything is done or reported, so entries
    /// that changed while the listings ran are left alone.
    pub async fn reconcile(&self, caller: &Caller) -> Result<ReconcileReport> {
        self.authorize_admin(caller).await?;
        let mut rows = Ordered::new("blob rows", self.meta.list_blobs().map_ok(|b| b.digest));
        let mut files = Ordered::new("blob files", self.blobs.list());
        let (mut row, mut file) = (rows.next().await?, files.next().await?);
        let mut files_removed = Vec::new();
        let mut missing_files = Vec::new();
        loop {
            match (&row, &file) {
                (None, None) => break,
                (Some(r), Some(f)) if r == f => {
                    row = rows.next().await?;
                    file = files.next().await?;
                }
                (Some(r), f) if f.as_ref().is_none_or(|f| r < f) => {
                    // A row listed here may have been swept, and its file
                    // deleted, by a GC running meanwhile: only a row that
                    // still exists, without its file, under the digest's
                    // lock, is missing one.
                    let _guard = self.lock_blob(r).await?;
                    if self.meta.blob_exists(r).await? && self.blobs.stat(r).await?.is_none() {
                        missing_files.push(r.clone());
                    }
                    row = rows.next().await?;
                }
                (_, Some(f)) => {
                    if self.delete_file_if_orphan(f).await? {
                        files_removed.push(f.clone());
                    }
                    file = files.next().await?;
                }
                (Some(_), None) => unreachable!("matched by the arm before"),
            }
        }
        self.audit(
            caller,
            EventType::Reconciled,
            None,
            None,
            details([
                ("files_removed", files_removed.len().to_string()),
                ("missing_files", missing_files.len().to_string()),
            ]),
        )
        .await?;
        Ok(ReconcileReport {
            files_removed,
            missing_files,
        })
    }

    /// Discards upload sessions that received nothing for
    /// `upload_max_age`, those that never received a byte after the much
    /// shorter `unused_upload_max_age`, and upload data whose session row
    /// is gone. A maintenance task of the daemon, not a caller's request;
    /// returns how many were removed.
    pub async fn purge_stale_uploads(&self) -> Result<usize> {
        let now = self.clock.now();
        let cutoff = now.saturating_sub(self.config.upload_max_age);
        // Sessions that never received a byte go much sooner: all they
        // hold is a slot of the caps on open sessions.
        let unused_cutoff = now.saturating_sub(self.config.unused_upload_max_age);
        let mut purged = 0;
        let mut idle = self.meta.uploads_idle_since(cutoff.max(unused_cutoff));
        while let Some(session) = idle.try_next().await? {
            if session.active >= cutoff && session.state.size > 0 {
                continue;
            }
            self.meta.delete_upload(&session.id).await?;
            self.blobs.cancel_upload(&session.id).await?;
            purged += 1;
        }
        let mut stored = self.blobs.list_uploads();
        while let Some(id) = stored.try_next().await? {
            if self.meta.get_upload(&id).await?.is_none() {
                self.blobs.cancel_upload(&id).await?;
                purged += 1;
            }
        }
        if purged > 0 {
            self.meta
                .record_audit(&NewAuditEvent {
                    time: self.clock.now(),
                    event_type: EventType::UploadsPurged,
                    actor_id: None,
                    repository: None,
                    digest: None,
                    ip: None,
                    details: details([("count", purged.to_string())]),
                })
                .await?;
        }
        Ok(purged)
    }
}

/// Blob rows looked at per GC phase-one step unless configured otherwise
/// (`RegistryConfig::gc_sweep_window`): one transaction never holds more,
/// whatever share of them is garbage. 250 rows hold the writer about 6 ms
/// on a 100,000-blob SQLite database (1000 held it 23 ms).
pub const GC_SWEEP_WINDOW: NonZeroUsize = match NonZeroUsize::new(250) {
    Some(n) => n,
    None => unreachable!(),
};

/// A digest listing that must come in ascending order, which the merge in
/// `reconcile` relies on; an adapter that breaks the order fails reconcile
/// rather than have it report wrong differences.
struct Ordered<S> {
    what: &'static str,
    stream: S,
    last: Option<Digest>,
}

impl<S: Stream<Item = Result<Digest>> + Unpin> Ordered<S> {
    fn new(what: &'static str, stream: S) -> Self {
        Ordered {
            what,
            stream,
            last: None,
        }
    }

    async fn next(&mut self) -> Result<Option<Digest>> {
        let Some(next) = self.stream.try_next().await? else {
            return Ok(None);
        };
        if self.last.as_ref().is_some_and(|last| last >= &next) {
            return Err(Error::storage(
                format!("listing {}", self.what),
                format!(
                    "the store listed {next} after {}, out of order; reconcile needs \
                     ascending digests",
                    self.last.as_ref().map_or(String::new(), Digest::to_string)
                ),
            ));
        }
        self.last = Some(next.clone());
        Ok(Some(next))
    }
}

fn report_from_event(e: &NewAuditEvent) -> Option<GcReport> {
    let get = |k: &str| e.details.get(k);
    Some(GcReport {
        id: get("id")?.clone(),
        started_at: Timestamp::parse_rfc3339(get("started_at")?).ok()?,
        completed_at: e.time,
        blobs_removed: get("blobs_removed")?.parse().ok()?,
        bytes_freed: get("bytes_freed")?.parse().ok()?,
    })
}
