//! `UploadSessionStore` on SQLite.

use async_trait::async_trait;
use bytes::Bytes;
use mcr_core::audit::NewAuditEvent;
use mcr_core::ids::UploadId;
use mcr_core::names::RepoName;
use mcr_core::ports::{
    keyset_pages, BlobInfo, ListStream, Provenance, UploadCaps, UploadSession, UploadSessionStore,
    UploadState,
};
use mcr_core::quota::QuotaContent;
use mcr_core::time::Timestamp;
use mcr_core::{Error, Result};
use rusqlite::{params, Row};

use super::quotas;
use super::rows::{all, change, ensure_repo, i64_of, limit_of, link, one, parsed, u64_at};
use super::{audit, sql, SqliteMetaStore, LIST_PAGE};

fn upload_session(row: &Row<'_>) -> rusqlite::Result<UploadSession> {
    Ok(UploadSession {
        id: parsed(row, 0, UploadId::parse)?,
        repository: parsed(row, 1, RepoName::new)?,
        state: UploadState {
            size: u64_at(row, 2)?,
            data: Bytes::from(row.get::<_, Vec<u8>>(3)?),
        },
        active: Timestamp::from_millis(row.get(4)?),
    })
}

#[async_trait]
impl UploadSessionStore for SqliteMetaStore {
    async fn create_upload(
        &self,
        session: &UploadSession,
        owner: &str,
        caps: &UploadCaps,
    ) -> Result<()> {
        let (session, owner, caps) = (session.clone(), owner.to_string(), *caps);
        self.write("creating an upload session", move |tx| {
            let repo = ensure_repo(tx, &session.repository, session.active)?;
            // Counted in the same transaction as the insert: two
            // concurrent opens cannot both take the last slot.
            let owned = one(tx, sql::OWNER_UPLOAD_COUNT, [owner.as_str()], |r| {
                u64_at(r, 0)
            })?
            .unwrap_or_default();
            let in_repo =
                one(tx, sql::REPO_UPLOAD_COUNT, [repo], |r| u64_at(r, 0))?.unwrap_or_default();
            if let Some(refused) = caps.refusal(owned, in_repo, &owner, &session.repository) {
                // Rolls back the repository too, if this made it.
                return Err(refused);
            }
            let n = change(
                tx,
                sql::INSERT_UPLOAD,
                params![
                    session.id.as_str(),
                    repo,
                    i64_of(session.state.size)?,
                    &session.state.data[..],
                    session.active.as_millis(),
                    owner
                ],
            )?;
            if n == 0 {
                // Rolls back the repository too, if this made it.
                return Err(Error::Conflict(format!(
                    "upload {} already exists",
                    session.id
                )));
            }
            Ok(())
        })
        .await
    }

    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadSession>> {
        let id = id.clone();
        self.run("reading an upload session", move |c| {
            one(c, sql::GET_UPLOAD, [id.as_str()], upload_session)
        })
        .await
    }

    async fn save_upload_state(
        &self,
        id: &UploadId,
        from: u64,
        state: &UploadState,
        at: Timestamp,
    ) -> Result<()> {
        let (id, state) = (id.clone(), state.clone());
        self.write("recording an upload's state", move |tx| {
            let saved = change(
                tx,
                sql::SAVE_UPLOAD_STATE,
                params![
                    id.as_str(),
                    i64_of(from)?,
                    i64_of(state.size)?,
                    &state.data[..],
                    at.as_millis()
                ],
            )?;
            if saved == 1 {
                return Ok(());
            }
            match one(tx, sql::UPLOAD_REPO, [id.as_str()], |_| Ok(()))? {
                Some(()) => Err(Error::Conflict(format!(
                    "upload {id} moved on from {from} bytes: another writer got there first"
                ))),
                None => Err(Error::upload_unknown(id)),
            }
        })
        .await
    }

    async fn complete_upload(
        &self,
        id: &UploadId,
        blob: &BlobInfo,
        at: Timestamp,
        provenance: Provenance,
        event: &NewAuditEvent,
    ) -> Result<()> {
        let (id, blob, event) = (id.clone(), blob.clone(), event.clone());
        self.write("completing an upload", move |tx| {
            let repo: i64 = one(tx, sql::UPLOAD_REPO, [id.as_str()], |r| r.get(0))?
                .ok_or_else(|| Error::upload_unknown(&id))?;
            if provenance == Provenance::Pushed {
                if let Some(name) = quotas::repo_name(tx, repo)? {
                    quotas::charge(tx, &name, QuotaContent::Blob(&blob.digest, blob.size))?;
                }
            }
            let digest = blob.digest.to_string();
            // A row that exists keeps its `created`: the link's new stamp
            // is what protects the blob from a sweep.
            change(
                tx,
                sql::INSERT_BLOB,
                params![digest, i64_of(blob.size)?, at.as_millis()],
            )?;
            link(tx, repo, &digest, at, provenance)?;
            change(tx, sql::DELETE_UPLOAD, [id.as_str()])?;
            audit::insert(tx, &event)
        })
        .await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        let id = id.clone();
        self.write("deleting an upload session", move |tx| {
            Ok(change(tx, sql::DELETE_UPLOAD, [id.as_str()])? > 0)
        })
        .await
    }

    fn uploads_idle_since(&self, before: Timestamp) -> ListStream<UploadSession> {
        let store = self.clone();
        keyset_pages(
            LIST_PAGE,
            |s: &UploadSession| (s.active, s.id.clone()),
            move |after, limit| {
                let store = store.clone();
                // Before the first page: every row sorts after (i64::MIN, '').
                let (active, id) = after.map_or((i64::MIN, String::new()), |(a, id)| {
                    (Timestamp::as_millis(a), UploadId::as_str(&id).to_string())
                });
                async move {
                    store
                        .run("listing stale upload sessions", move |c| {
                            all(
                                c,
                                sql::UPLOADS_IDLE,
                                params![before.as_millis(), active, id, limit_of(limit)],
                                upload_session,
                            )
                        })
                        .await
                }
            },
        )
    }
}
