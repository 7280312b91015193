//! `QuotaStore` on PostgreSQL, and the quota check of the push steps.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use mcr_core::names::RepoName;
use mcr_core::ports::QuotaStore;
use mcr_core::quota::{
    quota_cap_reached, Quota, QuotaCharge, QuotaContent, QuotaLimit, QuotaScope, QuotaUsage,
};
use mcr_core::{Error, Result};
use tokio_postgres::Row;

use super::rows::{all, change, i64_of, invalid_column, one, parsed, u64_at};
use super::{sql, PostgresMetaStore, StepResult, TxError};

fn limit_at(row: &Row, idx: usize) -> StepResult<QuotaLimit> {
    QuotaLimit::new(u64_at(row, idx)?).map_err(|e| invalid_column(row, idx, e))
}

fn quota_of(row: &Row) -> StepResult<Quota> {
    Ok(Quota {
        id: row.try_get(0)?,
        scope: parsed(row, 1, QuotaScope::parse)?,
        limit_bytes: limit_at(row, 2)?,
    })
}

/// Bytes `scope` uses now.
async fn usage<C: GenericClient + Sync>(c: &C, scope: &QuotaScope) -> StepResult<u64> {
    let used = match scope {
        QuotaScope::Repository(name) => {
            one(c, sql::REPO_USAGE, &[&name.as_str()], |r| u64_at(r, 0)).await?
        }
        QuotaScope::Namespace(ns) => {
            let (from, to) = ns.name_range();
            one(c, sql::NAMESPACE_USAGE, &[&from, &to], |r| u64_at(r, 0)).await?
        }
    };
    Ok(used.unwrap_or(0))
}

/// Whether `content` is already counted in `scope`.
async fn counted<C: GenericClient + Sync>(
    c: &C,
    scope: &QuotaScope,
    content: QuotaContent<'_>,
) -> StepResult<bool> {
    let (in_repo, in_namespace) = match content {
        QuotaContent::Blob(..) => (sql::BLOB_IN_NAMED_REPO, sql::BLOB_IN_NAMESPACE),
        QuotaContent::Manifest(..) => (sql::MANIFEST_IN_NAMED_REPO, sql::MANIFEST_IN_NAMESPACE),
    };
    let digest = content.digest().to_string();
    let found = match scope {
        QuotaScope::Repository(name) => {
            one(c, in_repo, &[&digest, &name.as_str()], |_| Ok(())).await?
        }
        QuotaScope::Namespace(ns) => {
            let (from, to) = ns.name_range();
            one(c, in_namespace, &[&digest, &from, &to], |_| Ok(())).await?
        }
    };
    Ok(found.is_some())
}

/// Puts `content`, pushed into `repo`, to every quota covering it (the
/// repository's, then its namespaces' from the outermost), inside the
/// step's transaction. The covering quotas' rows are locked first, so a
/// concurrent push under the same quota waits for this one's commit and
/// then, under `READ COMMITTED`, measures with its link counted: two
/// pushes cannot both pass on the same free bytes. Steps take these locks
/// last, after the repository, blob and link rows they hold.
pub(super) async fn charge<C: GenericClient + Sync>(
    c: &C,
    repo: &RepoName,
    content: QuotaContent<'_>,
) -> StepResult<()> {
    let keys = QuotaScope::covering(repo);
    let limits: BTreeMap<String, QuotaLimit> = all(c, sql::LOCK_COVERING_QUOTAS, &[&keys], |r| {
        Ok((r.try_get::<_, String>(0)?, limit_at(r, 1)?))
    })
    .await?
    .into_iter()
    .collect();
    for key in &keys {
        let Some(&limit) = limits.get(key) else {
            continue;
        };
        let scope = QuotaScope::parse(key)?;
        let counted = counted(c, &scope, content).await?;
        let used = usage(c, &scope).await?;
        QuotaCharge::new(scope, limit, used, counted, content).check()?;
    }
    Ok(())
}

/// The name of the repository with id `id`, for a step that found it by
/// id.
pub(super) async fn repo_name<C: GenericClient + Sync>(
    c: &C,
    id: i64,
) -> StepResult<Option<RepoName>> {
    one(c, sql::REPO_NAME, &[&id], |r| parsed(r, 0, RepoName::new)).await
}

#[async_trait]
impl QuotaStore for PostgresMetaStore {
    async fn set_quota(&self, scope: &QuotaScope, limit: QuotaLimit, max: u64) -> Result<Quota> {
        self.write(
            "setting a quota",
            (scope.clone(), limit),
            move |tx, (scope, limit)| {
                Box::pin(async move {
                    change(tx, sql::LOCK_QUOTAS, &[]).await?;
                    let bytes = i64_of(limit.bytes())?;
                    let key = scope.to_string();
                    let existing: Option<i64> =
                        one(tx, sql::QUOTA_BY_SCOPE, &[&key], |r| Ok(r.try_get(0)?)).await?;
                    let id = match existing {
                        Some(id) => {
                            change(tx, sql::UPDATE_QUOTA, &[&id, &bytes]).await?;
                            id
                        }
                        None => {
                            let stored = one(tx, sql::QUOTA_COUNT, &[], |r| u64_at(r, 0))
                                .await?
                                .unwrap_or(0);
                            if stored >= max {
                                return Err(TxError::Engine(quota_cap_reached(max)));
                            }
                            one(
                                tx,
                                sql::INSERT_QUOTA,
                                &[&key, &bytes],
                                |r| Ok(r.try_get(0)?),
                            )
                            .await?
                            .ok_or_else(|| {
                                TxError::Engine(Error::storage(
                                    "setting a quota",
                                    "the insert gave no id",
                                ))
                            })?
                        }
                    };
                    Ok(Quota {
                        id,
                        scope: scope.clone(),
                        limit_bytes: *limit,
                    })
                })
            },
        )
        .await
    }

    async fn delete_quota(&self, id: i64) -> Result<Option<Quota>> {
        self.write("deleting a quota", id, |tx, id| {
            Box::pin(async move { one(tx, sql::DELETE_QUOTA, &[id], quota_of).await })
        })
        .await
    }

    async fn quotas(&self) -> Result<Vec<QuotaUsage>> {
        // One snapshot: every quota's use as of the same moment.
        self.read("listing quotas", (), |tx, ()| {
            Box::pin(async move {
                let mut listed = Vec::new();
                for quota in all(tx, sql::LIST_QUOTAS, &[], quota_of).await? {
                    let used_bytes = usage(tx, &quota.scope).await?;
                    listed.push(QuotaUsage { quota, used_bytes });
                }
                Ok(listed)
            })
        })
        .await
    }
}
