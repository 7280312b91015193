//! `EventOutbox` on SQLite: the outbox rows written beside the audit
//! record of each change (`audit::insert`), and the webhooks' delivery
//! states. SQLite has one writer at a time, so ids are handed out in
//! commit order: a reader past id `n` never sees an `n - 1` appear later.

use async_trait::async_trait;
use mcr_core::events::{DeliveryState, NewOutboxEvent, OutboxEvent};
use mcr_core::names::RepoName;
use mcr_core::ports::EventOutbox;
use mcr_core::time::Timestamp;
use mcr_core::Result;
use rusqlite::types::Type;
use rusqlite::{params, Row};

use super::rows::{all, change, limit_of, one, parsed, parsed_opt, u64_at};
use super::{sql, storage, SqliteMetaStore};

/// Appends `events` in the transaction `tx` belongs to.
pub(super) fn append(tx: &rusqlite::Connection, events: &[NewOutboxEvent]) -> Result<()> {
    for e in events {
        let data = serde_json::to_string(&e.data).map_err(|e| storage("encoding an event", e))?;
        change(
            tx,
            sql::INSERT_EVENT,
            params![
                e.event_id.to_string(),
                e.time.as_millis(),
                e.kind.as_str(),
                e.repository.as_ref().map(RepoName::as_str),
                data,
            ],
        )?;
    }
    Ok(())
}

fn outbox_event(row: &Row<'_>) -> rusqlite::Result<OutboxEvent> {
    let data: &str = row.get_ref(4)?.as_str()?;
    let data = serde_json::from_str(data)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, Type::Text, Box::new(e)))?;
    Ok(OutboxEvent {
        id: row.get(0)?,
        time: Timestamp::from_millis(row.get(1)?),
        kind: parsed(row, 2, str::parse)?,
        repository: parsed_opt(row, 3, RepoName::new)?,
        data,
        event_id: parsed(row, 5, str::parse)?,
    })
}

fn delivery_state(row: &Row<'_>) -> rusqlite::Result<DeliveryState> {
    let millis = |i| -> rusqlite::Result<Option<Timestamp>> {
        Ok(row.get::<_, Option<i64>>(i)?.map(Timestamp::from_millis))
    };
    Ok(DeliveryState {
        webhook: row.get(0)?,
        delivered: row.get(1)?,
        attempts: row.get(2)?,
        last_attempt: millis(3)?,
        last_error: row.get(4)?,
        next_attempt: millis(5)?,
    })
}

#[async_trait]
impl EventOutbox for SqliteMetaStore {
    async fn outbox_after(&self, after: i64, limit: usize) -> Result<Vec<OutboxEvent>> {
        let limit = limit_of(limit);
        self.run("reading the event outbox", move |c| {
            all(c, sql::EVENTS_AFTER, params![after, limit], outbox_event)
        })
        .await
    }

    async fn outbox_count_after(&self, after: i64) -> Result<u64> {
        self.run("counting outbox events", move |c| {
            Ok(one(c, sql::COUNT_EVENTS_AFTER, [after], |r| u64_at(r, 0))?.unwrap_or(0))
        })
        .await
    }

    async fn last_outbox_id(&self) -> Result<i64> {
        self.run("reading the last event id", |c| {
            Ok(one(c, sql::LAST_EVENT_ID, [], |r| r.get(0))?.unwrap_or(0))
        })
        .await
    }

    async fn delivery_states(&self) -> Result<Vec<DeliveryState>> {
        self.run("reading webhook delivery states", |c| {
            all(c, sql::DELIVERY_STATES, [], delivery_state)
        })
        .await
    }

    async fn save_delivery_state(&self, state: &DeliveryState) -> Result<()> {
        let s = state.clone();
        self.write("saving a webhook delivery state", move |tx| {
            change(
                tx,
                sql::SAVE_DELIVERY_STATE,
                params![
                    s.webhook,
                    s.delivered,
                    s.attempts,
                    s.last_attempt.map(Timestamp::as_millis),
                    s.last_error,
                    s.next_attempt.map(Timestamp::as_millis),
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn forget_delivery_states(&self, keep: &[String]) -> Result<u64> {
        let keep = keep.to_vec();
        self.write("dropping webhook delivery states", move |tx| {
            let states = all(tx, sql::DELIVERY_STATES, [], delivery_state)?;
            let mut dropped = 0;
            for s in states.iter().filter(|s| !keep.contains(&s.webhook)) {
                dropped += change(tx, sql::DELETE_DELIVERY_STATE, [&s.webhook])? as u64;
            }
            Ok(dropped)
        })
        .await
    }

    async fn prune_outbox(&self, through: i64, before: Timestamp) -> Result<u64> {
        self.write("pruning the event outbox", move |tx| {
            Ok(change(tx, sql::PRUNE_EVENTS, params![through, before.as_millis()])? as u64)
        })
        .await
    }
}
