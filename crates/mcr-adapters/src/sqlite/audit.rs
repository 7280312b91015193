//! `AuditLog` on SQLite.

use std::collections::BTreeMap;

use async_trait::async_trait;
use mcr_core::audit::{AuditEvent, AuditQuery, NewAuditEvent};
use mcr_core::digest::Digest;
use mcr_core::events::{outbox_events, StoreFacts};
use mcr_core::names::RepoName;
use mcr_core::ports::AuditLog;
use mcr_core::time::Timestamp;
use mcr_core::Result;
use rusqlite::types::{Type, Value};
use rusqlite::{params, params_from_iter, Row};

use super::rows::{all, change, limit_of, parsed, parsed_opt};
use super::{events, sql, storage, SqliteMetaStore};

fn audit_event(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    let details: &str = row.get_ref(7)?.as_str()?;
    let details: BTreeMap<String, String> = serde_json::from_str(details)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(7, Type::Text, Box::new(e)))?;
    Ok(AuditEvent {
        id: row.get(0)?,
        event: NewAuditEvent {
            time: Timestamp::from_millis(row.get(1)?),
            event_type: parsed(row, 2, str::parse)?,
            actor_id: row.get(3)?,
            repository: parsed_opt(row, 4, RepoName::new)?,
            digest: parsed_opt(row, 5, Digest::parse)?,
            ip: row.get(6)?,
            details,
        },
    })
}

/// The audit query for `q`: only the filters it sets, so each query can
/// use the index of its most selective filter (a generic `(? IS NULL OR
/// col = ?)` form would defeat them all). Newest first, with the id as
/// tie-break: events of one millisecond come last-recorded first.
pub(super) fn audit_sql(q: &AuditQuery) -> (String, Vec<Value>) {
    let mut sql = String::from(
        "SELECT id, time, event_type, actor_id, repository, digest, ip, details FROM audit_log",
    );
    let mut args: Vec<Value> = Vec::with_capacity(7);
    let mut filter = |clause: &str, v: Value| {
        sql.push_str(if args.is_empty() { " WHERE " } else { " AND " });
        args.push(v);
        sql.push_str(clause);
        sql.push_str(&args.len().to_string());
    };
    if let Some(t) = q.event_type {
        filter("event_type = ?", Value::Text(t.as_str().into()));
    }
    if let Some(a) = &q.actor_id {
        filter("actor_id = ?", Value::Text(a.clone()));
    }
    if let Some(r) = &q.repository {
        filter("repository = ?", Value::Text(r.as_str().into()));
    }
    if let Some(s) = q.since {
        filter("time >= ?", Value::Integer(s.as_millis()));
    }
    if let Some(u) = q.until {
        filter("time <= ?", Value::Integer(u.as_millis()));
    }
    args.push(Value::Integer(limit_of(q.limit)));
    args.push(Value::Integer(limit_of(q.offset)));
    let n = args.len();
    sql.push_str(&format!(
        " ORDER BY time DESC, id DESC LIMIT ?{} OFFSET ?{n}",
        n - 1
    ));
    (sql, args)
}

/// Inserts one event in the transaction `tx` belongs to: also the
/// changes that are recorded with their event in one step. The webhook
/// events reporting it go into the outbox in the same transaction.
pub(super) fn insert(tx: &rusqlite::Connection, e: &NewAuditEvent) -> Result<()> {
    insert_with(tx, e, None)
}

/// [`insert`], with what the store step adds to its webhook events.
pub(super) fn insert_with(
    tx: &rusqlite::Connection,
    e: &NewAuditEvent,
    facts: Option<StoreFacts<'_>>,
) -> Result<()> {
    events::append(tx, &outbox_events(e, facts))?;
    let details =
        serde_json::to_string(&e.details).map_err(|e| storage("encoding audit details", e))?;
    change(
        tx,
        sql::INSERT_AUDIT,
        params![
            e.time.as_millis(),
            e.event_type.as_str(),
            e.actor_id,
            e.repository.as_ref().map(RepoName::as_str),
            e.digest.as_ref().map(Digest::to_string),
            e.ip,
            details,
        ],
    )
    .map(drop)
}

#[async_trait]
impl AuditLog for SqliteMetaStore {
    async fn record_audit(&self, event: &NewAuditEvent) -> Result<()> {
        let e = event.clone();
        self.write("recording an audit event", move |tx| insert(tx, &e))
            .await
    }

    /// One transaction, one commit, for the whole batch.
    async fn record_audits(&self, events: &[NewAuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let events = events.to_vec();
        self.write("recording audit events", move |tx| {
            events.iter().try_for_each(|e| insert(tx, e))
        })
        .await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let (sql, args) = audit_sql(query);
        self.run("querying the audit log", move |c| {
            all(c, &sql, params_from_iter(args), audit_event)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
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
            "SELECT id, time, event_type, actor_id, repository, digest, ip, details FROM audit_log \
             WHERE actor_id = ?1 AND time <= ?2 ORDER BY time DESC, id DESC LIMIT ?3 OFFSET ?4"
        );
        assert_eq!(args.len(), 4);
    }
}
