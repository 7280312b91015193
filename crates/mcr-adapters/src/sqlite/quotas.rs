//! `QuotaStore` on SQLite, and the quota check of the push steps.

use async_trait::async_trait;
use mcr_core::names::RepoName;
use mcr_core::ports::QuotaStore;
use mcr_core::quota::{
    quota_cap_reached, Quota, QuotaCharge, QuotaContent, QuotaLimit, QuotaScope, QuotaUsage,
};
use mcr_core::Result;
use rusqlite::{params, Connection, Row};

use super::rows::{all, change, i64_of, one, parsed, u64_at};
use super::{sql, SqliteMetaStore};

fn limit_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<QuotaLimit> {
    let bytes = u64_at(row, idx)?;
    QuotaLimit::new(bytes).map_err(|e| super::rows::invalid_column(idx, e))
}

fn quota_of(row: &Row<'_>) -> rusqlite::Result<Quota> {
    Ok(Quota {
        id: row.get(0)?,
        scope: parsed(row, 1, QuotaScope::parse)?,
        limit_bytes: limit_at(row, 2)?,
    })
}

/// Bytes `scope` uses now.
fn usage(c: &Connection, scope: &QuotaScope) -> Result<u64> {
    let used = match scope {
        QuotaScope::Repository(name) => one(c, sql::REPO_USAGE, [name.as_str()], |r| u64_at(r, 0))?,
        QuotaScope::Namespace(ns) => {
            let (from, to) = ns.name_range();
            one(c, sql::NAMESPACE_USAGE, params![from, to], |r| u64_at(r, 0))?
        }
    };
    Ok(used.unwrap_or(0))
}

/// Whether `content` is already counted in `scope`.
fn counted(c: &Connection, scope: &QuotaScope, content: QuotaContent<'_>) -> Result<bool> {
    let (in_repo, in_namespace) = match content {
        QuotaContent::Blob(..) => (sql::BLOB_IN_NAMED_REPO, sql::BLOB_IN_NAMESPACE),
        QuotaContent::Manifest(..) => (sql::MANIFEST_IN_NAMED_REPO, sql::MANIFEST_IN_NAMESPACE),
    };
    let digest = content.digest().to_string();
    let found = match scope {
        QuotaScope::Repository(name) => {
            one(c, in_repo, params![digest, name.as_str()], |_| Ok(()))?
        }
        QuotaScope::Namespace(ns) => {
            let (from, to) = ns.name_range();
            one(c, in_namespace, params![digest, from, to], |_| Ok(()))?
        }
    };
    Ok(found.is_some())
}

/// Puts `content`, pushed into `repo`, to every quota covering it (the
/// repository's, then its namespaces' from the outermost), inside the
/// step's write transaction: SQLite has one writer at a time, so nothing
/// changes between the measure and the write that follows.
pub(super) fn charge(tx: &Connection, repo: &RepoName, content: QuotaContent<'_>) -> Result<()> {
    for key in QuotaScope::covering(repo) {
        let Some((_, limit)) = one(tx, sql::QUOTA_BY_SCOPE, [key.as_str()], |r| {
            Ok((r.get::<_, i64>(0)?, limit_at(r, 1)?))
        })?
        else {
            continue;
        };
        let scope = QuotaScope::parse(&key)?;
        let counted = counted(tx, &scope, content)?;
        let used = usage(tx, &scope)?;
        QuotaCharge::new(scope, limit, used, counted, content).check()?;
    }
    Ok(())
}

/// The name of the repository with id `id`, for a step that found it by
/// id.
pub(super) fn repo_name(tx: &Connection, id: i64) -> Result<Option<RepoName>> {
    one(tx, sql::REPO_NAME, [id], |r| parsed(r, 0, RepoName::new))
}

#[async_trait]
impl QuotaStore for SqliteMetaStore {
    async fn set_quota(&self, scope: &QuotaScope, limit: QuotaLimit, max: u64) -> Result<Quota> {
        let scope = scope.clone();
        self.write("setting a quota", move |tx| {
            let bytes = i64_of(limit.bytes())?;
            let key = scope.to_string();
            let id = match one(tx, sql::QUOTA_BY_SCOPE, [key.as_str()], |r| r.get(0))? {
                Some(id) => {
                    change(tx, sql::UPDATE_QUOTA, params![id, bytes])?;
                    id
                }
                None => {
                    let stored = one(tx, sql::QUOTA_COUNT, [], |r| u64_at(r, 0))?.unwrap_or(0);
                    if stored >= max {
                        return Err(quota_cap_reached(max));
                    }
                    one(tx, sql::INSERT_QUOTA, params![key, bytes], |r| r.get(0))?
                        .ok_or_else(|| super::storage("sqlite", "a quota insert gave no id"))?
                }
            };
            Ok(Quota {
                id,
                scope,
                limit_bytes: limit,
            })
        })
        .await
    }

    async fn delete_quota(&self, id: i64) -> Result<Option<Quota>> {
        self.write("deleting a quota", move |tx| {
            one(tx, sql::DELETE_QUOTA, [id], quota_of)
        })
        .await
    }

    async fn quotas(&self) -> Result<Vec<QuotaUsage>> {
        self.read("listing quotas", move |tx| {
            all(tx, sql::LIST_QUOTAS, [], quota_of)?
                .into_iter()
                .map(|quota| {
                    let used_bytes = usage(tx, &quota.scope)?;
                    Ok(QuotaUsage { quota, used_bytes })
                })
                .collect()
        })
        .await
    }
}
