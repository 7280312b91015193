//! `RepositoryStore` on SQLite.

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
use mcr_core::time::Timestamp;
use mcr_core::Result;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Row};

use super::rows::{all, blob_info, change, limit_of, one, parsed, repo_id, u64_at};
use super::{audit, sql, SqliteMetaStore};
use crate::repo_listing::{self, Arg};

/// A row of `summary_select!`: the summary, and the repository's id.
fn summary(row: &Row<'_>) -> rusqlite::Result<(RepoSummary, i64)> {
    Ok((
        RepoSummary {
            name: parsed(row, 0, RepoName::new)?,
            created: Timestamp::from_millis(row.get(1)?),
            tag_count: u64_at(row, 2)?,
            manifest_count: u64_at(row, 3)?,
            total_size: u64_at(row, 4)?,
            last_push: match row.get::<_, i64>(5)? {
                0 => None,
                ms => Some(Timestamp::from_millis(ms)),
            },
        },
        row.get(6)?,
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

    async fn repository_summaries(&self, query: &RepoQuery) -> Result<Vec<RepoSummary>> {
        let (sql, args) = summaries_sql(query);
        self.read("summarising repositories", move |tx| {
            let rows = all(tx, &sql, params_from_iter(args), summary)?;
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
                Ok(TagRef {
                    name: parsed(r, 0, Tag::new)?,
                    digest: parsed(r, 1, Digest::parse)?,
                })
            })?;
            let manifests = all(tx, sql::DETAIL_MANIFESTS, [id], |r| {
                Ok(ManifestSummary {
                    digest: parsed(r, 0, Digest::parse)?,
                    media_type: parsed(r, 1, MediaType::new)?,
                    size: u64_at(r, 2)?,
                    created: Timestamp::from_millis(r.get(3)?),
                })
            })?;
            let layers = all(tx, sql::DETAIL_BLOBS, [id], blob_info)?;
            Ok(Some(RepoDetail {
                summary,
                tags,
                manifests,
                layers,
            }))
        })
        .await
    }

    async fn delete_repository(
        &self,
        repo: &RepoName,
        guard: &TagGuard,
        event: &NewAuditEvent,
    ) -> Result<Option<Vec<UploadId>>> {
        let (repo, guard, event) = (repo.clone(), guard.clone(), event.clone());
        self.write("deleting a repository", move |tx| {
            let Some(id) = repo_id(tx, &repo)? else {
                return Ok(None);
            };
            if !guard.allows_every_tag() {
                for tag in all(tx, sql::REPO_TAGS, [id], |r| parsed(r, 0, Tag::new))? {
                    guard.check(&tag, None)?;
                }
            }
            let uploads = all(tx, sql::REPO_UPLOADS, [id], |r| {
                parsed(r, 0, UploadId::parse)
            })?;
            // Cascades to manifests, their references, tags, links and
            // upload sessions; blob rows stay for GC.
            change(tx, sql::DELETE_REPO, [id])?;
            audit::insert(tx, &event)?;
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

    async fn stored_bytes(&self) -> Result<u64> {
        self.run("adding up stored bytes", |c| {
            Ok(one(c, sql::STORED_BYTES, [], |r| u64_at(r, 0))?.unwrap_or(0))
        })
        .await
    }
}

/// The repository listing's statement for `q`, with SQLite's values.
pub(super) fn summaries_sql(q: &RepoQuery) -> (String, Vec<Value>) {
    let (sql, args) = repo_listing::summaries_sql(&sql::LISTING, q);
    let args = args
        .into_iter()
        .map(|a| match a {
            Arg::Text(t) => Value::Text(t),
            Arg::Int(i) => Value::Integer(i),
        })
        .collect();
    (sql, args)
}
