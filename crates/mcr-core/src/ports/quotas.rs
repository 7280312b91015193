//! The `QuotaStore` port: stored quotas and what each scope uses.
//!
//! The quotas are enforced by the push steps of the other metadata ports
//! (see `crate::quota`); this trait only stores and lists them.

use async_trait::async_trait;

use crate::error::Result;
use crate::quota::{Quota, QuotaLimit, QuotaScope, QuotaUsage};

/// Stored quotas, one per scope.
#[async_trait]
pub trait QuotaStore: Send + Sync + 'static {
    /// Sets the scope's limit: updates the quota on `scope` if there is
    /// one (keeping its id), else stores a new one, unless `max` quotas
    /// are stored already (`Conflict`, nothing stored). Returns the quota.
    async fn set_quota(&self, scope: &QuotaScope, limit: QuotaLimit, max: u64) -> Result<Quota>;
    /// Removes the quota; returns it, or `None` if there was none.
    async fn delete_quota(&self, id: i64) -> Result<Option<Quota>>;
    /// Every quota by scope, each with the bytes its scope uses now
    /// (distinct blobs linked into it plus distinct manifests stored in
    /// it, each counted once).
    async fn quotas(&self) -> Result<Vec<QuotaUsage>>;
}
