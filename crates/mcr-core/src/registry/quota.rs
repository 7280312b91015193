//! Quotas in the use cases: the admin's listing and changes, and the
//! audit of a push refused for a quota.
//!
//! The check itself is not here: it runs inside the store step that
//! links a blob or stores a manifest (see `crate::quota`), so two pushes
//! cannot both pass on the same free bytes.

use super::{details, Caller, Registry};
use crate::audit::EventType;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::names::RepoName;
use crate::quota::{Quota, QuotaDraft, QuotaUsage, MAX_QUOTAS};

impl Registry {
    /// Every quota by scope, each with the bytes its scope uses now
    /// (admin only).
    pub async fn quotas(&self, caller: &Caller) -> Result<Vec<QuotaUsage>> {
        self.authorize_admin(caller).await?;
        self.meta.quotas().await
    }

    /// Validates and sets a quota: a new one, or a new limit for the
    /// scope's existing one (admin only; audited `quota_set`). A limit
    /// below what the scope uses refuses further growth, never removes
    /// anything.
    pub async fn set_quota(&self, caller: &Caller, draft: &QuotaDraft) -> Result<Quota> {
        self.authorize_admin(caller).await?;
        let (scope, limit) = draft.validate()?;
        let quota = self.meta.set_quota(&scope, limit, MAX_QUOTAS).await?;
        self.audit(
            caller,
            EventType::QuotaSet,
            None,
            None,
            details([
                ("quota_id", quota.id.to_string()),
                ("scope", quota.scope.to_string()),
                ("limit_bytes", quota.limit_bytes.bytes().to_string()),
            ]),
        )
        .await?;
        Ok(quota)
    }

    /// Removes a quota (admin only; audited `quota_deleted`); `NotFound`
    /// if there is none with this id.
    pub async fn delete_quota(&self, caller: &Caller, id: i64) -> Result<()> {
        self.authorize_admin(caller).await?;
        let quota = self
            .meta
            .delete_quota(id)
            .await?
            .ok_or_else(|| Error::not_found("quota", id))?;
        self.audit(
            caller,
            EventType::QuotaDeleted,
            None,
            None,
            details([
                ("quota_id", quota.id.to_string()),
                ("scope", quota.scope.to_string()),
            ]),
        )
        .await
    }

    /// Passes `result` on, auditing a quota refusal as `quota_exceeded`
    /// with the scope and its figures.
    pub(super) async fn audit_quota_refusal<T>(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        result: Result<T>,
    ) -> Result<T> {
        let Err(Error::QuotaExceeded(refusal)) = &result else {
            return result;
        };
        self.audit(
            caller,
            EventType::QuotaExceeded,
            Some(repo),
            Some(digest),
            details([
                ("scope", refusal.scope.to_string()),
                ("limit_bytes", refusal.limit.bytes().to_string()),
                ("used_bytes", refusal.used.to_string()),
                ("needs_bytes", refusal.needs.to_string()),
            ]),
        )
        .await?;
        result
    }
}
