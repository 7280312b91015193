//! `RepositoryStore` on SQLite.

use async_trait::async_trait;
use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::media::MediaType;
use mcr_core::names::{RepoName, Tag};
use mcr_core::ports::{Page, RepoDetail, RepoSummary, RepositoryStore};
use mcr_core::time::Timestamp;
use mcr_core::Result;
use rusqlite::{params, Row};

use super::rows::{all, blob_info, change, limit_of, one, parsed, repo_id, u64_at};
use super::{sql, SqliteMetaStore};

/// A row of `summary_select!`: the summary, and the repository's id.
fn summary(row: &Row<'_>) -> rusqlite::Result<(RepoSummary, i64)> {
    Ok((
        RepoSummary {
            name: parsed(row, 0, RepoName::new)?,
            created: Timestamp::from_millis(row.get(1)?),
            tag_count: u64_at(row, 2)?,
            manifest_count: u64_at(row, 3)?,
            total_size: u64_at(row, 4)?,
        },
        row.get(5)?,
    ))
}

#[async_trait]
impl RepositoryStore for SqliteMetaStore {
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        let repo = repo.clone();
        self.run("looking up a repository", move |c| {
            Ok(one(c, sql::REPO_VISIBLE, [repo.as_str()], |_| Ok(()))?.is_some())
        })
        .await
    }

    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepoName>> {
        let (last, limit) = (page.last.clone(), limit_of(page.limit));
        self.run("listing repositories", move |c| {
            all(c, sql::LIST_REPOS, params![last, limit], |r| {
                parsed(r, 0, RepoName::new)
            })
        })
        .await
    }

    async fn pushed_repositories(&self, prefix: &RepoName, limit: usize) -> Result<Vec<RepoName>> {
        let (prefix, limit) = (prefix.to_string(), limit_of(limit));
        self.run("listing pushed repositories", move |c| {
            all(c, sql::PUSHED_REPOS, params![prefix, limit], |r| {
                parsed(r, 0, RepoName::new)
            })
        })
        .await
    }

    async fn repository_summaries(&self, page: &Page) -> Result<Vec<RepoSummary>> {
        let (last, limit) = (page.last.clone(), limit_of(page.limit));
        self.read("summarising repositories", move |tx| {
            let rows = all(tx, sql::SUMMARIES, params![last, limit], summary)?;
            Ok(rows.into_iter().map(|(s, _)| s).collect())
        })
        .await
    }

    async fn repository_detail(&self, repo: &RepoName) -> Result<Option<RepoDetail>> {
        let repo = repo.clone();
        // One read transaction: the counts and the lists agree.
        self.read("reading a repository's detail", move |tx| {
            let Some((summary, id)) = one(tx, sql::SUMMARY, [repo.as_str()], summary)? else {
                return Ok(None);
            };
            let tags = all(tx, sql::DETAIL_TAGS, [id], |r| {
                Ok((parsed(r, 0, Tag::new)?, parsed(r, 1, Digest::parse)?))
            })?;
            let manifests = all(tx, sql::DETAIL_MANIFESTS, [id], |r| {
                Ok((
                    parsed(r, 0, Digest::parse)?,
                    parsed(r, 1, MediaType::new)?,
                    u64_at(r, 2)?,
                    Timestamp::from_millis(r.get(3)?),
                ))
            })?;
            let blobs = all(tx, sql::DETAIL_BLOBS, [id], blob_info)?;
            Ok(Some(RepoDetail {
                summary,
                tags,
                manifests,
                blobs,
            }))
        })
        .await
    }

    async fn delete_repository(&self, repo: &RepoName) -> Result<Option<Vec<UploadId>>> {
        let repo = repo.clone();
        self.write("deleting a repository", move |tx| {
            let Some(id) = repo_id(tx, &repo)? else {
                return Ok(None);
            };
            let uploads = all(tx, sql::REPO_UPLOADS, [id], |r| {
                parsed(r, 0, UploadId::parse)
            })?;
            // Cascades to manifests, their references, tags, links and
            // upload sessions; blob rows stay for GC.
            change(tx, sql::DELETE_REPO, [id])?;
            Ok(Some(uploads))
        })
        .await
    }

    async fn empty_repository(&self, repo: &RepoName) -> Result<bool> {
        let repo = repo.clone();
        self.write("emptying a repository", move |tx| {
            let Some(id) = repo_id(tx, &repo)? else {
                return Ok(false);
            };
            // Cascades to the manifests' references and tags.
            let manifests = change(tx, sql::DELETE_REPO_MANIFESTS, [id])?;
            let links = change(tx, sql::DELETE_REPO_LINKS, [id])?;
            change(tx, sql::PRUNE_REPOSITORY, [repo.as_str()])?;
            Ok(manifests + links > 0)
        })
        .await
    }

    async fn prune_repository(&self, repo: &RepoName) -> Result<bool> {
        let repo = repo.clone();
        self.write("pruning an empty repository", move |tx| {
            Ok(change(tx, sql::PRUNE_REPOSITORY, [repo.as_str()])? > 0)
        })
        .await
    }
}
