//! The `AuditLog` port: recording and querying audit events.

use async_trait::async_trait;

use crate::audit::{AuditEvent, AuditQuery, NewAuditEvent};
use crate::error::Result;

/// The audit log: append-only, queried newest first.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    async fn record_audit(&self, event: &NewAuditEvent) -> Result<()>;
    /// Records `events`, in order, all or none: the engine's batches of
    /// pull events (`Registry::audit_writer`). The default records
    /// them one by one; a store that can make it one transaction should,
    /// since one commit per batch instead of per event is the point.
    async fn record_audits(&self, events: &[NewAuditEvent]) -> Result<()> {
        for event in events {
            self.record_audit(event).await?;
        }
        Ok(())
    }
    /// Events matching the query, newest first (events of one millisecond
    /// last-recorded first), windowed by limit/offset.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;
}
