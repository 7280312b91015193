//! What every statement shares: running cached statements, reading
//! columns back into the domain's types, and the rows several steps write
//! (a repository on first write, a link).
//!
//! Values read back go through the domain's validating constructors, so a
//! row that was tampered with surfaces as a storage error, never as an
//! invalid `Digest` or `RepoName` loose in the engine.

use std::time::SystemTime;

use mcr_core::digest::Digest;
use mcr_core::names::RepoName;
use mcr_core::ports::{BlobInfo, Provenance};
use mcr_core::time::Timestamp;
use mcr_core::{Error, Result};
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{db, sql, storage};

/// A column that failed the domain's validation, as rusqlite reports a
/// conversion failure.
pub(super) fn invalid_column(idx: usize, e: Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

/// Reads a text column that holds a validated value back into its type.
pub(super) fn parsed<T>(
    row: &Row<'_>,
    idx: usize,
    parse: impl Fn(&str) -> Result<T>,
) -> rusqlite::Result<T> {
    let s: &str = row.get_ref(idx)?.as_str()?;
    parse(s).map_err(|e| invalid_column(idx, e))
}

/// [`parsed`] for a nullable column.
pub(super) fn parsed_opt<T>(
    row: &Row<'_>,
    idx: usize,
    parse: impl Fn(&str) -> Result<T>,
) -> rusqlite::Result<Option<T>> {
    match row.get_ref(idx)?.as_str_or_null()? {
        Some(s) => parse(s).map(Some).map_err(|e| invalid_column(idx, e)),
        None => Ok(None),
    }
}

/// A size or offset column; the store only writes values that came from
/// a `u64`, so a negative one is a tampered row.
pub(super) fn u64_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Integer, e.into()))
}

/// A size or offset for a column: SQLite integers are signed 64-bit.
pub(super) fn i64_of(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid("size", format!("{v} is too large to store")))
}

/// `LIMIT` for a page: `limit: 0` gives nothing, as the contract says.
pub(super) fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(super) fn now() -> i64 {
    Timestamp::from_system(SystemTime::now()).as_millis()
}

pub(super) fn blob_info(row: &Row<'_>) -> rusqlite::Result<BlobInfo> {
    Ok(BlobInfo {
        digest: parsed(row, 0, Digest::parse)?,
        size: u64_at(row, 1)?,
    })
}

/// Runs a cached statement and collects every row.
pub(super) fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let rows = stmt.query_map(params, map).map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

/// Runs a cached statement expected to give at most one row.
pub(super) fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.query_row(params, map).optional())
        .map_err(db)
}

/// Runs a cached statement that changes rows; returns how many.
pub(super) fn change(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .map_err(db)
}

pub(super) fn repo_id(conn: &Connection, name: &RepoName) -> Result<Option<i64>> {
    one(conn, sql::REPO_ID, [name.as_str()], |r| r.get(0))
}

/// The repository's id, creating it at `at` if this is its first write.
pub(super) fn ensure_repo(conn: &Connection, name: &RepoName, at: Timestamp) -> Result<i64> {
    change(
        conn,
        sql::INSERT_REPO,
        params![name.as_str(), at.as_millis()],
    )?;
    repo_id(conn, name)?.ok_or_else(|| {
        storage(
            "sqlite",
            "the repository vanished inside its own transaction",
        )
    })
}

/// Links a blob to a repository, stamped `at` (GC's grace period reads
/// the stamp) and marked pushed if `provenance` is a push (the start check
/// of `[[proxy]]` prefixes reads the mark).
pub(super) fn link(
    conn: &Connection,
    repo: i64,
    digest: &str,
    at: Timestamp,
    provenance: Provenance,
) -> Result<()> {
    let pushed = provenance == Provenance::Pushed;
    change(
        conn,
        sql::LINK,
        params![repo, digest, at.as_millis(), pushed],
    )
    .map(drop)
}
