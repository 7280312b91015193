//! The `MetaStore` methods: one transaction (or one read) each.
//!
//! Every statement is a constant in [`sql`], prepared once per connection
//! (`prepare_cached`) and checked against the indexes by this module's
//! tests; only the audit query, whose filters vary, is assembled per call.
//! Values read back go through the domain's validating constructors, so a
//! row that was tampered with surfaces as a storage error, never as an
//! invalid `Digest` or `RepoName` loose in the engine.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use mcr_core::audit::{AuditEvent, AuditQuery, NewAuditEvent};
use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::media::MediaType;
use mcr_core::names::{Reference, RepoName, Tag};
use mcr_core::policy::{Rule, RuleDraft};
use mcr_core::ports::{
    BlobInfo, ManifestRecord, MetaStore, NewManifest, Page, RepoDetail, RepoSummary, UploadSession,
};
use mcr_core::time::Timestamp;
use mcr_core::{Error, Result};
use rusqlite::types::{Type, Value};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::{backup, db, storage, SqliteMetaStore};

/// The statements, named for what they do.
mod sql {
    /// The columns `manifest_record` reads, from `repositories r` joined
    /// with `manifests m`.
    macro_rules! manifest_columns {
        () => {
            "r.name, m.digest, m.media_type, m.raw, m.subject_digest, m.artifact_type, m.created"
        };
    }

    /// A repository's summary columns (read by `summary`), then its id.
    macro_rules! summary_select {
        () => {
            "SELECT r.name, r.created,
                (SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id),
                (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id),
                (SELECT COALESCE(SUM(m.size), 0) FROM manifests m WHERE m.repository_id = r.id)
                  + (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs rb
                     JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = r.id),
                r.id
             FROM repositories r "
        };
    }

    // Repositories. Pages compare with `COALESCE(?, '')` rather than
    // `(? IS NULL OR name > ?)` so the bound is a plain range the index
    // can seek to: every name sorts after ''.
    pub const REPO_ID: &str = "SELECT id FROM repositories WHERE name = ?1";
    pub const INSERT_REPO: &str =
        "INSERT INTO repositories (name, created) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING";
    pub const LIST_REPOS: &str =
        "SELECT name FROM repositories WHERE name > COALESCE(?1, '') ORDER BY name LIMIT ?2";
    pub const SUMMARIES: &str = concat!(
        summary_select!(),
        "WHERE r.name > COALESCE(?1, '') ORDER BY r.name LIMIT ?2"
    );
    pub const SUMMARY: &str = concat!(summary_select!(), "WHERE r.name = ?1");
    pub const DETAIL_TAGS: &str = "SELECT t.name, m.digest FROM tags t
        JOIN manifests m ON m.id = t.manifest_id WHERE t.repository_id = ?1 ORDER BY t.name";
    pub const DETAIL_MANIFESTS: &str = "SELECT digest, media_type, size, created FROM manifests
        WHERE repository_id = ?1 ORDER BY created DESC, digest";
    pub const DETAIL_BLOBS: &str = "SELECT b.digest, b.size FROM repository_blobs rb
        JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = ?1 ORDER BY rb.digest";
    pub const REPO_UPLOADS: &str = "SELECT id FROM uploads WHERE repository_id = ?1 ORDER BY id";
    pub const DELETE_REPO: &str = "DELETE FROM repositories WHERE id = ?1";

    // Manifests and tags.
    pub const IS_LINKED: &str =
        "SELECT 1 FROM repository_blobs WHERE repository_id = ?1 AND digest = ?2";
    pub const MANIFEST_ID: &str =
        "SELECT id FROM manifests WHERE repository_id = ?1 AND digest = ?2";
    /// Returns the new id, or no row if the manifest was already stored.
    pub const INSERT_MANIFEST: &str = "INSERT INTO manifests
        (repository_id, digest, media_type, raw, size, subject_digest, artifact_type, created)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
        ON CONFLICT (repository_id, digest) DO NOTHING RETURNING id";
    pub const INSERT_REFERENCE: &str =
        "INSERT OR IGNORE INTO manifest_references (manifest_id, kind, digest) VALUES (?1, ?2, ?3)";
    pub const UPSERT_TAG: &str = "INSERT INTO tags (repository_id, name, manifest_id, updated)
        VALUES (?1, ?2, ?3, ?4) ON CONFLICT (repository_id, name)
        DO UPDATE SET manifest_id = excluded.manifest_id, updated = excluded.updated";
    pub const MANIFEST_BY_TAG: &str = concat!(
        "SELECT ",
        manifest_columns!(),
        " FROM repositories r JOIN tags t ON t.repository_id = r.id
          JOIN manifests m ON m.id = t.manifest_id WHERE r.name = ?1 AND t.name = ?2"
    );
    pub const MANIFEST_BY_DIGEST: &str = concat!(
        "SELECT ",
        manifest_columns!(),
        " FROM repositories r JOIN manifests m ON m.repository_id = r.id
          WHERE r.name = ?1 AND m.digest = ?2"
    );
    pub const REFERRERS: &str = concat!(
        "SELECT ",
        manifest_columns!(),
        " FROM repositories r JOIN manifests m ON m.repository_id = r.id
          WHERE r.name = ?1 AND m.subject_digest = ?2 ORDER BY m.digest"
    );
    /// Tags and references go with it (`ON DELETE CASCADE`).
    pub const DELETE_MANIFEST: &str = "DELETE FROM manifests
        WHERE repository_id = (SELECT id FROM repositories WHERE name = ?1) AND digest = ?2";
    pub const DELETE_TAG: &str = "DELETE FROM tags
        WHERE repository_id = (SELECT id FROM repositories WHERE name = ?1) AND name = ?2";
    pub const LIST_TAGS: &str = "SELECT name FROM tags
        WHERE repository_id = (SELECT id FROM repositories WHERE name = ?1)
          AND name > COALESCE(?2, '') ORDER BY name LIMIT ?3";

    // Blobs and links.
    pub const BLOB_IN_REPO: &str = "SELECT b.digest, b.size FROM repositories r
        JOIN repository_blobs rb ON rb.repository_id = r.id JOIN blobs b ON b.digest = rb.digest
        WHERE r.name = ?1 AND rb.digest = ?2";
    pub const BLOB_EXISTS: &str = "SELECT 1 FROM blobs WHERE digest = ?1";
    pub const INSERT_BLOB: &str =
        "INSERT INTO blobs (digest, size, created) VALUES (?1, ?2, ?3) ON CONFLICT (digest) DO NOTHING";
    /// Making a link again re-stamps it: GC's grace period counts from the
    /// latest upload or mount.
    pub const LINK: &str = "INSERT INTO repository_blobs (repository_id, digest, linked_at)
        VALUES (?1, ?2, ?3)
        ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at";
    pub const UNLINK: &str = "DELETE FROM repository_blobs
        WHERE repository_id = (SELECT id FROM repositories WHERE name = ?1) AND digest = ?2";
    pub const LIST_BLOBS: &str = "SELECT digest, size FROM blobs ORDER BY digest";

    // Upload sessions.
    pub const INSERT_UPLOAD: &str = "INSERT INTO uploads (id, repository_id, offset, active)
        VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING";
    pub const GET_UPLOAD: &str = "SELECT u.id, r.name, u.offset, u.active FROM uploads u
        JOIN repositories r ON r.id = u.repository_id WHERE u.id = ?1";
    pub const SET_UPLOAD_OFFSET: &str = "UPDATE uploads SET offset = ?2, active = ?3 WHERE id = ?1";
    pub const UPLOAD_REPO: &str = "SELECT repository_id FROM uploads WHERE id = ?1";
    pub const DELETE_UPLOAD: &str = "DELETE FROM uploads WHERE id = ?1";
    pub const PRUNE_REPOSITORY: &str = "DELETE FROM repositories WHERE name = ?1
        AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = repositories.id)
        AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = repositories.id)
        AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.repository_id = repositories.id)";
    pub const UPLOADS_IDLE: &str = "SELECT u.id, r.name, u.offset, u.active FROM uploads u
        JOIN repositories r ON r.id = u.repository_id
        WHERE u.active < ?1 ORDER BY u.active, u.id";

    // GC. Strict comparisons: a row or link made exactly at the cutoff
    // protects the blob. Only `blob` references protect blobs; `manifest`
    // ones name manifests, which are not in `blobs`.
    pub const SWEEPABLE: &str = "SELECT b.digest, b.size FROM blobs b
        WHERE b.created < ?1
          AND NOT EXISTS (SELECT 1 FROM manifest_references mr
                          WHERE mr.digest = b.digest AND mr.kind = 'blob')
          AND NOT EXISTS (SELECT 1 FROM repository_blobs rb
                          WHERE rb.digest = b.digest AND rb.linked_at >= ?1)
        ORDER BY b.digest";
    /// Its links go with it (`ON DELETE CASCADE`).
    pub const DELETE_BLOB: &str = "DELETE FROM blobs WHERE digest = ?1";

    // Policy rules.
    pub const LIST_RULES: &str = "SELECT id, rule_json FROM policy_rules ORDER BY id";
    pub const GET_RULE: &str = "SELECT id, rule_json FROM policy_rules WHERE id = ?1";
    /// The JSON is filled in once the id is known.
    pub const INSERT_RULE: &str = "INSERT INTO policy_rules
        (priority, enabled, rule_json, created, updated) VALUES (?1, ?2, '{}', ?3, ?3)";
    pub const UPDATE_RULE: &str = "UPDATE policy_rules
        SET priority = ?2, enabled = ?3, rule_json = ?4, updated = ?5 WHERE id = ?1";
    pub const DELETE_RULE: &str = "DELETE FROM policy_rules WHERE id = ?1";

    // Audit log.
    pub const INSERT_AUDIT: &str = "INSERT INTO audit_log
        (time, event_type, actor_id, repository, digest, ip, details)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
}

/// A column that failed the domain's validation, as rusqlite reports a
/// conversion failure.
fn invalid_column(idx: usize, e: Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

/// Reads a text column that holds a validated value back into its type.
fn parsed<T>(row: &Row<'_>, idx: usize, parse: impl Fn(&str) -> Result<T>) -> rusqlite::Result<T> {
    let s: &str = row.get_ref(idx)?.as_str()?;
    parse(s).map_err(|e| invalid_column(idx, e))
}

/// [`parsed`] for a nullable column.
fn parsed_opt<T>(
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
fn u64_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Integer, e.into()))
}

/// A size or offset for a column: SQLite integers are signed 64-bit.
fn i64_of(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid("size", format!("{v} is too large to store")))
}

/// `LIMIT` for a page: `limit: 0` gives nothing, as the contract says.
fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn now() -> i64 {
    Timestamp::from_system(SystemTime::now()).as_millis()
}

fn manifest_record(row: &Row<'_>) -> rusqlite::Result<ManifestRecord> {
    let raw: Vec<u8> = row.get(3)?;
    Ok(ManifestRecord {
        repository: parsed(row, 0, RepoName::new)?,
        digest: parsed(row, 1, Digest::parse)?,
        media_type: parsed(row, 2, MediaType::new)?,
        raw: Bytes::from(raw),
        subject: parsed_opt(row, 4, Digest::parse)?,
        artifact_type: parsed_opt(row, 5, MediaType::new)?,
        created: Timestamp::from_millis(row.get(6)?),
    })
}

fn blob_info(row: &Row<'_>) -> rusqlite::Result<BlobInfo> {
    Ok(BlobInfo {
        digest: parsed(row, 0, Digest::parse)?,
        size: u64_at(row, 1)?,
    })
}

fn upload_session(row: &Row<'_>) -> rusqlite::Result<UploadSession> {
    Ok(UploadSession {
        id: parsed(row, 0, UploadId::parse)?,
        repository: parsed(row, 1, RepoName::new)?,
        offset: u64_at(row, 2)?,
        active: Timestamp::from_millis(row.get(3)?),
    })
}

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

fn rule_of(row: &Row<'_>) -> rusqlite::Result<Rule> {
    let json: &str = row.get_ref(1)?.as_str()?;
    let mut rule: Rule = serde_json::from_str(json)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, Type::Text, Box::new(e)))?;
    // The column is the authority: the JSON was written before or
    // together with it.
    rule.id = row.get(0)?;
    Ok(rule)
}

fn audit_event(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    let details: &str = row.get_ref(7)?.as_str()?;
    let details: BTreeMap<String, String> = serde_json::from_str(details)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(7, Type::Text, Box::new(e)))?;
    Ok(AuditEvent {
        id: row.get(0)?,
        event: NewAuditEvent {
            time: Timestamp::from_millis(row.get(1)?),
            event_type: parsed(row, 2, str::parse)?,
            actor_id: row.get(3)?,
            repository: parsed_opt(row, 4, RepoName::new)?,
            digest: parsed_opt(row, 5, Digest::parse)?,
            ip: row.get(6)?,
            details,
        },
    })
}

/// Runs a cached statement and collects every row.
fn all<T>(
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
fn one<T>(
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
fn change(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .map_err(db)
}

fn repo_id(conn: &Connection, name: &RepoName) -> Result<Option<i64>> {
    one(conn, sql::REPO_ID, [name.as_str()], |r| r.get(0))
}

/// The repository's id, creating it at `at` if this is its first write.
fn ensure_repo(conn: &Connection, name: &RepoName, at: Timestamp) -> Result<i64> {
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
/// the stamp).
fn link(conn: &Connection, repo: i64, digest: &str, at: Timestamp) -> Result<()> {
    change(conn, sql::LINK, params![repo, digest, at.as_millis()]).map(drop)
}

/// Writes a rule's columns and JSON, stamped `updated` (milliseconds);
/// returns the rows changed (0 if there is no rule with its id).
fn store_rule(conn: &Connection, rule: &Rule, updated: i64) -> Result<usize> {
    let json = serde_json::to_string(rule).map_err(|e| storage("encoding a policy rule", e))?;
    change(
        conn,
        sql::UPDATE_RULE,
        params![rule.id, rule.priority, rule.enabled, json, updated],
    )
}

/// The audit query for `q`: only the filters it sets, so each query can
/// use the index of its most selective filter (a generic `(? IS NULL OR
/// col = ?)` form would defeat them all). Newest first, with the id as
/// tie-break: events of one millisecond come last-recorded first.
fn audit_sql(q: &AuditQuery) -> (String, Vec<Value>) {
    let mut sql = String::from(
        "SELECT id, time, event_type, actor_id, repository, digest, ip, details FROM audit_log",
    );
    let mut args: Vec<Value> = Vec::with_capacity(7);
    let mut filter = |clause: &str, v: Value| {
        sql.push_str(if args.is_empty() { " WHERE " } else { " AND " });
        args.push(v);
        sql.push_str(clause);
        sql.push_str(&args.len().to_string());
    };
    if let Some(t) = q.event_type {
        filter("event_type = ?", Value::Text(t.as_str().into()));
    }
    if let Some(a) = &q.actor_id {
        filter("actor_id = ?", Value::Text(a.clone()));
    }
    if let Some(r) = &q.repository {
        filter("repository = ?", Value::Text(r.as_str().into()));
    }
    if let Some(s) = q.since {
        filter("time >= ?", Value::Integer(s.as_millis()));
    }
    if let Some(u) = q.until {
        filter("time <= ?", Value::Integer(u.as_millis()));
    }
    args.push(Value::Integer(limit_of(q.limit)));
    args.push(Value::Integer(limit_of(q.offset)));
    let n = args.len();
    sql.push_str(&format!(
        " ORDER BY time DESC, id DESC LIMIT ?{} OFFSET ?{n}",
        n - 1
    ));
    (sql, args)
}

#[async_trait]
impl MetaStore for SqliteMetaStore {
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        let repo = repo.clone();
        self.run("looking up a repository", move |c| {
            Ok(repo_id(c, &repo)?.is_some())
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

    async fn put_manifest(&self, m: NewManifest) -> Result<()> {
        self.write("storing a manifest", move |tx| {
            // Check everything before writing anything: a failure then
            // needs no rollback at all (and gets one anyway on drop).
            // Without the repository nothing is linked or stored in it.
            let existing = repo_id(tx, &m.repository)?;
            for d in &m.blobs {
                let linked = match existing {
                    Some(id) => one(tx, sql::IS_LINKED, params![id, d.to_string()], |_| Ok(()))?,
                    None => None,
                };
                if linked.is_none() {
                    return Err(Error::ManifestBlobUnknown(d.clone()));
                }
            }
            for d in &m.children {
                let stored = match existing {
                    Some(id) => one(tx, sql::MANIFEST_ID, params![id, d.to_string()], |_| Ok(()))?,
                    None => None,
                };
                if stored.is_none() {
                    return Err(Error::ManifestChildUnknown(d.clone()));
                }
            }

            let repo = match existing {
                Some(id) => id,
                None => ensure_repo(tx, &m.repository, m.created)?,
            };
            let digest = m.digest.to_string();
            let inserted: Option<i64> = one(
                tx,
                sql::INSERT_MANIFEST,
                params![
                    repo,
                    digest,
                    m.media_type.as_str(),
                    &m.raw[..],
                    i64_of(m.raw.len() as u64)?,
                    m.subject.as_ref().map(Digest::to_string),
                    m.artifact_type.as_ref().map(MediaType::as_str),
                    m.created.as_millis(),
                ],
                |r| r.get(0),
            )?;
            let manifest_id = match inserted {
                Some(id) => {
                    // A new manifest: its references, in the same step, so
                    // GC never sees it without them. A stored one already
                    // has them (same digest, same bytes, same references).
                    let mut reference = tx.prepare_cached(sql::INSERT_REFERENCE).map_err(db)?;
                    for d in &m.blobs {
                        reference
                            .execute(params![id, "blob", d.to_string()])
                            .map_err(db)?;
                    }
                    for d in &m.children {
                        reference
                            .execute(params![id, "manifest", d.to_string()])
                            .map_err(db)?;
                    }
                    id
                }
                None => one(tx, sql::MANIFEST_ID, params![repo, digest], |r| r.get(0))?
                    .ok_or_else(|| {
                        storage("sqlite", "the manifest vanished inside its own transaction")
                    })?,
            };
            if let Some(tag) = &m.tag {
                change(
                    tx,
                    sql::UPSERT_TAG,
                    params![repo, tag.as_str(), manifest_id, m.created.as_millis()],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let repo = repo.clone();
        let (sql, key) = match reference {
            Reference::Tag(t) => (sql::MANIFEST_BY_TAG, t.to_string()),
            Reference::Digest(d) => (sql::MANIFEST_BY_DIGEST, d.to_string()),
        };
        self.run("reading a manifest", move |c| {
            one(c, sql, params![repo.as_str(), key], manifest_record)
        })
        .await
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.clone(), digest.to_string());
        self.write("deleting a manifest", move |tx| {
            Ok(change(tx, sql::DELETE_MANIFEST, params![repo.as_str(), digest])? > 0)
        })
        .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let (repo, tag) = (repo.clone(), tag.clone());
        self.write("deleting a tag", move |tx| {
            Ok(change(tx, sql::DELETE_TAG, params![repo.as_str(), tag.as_str()])? > 0)
        })
        .await
    }

    async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<Vec<Tag>> {
        let repo = repo.clone();
        let (last, limit) = (page.last.clone(), limit_of(page.limit));
        self.run("listing tags", move |c| {
            all(
                c,
                sql::LIST_TAGS,
                params![repo.as_str(), last, limit],
                |r| parsed(r, 0, Tag::new),
            )
        })
        .await
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ManifestRecord>> {
        let (repo, subject) = (repo.clone(), subject.to_string());
        self.run("listing referrers", move |c| {
            all(
                c,
                sql::REFERRERS,
                params![repo.as_str(), subject],
                manifest_record,
            )
        })
        .await
    }

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
    ) -> Result<Option<BlobInfo>> {
        let (from, to, digest) = (from.clone(), to.clone(), digest.to_string());
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
            let to_id = ensure_repo(tx, &to, at)?;
            link(tx, to_id, &digest, at)?;
            Ok(Some(info))
        })
        .await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.clone(), digest.to_string());
        self.write("unlinking a blob", move |tx| {
            Ok(change(tx, sql::UNLINK, params![repo.as_str(), digest])? > 0)
        })
        .await
    }

    async fn list_blobs(&self) -> Result<Vec<BlobInfo>> {
        self.run("listing blobs", |c| all(c, sql::LIST_BLOBS, [], blob_info))
            .await
    }

    async fn create_upload(&self, session: &UploadSession) -> Result<()> {
        let session = session.clone();
        self.write("creating an upload session", move |tx| {
            let repo = ensure_repo(tx, &session.repository, session.active)?;
            let n = change(
                tx,
                sql::INSERT_UPLOAD,
                params![
                    session.id.as_str(),
                    repo,
                    i64_of(session.offset)?,
                    session.active.as_millis()
                ],
            )?;
            if n == 0 {
                // Rolls back the repository too, if this made it.
                return Err(Error::Conflict(format!(
                    "upload {} already exists",
                    session.id
                )));
            }
            Ok(())
        })
        .await
    }

    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadSession>> {
        let id = id.clone();
        self.run("reading an upload session", move |c| {
            one(c, sql::GET_UPLOAD, [id.as_str()], upload_session)
        })
        .await
    }

    async fn set_upload_offset(&self, id: &UploadId, offset: u64, at: Timestamp) -> Result<()> {
        let id = id.clone();
        self.write("recording an upload's offset", move |tx| {
            if change(
                tx,
                sql::SET_UPLOAD_OFFSET,
                params![id.as_str(), i64_of(offset)?, at.as_millis()],
            )? == 0
            {
                return Err(Error::UploadUnknown(id.to_string()));
            }
            Ok(())
        })
        .await
    }

    async fn complete_upload(&self, id: &UploadId, blob: &BlobInfo, at: Timestamp) -> Result<()> {
        let (id, blob) = (id.clone(), blob.clone());
        self.write("completing an upload", move |tx| {
            let repo: i64 = one(tx, sql::UPLOAD_REPO, [id.as_str()], |r| r.get(0))?
                .ok_or_else(|| Error::UploadUnknown(id.to_string()))?;
            let digest = blob.digest.to_string();
            // A row that exists keeps its `created`: the link's new stamp
            // is what protects the blob from a sweep.
            change(
                tx,
                sql::INSERT_BLOB,
                params![digest, i64_of(blob.size)?, at.as_millis()],
            )?;
            link(tx, repo, &digest, at)?;
            change(tx, sql::DELETE_UPLOAD, [id.as_str()])?;
            Ok(())
        })
        .await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        let id = id.clone();
        self.write("deleting an upload session", move |tx| {
            Ok(change(tx, sql::DELETE_UPLOAD, [id.as_str()])? > 0)
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

    async fn uploads_idle_since(&self, before: Timestamp) -> Result<Vec<UploadSession>> {
        self.run("listing stale upload sessions", move |c| {
            all(c, sql::UPLOADS_IDLE, [before.as_millis()], upload_session)
        })
        .await
    }

    async fn sweep_unreferenced_blobs(&self, cutoff: Timestamp) -> Result<Vec<BlobInfo>> {
        // One write transaction: a manifest committed before it protects
        // its blobs by reference, and one that commits after it finds
        // the swept blobs unlinked and fails with `ManifestBlobUnknown`.
        self.write("sweeping unreferenced blobs", move |tx| {
            let doomed = all(tx, sql::SWEEPABLE, [cutoff.as_millis()], blob_info)?;
            let mut delete = tx.prepare_cached(sql::DELETE_BLOB).map_err(db)?;
            for b in &doomed {
                delete.execute([b.digest.to_string()]).map_err(db)?;
            }
            Ok(doomed)
        })
        .await
    }

    async fn list_rules(&self) -> Result<Vec<Rule>> {
        self.run("listing policy rules", |c| {
            all(c, sql::LIST_RULES, [], rule_of)
        })
        .await
    }

    async fn get_rule(&self, id: i64) -> Result<Option<Rule>> {
        self.run("reading a policy rule", move |c| {
            one(c, sql::GET_RULE, [id], rule_of)
        })
        .await
    }

    async fn create_rule(&self, draft: &RuleDraft) -> Result<Rule> {
        let draft = draft.clone();
        self.write("creating a policy rule", move |tx| {
            // AUTOINCREMENT: ids only grow, never reused after a delete,
            // so an audit entry's rule id names one rule forever. One clock
            // reading: a new rule was last updated when it was created.
            let at = now();
            change(
                tx,
                sql::INSERT_RULE,
                params![draft.priority, draft.enabled, at],
            )?;
            let rule = draft.into_rule(tx.last_insert_rowid());
            store_rule(tx, &rule, at)?;
            Ok(rule)
        })
        .await
    }

    async fn update_rule(&self, rule: &Rule) -> Result<()> {
        let rule = rule.clone();
        self.write("updating a policy rule", move |tx| {
            if store_rule(tx, &rule, now())? == 0 {
                return Err(Error::not_found("policy rule", rule.id));
            }
            Ok(())
        })
        .await
    }

    async fn delete_rule(&self, id: i64) -> Result<bool> {
        self.write("deleting a policy rule", move |tx| {
            Ok(change(tx, sql::DELETE_RULE, [id])? > 0)
        })
        .await
    }

    async fn record_audit(&self, event: &NewAuditEvent) -> Result<()> {
        let details = serde_json::to_string(&event.details)
            .map_err(|e| storage("encoding audit details", e))?;
        let e = event.clone();
        self.write("recording an audit event", move |tx| {
            change(
                tx,
                sql::INSERT_AUDIT,
                params![
                    e.time.as_millis(),
                    e.event_type.as_str(),
                    e.actor_id,
                    e.repository.as_ref().map(RepoName::as_str),
                    e.digest.as_ref().map(Digest::to_string),
                    e.ip,
                    details,
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let (sql, args) = audit_sql(query);
        self.run("querying the audit log", move |c| {
            all(c, &sql, params_from_iter(args), audit_event)
        })
        .await
    }

    async fn snapshot(&self, at: Timestamp) -> Result<String> {
        let db_path = self.path.clone();
        let dest = self
            .run("taking a snapshot", move |c| {
                backup::back_up(c, &db_path, at)
            })
            .await?;
        // Checked to be UTF-8 before anything was written.
        Ok(dest.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteMetaStore;

    /// The plan SQLite picks for `sql`, one step a line.
    fn plan(c: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        // Unbound parameters are NULL to the planner, but rusqlite wants
        // a value for each.
        let nulls = std::iter::repeat_n(Value::Null, stmt.parameter_count());
        let rows = stmt
            .query_map(params_from_iter(nulls), |r| r.get::<_, String>(3))
            .unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    /// Every lookup the use cases make seeks through an index; only the
    /// statements that mean to read a whole table scan one.
    #[test]
    fn every_lookup_uses_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcr.db");
        drop(SqliteMetaStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        // Statements with the tables they may scan whole.
        let statements: &[(&str, &str, &[&str])] = &[
            ("REPO_ID", sql::REPO_ID, &[]),
            ("LIST_REPOS", sql::LIST_REPOS, &[]),
            ("SUMMARIES", sql::SUMMARIES, &[]),
            ("SUMMARY", sql::SUMMARY, &[]),
            ("DETAIL_TAGS", sql::DETAIL_TAGS, &[]),
            ("DETAIL_MANIFESTS", sql::DETAIL_MANIFESTS, &[]),
            ("DETAIL_BLOBS", sql::DETAIL_BLOBS, &[]),
            ("REPO_UPLOADS", sql::REPO_UPLOADS, &[]),
            ("IS_LINKED", sql::IS_LINKED, &[]),
            ("MANIFEST_ID", sql::MANIFEST_ID, &[]),
            ("MANIFEST_BY_TAG", sql::MANIFEST_BY_TAG, &[]),
            ("MANIFEST_BY_DIGEST", sql::MANIFEST_BY_DIGEST, &[]),
            ("REFERRERS", sql::REFERRERS, &[]),
            ("DELETE_MANIFEST", sql::DELETE_MANIFEST, &[]),
            ("DELETE_TAG", sql::DELETE_TAG, &[]),
            ("LIST_TAGS", sql::LIST_TAGS, &[]),
            ("BLOB_IN_REPO", sql::BLOB_IN_REPO, &[]),
            ("BLOB_EXISTS", sql::BLOB_EXISTS, &[]),
            ("UNLINK", sql::UNLINK, &[]),
            ("LIST_BLOBS", sql::LIST_BLOBS, &["blobs"]),
            ("GET_UPLOAD", sql::GET_UPLOAD, &[]),
            ("UPLOAD_REPO", sql::UPLOAD_REPO, &[]),
            ("UPLOADS_IDLE", sql::UPLOADS_IDLE, &[]),
            ("PRUNE_REPOSITORY", sql::PRUNE_REPOSITORY, &[]),
            ("SWEEPABLE", sql::SWEEPABLE, &["b"]),
            ("LIST_RULES", sql::LIST_RULES, &["policy_rules"]),
            ("GET_RULE", sql::GET_RULE, &[]),
        ];
        let audit = |f: fn(&mut AuditQuery)| {
            let mut q = AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            };
            f(&mut q);
            audit_sql(&q).0
        };
        let audits = [
            (
                "audit by type",
                audit(|q| q.event_type = Some(mcr_core::audit::EventType::Login)),
            ),
            ("audit by actor", audit(|q| q.actor_id = Some("a".into()))),
            (
                "audit by repository",
                audit(|q| q.repository = Some(RepoName::new("a/b").unwrap())),
            ),
            (
                "audit by time",
                audit(|q| q.since = Some(Timestamp::from_millis(1))),
            ),
        ];
        let mut failures = Vec::new();
        let all_statements = statements
            .iter()
            .map(|&(name, sql, scans)| (name, sql.to_string(), scans))
            .chain(audits.into_iter().map(|(n, s)| (n, s, &[] as &[&str])));
        for (name, sql, scans) in all_statements {
            for step in plan(&c, &sql) {
                let scanned = step
                    .strip_prefix("SCAN ")
                    .map(|rest| rest.split_whitespace().next().unwrap_or(""));
                if let Some(table) = scanned {
                    if !scans.contains(&table) {
                        failures.push(format!("{name}: {step}"));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "full scans: {failures:#?}");
        // Where a table has several indexes, the one made for the lookup.
        for (name, sql, index) in [
            ("REFERRERS", sql::REFERRERS, "manifests_by_subject"),
            ("SWEEPABLE", sql::SWEEPABLE, "manifest_references_by_digest"),
            ("SWEEPABLE", sql::SWEEPABLE, "repository_blobs_by_digest"),
            ("UPLOADS_IDLE", sql::UPLOADS_IDLE, "uploads_by_active"),
            ("DELETE_MANIFEST", sql::DELETE_MANIFEST, "tags_by_manifest"),
        ] {
            let steps = plan(&c, sql);
            assert!(
                steps.iter().any(|s| s.contains(index)),
                "{name} does not use {index}: {steps:#?}"
            );
        }
        // The unfiltered audit tail reads the time index backwards.
        let tail = plan(&c, &audit(|_| {}));
        assert!(tail.iter().any(|s| s.contains("audit_by_time")), "{tail:?}");
    }

    #[test]
    fn audit_sql_binds_only_the_filters_set() {
        let (sql, args) = audit_sql(&AuditQuery {
            actor_id: Some("u".into()),
            until: Some(Timestamp::from_millis(9)),
            limit: 5,
            offset: 2,
            ..AuditQuery::default()
        });
        assert_eq!(
            sql,
            "SELECT id, time, event_type, actor_id, repository, digest, ip, details FROM audit_log \
             WHERE actor_id = ?1 AND time <= ?2 ORDER BY time DESC, id DESC LIMIT ?3 OFFSET ?4"
        );
        assert_eq!(args.len(), 4);
    }
}
