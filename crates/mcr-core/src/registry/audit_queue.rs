//! Pull events, written in batches off the request's path.
//!
//! Every pull (a manifest, a blob, a tag list, the catalog, referrers) is
//! audited, and writing that row used to be part of answering it: one
//! database commit per pull, taken in turn with every other writer. While
//! a writer task runs ([`Registry::audit_writer`]), such events go into an
//! in-memory queue instead, and the task writes whatever has gathered in
//! one `AuditLog::record_audits` step as soon as the previous one is done
//! — a batch per commit, however many pulls arrived meanwhile. Events
//! that change or refuse something (pushes, deletes, denials, logins,
//! admin actions) are still written before their request is answered.
//!
//! What a crash can lose: the queued events not yet committed — at most
//! [`MAX_QUEUED`], in practice those of the last few milliseconds. A
//! clean shutdown stops the writer after the last request was answered,
//! and stopping writes the rest. Without a writer (tests, an embedder that
//! never starts one) every event is written at once, as before.
//!
//! The queue never grows without bound and never drops an event: a pull
//! that finds [`MAX_QUEUED`] events waiting writes them, and its own,
//! itself before it is answered. If a write fails, the queued events go
//! back to the front of the queue (the pull's own is not kept: the pull
//! fails instead), so a storage outage makes pulls fail (as a failed
//! audit write always did) rather than go unrecorded; the writer tries
//! again when the next event arrives (not in a loop while storage is
//! down).

use std::future::Future;
use std::mem;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use futures_util::future::{self, Either};
use futures_util::task::AtomicWaker;

use super::Registry;
use crate::audit::NewAuditEvent;
use crate::error::Result;

/// Most events waiting before a pull writes them itself.
pub const MAX_QUEUED: usize = 1024;

#[derive(Default)]
pub(super) struct AuditQueue {
    state: Mutex<Queued>,
    /// Wakes the writer when events arrive.
    wake: AtomicWaker,
}

#[derive(Default)]
struct Queued {
    events: Vec<NewAuditEvent>,
    /// Events ever queued: the writer retries a failed write only once
    /// this has moved.
    arrivals: u64,
    /// Whether a writer will take the events. Read and changed under the
    /// same lock as `events`, so an event is either queued while a writer
    /// will still take it, or written at once.
    writer: bool,
}

impl AuditQueue {
    fn lock(&self) -> MutexGuard<'_, Queued> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What became of an event handed to the queue.
enum Queueing {
    /// Queued; the writer will record it.
    Queued,
    /// The queue is full: write it, with this event, now.
    Full(NewAuditEvent),
    /// No writer runs: write the event at once.
    NoWriter(NewAuditEvent),
}

/// The handle of the task that writes the queued events; see
/// [`Registry::audit_writer`].
pub struct AuditWriter {
    registry: Arc<Registry>,
}

impl Registry {
    /// Records a pull's event: queued for the writer when one runs,
    /// written at once otherwise (or when the queue is full).
    pub(super) async fn record_read(&self, event: NewAuditEvent) -> Result<()> {
        let queueing = {
            let mut q = self.audit_queue.lock();
            if !q.writer {
                Queueing::NoWriter(event)
            } else if q.events.len() >= MAX_QUEUED {
                Queueing::Full(event)
            } else {
                q.events.push(event);
                q.arrivals += 1;
                Queueing::Queued
            }
        };
        match queueing {
            Queueing::Queued => {
                self.audit_queue.wake.wake();
                Ok(())
            }
            Queueing::Full(event) => self.write_queued(Some(event)).await,
            Queueing::NoWriter(event) => self.meta.record_audit(&event).await,
        }
    }

    /// Writes every queued event now, in one step. On failure the events
    /// stay queued (ahead of newer ones) and the error is returned.
    pub async fn flush_audit(&self) -> Result<()> {
        self.write_queued(None).await
    }

    /// Writes the queued events and then `own`, in one step. On failure
    /// the queued ones go back to the front of the queue; `own` is not
    /// kept (its request fails).
    async fn write_queued(&self, own: Option<NewAuditEvent>) -> Result<()> {
        let mut batch = mem::take(&mut self.audit_queue.lock().events);
        let queued = batch.len();
        batch.extend(own);
        if batch.is_empty() {
            return Ok(());
        }
        match self.meta.record_audits(&batch).await {
            Ok(()) => Ok(()),
            Err(e) => {
                batch.truncate(queued);
                let mut q = self.audit_queue.lock();
                let newer = mem::replace(&mut q.events, batch);
                q.events.extend(newer);
                Err(e)
            }
        }
    }

    /// From now on, pull events are queued for the returned writer, which
    /// the composition root must run ([`AuditWriter::run`]) until shutdown.
    pub fn audit_writer(self: &Arc<Self>) -> AuditWriter {
        self.audit_queue.lock().writer = true;
        AuditWriter {
            registry: Arc::clone(self),
        }
    }
}

impl AuditWriter {
    /// Writes queued events, a batch as soon as the last one is written,
    /// until `stop` resolves; then writes what is left and returns. Events
    /// of pulls answered after that are written at once. A failed batch
    /// is logged and retried with the next event that arrives; if the
    /// final write fails too, its error is returned.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<()> {
        let registry = &self.registry;
        let mut stop = pin!(stop);
        // After a failed write, the arrivals count it saw: the next try
        // waits for a newer event.
        let mut failed_at = None;
        loop {
            let waiting = future::poll_fn(|cx| {
                registry.audit_queue.wake.register(cx.waker());
                let q = registry.audit_queue.lock();
                if q.events.is_empty() || failed_at == Some(q.arrivals) {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            });
            match future::select(pin!(waiting), stop.as_mut()).await {
                Either::Left(((), _)) => {
                    let arrivals = registry.audit_queue.lock().arrivals;
                    failed_at = match registry.flush_audit().await {
                        Ok(()) => None,
                        Err(e) => {
                            tracing::warn!(error = %e, "writing audit events failed; kept to retry with the next one");
                            Some(arrivals)
                        }
                    };
                }
                Either::Right(((), _)) => break,
            }
        }
        registry.audit_queue.lock().writer = false;
        registry.flush_audit().await
    }
}

impl Drop for AuditWriter {
    /// A writer dropped without running to its end (its task cancelled)
    /// hands back to writing at once; what it left queued is written by
    /// the next [`Registry::flush_audit`] (every audit query begins with
    /// one).
    fn drop(&mut self) {
        self.registry.audit_queue.lock().writer = false;
    }
}
