//! Webhook delivery: the worker's pass, the outbox's pruning, and the
//! admin views of both.
//!
//! Each configured [`Webhook`] has a delivery state in the store (keyed
//! by [`Webhook::key`], its URL with every secret part hidden): a cursor, the outbox id up to which
//! everything was delivered or filtered out. A pass
//! ([`Registry::deliver_webhook`]) reads the events after the cursor in
//! id order and sends each the webhook wants, one at a time; a failure
//! stops the pass, records the error and when to try again (exponential
//! backoff with jitter, [`Backoff`]), and the next pass starts with the
//! same event. So delivery is at least once (a crash between the send
//! and the cursor's save sends the event again) and in outbox order per
//! webhook, which is commit order, so per repository too.
//!
//! A webhook removed from the configuration has its state deleted at
//! start ([`Registry::prepare_webhooks`]); added again, it starts afresh
//! after the newest event, like any new webhook.

use std::time::Duration;

use bytes::Bytes;

use super::Registry;
use crate::error::{Error, Result};
use crate::events::{
    cloud_event, Backoff, DeliveryState, OutboxEvent, Webhook, WebhookStatus, DELIVERY_BATCH,
    MAX_DELIVERY_ERROR_LEN,
};
use crate::ports::EventSink;
use crate::time::Timestamp;

use super::Caller;

/// How long delivered events stay in the outbox (for `GET /v1/events`)
/// before [`Registry::prune_events`] deletes them.
pub const DELIVERED_EVENTS_KEPT: Duration = Duration::from_secs(24 * 3600);
/// Most events one `list_events` answers.
pub const MAX_EVENTS_LISTED: usize = 1000;
/// Events a listing answers when the caller does not say.
pub const DEFAULT_EVENTS_LISTED: usize = 100;

/// Counter of delivery attempts, labelled `outcome` = `delivered` or
/// `failed` (`mcr_webhook_deliveries_total`).
const DELIVERIES: &str = "mcr_webhook_deliveries_total";

/// The webhooks and how to reach them.
pub(super) struct Webhooks {
    hooks: Vec<Webhook>,
    sink: std::sync::Arc<dyn EventSink>,
    /// The CloudEvents `source` of every event.
    source: String,
    backoff: Backoff,
}

/// What a delivery pass left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryPass {
    /// Every event so far is delivered or filtered out: look again later.
    CaughtUp,
    /// A full batch went out: pass again now.
    More,
    /// A delivery failed: pass again at this time, not before.
    RetryAt(Timestamp),
}

impl Registry {
    /// Sends the outbox's events to `hooks` through `sink`, each event
    /// with `source` as its CloudEvents `source` (the registry's external
    /// URL), failures retried per `backoff`. Without this the outbox
    /// still fills, and is pruned, but nothing is sent.
    pub fn with_webhooks(
        mut self,
        hooks: Vec<Webhook>,
        sink: std::sync::Arc<dyn EventSink>,
        source: String,
        backoff: Backoff,
    ) -> Registry {
        self.webhooks = Some(Webhooks {
            hooks,
            sink,
            source,
            backoff,
        });
        self
    }

    /// The configured webhooks.
    pub fn webhooks(&self) -> &[Webhook] {
        self.webhooks.as_ref().map_or(&[], |w| &w.hooks)
    }

    /// At start: moves a state still stored under a webhook's earlier key
    /// ([`Webhook::earlier_key`]) to its key, so an upgrade delivers what
    /// was pending; deletes the delivery states of webhooks no longer
    /// configured; and gives each new one a state starting after the
    /// newest event (a webhook receives what happens from when it is
    /// added on).
    pub async fn prepare_webhooks(&self) -> Result<()> {
        let states = self.meta.delivery_states().await?;
        for hook in self.webhooks() {
            let key = hook.key();
            if states.iter().any(|s| s.webhook == key) {
                continue;
            }
            let Some(earlier) = hook
                .earlier_key()
                .and_then(|k| states.iter().find(|s| s.webhook == k))
            else {
                continue;
            };
            // The earlier key's last error may quote the URL's secrets.
            let moved = DeliveryState {
                webhook: key.clone(),
                last_error: None,
                ..earlier.clone()
            };
            self.meta.save_delivery_state(&moved).await?;
            tracing::info!(
                webhook = %key,
                delivered = moved.delivered,
                "kept the delivery state of a webhook stored under its earlier key"
            );
        }
        let keys: Vec<String> = self.webhooks().iter().map(Webhook::key).collect();
        let dropped = self.meta.forget_delivery_states(&keys).await?;
        if dropped > 0 {
            tracing::info!(
                webhooks = dropped,
                "dropped the delivery state of webhooks no longer configured"
            );
        }
        let states = self.meta.delivery_states().await?;
        let last = self.meta.last_outbox_id().await?;
        for key in keys {
            if !states.iter().any(|s| s.webhook == key) {
                self.meta
                    .save_delivery_state(&DeliveryState::new(key, last))
                    .await?;
            }
        }
        Ok(())
    }

    /// One delivery pass for the `index`-th webhook (see the module doc).
    /// `Err` only when the store fails; a failed send is recorded and
    /// answered as [`DeliveryPass::RetryAt`].
    pub async fn deliver_webhook(&self, index: usize) -> Result<DeliveryPass> {
        let webhooks = self
            .webhooks
            .as_ref()
            .ok_or_else(|| Error::Unsupported("no webhooks are configured".into()))?;
        let hook = webhooks.hooks.get(index).ok_or_else(|| Error::NotFound {
            kind: "webhook",
            id: index.to_string(),
        })?;
        let key = hook.key();
        let mut state = match self.delivery_state(&key).await? {
            Some(s) => s,
            None => {
                let s = DeliveryState::new(key, self.meta.last_outbox_id().await?);
                self.meta.save_delivery_state(&s).await?;
                s
            }
        };
        if let Some(next) = state.next_attempt.filter(|&t| t > self.clock.now()) {
            return Ok(DeliveryPass::RetryAt(next));
        }
        let batch = self
            .meta
            .outbox_after(state.delivered, DELIVERY_BATCH)
            .await?;
        let full = batch.len() == DELIVERY_BATCH;
        let start = state.delivered;
        for event in &batch {
            if !hook.wants(event) {
                state.delivered = event.id;
                continue;
            }
            let sent = webhooks
                .sink
                .send(hook, self.cloud_event_body(&webhooks.source, event)?)
                .await;
            let at = self.clock.now();
            state.last_attempt = Some(at);
            metrics::describe_counter!(
                DELIVERIES,
                "Webhook delivery attempts, by outcome (delivered: answered 2xx)"
            );
            match sent {
                Ok(()) => {
                    metrics::counter!(DELIVERIES, "outcome" => "delivered").increment(1);
                    state.delivered = event.id;
                    state.attempts = 0;
                    state.last_error = None;
                    state.next_attempt = None;
                    self.meta.save_delivery_state(&state).await?;
                }
                Err(e) => {
                    metrics::counter!(DELIVERIES, "outcome" => "failed").increment(1);
                    state.attempts = state.attempts.saturating_add(1);
                    let wait = webhooks.backoff.wait(state.attempts, unit_draw());
                    let next = at.saturating_add(wait);
                    tracing::warn!(
                        webhook = %state.webhook, event = event.id, attempts = state.attempts,
                        retry_in = ?wait, error = %e, "webhook delivery failed"
                    );
                    state.last_error = Some(delivery_error(&e));
                    state.next_attempt = Some(next);
                    self.meta.save_delivery_state(&state).await?;
                    return Ok(DeliveryPass::RetryAt(next));
                }
            }
        }
        if state.delivered != start {
            // Events filtered out after the last one sent.
            self.meta.save_delivery_state(&state).await?;
        }
        Ok(if full {
            DeliveryPass::More
        } else {
            DeliveryPass::CaughtUp
        })
    }

    /// Deletes events every configured webhook is past and recorded more
    /// than [`DELIVERED_EVENTS_KEPT`] ago; with no webhook, every event
    /// that old. An event a webhook still has to send stays, however old.
    pub async fn prune_events(&self) -> Result<u64> {
        let mut through = self.meta.last_outbox_id().await?;
        let states = self.meta.delivery_states().await?;
        for key in self.webhooks().iter().map(Webhook::key) {
            if let Some(s) = states.iter().find(|s| s.webhook == key) {
                through = through.min(s.delivered);
            }
        }
        let before = self.clock.now().saturating_sub(DELIVERED_EVENTS_KEPT);
        self.meta.prune_outbox(through, before).await
    }

    /// Each configured webhook and where its delivery stands (admin only).
    pub async fn webhook_status(&self, caller: &Caller) -> Result<Vec<WebhookStatus>> {
        self.authorize_admin(caller).await?;
        let states = self.meta.delivery_states().await?;
        let mut out = Vec::with_capacity(self.webhooks().len());
        for hook in self.webhooks() {
            let key = hook.key();
            let state = match states.iter().find(|s| s.webhook == key) {
                Some(s) => s.clone(),
                None => DeliveryState::new(key.clone(), self.meta.last_outbox_id().await?),
            };
            out.push(WebhookStatus {
                url: key,
                events: hook.events.clone(),
                repositories: hook
                    .repositories
                    .iter()
                    .map(|p| p.as_str().to_string())
                    .collect(),
                delivered: state.delivered,
                pending: self.meta.outbox_count_after(state.delivered).await?,
                attempts: state.attempts,
                last_attempt: state.last_attempt,
                last_error: state.last_error,
                next_attempt: state.next_attempt,
            });
        }
        Ok(out)
    }

    /// The outbox's events after id `after`, oldest first, at most `limit`
    /// (at most [`MAX_EVENTS_LISTED`]) (admin only).
    pub async fn list_events(
        &self,
        caller: &Caller,
        after: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>> {
        self.authorize_admin(caller).await?;
        self.meta
            .outbox_after(after, limit.min(MAX_EVENTS_LISTED))
            .await
    }

    async fn delivery_state(&self, key: &str) -> Result<Option<DeliveryState>> {
        Ok(self
            .meta
            .delivery_states()
            .await?
            .into_iter()
            .find(|s| s.webhook == key))
    }

    fn cloud_event_body(&self, source: &str, event: &OutboxEvent) -> Result<Bytes> {
        serde_json::to_vec(&cloud_event(source, event))
            .map(Bytes::from)
            .map_err(|e| Error::Storage(crate::StorageError::permanent("encoding an event", e)))
    }
}

/// The text kept as a webhook's `last_error`: the sink's message, cut to
/// [`MAX_DELIVERY_ERROR_LEN`] bytes.
fn delivery_error(e: &Error) -> String {
    let mut s = match e {
        Error::Unavailable(m) => m.clone(),
        other => other.to_string(),
    };
    if s.len() > MAX_DELIVERY_ERROR_LEN {
        let mut end = MAX_DELIVERY_ERROR_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A draw in `[0, 1)` for the backoff's jitter; 0.5 if the system's
/// randomness fails (the wait is then the middle of its range).
fn unit_draw() -> f64 {
    let mut b = [0u8; 8];
    match getrandom::getrandom(&mut b) {
        Ok(()) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}
