//! `RepositoryStore` on PostgreSQL.

use async_trait::async_trait;
use mcr_core::audit::NewAuditEvent;
use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::media::MediaType;
use mcr_core::names::{RepoName, Tag};
use mcr_core::policy::TagGuard;
use mcr_core::ports::{
    ManifestSummary, Page, RepoDetail, RepoQuery, RepoSummary, RepositoryStore, TagRef,
};
use mcr_core::Result;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::rows::{
    all, blob_info, change, limit_of, lock_repo_exclusively, one, parsed, time_at, u64_at,
};
use super::{audit, sql, PostgresMetaStore, StepResult};
use crate::repo_listing::{self, Arg};

/// A row of `summary_select!`: the summary, and the repository's id.
fn summary(row: &Row) -> StepResult<(RepoSummary, i64)> {
    Ok((
        RepoSummary {
            name: parsed(row, 0, RepoName::new)?,
            created: time_at(row, 1)?,
            tag_count: u64_at(row, 2)?,
            manifest_count: u64_at(row, 3)?,
            total_size: u64_at(row, 4)?,
            last_push: match row.try_get::<_, i64>(5)? {
                0 => None,
                _ => Some(time_at(row, 5)?),
            },
        },
        row.try_get(6)?,
    ))
}

#[async_trait]
impl RepositoryStore for PostgresMetaStore {
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        self.run("looking up a repository", repo, |c, repo| {
            Box::pin(async move {
                let found = one(c, sql::REPO_VISIBLE, &[&repo.as_str()], |_| Ok(())).await?;
                Ok(found.is_some())
            })
        })
        .await
    }

    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepoName>> {
        let (last, limit) = (page.last.as_deref(), limit_of(page.limit));
        self.run("listing repositories", (last, limit), |c, (last, limit)| {
            Box::pin(async move {
                all(c, sql::LIST_REPOS, &[last, limit], |r| {
                    parsed(r, 0, RepoName::new)
                })
                .await
            })
        })
        .await
    }

    async fn pushed_repositories(&self, prefix: &RepoName, limit: usize) -> Result<Vec<RepoName>> {
        let data = (prefix.as_str(), limit_of(limit));
        self.run("listing pushed repositories", data, |c, (prefix, limit)| {
            Box::pin(async move {
                all(c, sql::PUSHED_REPOS, &[prefix, limit], |r| {
                    parsed(r, 0, RepoName::new)
                })
                .await
            })
        })
        .await
    }

    async fn repository_summaries(&self, query: &RepoQuery) -> Result<Vec<RepoSummary>> {
        self.run(
            "summarising repositories",
            summaries_sql(query),
            |c, (sql, args)| {
                Box::pin(async move {
                    let params: Vec<&(dyn ToSql + Sync)> = args
                        .iter()
                        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
                        .collect();
                    let rows = all(c, sql, &params, summary).await?;
                    Ok(rows.into_iter().map(|(s, _)| s).collect())
                })
            },
        )
        .await
    }

    async fn repository_detail(&self, repo: &RepoName) -> Result<Option<RepoDetail>> {
        // One snapshot: the counts and the lists agree.
        self.read("reading a repository's detail", repo, |tx, repo| {
            Box::pin(async move {
                let Some((summary, id)) = one(tx, sql::SUMMARY, &[&repo.as_str()], summary).await?
                else {
                    return Ok(None);
                };
                let tags = all(tx, sql::DETAIL_TAGS, &[&id], |r| {
                    Ok(TagRef {
                        name: parsed(r, 0, Tag::new)?,
                        digest: parsed(r, 1, Digest::parse)?,
                    })
                })
                .await?;
                let manifests = all(tx, sql::DETAIL_MANIFESTS, &[&id], |r| {
                    Ok(ManifestSummary {
                        digest: parsed(r, 0, Digest::parse)?,
                        media_type: parsed(r, 1, MediaType::new)?,
                        size: u64_at(r, 2)?,
                        created: time_at(r, 3)?,
                    })
                })
                .await?;
                let layers = all(tx, sql::DETAIL_BLOBS, &[&id], blob_info).await?;
                Ok(Some(RepoDetail {
                    summary,
                    tags,
                    manifests,
                    layers,
                }))
            })
        })
        .await
    }

    async fn delete_repository(
        &self,
        repo: &RepoName,
        guard: &TagGuard,
        event: &NewAuditEvent,
    ) -> Result<Option<Vec<UploadId>>> {
        let data = (repo.clone(), guard.clone(), event.clone());
        self.write("deleting a repository", data, |tx, (repo, guard, event)| {
            Box::pin(async move {
                // Locked first: steps adding to it finish before, or wait
                // and find it gone; the sessions and tags read next are all
                // of them.
                let Some(id) = lock_repo_exclusively(tx, repo).await? else {
                    return Ok(None);
                };
                if !guard.allows_every_tag() {
                    let tags = all(tx, sql::REPO_TAGS, &[&id], |r| parsed(r, 0, Tag::new)).await?;
                    for tag in &tags {
                        guard.check(tag, None)?;
                    }
                }
                let uploads = all(tx, sql::REPO_UPLOADS, &[&id], |r| {
                    parsed(r, 0, UploadId::parse)
                })
                .await?;
                // Cascades to manifests, their references, tags, links and
                // upload sessions; blob rows stay for GC.
                change(tx, sql::DELETE_REPO, &[&id]).await?;
                audit::insert(tx, event).await?;
                Ok(Some(uploads))
            })
        })
        .await
    }

    async fn empty_repository(&self, repo: &RepoName) -> Result<bool> {
        self.write("emptying a repository", repo.clone(), |tx, repo| {
            Box::pin(async move {
                // Locked first, as for a delete: steps adding to it finish
                // before, or wait and find it emptied.
                let Some(id) = lock_repo_exclusively(tx, repo).await? else {
                    return Ok(false);
                };
                // Cascades to the manifests' references and tags.
                let manifests = change(tx, sql::DELETE_REPO_MANIFESTS, &[&id]).await?;
                let links = change(tx, sql::DELETE_REPO_LINKS, &[&id]).await?;
                change(tx, sql::PRUNE_REPO, &[&id]).await?;
                Ok(manifests + links > 0)
            })
        })
        .await
    }

    async fn prune_repository(&self, repo: &RepoName) -> Result<bool> {
        self.write("pruning an empty repository", repo.clone(), |tx, repo| {
            Box::pin(async move {
                let Some(id) = lock_repo_exclusively(tx, repo).await? else {
                    return Ok(false);
                };
                // A statement of its own, after the lock: it sees whatever
                // was added to the repository while we waited.
                Ok(change(tx, sql::PRUNE_REPO, &[&id]).await? > 0)
            })
        })
        .await
    }

    async fn stored_bytes(&self) -> Result<u64> {
        self.run("adding up stored bytes", (), |c, ()| {
            Box::pin(async move {
                let bytes = one(c, sql::STORED_BYTES, &[], |r| u64_at(r, 0)).await?;
                Ok(bytes.unwrap_or(0))
            })
        })
        .await
    }
}

/// The repository listing's statement for `q`, with PostgreSQL's values.
fn summaries_sql(q: &RepoQuery) -> (String, Vec<Box<dyn ToSql + Send + Sync>>) {
    let (sql, args) = repo_listing::summaries_sql(&sql::LISTING, q);
    let args = args
        .into_iter()
        .map(|a| -> Box<dyn ToSql + Send + Sync> {
            match a {
                Arg::Text(t) => Box::new(t),
                Arg::Int(i) => Box::new(i),
            }
        })
        .collect();
    (sql, args)
}
