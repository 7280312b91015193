//! `ManifestStore` on PostgreSQL.

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::Transaction;
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
use mcr_core::{Error, Result};
use tokio_postgres::Row;

use super::quotas;
use super::rows::{
    all, change, ensure_repo, i64_of, limit_of, lock_repo, lock_repo_exclusively, one, parsed,
    parsed_opt, time_at,
};
use super::{audit, sql, PostgresMetaStore, StepResult, TxError};

fn manifest_record(row: &Row) -> StepResult<ManifestRecord> {
    let raw: Vec<u8> = row.try_get(3)?;
    Ok(ManifestRecord {
        repository: parsed(row, 0, RepoName::new)?,
        digest: parsed(row, 1, Digest::parse)?,
        media_type: parsed(row, 2, MediaType::new)?,
        raw: Bytes::from(raw),
        subject: parsed_opt(row, 4, Digest::parse)?,
        artifact_type: parsed_opt(row, 5, MediaType::new)?,
        created: time_at(row, 6)?,
    })
}

/// The first of `wanted` (spelled `texts`), in their order, that `found`
/// lacks.
fn first_missing<'d>(
    wanted: &'d [Digest],
    texts: &[String],
    found: &[String],
) -> Option<&'d Digest> {
    wanted
        .iter()
        .zip(texts)
        .find(|(_, t)| !found.contains(t))
        .map(|(d, _)| d)
}

/// Those of `wanted` that `sql` (`LOCK_LINKS` or `LOCK_MANIFESTS`) finds
/// in the repository, locked until the step ends.
async fn held(
    tx: &Transaction<'_>,
    sql: &str,
    repo: Option<i64>,
    wanted: &[String],
) -> StepResult<Vec<String>> {
    match repo {
        Some(id) if !wanted.is_empty() => {
            all(tx, sql, &[&id, &wanted], |r| Ok(r.try_get::<_, String>(0)?)).await
        }
        _ => Ok(Vec::new()),
    }
}

/// The digests as text, for an array parameter.
fn texts(digests: &[Digest]) -> Vec<String> {
    digests.iter().map(Digest::to_string).collect()
}

/// Asks the push's guard about each of its tags that points at another
/// manifest. Under `READ COMMITTED` a plain read could miss a tag another
/// push is moving or creating (both upserts would then pass their reads
/// and the second would move the first's tag), so the repository's row is
/// taken `FOR UPDATE` first: every step writing into the repository holds
/// it at least `FOR KEY SHARE`, so those in flight commit before and later
/// ones wait, and the reads below see every tag as it will be when this
/// step writes. Only guarded steps pay for this, and only while a rule can
/// refuse them.
async fn guard_tags(tx: &Transaction<'_>, m: &NewManifest, repo: i64) -> StepResult<()> {
    // Held already if the repository existed; taken now if this push just
    // made it (a first push racing this one waits here for it to commit).
    lock_repo_exclusively(tx, &m.repository).await?;
    for tag in &m.tags {
        let now = one(tx, sql::TAG_TARGET, &[&repo, &tag.as_str()], |r| {
            parsed(r, 0, Digest::parse)
        })
        .await?;
        if now.is_some_and(|d| d != m.digest) {
            m.tag_guard.check(tag, None)?;
        }
    }
    Ok(())
}

#[async_trait]
impl ManifestStore for PostgresMetaStore {
    async fn put_manifest(&self, m: NewManifest, event: &NewAuditEvent) -> Result<()> {
        let data = (m, event.clone());
        self.write("storing a manifest", data, |tx, (m, event)| {
            Box::pin(async move {
                // Check everything before writing anything. Without the
                // repository nothing is linked or stored in it. What the
                // checks find stays locked until commit, so neither a
                // sweep nor a delete takes it from under the manifest.
                // A guarded push takes the row `FOR UPDATE` at once (see
                // `guard_tags`), rather than upgrading its `KEY SHARE`
                // later, which two such pushes would deadlock on.
                let existing = if m.tag_guard.allows_every_tag() {
                    lock_repo(tx, &m.repository).await?
                } else {
                    lock_repo_exclusively(tx, &m.repository).await?
                };
                let (blobs, children) = (texts(&m.blobs), texts(&m.children));
                // A mirrored manifest's blobs and children arrive later, on
                // demand: nothing to require or hold.
                if m.provenance == Provenance::Pushed {
                    let linked = held(tx, sql::LOCK_LINKS, existing, &blobs).await?;
                    if let Some(d) = first_missing(&m.blobs, &blobs, &linked) {
                        return Err(Error::ManifestBlobUnknown(d.clone()).into());
                    }
                    let stored = held(tx, sql::LOCK_MANIFESTS, existing, &children).await?;
                    if let Some(d) = first_missing(&m.children, &children, &stored) {
                        return Err(Error::ManifestChildUnknown(d.clone()).into());
                    }
                }

                let repo = match existing {
                    Some(id) => id,
                    None => ensure_repo(tx, &m.repository, m.created).await?,
                };
                if !m.tag_guard.allows_every_tag() {
                    guard_tags(tx, m, repo).await?;
                }
                if m.provenance == Provenance::Pushed {
                    let content = QuotaContent::Manifest(&m.digest, m.raw.len() as u64);
                    quotas::charge(tx, &m.repository, content).await?;
                }
                let digest = m.digest.to_string();
                let inserted: Option<i64> = one(
                    tx,
                    sql::INSERT_MANIFEST,
                    &[
                        &repo,
                        &digest,
                        &m.media_type.as_str(),
                        &&m.raw[..],
                        &i64_of(m.raw.len() as u64)?,
                        &m.subject.as_ref().map(Digest::to_string),
                        &m.artifact_type.as_ref().map(MediaType::as_str),
                        &m.created.as_millis(),
                        &(m.provenance == Provenance::Pushed),
                    ],
                    |r| Ok(r.try_get(0)?),
                )
                .await?;
                let manifest_id = match inserted {
                    Some(id) => {
                        // A new manifest: its references, in the same step,
                        // so GC never sees it without them. A stored one
                        // already has them (same digest, same bytes).
                        change(tx, sql::INSERT_REFERENCES, &[&id, &"blob", &blobs]).await?;
                        change(tx, sql::INSERT_REFERENCES, &[&id, &"manifest", &children]).await?;
                        id
                    }
                    None => one(tx, sql::MANIFEST_ID, &[&repo, &digest], |r| {
                        Ok(r.try_get(0)?)
                    })
                    .await?
                    .ok_or_else(|| {
                        TxError::Engine(Error::storage(
                            "storing a manifest",
                            "the manifest vanished inside its own transaction",
                        ))
                    })?,
                };
                let mut moved = Vec::new();
                for tag in &m.tags {
                    let from = one(tx, sql::TAG_TARGET_LOCKED, &[&repo, &tag.as_str()], |r| {
                        parsed(r, 0, Digest::parse)
                    })
                    .await?;
                    if let Some(from) = from.filter(|d| *d != m.digest) {
                        moved.push((tag.clone(), from));
                    }
                    change(
                        tx,
                        sql::UPSERT_TAG,
                        &[&repo, &tag.as_str(), &manifest_id, &m.created.as_millis()],
                    )
                    .await?;
                }
                let push = PushFacts {
                    media_type: &m.media_type,
                    size: m.raw.len() as u64,
                    moved: &moved,
                };
                audit::insert_with(tx, event, Some(StoreFacts::Push(push))).await
            })
        })
        .await
    }

    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let (sql, key) = match reference {
            Reference::Tag(t) => (sql::MANIFEST_BY_TAG, t.to_string()),
            Reference::Digest(d) => (sql::MANIFEST_BY_DIGEST, d.to_string()),
        };
        self.run(
            "reading a manifest",
            (repo, sql, key),
            |c, (repo, sql, key)| {
                Box::pin(async move { one(c, sql, &[&repo.as_str(), key], manifest_record).await })
            },
        )
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
        let data = (repo.clone(), digest.clone(), guard.clone(), event.clone());
        self.write(
            "deleting a manifest",
            data,
            move |tx, (repo, digest, guard, event)| {
                Box::pin(async move {
                    // As in `guard_tags`: with the repository's row held
                    // `FOR UPDATE`, no push can point a tag at the manifest
                    // between this read and the delete. Each tag read is
                    // checked against the guard and reported as deleted.
                    let Some(id) = lock_repo_exclusively(tx, repo).await? else {
                        return Ok(false);
                    };
                    let tags = all(tx, sql::MANIFEST_TAGS, &[&id, &digest.to_string()], |r| {
                        parsed(r, 0, Tag::new)
                    })
                    .await?;
                    // Only asked when it decides: a client's delete reads
                    // nothing more. The lock keeps any push out meanwhile.
                    let referrer = match (mode, tags.is_empty()) {
                        (ManifestDelete::IfUnreferenced, true) => {
                            one(
                                tx,
                                sql::MANIFEST_REFERRER,
                                &[&id, &digest.to_string()],
                                |r| parsed(r, 0, Digest::parse),
                            )
                            .await?
                        }
                        _ => None,
                    };
                    mode.check(digest, tags.first(), referrer.as_ref())?;
                    for tag in &tags {
                        guard.check(tag, Some(digest))?;
                    }
                    let deleted = change(
                        tx,
                        sql::DELETE_MANIFEST,
                        &[&repo.as_str(), &digest.to_string()],
                    )
                    .await?
                        > 0;
                    if deleted {
                        let untagged: Vec<_> =
                            tags.into_iter().map(|t| (t, digest.clone())).collect();
                        audit::insert_with(tx, event, Some(StoreFacts::Untagged(&untagged)))
                            .await?;
                    }
                    Ok(deleted)
                })
            },
        )
        .await
    }

    async fn delete_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        expected: Option<&Digest>,
        event: &NewAuditEvent,
    ) -> Result<bool> {
        let data = (repo.clone(), tag.clone(), expected.cloned(), event.clone());
        self.write(
            "deleting a tag",
            data,
            |tx, (repo, tag, expected, event)| {
                Box::pin(async move {
                    // The repository's row held `FOR UPDATE`: no push moves the
                    // tag between reading where it points and deleting it.
                    let Some(id) = lock_repo_exclusively(tx, repo).await? else {
                        return Ok(false);
                    };
                    let pointed = one(tx, sql::TAG_TARGET, &[&id, &tag.as_str()], |r| {
                        parsed(r, 0, Digest::parse)
                    })
                    .await?;
                    let Some(digest) = pointed else {
                        return Ok(false);
                    };
                    check_tag_target(tag, expected.as_ref(), &digest)?;
                    change(tx, sql::DELETE_TAG, &[&id, &tag.as_str()]).await?;
                    let untagged = [(tag.clone(), digest)];
                    audit::insert_with(tx, event, Some(StoreFacts::Untagged(&untagged))).await?;
                    Ok(true)
                })
            },
        )
        .await
    }

    async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<Vec<Tag>> {
        let data = (repo, page.last.as_deref(), limit_of(page.limit));
        self.run("listing tags", data, |c, (repo, last, limit)| {
            Box::pin(async move {
                all(c, sql::LIST_TAGS, &[&repo.as_str(), last, limit], |r| {
                    parsed(r, 0, Tag::new)
                })
                .await
            })
        })
        .await
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<ManifestRecord>> {
        let data = (repo, subject.to_string());
        self.run("listing referrers", data, |c, (repo, subject)| {
            Box::pin(async move {
                all(
                    c,
                    sql::REFERRERS,
                    &[&repo.as_str(), subject],
                    manifest_record,
                )
                .await
            })
        })
        .await
    }
}
