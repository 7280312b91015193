//! `RevocationStore` on SQLite: the `revoked_tokens` table.

use async_trait::async_trait;
use mcr_core::ports::{Revocation, RevocationStore};
use mcr_core::time::Timestamp;
use mcr_core::Result;
use rusqlite::params;

use super::rows::{all, change};
use super::{sql, SqliteMetaStore};

#[async_trait]
impl RevocationStore for SqliteMetaStore {
    async fn revoke_token(&self, revocation: &Revocation, now: Timestamp) -> Result<()> {
        let revocation = revocation.clone();
        self.write("revoking a token", move |tx| {
            change(tx, sql::DROP_ENDED_REVOCATIONS, [now.as_millis()])?;
            change(
                tx,
                sql::REVOKE_TOKEN,
                params![revocation.token_id, revocation.expires.as_millis()],
            )?;
            Ok(())
        })
        .await
    }

    async fn live_revocations(&self, now: Timestamp) -> Result<Vec<Revocation>> {
        self.run("reading revoked tokens", move |c| {
            all(c, sql::LIVE_REVOCATIONS, [now.as_millis()], |r| {
                Ok(Revocation {
                    token_id: r.get(0)?,
                    expires: Timestamp::from_millis(r.get(1)?),
                })
            })
        })
        .await
    }
}
