//! `ManifestStore` on SQLite.

use async_trait::async_trait;
use bytes::Bytes;
use mcr_core::audit::NewAuditEvent;
use mcr_core::digest::Digest;
use mcr_core::events::{PushFacts, StoreFacts};
use mcr_core::media::MediaType;
use mcr_core::names::{Reference, RepoName, Tag};
use mcr_core::policy::TagGuard;
use mcr_core::ports::{
    check_tag_target, ManifestDelete, ManifestRecord, ManifestStore, NewManifest, Page, Provenance,
};
use mcr_core::quota::QuotaContent;
use mcr_core::time::Timestamp;
use mcr_core::{Error, Result};
use rusqlite::{params, Row};

use super::quotas;
use super::rows::{all, change, ensure_repo, i64_of, limit_of, one, parsed, parsed_opt, repo_id};
use super::{audit, db, sql, storage, SqliteMetaStore};

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

#[async_trait]
impl ManifestStore for SqliteMetaStore {
    async fn put_manifest(&self, m: NewManifest, event: &NewAuditEvent) -> Result<()> {
        let event = event.clone();
        self.write("storing a manifest", move |tx| {
            // Check everything before writing anything: a failure then
            // needs no rollback at all (and gets one anyway on drop).
            // Without the repository nothing is linked or stored in it.
            let existing = repo_id(tx, &m.repository)?;
            if m.provenance == Provenance::Pushed {
                for d in &m.blobs {
                    let linked = match existing {
                        Some(id) => {
                            one(tx, sql::IS_LINKED, params![id, d.to_string()], |_| Ok(()))?
                        }
                        None => None,
                    };
                    if linked.is_none() {
                        return Err(Error::ManifestBlobUnknown(d.clone()));
                    }
                }
                for d in &m.children {
                    let stored = match existing {
                        Some(id) => {
                            one(tx, sql::MANIFEST_ID, params![id, d.to_string()], |_| Ok(()))?
                        }
                        None => None,
                    };
                    if stored.is_none() {
                        return Err(Error::ManifestChildUnknown(d.clone()));
                    }
                }
            }

            // Read where each tag points in this write transaction, so a
            // push that moved it meanwhile is what the guard sees, and
            // what the push's `tag.moved` events report.
            let mut moved = Vec::new();
            if let Some(id) = existing {
                for tag in &m.tags {
                    let now = one(tx, sql::TAG_TARGET, params![id, tag.as_str()], |r| {
                        parsed(r, 0, Digest::parse)
                    })?;
                    if let Some(from) = now.filter(|d| *d != m.digest) {
                        m.tag_guard.check(tag, None)?;
                        moved.push((tag.clone(), from));
                    }
                }
            }

            if m.provenance == Provenance::Pushed {
                let size = m.raw.len() as u64;
                quotas::charge(tx, &m.repository, QuotaContent::Manifest(&m.digest, size))?;
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
                    m.provenance == Provenance::Pushed,
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
            for tag in &m.tags {
                change(
                    tx,
                    sql::UPSERT_TAG,
                    params![repo, tag.as_str(), manifest_id, m.created.as_millis()],
                )?;
            }
            let push = PushFacts {
                media_type: &m.media_type,
                size: m.raw.len() as u64,
                moved: &moved,
            };
            audit::insert_with(tx, &event, Some(StoreFacts::Push(push)))
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

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        guard: &TagGuard,
        mode: ManifestDelete,
        event: &NewAuditEvent,
    ) -> Result<bool> {
        let (repo, digest, guard) = (repo.clone(), digest.clone(), guard.clone());
        let event = event.clone();
        self.write("deleting a manifest", move |tx| {
            // The tags on it as of this write transaction: one moved onto
            // it by a push that committed first is among them. Each is
            // checked against the guard and reported as deleted.
            let tags = all(
                tx,
                sql::MANIFEST_TAGS,
                params![repo.as_str(), digest.to_string()],
                |r| parsed(r, 0, Tag::new),
            )?;
            // Only asked when it decides: a client's delete reads nothing more.
            let referrer = match (mode, tags.is_empty()) {
                (ManifestDelete::IfUnreferenced, true) => one(
                    tx,
                    sql::MANIFEST_REFERRER,
                    params![repo.as_str(), digest.to_string()],
                    |r| parsed(r, 0, Digest::parse),
                )?,
                _ => None,
            };
            mode.check(&digest, tags.first(), referrer.as_ref())?;
            for tag in &tags {
                guard.check(tag, Some(&digest))?;
            }
            let deleted = change(
                tx,
                sql::DELETE_MANIFEST,
                params![repo.as_str(), digest.to_string()],
            )? > 0;
            if deleted {
                let untagged: Vec<_> = tags.into_iter().map(|t| (t, digest.clone())).collect();
                audit::insert_with(tx, &event, Some(StoreFacts::Untagged(&untagged)))?;
            }
            Ok(deleted)
        })
        .await
    }

    async fn delete_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        expected: Option<&Digest>,
        event: &NewAuditEvent,
    ) -> Result<bool> {
        let (repo, tag, event) = (repo.clone(), tag.clone(), event.clone());
        let expected = expected.cloned();
        self.write("deleting a tag", move |tx| {
            let pointed = one(
                tx,
                sql::TAG_DIGEST,
                params![repo.as_str(), tag.as_str()],
                |r| parsed(r, 0, Digest::parse),
            )?;
            let Some(digest) = pointed else {
                return Ok(false);
            };
            check_tag_target(&tag, expected.as_ref(), &digest)?;
            change(tx, sql::DELETE_TAG, params![repo.as_str(), tag.as_str()])?;
            audit::insert_with(tx, &event, Some(StoreFacts::Untagged(&[(tag, digest)])))?;
            Ok(true)
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
}
