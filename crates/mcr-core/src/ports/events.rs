//! The `EventOutbox` port (events waiting for webhooks, and each
//! webhook's delivery state) and the `EventSink` port (sending one).
//!
//! The outbox has no append method: a store appends events inside the
//! step that makes the change they report, from its audit record
//! ([`crate::events::outbox_events`]), so an event exists exactly when
//! its change committed.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::events::{DeliveryState, OutboxEvent, Webhook};
use crate::time::Timestamp;

/// The outbox and the delivery states, one per webhook.
#[async_trait]
pub trait EventOutbox: Send + Sync + 'static {
    /// Events with an id after `after`, by id, at most `limit`.
    async fn outbox_after(&self, after: i64, limit: usize) -> Result<Vec<OutboxEvent>>;
    /// How many events have an id after `after`.
    async fn outbox_count_after(&self, after: i64) -> Result<u64>;
    /// The newest event's id; 0 if the outbox is empty and never held
    /// one (ids are never reused, so a pruned outbox still answers its
    /// last id).
    async fn last_outbox_id(&self) -> Result<i64>;
    /// Every stored delivery state, by webhook key.
    async fn delivery_states(&self) -> Result<Vec<DeliveryState>>;
    /// Creates or replaces the state of `state.webhook`.
    async fn save_delivery_state(&self, state: &DeliveryState) -> Result<()>;
    /// Deletes the states of webhooks not in `keep`; returns how many.
    async fn forget_delivery_states(&self, keep: &[String]) -> Result<u64>;
    /// Deletes events with an id at most `through` recorded before
    /// `before`; returns how many.
    async fn prune_outbox(&self, through: i64, before: Timestamp) -> Result<u64>;
}

/// Sends an event to a webhook.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Posts `body` (a CloudEvent's JSON) to `hook.url`, signed with
    /// `hook.secret`, within `hook.timeout`. `Ok` only if the receiver
    /// answered 2xx; any other answer, or none, is an error whose text
    /// says what happened (`Error::Unavailable`), kept as the webhook's
    /// `last_error`.
    async fn send(&self, hook: &Webhook, body: Bytes) -> Result<()>;
}
