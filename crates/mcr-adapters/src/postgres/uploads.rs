//! `UploadSessionStore` on PostgreSQL.

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
use tokio_postgres::Row;

use super::quotas;
use super::rows::{all, change, ensure_repo, i64_of, limit_of, link, one, parsed, time_at, u64_at};
use super::{audit, sql, PostgresMetaStore, StepResult, LIST_PAGE};

fn upload_session(row: &Row) -> StepResult<UploadSession> {
    Ok(UploadSession {
        id: parsed(row, 0, UploadId::parse)?,
        repository: parsed(row, 1, RepoName::new)?,
        state: UploadState {
            size: u64_at(row, 2)?,
            data: Bytes::from(row.try_get::<_, Vec<u8>>(3)?),
        },
        active: time_at(row, 4)?,
    })
}

#[async_trait]
impl UploadSessionStore for PostgresMetaStore {
    async fn create_upload(
        &self,
        session: &UploadSession,
        owner: &str,
        caps: &UploadCaps,
    ) -> Result<()> {
        let data = (session.clone(), owner.to_string(), *caps);
        self.write(
            "creating an upload session",
            data,
            |tx, (s, owner, caps)| {
                Box::pin(async move {
                    let repo = ensure_repo(tx, &s.repository, s.active).await?;
                    change(tx, sql::LOCK_REPO_FOR_UPLOADS, &[&repo]).await?;
                    change(tx, sql::LOCK_UPLOAD_OWNER, &[&owner.as_str()]).await?;
                    let owned = one(tx, sql::OWNER_UPLOAD_COUNT, &[&owner.as_str()], |r| {
                        u64_at(r, 0)
                    })
                    .await?
                    .unwrap_or_default();
                    let in_repo = one(tx, sql::REPO_UPLOAD_COUNT, &[&repo], |r| u64_at(r, 0))
                        .await?
                        .unwrap_or_default();
                    if let Some(refused) = caps.refusal(owned, in_repo, owner, &s.repository) {
                        // Rolls back the repository too, if this made it.
                        return Err(refused.into());
                    }
                    let n = change(
                        tx,
                        sql::INSERT_UPLOAD,
                        &[
                            &s.id.as_str(),
                            &repo,
                            &i64_of(s.state.size)?,
                            &&s.state.data[..],
                            &s.active.as_millis(),
                            &owner.as_str(),
                        ],
                    )
                    .await?;
                    if n == 0 {
                        // Rolls back the repository too, if this made it.
                        return Err(
                            Error::Conflict(format!("upload {} already exists", s.id)).into()
                        );
                    }
                    Ok(())
                })
            },
        )
        .await
    }

    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadSession>> {
        self.run("reading an upload session", id, |c, id| {
            Box::pin(async move { one(c, sql::GET_UPLOAD, &[&id.as_str()], upload_session).await })
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
        let data = (id.clone(), from, state.clone(), at);
        self.write(
            "recording an upload's state",
            data,
            |tx, (id, from, state, at)| {
                Box::pin(async move {
                    let saved = change(
                        tx,
                        sql::SAVE_UPLOAD_STATE,
                        &[
                            &id.as_str(),
                            &i64_of(*from)?,
                            &i64_of(state.size)?,
                            &&state.data[..],
                            &at.as_millis(),
                        ],
                    )
                    .await?;
                    if saved == 1 {
                        return Ok(());
                    }
                    match one(tx, sql::UPLOAD_REPO, &[&id.as_str()], |_| Ok(())).await? {
                        Some(()) => Err(Error::Conflict(format!(
                            "upload {id} moved on from {from} bytes: another writer got there first"
                        ))
                        .into()),
                        None => Err(Error::upload_unknown(id).into()),
                    }
                })
            },
        )
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
        let data = (id.clone(), blob.clone(), at, provenance, event.clone());
        self.write(
            "completing an upload",
            data,
            |tx, (id, blob, at, provenance, event)| {
                Box::pin(async move {
                    let gone = || Error::upload_unknown(id);
                    // Locks in the order every step takes them: the repository,
                    // then the session (taken by deleting it: a second
                    // completion waits, then finds it gone), then the blob row.
                    let repo: i64 =
                        one(tx, sql::UPLOAD_REPO, &[&id.as_str()], |r| Ok(r.try_get(0)?))
                            .await?
                            .ok_or_else(gone)?;
                    one(tx, sql::LOCK_REPO_BY_ID, &[&repo], |_| Ok(()))
                        .await?
                        .ok_or_else(gone)?;
                    one(tx, sql::TAKE_UPLOAD, &[&id.as_str()], |_| Ok(()))
                        .await?
                        .ok_or_else(gone)?;
                    let digest = blob.digest.to_string();
                    // A row that exists keeps its `created` (the link's new
                    // stamp is what protects the blob from a sweep); one being
                    // swept right now is waited for, then made again.
                    if one(tx, sql::LOCK_BLOB, &[&digest], |_| Ok(()))
                        .await?
                        .is_none()
                    {
                        change(
                            tx,
                            sql::INSERT_BLOB,
                            &[&digest, &i64_of(blob.size)?, &at.as_millis()],
                        )
                        .await?;
                    }
                    if *provenance == Provenance::Pushed {
                        if let Some(name) = quotas::repo_name(tx, repo).await? {
                            let content = QuotaContent::Blob(&blob.digest, blob.size);
                            quotas::charge(tx, &name, content).await?;
                        }
                    }
                    link(tx, repo, &digest, *at, *provenance).await?;
                    audit::insert(tx, event).await
                })
            },
        )
        .await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        self.write("deleting an upload session", id.clone(), |tx, id| {
            Box::pin(async move { Ok(change(tx, sql::DELETE_UPLOAD, &[&id.as_str()]).await? > 0) })
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
                let data = (before.as_millis(), active, id, limit_of(limit));
                async move {
                    store
                        .run(
                            "listing stale upload sessions",
                            data,
                            |c, (before, active, id, limit)| {
                                Box::pin(async move {
                                    all(
                                        c,
                                        sql::UPLOADS_IDLE,
                                        &[before, active, id, limit],
                                        upload_session,
                                    )
                                    .await
                                })
                            },
                        )
                        .await
                }
            },
        )
    }
}
