//! The daemon's background work and its owner.
//!
//! Every task that outlives a request — a GC run started over REST or
//! gRPC, a pull-through cache's blob fill ([`Tracked`]), the GC and retention schedules, the purge of stale uploads, the metrics upkeep,
//! the audit writer, webhook delivery — runs on one [`TaskTracker`] that [`Background`]
//! owns, and stops on one [`CancellationToken`] (mini-redis's shutdown
//! pattern, with tokio-util's types). On shutdown the token is cancelled:
//! periodic tasks stop at their next wait, never in the middle of a call;
//! a GC run goes on to its end and records `gc_completed`; the audit
//! writer writes its last batch. [`Background::shutdown`]
//! then waits for all of them, up to the shutdown timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mcr_core::ports::{Spawn, Task};
use mcr_core::registry::{DeliveryPass, Registry};
use mcr_core::time::Timestamp;
use mcr_core::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long the schedule waits before asking again when it could not
/// read when GC is due (the database is down, say).
const SCHEDULE_RETRY: Duration = Duration::from_secs(60);
/// How long a webhook's delivery waits when the store failed it.
const DELIVERY_STORE_RETRY: Duration = Duration::from_secs(5);

/// The engine's [`Spawn`] port on the daemon's tracker: a task the engine
/// starts (a pull-through fill) is waited for at shutdown like the rest.
/// It is not stopped by the shutdown token: a fill reads until its
/// upstream body ends or fails (the upstream client's timeouts bound it).
pub struct Tracked(pub TaskTracker);

impl Spawn for Tracked {
    fn spawn(&self, task: Task) {
        self.0.spawn(task);
    }
}

/// The owner of the daemon's background tasks.
#[derive(Default)]
pub struct Background {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Background {
    pub fn new() -> Background {
        Background::default()
    }

    /// The tracker the transports spawn their background work on (a GC
    /// run an admin started).
    pub fn tracker(&self) -> TaskTracker {
        self.tracker.clone()
    }

    /// The token that stops everything: cancelled when shutdown begins.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs `work` now and then every `period` until shutdown. A call in
    /// progress when shutdown comes is finished, not dropped: the token is
    /// only looked at between calls.
    pub fn every<F, Fut>(&self, name: &'static str, period: Duration, mut work: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                work().await;
            }
            tracing::debug!(task = name, "background task stopped");
        });
    }

    /// Writes the pull events the engine queues ([`Registry::audit_writer`])
    /// a batch at a time until shutdown begins, then writes what is left.
    /// Pulls answered after that (while the listeners drain) are written
    /// as they are answered, so none is lost. Call before serving: from
    /// this call on, pulls queue their events.
    pub fn write_audit(&self, registry: &Arc<Registry>) {
        let writer = registry.audit_writer();
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            if let Err(e) = writer.run(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "writing the last audit events failed");
            }
            tracing::debug!(task = "audit writer", "background task stopped");
        });
    }

    /// Purges stale upload sessions every `period`.
    pub fn purge_uploads(&self, registry: Arc<Registry>, period: Duration) {
        self.every("upload purge", period, move || {
            let registry = Arc::clone(&registry);
            async move {
                match registry.purge_stale_uploads().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "purged stale upload sessions"),
                    Err(e) => tracing::warn!(error = %e, "purging stale uploads failed"),
                }
            }
        });
    }

    /// Delivers the outbox's events: one task per configured webhook,
    /// each running [`Registry::deliver_webhook`] passes in a loop —
    /// again at once after a full batch, after `poll` once caught up, at
    /// the retry time after a failure. Shutdown drops a pass in the
    /// middle (an event sent but not yet marked is sent again after the
    /// restart: delivery is at least once). Also prunes delivered events
    /// every `prune` ([`Registry::prune_events`]).
    pub fn deliver_events(&self, registry: Arc<Registry>, poll: Duration, prune: Duration) {
        for index in 0..registry.webhooks().len() {
            let (registry, stop) = (Arc::clone(&registry), self.stop.clone());
            self.tracker.spawn(async move {
                loop {
                    let pass = tokio::select! {
                        () = stop.cancelled() => break,
                        pass = registry.deliver_webhook(index) => pass,
                    };
                    let wait = match pass {
                        Ok(DeliveryPass::More) => continue,
                        Ok(DeliveryPass::CaughtUp) => poll,
                        Ok(DeliveryPass::RetryAt(at)) => {
                            let ahead = at.as_millis() - registry.clock().now().as_millis();
                            Duration::from_millis(u64::try_from(ahead).unwrap_or(0))
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, retry_in = ?DELIVERY_STORE_RETRY, "webhook delivery cannot read or save its state");
                            DELIVERY_STORE_RETRY
                        }
                    };
                    if !pause(&stop, wait).await {
                        break;
                    }
                }
                tracing::debug!(task = "webhook delivery", "background task stopped");
            });
        }
        self.every("event outbox prune", prune, move || {
            let registry = Arc::clone(&registry);
            async move {
                match registry.prune_events().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(pruned = n, "pruned delivered events"),
                    Err(e) => tracing::warn!(error = %e, "pruning the event outbox failed"),
                }
            }
        });
    }

    /// Runs GC when the registry's schedule says it is due
    /// ([`Registry::next_scheduled_gc`]), through the same use case as an
    /// admin's run, one at a time: a turn that finds a run under way is
    /// skipped and logged. The due time is read again after every wait, so
    /// an admin's run in between moves the next one. Does nothing without
    /// `gc_interval`.
    pub fn schedule_gc(&self, registry: Arc<Registry>) {
        if registry.config().gc_interval.is_none() {
            return;
        }
        self.on_schedule(
            "garbage collection",
            registry,
            |r| async move { r.next_scheduled_gc().await },
            |r| async move {
                match r.start_scheduled_gc().await {
                    // Run here, in this tracked task: shutdown waits for it.
                    Ok(run) => {
                        let _ = run.run().await;
                    }
                    Err(Error::Conflict(_)) => tracing::info!(
                        "scheduled garbage collection skipped: a run is already under way"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduled garbage collection did not start")
                    }
                }
            },
        );
    }

    /// Runs retention when the registry's schedule says it is due
    /// ([`Registry::next_scheduled_retention`]), as [`Background::schedule_gc`]
    /// runs GC: the same use case as an admin's run, one at a time, a turn
    /// that finds a run under way skipped. Does nothing without
    /// `retention_interval`.
    pub fn schedule_retention(&self, registry: Arc<Registry>) {
        if registry.config().retention_interval.is_none() {
            return;
        }
        self.on_schedule(
            "retention",
            registry,
            |r| async move { r.next_scheduled_retention().await },
            // The run logs its totals and audits every deletion.
            |r| async move {
                match r.run_scheduled_retention().await {
                    Ok(_) => {}
                    Err(Error::Conflict(_)) => {
                        tracing::info!("scheduled retention skipped: a run is already under way")
                    }
                    Err(e) => tracing::warn!(error = %e, "scheduled retention failed"),
                }
            },
        );
    }

    /// A task that waits until `next` says `what` is due, then awaits
    /// `run` (in this tracked task, so shutdown waits for a run under way),
    /// and again, until shutdown or until `next` says there is no schedule.
    fn on_schedule<N, NF, R, RF>(
        &self,
        what: &'static str,
        registry: Arc<Registry>,
        next: N,
        run: R,
    ) where
        N: Fn(Arc<Registry>) -> NF + Send + 'static,
        NF: Future<Output = mcr_core::Result<Option<Timestamp>>> + Send,
        R: Fn(Arc<Registry>) -> RF + Send + 'static,
        RF: Future<Output = ()> + Send,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            loop {
                let due = match next(Arc::clone(&registry)).await {
                    Ok(Some(due)) => due,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?SCHEDULE_RETRY, "cannot tell when {what} is due");
                        if pause(&stop, SCHEDULE_RETRY).await {
                            continue;
                        }
                        break;
                    }
                };
                let ahead = due.as_millis() - registry.clock().now().as_millis();
                if let Ok(ms @ 1..) = u64::try_from(ahead) {
                    tracing::info!(next_run = %due, "{what} scheduled");
                    if pause(&stop, Duration::from_millis(ms)).await {
                        continue;
                    }
                    break;
                }
                run(Arc::clone(&registry)).await;
            }
            tracing::debug!(task = what, "schedule stopped");
        });
    }

    /// Stops the periodic tasks at their next wait and waits up to
    /// `timeout` for every task (GC runs included) to finish. Returns
    /// whether they all did.
    pub async fn shutdown(self, timeout: Duration) -> bool {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
        {
            return true;
        }
        tracing::warn!(
            tasks = self.tracker.len(),
            "background tasks still running at the shutdown timeout (a GC run cut short \
             leaves files without rows: `mcrctl gc --reconcile` removes them; a pull-through \
             fill cut short stores nothing, its upload is purged and the next pull fetches again)"
        );
        false
    }
}

/// Waits `wait`, or until shutdown; whether the wait ran out (not stopped).
async fn pause(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}
