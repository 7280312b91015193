//! The `RetentionStore` port: stored retention policies, and one
//! repository's manifest graph as a retention run reads it.

use async_trait::async_trait;

use crate::error::Result;
use crate::names::RepoName;
use crate::retention::{ManifestGraph, RetentionPolicy, RetentionSpec};
use crate::time::Timestamp;

/// Retention policies and what a run reads. Ids are assigned by the
/// store, only grow, and are never reused after a delete, so an audit
/// entry's policy id names one policy forever.
#[async_trait]
pub trait RetentionStore: Send + Sync + 'static {
    /// Every stored policy, by id.
    async fn list_retention_policies(&self) -> Result<Vec<RetentionPolicy>>;
    async fn get_retention_policy(&self, id: i64) -> Result<Option<RetentionPolicy>>;
    /// Stores a new policy created (and last updated) at `now`.
    async fn create_retention_policy(
        &self,
        spec: &RetentionSpec,
        now: Timestamp,
    ) -> Result<RetentionPolicy>;
    /// Replaces the body of policy `id`, updated at `now`; `None` if
    /// there is no such policy.
    async fn replace_retention_policy(
        &self,
        id: i64,
        spec: &RetentionSpec,
        now: Timestamp,
    ) -> Result<Option<RetentionPolicy>>;
    async fn delete_retention_policy(&self, id: i64) -> Result<bool>;
    /// The repository's manifests (with their subject and an index's
    /// children) and tags (with when each was last set), read in one
    /// step so the two agree; empty if there is no such repository.
    /// Manifests (and each one's children) by digest, tags by name.
    async fn manifest_graph(&self, repo: &RepoName) -> Result<ManifestGraph>;
}
