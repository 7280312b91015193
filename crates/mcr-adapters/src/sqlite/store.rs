//! The `MetaStore` methods, one transaction (or one read) each.

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
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::{storage, SqliteMetaStore};

fn db(e: rusqlite::Error) -> Error {
    storage("sqlite", e)
}

/// Reads a column that holds a validated value back into its type.
fn parsed<T>(row: &Row<'_>, idx: usize, parse: impl Fn(&str) -> Result<T>) -> rusqlite::Result<T> {
    let s: String = row.get(idx)?;
    parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i64_of(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid("size", format!("{v} is too large")))
}

/// The repository's id, created at `at` on first write.
fn ensure_repo(conn: &Connection, name: &RepoName, at: Timestamp) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO repositories (name, created) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
    )
    .and_then(|mut s| s.execute(params![name.as_str(), at.as_millis()]))
    .map_err(db)?;
    repo_id(conn, name)?
        .ok_or_else(|| storage("sqlite", "repository vanished inside its transaction"))
}

fn repo_id(conn: &Connection, name: &RepoName) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM repositories WHERE name = ?1")
        .and_then(|mut s| s.query_row([name.as_str()], |r| r.get(0)).optional())
        .map_err(db)
}

const MANIFEST_COLUMNS: &str =
    "r.name, m.digest, m.media_type, m.raw, m.subject_digest, m.artifact_type, m.created";

fn manifest_record(row: &Row<'_>) -> rusqlite::Result<ManifestRecord> {
    let raw: Vec<u8> = row.get(3)?;
    Ok(ManifestRecord {
        repository: parsed(row, 0, RepoName::new)?,
        digest: parsed(row, 1, Digest::parse)?,
        media_type: parsed(row, 2, MediaType::new)?,
        raw: Bytes::from(raw),
        subject: row
            .get::<_, Option<String>>(4)?
            .map(|s| Digest::parse(&s))
            .transpose()
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
        artifact_type: row
            .get::<_, Option<String>>(5)?
            .map(|s| MediaType::new(&s))
            .transpose()
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    5,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
        created: Timestamp::from_millis(row.get(6)?),
    })
}

fn blob_info(row: &Row<'_>) -> rusqlite::Result<BlobInfo> {
    Ok(BlobInfo {
        digest: parsed(row, 0, Digest::parse)?,
        size: u64_of(row.get(1)?),
    })
}

fn upload_session(row: &Row<'_>) -> rusqlite::Result<UploadSession> {
    Ok(UploadSession {
        id: parsed(row, 0, UploadId::parse)?,
        repository: parsed(row, 1, RepoName::new)?,
        offset: u64_of(row.get(2)?),
        started: Timestamp::from_millis(row.get(3)?),
    })
}

/// `LIMIT` for a page; `limit 0` means none.
fn limit_of(page: &Page) -> i64 {
    i64::try_from(page.limit).unwrap_or(i64::MAX)
}

fn summaries(conn: &Connection, page: &Page, only: Option<&RepoName>) -> Result<Vec<RepoSummary>> {
    let sql = "SELECT r.name, r.created,
            (SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id),
            (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id),
            COALESCE((SELECT SUM(m.size) FROM manifests m WHERE m.repository_id = r.id), 0)
              + COALESCE((SELECT SUM(b.size) FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
                          WHERE rb.repository_id = r.id), 0)
        FROM repositories r
        WHERE (?1 IS NULL OR r.name > ?1) AND (?2 IS NULL OR r.name = ?2)
        ORDER BY r.name LIMIT ?3";
    let mut stmt = conn.prepare_cached(sql).map_err(db)?;
    let rows = stmt
        .query_map(
            params![page.last, only.map(RepoName::as_str), limit_of(page)],
            |row| {
                Ok(RepoSummary {
                    name: parsed(row, 0, RepoName::new)?,
                    created: Timestamp::from_millis(row.get(1)?),
                    tag_count: u64_of(row.get(2)?),
                    manifest_count: u64_of(row.get(3)?),
                    total_size: u64_of(row.get(4)?),
                })
            },
        )
        .map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

#[async_trait]
impl MetaStore for SqliteMetaStore {
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        let repo = repo.clone();
        self.run(move |c| Ok(repo_id(c, &repo)?.is_some())).await
    }

    async fn list_repositories(&self, page: &Page) -> Result<Vec<RepoName>> {
        let page = page.clone();
        self.run(move |c| {
            let mut stmt = c
                .prepare_cached("SELECT name FROM repositories WHERE (?1 IS NULL OR name > ?1) ORDER BY name LIMIT ?2")
                .map_err(db)?;
            let rows = stmt
                .query_map(params![page.last, limit_of(&page)], |r| parsed(r, 0, RepoName::new))
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }

    async fn repository_summaries(&self, page: &Page) -> Result<Vec<RepoSummary>> {
        let page = page.clone();
        self.run(move |c| summaries(c, &page, None)).await
    }

    async fn repository_detail(&self, repo: &RepoName) -> Result<Option<RepoDetail>> {
        let repo = repo.clone();
        self.run(move |c| {
            let all = Page { last: None, limit: 1 };
            let Some(summary) = summaries(c, &all, Some(&repo))?.into_iter().next() else {
                return Ok(None);
            };
            let tags = c
                .prepare_cached(
                    "SELECT t.name, m.digest FROM tags t JOIN manifests m ON m.id = t.manifest_id
                     JOIN repositories r ON r.id = t.repository_id WHERE r.name = ?1 ORDER BY t.name",
                )
                .and_then(|mut s| {
                    s.query_map([repo.as_str()], |r| Ok((parsed(r, 0, Tag::new)?, parsed(r, 1, Digest::parse)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db)?;
            let manifests = c
                .prepare_cached(
                    "SELECT m.digest, m.media_type, m.size, m.created FROM manifests m
                     JOIN repositories r ON r.id = m.repository_id WHERE r.name = ?1
                     ORDER BY m.created DESC, m.digest",
                )
                .and_then(|mut s| {
                    s.query_map([repo.as_str()], |r| {
                        Ok((
                            parsed(r, 0, Digest::parse)?,
                            parsed(r, 1, MediaType::new)?,
                            u64_of(r.get(2)?),
                            Timestamp::from_millis(r.get(3)?),
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db)?;
            let blobs = c
                .prepare_cached(
                    "SELECT b.digest, b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
                     JOIN repositories r ON r.id = rb.repository_id WHERE r.name = ?1 ORDER BY b.digest",
                )
                .and_then(|mut s| s.query_map([repo.as_str()], blob_info)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db)?;
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
        self.write(move |tx| {
            let Some(id) = repo_id(tx, &repo)? else {
                return Ok(None);
            };
            let uploads = tx
                .prepare_cached("SELECT id FROM uploads WHERE repository_id = ?1 ORDER BY id")
                .and_then(|mut s| {
                    s.query_map([id], |r| parsed(r, 0, UploadId::parse))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db)?;
            // Cascades to manifests, their references, tags, links and
            // upload sessions; blob rows stay for GC.
            tx.execute("DELETE FROM repositories WHERE id = ?1", [id])
                .map_err(db)?;
            Ok(Some(uploads))
        })
        .await
    }

    async fn put_manifest(&self, m: NewManifest) -> Result<()> {
        self.write(move |tx| {
            let existing = repo_id(tx, &m.repository)?;
            {
                let mut linked = tx
                    .prepare_cached("SELECT 1 FROM repository_blobs WHERE repository_id = ?1 AND digest = ?2")
                    .map_err(db)?;
                for d in &m.blobs {
                    let found = match existing {
                        Some(id) => linked.exists(params![id, d.to_string()]).map_err(db)?,
                        None => false,
                    };
                    if !found {
                        return Err(Error::ManifestBlobUnknown(d.clone()));
                    }
                }
                let mut stored = tx
                    .prepare_cached("SELECT 1 FROM manifests WHERE repository_id = ?1 AND digest = ?2")
                    .map_err(db)?;
                for d in &m.children {
                    let found = match existing {
                        Some(id) => stored.exists(params![id, d.to_string()]).map_err(db)?,
                        None => false,
                    };
                    if !found {
                        return Err(Error::ManifestChildUnknown(d.clone()));
                    }
                }
            }
            let repo = ensure_repo(tx, &m.repository, m.created)?;
            let digest = m.digest.to_string();
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO manifests (repository_id, digest, media_type, raw, size, subject_digest, artifact_type, created)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (repository_id, digest) DO NOTHING",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        repo,
                        digest,
                        m.media_type.as_str(),
                        &m.raw[..],
                        m.raw.len() as i64,
                        m.subject.as_ref().map(Digest::to_string),
                        m.artifact_type.as_ref().map(MediaType::as_str),
                        m.created.as_millis(),
                    ])
                })
                .map_err(db)?;
            let manifest_id: i64 = tx
                .prepare_cached("SELECT id FROM manifests WHERE repository_id = ?1 AND digest = ?2")
                .and_then(|mut s| s.query_row(params![repo, digest], |r| r.get(0)))
                .map_err(db)?;
            if inserted > 0 {
                let mut reference = tx
                    .prepare_cached("INSERT OR IGNORE INTO manifest_references (manifest_id, kind, digest) VALUES (?1, ?2, ?3)")
                    .map_err(db)?;
                for d in &m.blobs {
                    reference.execute(params![manifest_id, "blob", d.to_string()]).map_err(db)?;
                }
                for d in &m.children {
                    reference.execute(params![manifest_id, "manifest", d.to_string()]).map_err(db)?;
                }
            }
            if let Some(tag) = &m.tag {
                tx.prepare_cached(
                    "INSERT INTO tags (repository_id, name, manifest_id, updated) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (repository_id, name) DO UPDATE SET manifest_id = excluded.manifest_id, updated = excluded.updated",
                )
                .and_then(|mut s| s.execute(params![repo, tag.as_str(), manifest_id, m.created.as_millis()]))
                .map_err(db)?;
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
        let reference = reference.clone();
        self.run(move |c| {
            let (sql, key) = match &reference {
                Reference::Tag(t) => (
                    format!(
                        "SELECT {MANIFEST_COLUMNS} FROM tags t JOIN repositories r ON r.id = t.repository_id
                         JOIN manifests m ON m.id = t.manifest_id WHERE r.name = ?1 AND t.name = ?2"
                    ),
                    t.to_string(),
                ),
                Reference::Digest(d) => (
                    format!(
                        "SELECT {MANIFEST_COLUMNS} FROM manifests m JOIN repositories r ON r.id = m.repository_id
                         WHERE r.name = ?1 AND m.digest = ?2"
                    ),
                    d.to_string(),
                ),
            };
            c.prepare_cached(&sql)
                .and_then(|mut s| s.query_row(params![repo.as_str(), key], manifest_record).optional())
                .map_err(db)
        })
        .await
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.clone(), digest.to_string());
        self.write(move |tx| {
            let n = tx
                .execute(
                    "DELETE FROM manifests WHERE digest = ?2
                     AND repository_id = (SELECT id FROM repositories WHERE name = ?1)",
                    params![repo.as_str(), digest],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let (repo, tag) = (repo.clone(), tag.clone());
        self.write(move |tx| {
            let n = tx
                .execute(
                    "DELETE FROM tags WHERE name = ?2
                     AND repository_id = (SELECT id FROM repositories WHERE name = ?1)",
                    params![repo.as_str(), tag.as_str()],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<Vec<Tag>> {
        let (repo, page) = (repo.clone(), page.clone());
        self.run(move |c| {
            c.prepare_cached(
                "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id
                 WHERE r.name = ?1 AND (?2 IS NULL OR t.name > ?2) ORDER BY t.name LIMIT ?3",
            )
            .and_then(|mut s| {
                s.query_map(params![repo.as_str(), page.last, limit_of(&page)], |r| {
                    parsed(r, 0, Tag::new)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db)
        })
        .await
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ManifestRecord>> {
        let (repo, subject) = (repo.clone(), subject.to_string());
        self.run(move |c| {
            let sql = format!(
                "SELECT {MANIFEST_COLUMNS} FROM manifests m JOIN repositories r ON r.id = m.repository_id
                 WHERE r.name = ?1 AND m.subject_digest = ?2 ORDER BY m.digest"
            );
            c.prepare_cached(&sql)
                .and_then(|mut s| s.query_map(params![repo.as_str(), subject], manifest_record)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db)
        })
        .await
    }

    async fn blob_in_repository(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>> {
        let (repo, digest) = (repo.clone(), digest.to_string());
        self.run(move |c| {
            c.prepare_cached(
                "SELECT b.digest, b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
                 JOIN repositories r ON r.id = rb.repository_id WHERE r.name = ?1 AND rb.digest = ?2",
            )
            .and_then(|mut s| s.query_row(params![repo.as_str(), digest], blob_info).optional())
            .map_err(db)
        })
        .await
    }

    async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        let digest = digest.to_string();
        self.run(move |c| {
            c.prepare_cached("SELECT 1 FROM blobs WHERE digest = ?1")
                .and_then(|mut s| s.exists([digest]))
                .map_err(db)
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
        self.write(move |tx| {
            let held = tx
                .prepare_cached(
                    "SELECT b.digest, b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
                     JOIN repositories r ON r.id = rb.repository_id WHERE r.name = ?1 AND rb.digest = ?2",
                )
                .and_then(|mut s| s.query_row(params![from.as_str(), digest], blob_info).optional())
                .map_err(db)?;
            let Some(info) = held else {
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
        self.write(move |tx| {
            let n = tx
                .execute(
                    "DELETE FROM repository_blobs WHERE digest = ?2
                     AND repository_id = (SELECT id FROM repositories WHERE name = ?1)",
                    params![repo.as_str(), digest],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_blobs(&self) -> Result<Vec<BlobInfo>> {
        self.run(|c| {
            c.prepare_cached("SELECT digest, size FROM blobs ORDER BY digest")
                .and_then(|mut s| {
                    s.query_map([], blob_info)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db)
        })
        .await
    }

    async fn create_upload(&self, session: &UploadSession) -> Result<()> {
        let session = session.clone();
        self.write(move |tx| {
            let repo = ensure_repo(tx, &session.repository, session.started)?;
            let n = tx
                .execute(
                    "INSERT INTO uploads (id, repository_id, offset, started) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO NOTHING",
                    params![session.id.as_str(), repo, i64_of(session.offset)?, session.started.as_millis()],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(Error::Conflict(format!("upload {} already exists", session.id)));
            }
            Ok(())
        })
        .await
    }

    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadSession>> {
        let id = id.clone();
        self.run(move |c| {
            c.prepare_cached(
                "SELECT u.id, r.name, u.offset, u.started FROM uploads u
                 JOIN repositories r ON r.id = u.repository_id WHERE u.id = ?1",
            )
            .and_then(|mut s| s.query_row([id.as_str()], upload_session).optional())
            .map_err(db)
        })
        .await
    }

    async fn set_upload_offset(&self, id: &UploadId, offset: u64) -> Result<()> {
        let id = id.clone();
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE uploads SET offset = ?2 WHERE id = ?1",
                    params![id.as_str(), i64_of(offset)?],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(Error::UploadUnknown(id.to_string()));
            }
            Ok(())
        })
        .await
    }

    async fn complete_upload(&self, id: &UploadId, blob: &BlobInfo, at: Timestamp) -> Result<()> {
        let (id, blob) = (id.clone(), blob.clone());
        self.write(move |tx| {
            let repo: i64 = tx
                .prepare_cached("SELECT repository_id FROM uploads WHERE id = ?1")
                .and_then(|mut s| s.query_row([id.as_str()], |r| r.get(0)).optional())
                .map_err(db)?
                .ok_or_else(|| Error::UploadUnknown(id.to_string()))?;
            let digest = blob.digest.to_string();
            let size = i64_of(blob.size)?;
            tx.prepare_cached("INSERT INTO blobs (digest, size, created) VALUES (?1, ?2, ?3) ON CONFLICT (digest) DO NOTHING")
                .and_then(|mut s| s.execute(params![digest, size, at.as_millis()]))
                .map_err(db)?;
            link(tx, repo, &digest, at)?;
            tx.execute("DELETE FROM uploads WHERE id = ?1", [id.as_str()]).map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        let id = id.clone();
        self.write(move |tx| {
            Ok(tx
                .execute("DELETE FROM uploads WHERE id = ?1", [id.as_str()])
                .map_err(db)?
                > 0)
        })
        .await
    }

    async fn uploads_started_before(&self, before: Timestamp) -> Result<Vec<UploadSession>> {
        self.run(move |c| {
            c.prepare_cached(
                "SELECT u.id, r.name, u.offset, u.started FROM uploads u
                 JOIN repositories r ON r.id = u.repository_id WHERE u.started < ?1 ORDER BY u.started, u.id",
            )
            .and_then(|mut s| s.query_map([before.as_millis()], upload_session)?.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db)
        })
        .await
    }

    async fn sweep_unreferenced_blobs(&self, cutoff: Timestamp) -> Result<Vec<BlobInfo>> {
        self.write(move |tx| {
            let doomed = tx
                .prepare_cached(
                    "SELECT b.digest, b.size FROM blobs b
                     WHERE b.created < ?1
                       AND NOT EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.digest = b.digest AND mr.kind = 'blob')
                       AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest AND rb.linked_at >= ?1)
                     ORDER BY b.digest",
                )
                .and_then(|mut s| s.query_map([cutoff.as_millis()], blob_info)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db)?;
            let mut delete = tx.prepare_cached("DELETE FROM blobs WHERE digest = ?1").map_err(db)?;
            for b in &doomed {
                // Links go with the row (ON DELETE CASCADE).
                delete.execute([b.digest.to_string()]).map_err(db)?;
            }
            Ok(doomed)
        })
        .await
    }

    async fn list_rules(&self) -> Result<Vec<Rule>> {
        self.run(|c| {
            c.prepare_cached("SELECT id, rule_json FROM policy_rules ORDER BY id")
                .and_then(|mut s| {
                    s.query_map([], rule_of)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db)
        })
        .await
    }

    async fn get_rule(&self, id: i64) -> Result<Option<Rule>> {
        self.run(move |c| {
            c.prepare_cached("SELECT id, rule_json FROM policy_rules WHERE id = ?1")
                .and_then(|mut s| s.query_row([id], rule_of).optional())
                .map_err(db)
        })
        .await
    }

    async fn create_rule(&self, draft: &RuleDraft) -> Result<Rule> {
        let draft = draft.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO policy_rules (priority, enabled, rule_json) VALUES (?1, ?2, '{}')",
                params![draft.priority, draft.enabled],
            )
            .map_err(db)?;
            let rule = draft.into_rule(tx.last_insert_rowid());
            store_rule(tx, &rule)?;
            Ok(rule)
        })
        .await
    }

    async fn update_rule(&self, rule: &Rule) -> Result<()> {
        let rule = rule.clone();
        self.write(move |tx| {
            if store_rule(tx, &rule)? == 0 {
                return Err(Error::not_found("policy rule", rule.id));
            }
            Ok(())
        })
        .await
    }

    async fn delete_rule(&self, id: i64) -> Result<bool> {
        self.write(move |tx| {
            Ok(tx
                .execute("DELETE FROM policy_rules WHERE id = ?1", [id])
                .map_err(db)?
                > 0)
        })
        .await
    }

    async fn record_audit(&self, event: &NewAuditEvent) -> Result<()> {
        let e = event.clone();
        self.write(move |tx| {
            let details =
                serde_json::to_string(&e.details).map_err(|e| storage("audit details", e))?;
            tx.prepare_cached(
                "INSERT INTO audit_log (time, event_type, actor_id, repository, digest, ip, details)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    e.time.as_millis(),
                    e.event_type.as_str(),
                    e.actor_id,
                    e.repository.as_ref().map(RepoName::as_str),
                    e.digest.as_ref().map(Digest::to_string),
                    e.ip,
                    details,
                ])
            })
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let q = query.clone();
        self.run(move |c| {
            let mut sql = String::from(
                "SELECT id, time, event_type, actor_id, repository, digest, ip, details FROM audit_log WHERE 1 = 1",
            );
            let mut args: Vec<Value> = Vec::new();
            let mut filter = |clause: &str, v: Value| {
                args.push(v);
                sql.push_str(&format!(" AND {clause} ?{}", args.len()));
            };
            if let Some(t) = q.event_type {
                filter("event_type =", Value::Text(t.as_str().into()));
            }
            if let Some(a) = &q.actor_id {
                filter("actor_id =", Value::Text(a.clone()));
            }
            if let Some(r) = &q.repository {
                filter("repository =", Value::Text(r.to_string()));
            }
            if let Some(s) = q.since {
                filter("time >=", Value::Integer(s.as_millis()));
            }
            if let Some(u) = q.until {
                filter("time <=", Value::Integer(u.as_millis()));
            }
            args.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
            args.push(Value::Integer(i64::try_from(q.offset).unwrap_or(i64::MAX)));
            sql.push_str(&format!(" ORDER BY time DESC, id DESC LIMIT ?{} OFFSET ?{}", args.len() - 1, args.len()));
            let mut stmt = c.prepare(&sql).map_err(db)?;
            let rows = stmt
                .query_map(params_from_iter(args), |row| {
                    let details: String = row.get(7)?;
                    Ok(AuditEvent {
                        id: row.get(0)?,
                        event: NewAuditEvent {
                            time: Timestamp::from_millis(row.get(1)?),
                            event_type: parsed(row, 2, str::parse)?,
                            actor_id: row.get(3)?,
                            repository: row.get::<_, Option<String>>(4)?.and_then(|s| RepoName::new(&s).ok()),
                            digest: row.get::<_, Option<String>>(5)?.and_then(|s| Digest::parse(&s).ok()),
                            ip: row.get(6)?,
                            details: serde_json::from_str(&details).unwrap_or_default(),
                        },
                    })
                })
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }
}

/// Links a blob to a repository, stamping the link with `at` (GC's grace
/// period reads the stamp).
fn link(conn: &Connection, repo: i64, digest: &str, at: Timestamp) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
    )
    .and_then(|mut s| s.execute(params![repo, digest, at.as_millis()]))
    .map_err(db)?;
    Ok(())
}

fn rule_of(row: &Row<'_>) -> rusqlite::Result<Rule> {
    let json: String = row.get(1)?;
    let mut rule: Rule = serde_json::from_str(&json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })?;
    rule.id = row.get(0)?;
    Ok(rule)
}

/// Writes the rule's columns and JSON; returns the rows changed.
fn store_rule(conn: &Connection, rule: &Rule) -> Result<usize> {
    let json = serde_json::to_string(rule).map_err(|e| storage("policy rule", e))?;
    conn.execute(
        "UPDATE policy_rules SET priority = ?2, enabled = ?3, rule_json = ?4 WHERE id = ?1",
        params![rule.id, rule.priority, rule.enabled, json],
    )
    .map_err(db)
}
