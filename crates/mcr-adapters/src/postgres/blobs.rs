//! `BlobIndex` on PostgreSQL: blob rows and repository links.

use async_trait::async_trait;
use mcr_core::audit::NewAuditEvent;
use mcr_core::digest::Digest;
use mcr_core::names::RepoName;
use mcr_core::ports::{keyset_pages, BlobIndex, BlobInfo, ListStream, Page, Provenance};
use mcr_core::quota::QuotaContent;
use mcr_core::time::Timestamp;
use mcr_core::Result;

use super::quotas;
use super::rows::{all, blob_info, change, ensure_repo, limit_of, link, one, parsed};
use super::{audit, sql, PostgresMetaStore, LIST_PAGE};

#[async_trait]
impl BlobIndex for PostgresMetaStore {
    async fn blob_in_repository(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>> {
        let data = (repo, digest.to_string());
        self.run(
            "looking up a blob in a repository",
            data,
            |c, (repo, digest)| {
                Box::pin(async move {
                    one(c, sql::BLOB_IN_REPO, &[&repo.as_str(), digest], blob_info).await
                })
            },
        )
        .await
    }

    async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        self.run("looking up a blob", digest.to_string(), |c, digest| {
            Box::pin(async move {
                Ok(one(c, sql::BLOB_EXISTS, &[digest], |_| Ok(()))
                    .await?
                    .is_some())
            })
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
        let data = (
            from.clone(),
            to.clone(),
            digest.to_string(),
            at,
            provenance,
            event.clone(),
        );
        self.write(
            "mounting a blob",
            data,
            |tx, (from, to, digest, at, provenance, event)| {
                Box::pin(async move {
                    // The blob row first, held: a sweep of it either finished
                    // (no row, nothing to mount) or waits for our new link.
                    if one(tx, sql::LOCK_BLOB, &[digest], |_| Ok(()))
                        .await?
                        .is_none()
                    {
                        return Ok(None);
                    }
                    let Some(info) =
                        one(tx, sql::BLOB_IN_REPO, &[&from.as_str(), digest], blob_info).await?
                    else {
                        // Nothing changes, not even `to` coming into being.
                        return Ok(None);
                    };
                    let to_id = ensure_repo(tx, to, *at).await?;
                    if *provenance == Provenance::Pushed {
                        let content = QuotaContent::Blob(&info.digest, info.size);
                        quotas::charge(tx, to, content).await?;
                    }
                    link(tx, to_id, digest, *at, *provenance).await?;
                    audit::insert(tx, event).await?;
                    Ok(Some(info))
                })
            },
        )
        .await
    }

    async fn blob_holders(&self, digest: &Digest, page: &Page) -> Result<Vec<RepoName>> {
        let data = (
            digest.to_string(),
            page.last.as_deref(),
            limit_of(page.limit),
        );
        self.run(
            "listing a blob's repositories",
            data,
            |c, (digest, last, limit)| {
                Box::pin(async move {
                    all(c, sql::BLOB_HOLDERS, &[digest, last, limit], |r| {
                        parsed(r, 0, RepoName::new)
                    })
                    .await
                })
            },
        )
        .await
    }

    async fn unlink_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        event: &NewAuditEvent,
    ) -> Result<bool> {
        let data = (repo.clone(), digest.to_string(), event.clone());
        self.write("unlinking a blob", data, |tx, (repo, digest, event)| {
            Box::pin(async move {
                let unlinked = change(tx, sql::UNLINK, &[&repo.as_str(), digest]).await? > 0;
                if unlinked {
                    audit::insert(tx, event).await?;
                }
                Ok(unlinked)
            })
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
                        .run(
                            "listing blobs",
                            (after, limit_of(limit)),
                            |c, (after, limit)| {
                                Box::pin(async move {
                                    all(c, sql::LIST_BLOBS, &[after, limit], blob_info).await
                                })
                            },
                        )
                        .await
                }
            },
        )
    }
}
