//! `BlobIndex` on SQLite: blob rows and repository links.

use async_trait::async_trait;
use mcr_core::audit::NewAuditEvent;
use mcr_core::digest::Digest;
use mcr_core::names::RepoName;
use mcr_core::ports::{keyset_pages, BlobIndex, BlobInfo, ListStream, Page, Provenance};
use mcr_core::quota::QuotaContent;
use mcr_core::time::Timestamp;
use mcr_core::Result;
use rusqlite::params;

use super::quotas;
use super::rows::{all, blob_info, change, ensure_repo, limit_of, link, one, parsed};
use super::{audit, sql, SqliteMetaStore, LIST_PAGE};

#[async_trait]
impl BlobIndex for SqliteMetaStore {
    async fn blob_in_repository(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>> {
        let (repo, digest) = (repo.clone(), digest.to_string());
        self.run("looking up a blob in a repository", move |c| {
            one(
                c,
                sql::BLOB_IN_REPO,
                params![repo.as_str(), digest],
                blob_info,
            )
        })
        .await
    }

    async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        let digest = digest.to_string();
        self.run("looking up a blob", move |c| {
            Ok(one(c, sql::BLOB_EXISTS, [digest], |_| Ok(()))?.is_some())
        })
        .await
    }

    async fn mount_blob(
        &self,
        from: &RepoName,
        to: &RepoName,
        digest: &Digest,
        at: Timestamp,
        provenance: Provenance,
        event: &NewAuditEvent,
    ) -> Result<Option<BlobInfo>> {
        let (from, to, digest) = (from.clone(), to.clone(), digest.to_string());
        let event = event.clone();
        self.write("mounting a blob", move |tx| {
            let Some(info) = one(
                tx,
                sql::BLOB_IN_REPO,
                params![from.as_str(), digest],
                blob_info,
            )?
            else {
                // Nothing changes, not even `to` coming into being.
                return Ok(None);
            };
            if provenance == Provenance::Pushed {
                quotas::charge(tx, &to, QuotaContent::Blob(&info.digest, info.size))?;
            }
            let to_id = ensure_repo(tx, &to, at)?;
            link(tx, to_id, &digest, at, provenance)?;
            audit::insert(tx, &event)?;
            Ok(Some(info))
        })
        .await
    }

    async fn blob_holders(&self, digest: &Digest, page: &Page) -> Result<Vec<RepoName>> {
        let (digest, last, limit) = (digest.to_string(), page.last.clone(), limit_of(page.limit));
        self.run("listing a blob's repositories", move |c| {
            all(c, sql::BLOB_HOLDERS, params![digest, last, limit], |r| {
                parsed(r, 0, RepoName::new)
            })
        })
        .await
    }

    async fn unlink_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        event: &NewAuditEvent,
    ) -> Result<bool> {
        let (repo, digest, event) = (repo.clone(), digest.to_string(), event.clone());
        self.write("unlinking a blob", move |tx| {
            let unlinked = change(tx, sql::UNLINK, params![repo.as_str(), digest])? > 0;
            if unlinked {
                audit::insert(tx, &event)?;
            }
            Ok(unlinked)
        })
        .await
    }

    fn list_blobs(&self) -> ListStream<BlobInfo> {
        let store = self.clone();
        keyset_pages(
            LIST_PAGE,
            |b: &BlobInfo| b.digest.to_string(),
            move |after, limit| {
                let store = store.clone();
                async move {
                    store
                        .run("listing blobs", move |c| {
                            all(
                                c,
                                sql::LIST_BLOBS,
                                params![after, limit_of(limit)],
                                blob_info,
                            )
                        })
                        .await
                }
            },
        )
    }
}
