//! The `RevocationStore` port: tokens revoked before their expiry, for an
//! identity service that signs its own tokens (the local identity).

use async_trait::async_trait;

use crate::error::Result;
use crate::time::Timestamp;

/// A revoked token: its id (the `jti` it was signed with) and when it
/// would have expired anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub token_id: String,
    pub expires: Timestamp,
}

/// Revocations kept in the metadata store until the token would have
/// expired anyway, so a logout survives a restart and holds for every
/// process sharing the store (issue 16, case 6).
#[async_trait]
pub trait RevocationStore: Send + Sync + 'static {
    /// Records the revocation, and drops those that ended by `now` (their
    /// tokens are refused as expired anyway), in one step; recording one
    /// already there changes nothing.
    async fn revoke_token(&self, revocation: &Revocation, now: Timestamp) -> Result<()>;
    /// The revocations still in force at `now` (expiring after it), by
    /// token id. A read: changes nothing, so replicas can poll it.
    async fn live_revocations(&self, now: Timestamp) -> Result<Vec<Revocation>>;
}
