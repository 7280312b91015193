//! `RevocationStore` on PostgreSQL: the `revoked_tokens` table, which every
//! replica reads (the local identity polls it, `local_identity` says how
//! often).

use async_trait::async_trait;
use mcr_core::ports::{Revocation, RevocationStore};
use mcr_core::time::Timestamp;
use mcr_core::Result;

use super::rows::{all, change, time_at};
use super::{sql, PostgresMetaStore};

#[async_trait]
impl RevocationStore for PostgresMetaStore {
    async fn revoke_token(&self, revocation: &Revocation, now: Timestamp) -> Result<()> {
        let data = (revocation.clone(), now);
        self.write("revoking a token", data, |tx, (revocation, now)| {
            Box::pin(async move {
                change(tx, sql::DROP_ENDED_REVOCATIONS, &[&now.as_millis()]).await?;
                change(
                    tx,
                    sql::REVOKE_TOKEN,
                    &[&revocation.token_id, &revocation.expires.as_millis()],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn live_revocations(&self, now: Timestamp) -> Result<Vec<Revocation>> {
        self.run("reading revoked tokens", now, |c, now| {
            Box::pin(async move {
                all(c, sql::LIVE_REVOCATIONS, &[&now.as_millis()], |r| {
                    Ok(Revocation {
                        token_id: r.try_get(0)?,
                        expires: time_at(r, 1)?,
                    })
                })
                .await
            })
        })
        .await
    }
}
