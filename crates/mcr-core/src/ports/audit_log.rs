//! The `AuditLog` port: recording and querying audit events.

use async_trait::async_trait;

use crate::audit::{AuditEvent, AuditQuery, NewAuditEvent};
use crate::error::Result;

/// The audit log: append-only, queried newest first.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    async fn record_audit(&self, event: &NewAuditEvent) -> Result<()>;
    /// Events matching the query, newest first (events of one millisecond
    /// last-recorded first), windowed by limit/offset.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;
}
