//! `AuditLog` on PostgreSQL.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use mcr_core::audit::{AuditEvent, AuditQuery, NewAuditEvent};
use mcr_core::digest::Digest;
use mcr_core::events::{outbox_events, StoreFacts};
use mcr_core::names::RepoName;
use mcr_core::ports::AuditLog;
use mcr_core::{Error, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::rows::{change, limit_of, parsed, parsed_opt, time_at};
use super::{events, sql, PostgresMetaStore, StepResult, TxError};

/// Inserts one event in the transaction `tx`: also the changes that are
/// recorded with their event in one step. The webhook events reporting
/// it go into the outbox in the same transaction.
pub(super) async fn insert(tx: &Transaction<'_>, e: &NewAuditEvent) -> StepResult<()> {
    insert_with(tx, e, None).await
}

/// [`insert`], with what the store step adds to its webhook events.
pub(super) async fn insert_with(
    tx: &Transaction<'_>,
    e: &NewAuditEvent,
    facts: Option<StoreFacts<'_>>,
) -> StepResult<()> {
    events::append(tx, &outbox_events(e, facts)).await?;
    let details = serde_json::to_string(&e.details)
        .map_err(|err| TxError::Engine(Error::storage("encoding audit details", err)))?;
    change(
        tx,
        sql::INSERT_AUDIT,
        &[
            &e.time.as_millis(),
            &e.event_type.as_str(),
            &e.actor_id,
            &e.repository.as_ref().map(RepoName::as_str),
            &e.digest.as_ref().map(Digest::to_string),
            &e.ip,
            &details,
        ],
    )
    .await
    .map(drop)
}

fn audit_event(row: &Row) -> StepResult<AuditEvent> {
    let details: &str = row.try_get(7)?;
    let details: BTreeMap<String, String> = serde_json::from_str(details).map_err(|e| {
        TxError::Engine(Error::storage(
            "reading an audit event",
            format!("the database holds invalid details: {e}"),
        ))
    })?;
    Ok(AuditEvent {
        id: row.try_get(0)?,
        event: NewAuditEvent {
            time: time_at(row, 1)?,
            event_type: parsed(row, 2, str::parse)?,
            actor_id: row.try_get(3)?,
            repository: parsed_opt(row, 4, RepoName::new)?,
            digest: parsed_opt(row, 5, Digest::parse)?,
            ip: row.try_get(6)?,
            details,
        },
    })
}

/// A value bound to the audit query.
type Arg = Box<dyn ToSql + Send + Sync>;

/// The audit query for `q`: only the filters it sets, so each query can
/// use the index of its most selective filter (a generic `($1 IS NULL OR
/// col = $1)` form would defeat them all). Newest first, with the id as
/// tie-break: events of one millisecond come last-recorded first.
pub(super) fn audit_sql(q: &AuditQuery) -> (String, Vec<Arg>) {
    let mut sql = String::from(
        "SELECT id, time, event_type, actor_id, repository, digest, ip, details::text \
         FROM audit_log",
    );
    let mut args: Vec<Arg> = Vec::with_capacity(7);
    let mut filter = |clause: &str, v: Arg| {
        sql.push_str(if args.is_empty() { " WHERE " } else { " AND " });
        args.push(v);
        sql.push_str(clause);
        sql.push_str(&args.len().to_string());
    };
    if let Some(t) = q.event_type {
        filter("event_type = $", Box::new(t.as_str()));
    }
    if let Some(a) = &q.actor_id {
        filter("actor_id = $", Box::new(a.clone()));
    }
    if let Some(r) = &q.repository {
        filter("repository = $", Box::new(r.as_str().to_string()));
    }
    if let Some(s) = q.since {
        filter("time >= $", Box::new(s.as_millis()));
    }
    if let Some(u) = q.until {
        filter("time <= $", Box::new(u.as_millis()));
    }
    args.push(Box::new(limit_of(q.limit)));
    args.push(Box::new(limit_of(q.offset)));
    let n = args.len();
    sql.push_str(&format!(
        " ORDER BY time DESC, id DESC LIMIT ${} OFFSET ${n}",
        n - 1
    ));
    (sql, args)
}

#[async_trait]
impl AuditLog for PostgresMetaStore {
    async fn record_audit(&self, event: &NewAuditEvent) -> Result<()> {
        self.record_audits(std::slice::from_ref(event)).await
    }

    /// One transaction, one commit, for the whole batch.
    async fn record_audits(&self, events: &[NewAuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.write("recording audit events", events.to_vec(), |tx, events| {
            Box::pin(async move {
                for e in events.iter() {
                    insert(tx, e).await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        self.run(
            "querying the audit log",
            audit_sql(query),
            |c, (sql, args)| {
                Box::pin(async move {
                    let params: Vec<&(dyn ToSql + Sync)> = args
                        .iter()
                        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
                        .collect();
                    let stmt = c.prepare_cached(sql).await?;
                    c.query(&stmt, &params)
                        .await?
                        .iter()
                        .map(audit_event)
                        .collect()
                })
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use mcr_core::time::Timestamp;

    use super::*;

    #[test]
    fn audit_sql_binds_only_the_filters_set() {
        let (sql, args) = audit_sql(&AuditQuery {
            actor_id: Some("u".into()),
            until: Some(Timestamp::from_millis(9)),
            limit: 5,
            offset: 2,
            ..AuditQuery::default()
        });
        assert_eq!(
            sql,
            "SELECT id, time, event_type, actor_id, repository, digest, ip, details::text \
             FROM audit_log WHERE actor_id = $1 AND time <= $2 \
             ORDER BY time DESC, id DESC LIMIT $3 OFFSET $4"
        );
        assert_eq!(args.len(), 4);
    }
}
