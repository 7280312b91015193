//! `EventOutbox` on PostgreSQL: the outbox rows written beside the audit
//! record of each change (`audit::insert`), and the webhooks' delivery
//! states.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use mcr_core::events::{DeliveryState, NewOutboxEvent, OutboxEvent};
use mcr_core::names::RepoName;
use mcr_core::ports::EventOutbox;
use mcr_core::time::Timestamp;
use mcr_core::{Error, Result};
use tokio_postgres::Row;

use super::rows::{all, change, limit_of, one, parsed, parsed_opt, time_at, u64_at};
use super::{sql, PostgresMetaStore, StepResult, TxError};

/// Appends `events` in the transaction `tx`, under the outbox's lock
/// (`sql::LOCK_OUTBOX`) so their ids follow commit order.
pub(super) async fn append(tx: &Transaction<'_>, events: &[NewOutboxEvent]) -> StepResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    change(tx, sql::LOCK_OUTBOX, &[]).await?;
    for e in events {
        let data = serde_json::to_string(&e.data)
            .map_err(|err| TxError::Engine(Error::storage("encoding an event", err)))?;
        change(
            tx,
            sql::INSERT_EVENT,
            &[
                &e.event_id.to_string(),
                &e.time.as_millis(),
                &e.kind.as_str(),
                &e.repository.as_ref().map(RepoName::as_str),
                &data,
            ],
        )
        .await?;
    }
    Ok(())
}

fn outbox_event(row: &Row) -> StepResult<OutboxEvent> {
    let data: &str = row.try_get(4)?;
    let data = serde_json::from_str(data).map_err(|e| {
        TxError::Engine(Error::storage(
            "reading an event",
            format!("the database holds invalid data: {e}"),
        ))
    })?;
    Ok(OutboxEvent {
        id: row.try_get(0)?,
        time: time_at(row, 1)?,
        kind: parsed(row, 2, str::parse)?,
        repository: parsed_opt(row, 3, RepoName::new)?,
        data,
        event_id: parsed(row, 5, str::parse)?,
    })
}

fn delivery_state(row: &Row) -> StepResult<DeliveryState> {
    let millis = |i| -> StepResult<Option<Timestamp>> {
        Ok(row
            .try_get::<_, Option<i64>>(i)?
            .map(Timestamp::from_millis))
    };
    let attempts: i32 = row.try_get(2)?;
    Ok(DeliveryState {
        webhook: row.try_get(0)?,
        delivered: row.try_get(1)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_attempt: millis(3)?,
        last_error: row.try_get(4)?,
        next_attempt: millis(5)?,
    })
}

#[async_trait]
impl EventOutbox for PostgresMetaStore {
    async fn outbox_after(&self, after: i64, limit: usize) -> Result<Vec<OutboxEvent>> {
        let data = (after, limit_of(limit));
        self.run("reading the event outbox", data, |c, (after, limit)| {
            Box::pin(async move { all(c, sql::EVENTS_AFTER, &[after, limit], outbox_event).await })
        })
        .await
    }

    async fn outbox_count_after(&self, after: i64) -> Result<u64> {
        self.run("counting outbox events", after, |c, after| {
            Box::pin(async move {
                Ok(one(c, sql::COUNT_EVENTS_AFTER, &[after], |r| u64_at(r, 0))
                    .await?
                    .unwrap_or(0))
            })
        })
        .await
    }

    async fn last_outbox_id(&self) -> Result<i64> {
        self.run("reading the last event id", (), |c, ()| {
            Box::pin(async move {
                Ok(one(c, sql::LAST_EVENT_ID, &[], |r| Ok(r.try_get(0)?))
                    .await?
                    .unwrap_or(0))
            })
        })
        .await
    }

    async fn delivery_states(&self) -> Result<Vec<DeliveryState>> {
        self.run("reading webhook delivery states", (), |c, ()| {
            Box::pin(async move { all(c, sql::DELIVERY_STATES, &[], delivery_state).await })
        })
        .await
    }

    async fn save_delivery_state(&self, state: &DeliveryState) -> Result<()> {
        let attempts = i32::try_from(state.attempts).unwrap_or(i32::MAX);
        let data = (state.clone(), attempts);
        self.write(
            "saving a webhook delivery state",
            data,
            |tx, (s, attempts)| {
                Box::pin(async move {
                    change(
                        tx,
                        sql::SAVE_DELIVERY_STATE,
                        &[
                            &s.webhook,
                            &s.delivered,
                            attempts,
                            &s.last_attempt.map(Timestamp::as_millis),
                            &s.last_error,
                            &s.next_attempt.map(Timestamp::as_millis),
                        ],
                    )
                    .await
                    .map(drop)
                })
            },
        )
        .await
    }

    async fn forget_delivery_states(&self, keep: &[String]) -> Result<u64> {
        self.write(
            "dropping webhook delivery states",
            keep.to_vec(),
            |tx, keep| {
                Box::pin(async move { change(tx, sql::FORGET_DELIVERY_STATES, &[keep]).await })
            },
        )
        .await
    }

    async fn prune_outbox(&self, through: i64, before: Timestamp) -> Result<u64> {
        let data = (through, before.as_millis());
        self.write("pruning the event outbox", data, |tx, (through, before)| {
            Box::pin(async move { change(tx, sql::PRUNE_EVENTS, &[through, before]).await })
        })
        .await
    }
}
