//! What every statement shares: running cached statements, reading
//! columns back into the domain's types, and the rows several steps write
//! (a repository on first write, a link).
//!
//! Values read back go through the domain's validating constructors, so a
//! row that was tampered with surfaces as a storage error, never as an
//! invalid `Digest` or `RepoName` loose in the engine.

use std::time::SystemTime;

use deadpool_postgres::GenericClient;
use mcr_core::digest::Digest;
use mcr_core::names::RepoName;
use mcr_core::ports::{BlobInfo, Provenance};
use mcr_core::time::Timestamp;
use mcr_core::{Error, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{sql, StepResult, TxError};

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// A column that failed the domain's validation.
pub(super) fn invalid_column(row: &Row, idx: usize, e: impl std::fmt::Display) -> TxError {
    let name = row.columns().get(idx).map_or("?", |c| c.name());
    TxError::Engine(Error::storage(
        format!("reading column {name}"),
        format!("the database holds an invalid value: {e}"),
    ))
}

/// Reads a text column that holds a validated value back into its type.
pub(super) fn parsed<T>(row: &Row, idx: usize, parse: impl Fn(&str) -> Result<T>) -> StepResult<T> {
    let s: &str = row.try_get(idx)?;
    parse(s).map_err(|e| invalid_column(row, idx, e))
}

/// [`parsed`] for a nullable column.
pub(super) fn parsed_opt<T>(
    row: &Row,
    idx: usize,
    parse: impl Fn(&str) -> Result<T>,
) -> StepResult<Option<T>> {
    match row.try_get::<_, Option<&str>>(idx)? {
        Some(s) => parse(s).map(Some).map_err(|e| invalid_column(row, idx, e)),
        None => Ok(None),
    }
}

/// A size or offset column; the store only writes values that came from
/// a `u64`, so a negative one is a tampered row.
pub(super) fn u64_at(row: &Row, idx: usize) -> StepResult<u64> {
    let v: i64 = row.try_get(idx)?;
    u64::try_from(v).map_err(|e| invalid_column(row, idx, e))
}

/// A time column (`Timestamp` milliseconds).
pub(super) fn time_at(row: &Row, idx: usize) -> StepResult<Timestamp> {
    Ok(Timestamp::from_millis(row.try_get(idx)?))
}

/// A size or offset for a column: PostgreSQL's `bigint` is signed.
pub(super) fn i64_of(v: u64) -> StepResult<i64> {
    i64::try_from(v)
        .map_err(|_| TxError::Engine(Error::invalid("size", format!("{v} is too large to store"))))
}

/// `LIMIT` for a page: `limit: 0` gives nothing, as the contract says.
pub(super) fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(super) fn now() -> i64 {
    Timestamp::from_system(SystemTime::now()).as_millis()
}

pub(super) fn blob_info(row: &Row) -> StepResult<BlobInfo> {
    Ok(BlobInfo {
        digest: parsed(row, 0, Digest::parse)?,
        size: u64_at(row, 1)?,
    })
}

/// Runs a statement (prepared once per connection) and maps every row.
pub(super) async fn all<C: GenericClient + Sync, T>(
    c: &C,
    sql: &str,
    params: Params<'_>,
    map: impl Fn(&Row) -> StepResult<T>,
) -> StepResult<Vec<T>> {
    let stmt = c.prepare_cached(sql).await?;
    c.query(&stmt, params).await?.iter().map(map).collect()
}

/// Runs a statement expected to give at most one row.
pub(super) async fn one<C: GenericClient + Sync, T>(
    c: &C,
    sql: &str,
    params: Params<'_>,
    map: impl FnOnce(&Row) -> StepResult<T>,
) -> StepResult<Option<T>> {
    let stmt = c.prepare_cached(sql).await?;
    c.query_opt(&stmt, params)
        .await?
        .as_ref()
        .map(map)
        .transpose()
}

/// Runs a statement that changes rows; returns how many.
pub(super) async fn change<C: GenericClient + Sync>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> StepResult<u64> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

/// The repository's id, held `FOR KEY SHARE` until the transaction ends:
/// nobody deletes it meanwhile (see the module docs of `postgres`).
pub(super) async fn lock_repo<C: GenericClient + Sync>(
    c: &C,
    name: &RepoName,
) -> StepResult<Option<i64>> {
    one(c, sql::LOCK_REPO, &[&name.as_str()], |r| Ok(r.try_get(0)?)).await
}

/// The repository's id, its row held `FOR UPDATE` until the transaction
/// ends: steps adding to it (which hold it `FOR KEY SHARE`) finish before,
/// or wait and see what this one did. `None` if there is none.
pub(super) async fn lock_repo_exclusively<C: GenericClient + Sync>(
    c: &C,
    name: &RepoName,
) -> StepResult<Option<i64>> {
    one(c, sql::LOCK_REPO_FOR_DELETE, &[&name.as_str()], |r| {
        Ok(r.try_get(0)?)
    })
    .await
}

/// The repository's id, creating it at `at` if this is its first write,
/// held as [`lock_repo`] holds it.
pub(super) async fn ensure_repo<C: GenericClient + Sync>(
    c: &C,
    name: &RepoName,
    at: Timestamp,
) -> StepResult<i64> {
    // A repository being deleted as we look makes the lock find nothing
    // once the delete commits: insert it again then.
    for _ in 0..3 {
        if let Some(id) = lock_repo(c, name).await? {
            return Ok(id);
        }
        change(c, sql::INSERT_REPO, &[&name.as_str(), &at.as_millis()]).await?;
    }
    Err(TxError::Engine(Error::storage(
        format!("creating repository {name}"),
        "it was deleted each time it was made, three times over",
    )))
}

/// Links a blob to a repository, stamped `at` (GC's grace period reads
/// the stamp) and marked pushed if `provenance` is a push (the start check
/// of `[[proxy]]` prefixes reads the mark). Making a link again re-stamps
/// it.
pub(super) async fn link<C: GenericClient + Sync>(
    c: &C,
    repo: i64,
    digest: &str,
    at: Timestamp,
    provenance: Provenance,
) -> StepResult<()> {
    let pushed = provenance == Provenance::Pushed;
    change(c, sql::LINK, &[&repo, &digest, &at.as_millis(), &pushed])
        .await
        .map(drop)
}
