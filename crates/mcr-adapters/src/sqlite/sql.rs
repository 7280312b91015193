//! The statements, named for what they do: every one a constant, prepared
//! once per connection (`prepare_cached`) and checked against the indexes
//! by this module's tests; only the audit query, whose filters vary, is
//! assembled per call (`audit::audit_sql`), and the repository listing,
//! whose order varies (`crate::repo_listing`).

use crate::repo_listing::Dialect;

/// The columns `manifest_record` reads, from `repositories r` joined
/// with `manifests m`.
macro_rules! manifest_columns {
    () => {
        "r.name, m.digest, m.media_type, m.raw, m.subject_digest, m.artifact_type, m.created"
    };
}

/// Whether repository `r` holds content (a manifest or a blob link): only
/// then does it exist for readers (an upload session alone makes a row).
macro_rules! holds_content {
    () => {
        "(EXISTS (SELECT 1 FROM manifests hm WHERE hm.repository_id = r.id)
          OR EXISTS (SELECT 1 FROM repository_blobs hb WHERE hb.repository_id = r.id))"
    };
}

/// A repository's summary columns (read by `summary`), then its id,
/// from `repositories r`. Every aggregate seeks one repository's range of
/// an index: `manifests_by_repository` covers the counts and times of its
/// manifests; the size is the row's own, kept by triggers (migration 12).
macro_rules! summary_columns {
    () => {
        "r.name, r.created,
            (SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id),
            (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id),
            r.size,
            MAX((SELECT COALESCE(MAX(m.created), 0) FROM manifests m WHERE m.repository_id = r.id),
                (SELECT COALESCE(MAX(t.updated), 0) FROM tags t WHERE t.repository_id = r.id)),
            r.id"
    };
}

macro_rules! summary_select {
    () => {
        concat!("SELECT ", summary_columns!(), " FROM repositories r ")
    };
}

// Repositories. Pages compare with `COALESCE(?, '')` rather than
// `(? IS NULL OR name > ?)` so the bound is a plain range the index
// can seek to: every name sorts after ''.
pub(super) const REPO_ID: &str = "SELECT id FROM repositories WHERE name = ?1";
pub(super) const INSERT_REPO: &str =
    "INSERT INTO repositories (name, created) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING";
pub(super) const REPO_VISIBLE: &str = concat!(
    "SELECT 1 FROM repositories r WHERE r.name = ?1 AND ",
    holds_content!()
);
pub(super) const LIST_REPOS: &str = concat!(
    "SELECT r.name FROM repositories r WHERE r.name > COALESCE(?1, '') AND ",
    holds_content!(),
    " ORDER BY r.name LIMIT ?2"
);
/// The repository listing in this dialect (`crate::repo_listing`).
pub(super) const LISTING: Dialect = Dialect {
    placeholder: |n| format!("?{n}"),
    contains: |p| format!("instr(r.name, {p}) > 0"),
    holds_content: holds_content!(),
    summary_select: summary_select!(),
    sort_keys: [
        "(SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id)",
        "(SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id)",
        "r.size",
        "MAX((SELECT COALESCE(MAX(m.created), 0) FROM manifests m WHERE m.repository_id = r.id),
         (SELECT COALESCE(MAX(t.updated), 0) FROM tags t WHERE t.repository_id = r.id))",
    ],
    summaries_of_page: concat!(
        "SELECT ",
        summary_columns!(),
        " FROM ({page}) p JOIN repositories r ON r.id = p.id ORDER BY {order}"
    ),
};
pub(super) const STORED_BYTES: &str = "SELECT (SELECT COALESCE(SUM(size), 0) FROM blobs)
    + (SELECT COALESCE(SUM(size), 0) FROM manifests)";
// Names under `prefix/` sort from `prefix/` up to `prefix0` ('0' follows
// '/'), by the bytes: SQLite's default collation.
pub(super) const PUSHED_REPOS: &str = "SELECT r.name FROM repositories r
    WHERE (r.name = ?1 OR (r.name >= ?1 || '/' AND r.name < ?1 || '0'))
    AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id AND m.pushed = 1)
        OR EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = r.id AND rb.pushed = 1))
    ORDER BY r.name LIMIT ?2";
pub(super) const SUMMARY: &str = concat!(
    summary_select!(),
    "WHERE r.name = ?1 AND ",
    holds_content!()
);
pub(super) const DETAIL_TAGS: &str = "SELECT t.name, m.digest FROM tags t
    JOIN manifests m ON m.id = t.manifest_id WHERE t.repository_id = ?1 ORDER BY t.name";
pub(super) const DETAIL_MANIFESTS: &str = "SELECT digest, media_type, size, created FROM manifests
    WHERE repository_id = ?1 ORDER BY created DESC, digest";
pub(super) const DETAIL_BLOBS: &str = "SELECT b.digest, b.size FROM repository_blobs rb
    JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = ?1 ORDER BY rb.digest";
pub(super) const REPO_UPLOADS: &str = "SELECT id FROM uploads WHERE repository_id = ?1 ORDER BY id";
pub(super) const DELETE_REPO: &str = "DELETE FROM repositories WHERE id = ?1";
pub(super) const DELETE_REPO_MANIFESTS: &str = "DELETE FROM manifests WHERE repository_id = ?1";
pub(super) const DELETE_REPO_LINKS: &str = "DELETE FROM repository_blobs WHERE repository_id = ?1";

// Manifests and tags.
pub(super) const IS_LINKED: &str =
    "SELECT 1 FROM repository_blobs WHERE repository_id = ?1 AND digest = ?2";
pub(super) const MANIFEST_ID: &str =
    "SELECT id FROM manifests WHERE repository_id = ?1 AND digest = ?2";
/// Returns the new id, or no row if the manifest was already stored.
pub(super) const INSERT_MANIFEST: &str = "INSERT INTO manifests
    (repository_id, digest, media_type, raw, size, subject_digest, artifact_type, created, pushed)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT (repository_id, digest) DO NOTHING RETURNING id";
pub(super) const INSERT_REFERENCE: &str =
    "INSERT OR IGNORE INTO manifest_references (manifest_id, kind, digest) VALUES (?1, ?2, ?3)";
pub(super) const UPSERT_TAG: &str = "INSERT INTO tags (repository_id, name, manifest_id, updated)
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT (repository_id, name)
    DO UPDATE SET manifest_id = excluded.manifest_id, updated = excluded.updated";
pub(super) const MANIFEST_BY_TAG: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    " FROM repositories r JOIN tags t ON t.repository_id = r.id
      JOIN manifests m ON m.id = t.manifest_id WHERE r.name = ?1 AND t.name = ?2"
);
pub(super) const MANIFEST_BY_DIGEST: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    " FROM repositories r JOIN manifests m ON m.repository_id = r.id
      WHERE r.name = ?1 AND m.digest = ?2"
);
pub(super) const REFERRERS: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    " FROM repositories r JOIN manifests m ON m.repository_id = r.id
      WHERE r.name = ?1 AND m.subject_digest = ?2 ORDER BY m.digest"
);
/// Tags and references go with it (`ON DELETE CASCADE`).
pub(super) const DELETE_MANIFEST: &str = "DELETE FROM manifests
    WHERE repository_id = (SELECT id FROM repositories WHERE name = ?1) AND digest = ?2";
pub(super) const DELETE_TAG: &str = "DELETE FROM tags
    WHERE repository_id = (SELECT id FROM repositories WHERE name = ?1) AND name = ?2";
/// Where a tag, by repository name, points: what its delete reports.
pub(super) const TAG_DIGEST: &str = "SELECT m.digest FROM repositories r
    JOIN tags t ON t.repository_id = r.id JOIN manifests m ON m.id = t.manifest_id
    WHERE r.name = ?1 AND t.name = ?2";
/// Where a tag points now: what a push's tag guard compares with.
pub(super) const TAG_TARGET: &str = "SELECT m.digest FROM tags t
    JOIN manifests m ON m.id = t.manifest_id WHERE t.repository_id = ?1 AND t.name = ?2";
/// The tags a manifest delete would take with it.
pub(super) const MANIFEST_TAGS: &str = "SELECT t.name FROM repositories r
    JOIN manifests m ON m.repository_id = r.id JOIN tags t ON t.manifest_id = m.id
    WHERE r.name = ?1 AND m.digest = ?2 ORDER BY t.name";
/// A manifest of the repository that refers to the digest as its
/// subject or as an index's child: what keeps a planned manifest.
pub(super) const MANIFEST_REFERRER: &str = "SELECT m.digest FROM manifests m
    WHERE m.repository_id = (SELECT id FROM repositories WHERE name = ?1)
      AND m.subject_digest = ?2
    UNION ALL
    SELECT m.digest FROM manifest_references mr JOIN manifests m ON m.id = mr.manifest_id
    WHERE mr.digest = ?2 AND mr.kind = 'manifest'
      AND m.repository_id = (SELECT id FROM repositories WHERE name = ?1)
    LIMIT 1";
/// The tags a repository delete would take with it.
pub(super) const REPO_TAGS: &str = "SELECT name FROM tags WHERE repository_id = ?1 ORDER BY name";
pub(super) const LIST_TAGS: &str = "SELECT name FROM tags
    WHERE repository_id = (SELECT id FROM repositories WHERE name = ?1)
      AND name > COALESCE(?2, '') ORDER BY name LIMIT ?3";

// Blobs and links.
pub(super) const BLOB_IN_REPO: &str = "SELECT b.digest, b.size FROM repositories r
    JOIN repository_blobs rb ON rb.repository_id = r.id JOIN blobs b ON b.digest = rb.digest
    WHERE r.name = ?1 AND rb.digest = ?2";
pub(super) const BLOB_EXISTS: &str = "SELECT 1 FROM blobs WHERE digest = ?1";
pub(super) const INSERT_BLOB: &str =
    "INSERT INTO blobs (digest, size, created) VALUES (?1, ?2, ?3) ON CONFLICT (digest) DO NOTHING";
/// Making a link again re-stamps it: GC's grace period counts from the
/// latest upload or mount. A link a push made once stays pushed.
pub(super) const LINK: &str =
    "INSERT INTO repository_blobs (repository_id, digest, linked_at, pushed)
    VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at,
        pushed = MAX(pushed, excluded.pushed)";
pub(super) const BLOB_HOLDERS: &str = "SELECT r.name FROM repository_blobs rb
    JOIN repositories r ON r.id = rb.repository_id
    WHERE rb.digest = ?1 AND r.name > COALESCE(?2, '') ORDER BY r.name LIMIT ?3";
pub(super) const UNLINK: &str = "DELETE FROM repository_blobs
    WHERE repository_id = (SELECT id FROM repositories WHERE name = ?1) AND digest = ?2";
/// A page of blob rows after `?1` (keyset paging: reconcile streams them).
pub(super) const LIST_BLOBS: &str =
    "SELECT digest, size FROM blobs WHERE digest > COALESCE(?1, '') ORDER BY digest LIMIT ?2";

// Upload sessions.
pub(super) const INSERT_UPLOAD: &str = "INSERT INTO uploads
    (id, repository_id, offset, writer_state, active, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (id) DO NOTHING";
pub(super) const OWNER_UPLOAD_COUNT: &str = "SELECT COUNT(*) FROM uploads WHERE owner = ?1";
pub(super) const REPO_UPLOAD_COUNT: &str = "SELECT COUNT(*) FROM uploads WHERE repository_id = ?1";
pub(super) const GET_UPLOAD: &str =
    "SELECT u.id, r.name, u.offset, u.writer_state, u.active FROM uploads u
    JOIN repositories r ON r.id = u.repository_id WHERE u.id = ?1";
/// Only from the size the writer started at (`?2`): two writers that
/// raced cannot both record.
pub(super) const SAVE_UPLOAD_STATE: &str = "UPDATE uploads
    SET offset = ?3, writer_state = ?4, active = ?5 WHERE id = ?1 AND offset = ?2";
pub(super) const UPLOAD_REPO: &str = "SELECT repository_id FROM uploads WHERE id = ?1";
pub(super) const DELETE_UPLOAD: &str = "DELETE FROM uploads WHERE id = ?1";
pub(super) const PRUNE_REPOSITORY: &str = "DELETE FROM repositories WHERE name = ?1
    AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = repositories.id)
    AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = repositories.id)
    AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.repository_id = repositories.id)";
/// A page of the sessions idle since `?1`, after (`?2` active, `?3` id):
/// keyset paging, so the purge deleting sessions as it goes skips none.
pub(super) const UPLOADS_IDLE: &str =
    "SELECT u.id, r.name, u.offset, u.writer_state, u.active FROM uploads u
    JOIN repositories r ON r.id = u.repository_id
    WHERE u.active < ?1 AND (u.active, u.id) > (?2, ?3)
    ORDER BY u.active, u.id LIMIT ?4";

// GC. Strict comparisons: a row or link made exactly at the cutoff
// protects the blob. Only `blob` references protect blobs; `manifest`
// ones name manifests, which are not in `blobs`.
/// GC's window: how many blob rows follow ?1 (at most ?2) and the last.
pub(super) const SWEEP_WINDOW: &str = "SELECT count(*), max(digest) FROM
    (SELECT digest FROM blobs WHERE digest > ?1 ORDER BY digest LIMIT ?2)";
/// The garbage in GC's window (?2, ?3].
pub(super) const SWEEPABLE: &str = "SELECT b.digest, b.size FROM blobs b
    WHERE b.digest > ?2 AND b.digest <= ?3 AND b.created < ?1
      AND NOT EXISTS (SELECT 1 FROM manifest_references mr
                      WHERE mr.digest = b.digest AND mr.kind = 'blob')
      AND NOT EXISTS (SELECT 1 FROM repository_blobs rb
                      WHERE rb.digest = b.digest AND rb.linked_at >= ?1)
    ORDER BY b.digest";
/// Its links go with it (`ON DELETE CASCADE`).
pub(super) const DELETE_BLOB: &str = "DELETE FROM blobs WHERE digest = ?1";

// Policy rules.
pub(super) const LIST_RULES: &str = "SELECT id, rule_json FROM policy_rules ORDER BY id";
pub(super) const GET_RULE: &str = "SELECT id, rule_json FROM policy_rules WHERE id = ?1";
/// The JSON is filled in once the id is known.
pub(super) const INSERT_RULE: &str = "INSERT INTO policy_rules
    (priority, enabled, rule_json, created, updated) VALUES (?1, ?2, '{}', ?3, ?3)";
pub(super) const UPDATE_RULE: &str = "UPDATE policy_rules
    SET priority = ?2, enabled = ?3, rule_json = ?4, updated = ?5 WHERE id = ?1";
pub(super) const DELETE_RULE: &str = "DELETE FROM policy_rules WHERE id = ?1";
// Revoked tokens.
pub(super) const REVOKE_TOKEN: &str = "INSERT INTO revoked_tokens (token_id, expires)
    VALUES (?1, ?2) ON CONFLICT (token_id) DO NOTHING";
pub(super) const DROP_ENDED_REVOCATIONS: &str = "DELETE FROM revoked_tokens WHERE expires <= ?1";
pub(super) const LIVE_REVOCATIONS: &str =
    "SELECT token_id, expires FROM revoked_tokens WHERE expires > ?1 ORDER BY token_id";
pub(super) const LIST_RETENTION: &str =
    "SELECT id, policy_json, created, updated FROM retention_policies ORDER BY id";
pub(super) const GET_RETENTION: &str =
    "SELECT id, policy_json, created, updated FROM retention_policies WHERE id = ?1";
pub(super) const INSERT_RETENTION: &str =
    "INSERT INTO retention_policies (policy_json, created, updated) VALUES (?1, ?2, ?2)";
pub(super) const REPLACE_RETENTION: &str =
    "UPDATE retention_policies SET policy_json = ?2, updated = ?3 WHERE id = ?1";
pub(super) const DELETE_RETENTION: &str = "DELETE FROM retention_policies WHERE id = ?1";
/// A repository's manifests, by digest, for a retention run.
pub(super) const GRAPH_MANIFESTS: &str = "SELECT digest, created, subject_digest FROM manifests
    WHERE repository_id = ?1 ORDER BY digest";
/// Each index's children in a repository.
pub(super) const GRAPH_CHILDREN: &str = "SELECT m.digest, r.digest FROM manifests m
    JOIN manifest_references r ON r.manifest_id = m.id AND r.kind = 'manifest'
    WHERE m.repository_id = ?1 ORDER BY m.digest, r.digest";
/// A repository's tags with their manifest and when each was last set.
pub(super) const GRAPH_TAGS: &str = "SELECT t.name, m.digest, t.updated FROM tags t
    JOIN manifests m ON m.id = t.manifest_id
    WHERE t.repository_id = ?1 ORDER BY t.name";
pub(super) const RULE_GENERATION: &str = "SELECT generation FROM policy_generation WHERE id = 1";
pub(super) const NEXT_RULE_GENERATION: &str =
    "UPDATE policy_generation SET generation = generation + 1 WHERE id = 1";

// Quotas.
pub(super) const QUOTA_BY_SCOPE: &str = "SELECT id, limit_bytes FROM quotas WHERE scope = ?1";
pub(super) const LIST_QUOTAS: &str = "SELECT id, scope, limit_bytes FROM quotas ORDER BY scope";
pub(super) const QUOTA_COUNT: &str = "SELECT COUNT(*) FROM quotas";
pub(super) const INSERT_QUOTA: &str =
    "INSERT INTO quotas (scope, limit_bytes) VALUES (?1, ?2) RETURNING id";
pub(super) const UPDATE_QUOTA: &str = "UPDATE quotas SET limit_bytes = ?2 WHERE id = ?1";
pub(super) const DELETE_QUOTA: &str =
    "DELETE FROM quotas WHERE id = ?1 RETURNING id, scope, limit_bytes";
/// A repository's use is its stored size (migration 12): its manifests
/// and linked blobs, each once.
pub(super) const REPO_USAGE: &str = "SELECT size FROM repositories WHERE name = ?1";
/// A namespace's use (names in [?1, ?2)): each blob linked in any of its
/// repositories once, plus each manifest stored in any of them once.
pub(super) const NAMESPACE_USAGE: &str = "SELECT
    (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN (
        SELECT rb.digest FROM repositories r
        JOIN repository_blobs rb ON rb.repository_id = r.id
        WHERE r.name >= ?1 AND r.name < ?2))
    + (SELECT COALESCE(SUM(size), 0) FROM (SELECT DISTINCT m.digest, m.size
        FROM repositories r JOIN manifests m ON m.repository_id = r.id
        WHERE r.name >= ?1 AND r.name < ?2))";
pub(super) const BLOB_IN_NAMESPACE: &str = "SELECT 1 FROM repository_blobs rb
    JOIN repositories r ON r.id = rb.repository_id
    WHERE rb.digest = ?1 AND r.name >= ?2 AND r.name < ?3 LIMIT 1";
pub(super) const MANIFEST_IN_NAMESPACE: &str = "SELECT 1 FROM manifests m
    JOIN repositories r ON r.id = m.repository_id
    WHERE m.digest = ?1 AND r.name >= ?2 AND r.name < ?3 LIMIT 1";
pub(super) const BLOB_IN_NAMED_REPO: &str = "SELECT 1 FROM repository_blobs rb
    JOIN repositories r ON r.id = rb.repository_id WHERE rb.digest = ?1 AND r.name = ?2";
pub(super) const MANIFEST_IN_NAMED_REPO: &str = "SELECT 1 FROM manifests m
    JOIN repositories r ON r.id = m.repository_id WHERE m.digest = ?1 AND r.name = ?2";
pub(super) const REPO_NAME: &str = "SELECT name FROM repositories WHERE id = ?1";

// Audit log.
pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit_log
    (time, event_type, actor_id, repository, digest, ip, details)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

// ---- events ----------------------------------------------------------

pub(super) const INSERT_EVENT: &str =
    "INSERT INTO event_outbox (event_id, time, kind, repository, data) VALUES (?1, ?2, ?3, ?4, ?5)";
pub(super) const EVENTS_AFTER: &str =
    "SELECT id, time, kind, repository, data, event_id FROM event_outbox \
    WHERE id > ?1 ORDER BY id LIMIT ?2";
pub(super) const COUNT_EVENTS_AFTER: &str = "SELECT count(*) FROM event_outbox WHERE id > ?1";
/// The last id handed out, kept by AUTOINCREMENT even once its row is
/// pruned.
pub(super) const LAST_EVENT_ID: &str =
    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'event_outbox'), 0)";
pub(super) const PRUNE_EVENTS: &str = "DELETE FROM event_outbox WHERE id <= ?1 AND time < ?2";
pub(super) const DELIVERY_STATES: &str = "SELECT webhook, delivered, attempts, last_attempt, \
     last_error, next_attempt FROM webhook_deliveries ORDER BY webhook";
pub(super) const SAVE_DELIVERY_STATE: &str = "INSERT INTO webhook_deliveries \
     (webhook, delivered, attempts, last_attempt, last_error, next_attempt) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT (webhook) DO UPDATE SET delivered = excluded.delivered, \
     attempts = excluded.attempts, last_attempt = excluded.last_attempt, \
     last_error = excluded.last_error, next_attempt = excluded.next_attempt";
pub(super) const DELETE_DELIVERY_STATE: &str = "DELETE FROM webhook_deliveries WHERE webhook = ?1";

#[cfg(test)]
mod tests {
    use mcr_core::audit::AuditQuery;
    use mcr_core::names::RepoName;
    use mcr_core::time::Timestamp;
    use rusqlite::types::Value;
    use rusqlite::{params_from_iter, Connection};

    use mcr_core::ports::{RepoCursor, RepoQuery, RepoSort, SortOrder};

    use super::super::audit::audit_sql;
    use super::super::repositories::summaries_sql;
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
            ("REPO_ID", REPO_ID, &[]),
            ("REPO_VISIBLE", REPO_VISIBLE, &[]),
            ("LIST_REPOS", LIST_REPOS, &[]),
            // Every row, by design: two sums.
            (
                "STORED_BYTES",
                STORED_BYTES,
                &["blobs", "manifests", "CONSTANT"],
            ),
            ("SUMMARY", SUMMARY, &[]),
            ("DETAIL_TAGS", DETAIL_TAGS, &[]),
            ("DETAIL_MANIFESTS", DETAIL_MANIFESTS, &[]),
            ("DETAIL_BLOBS", DETAIL_BLOBS, &[]),
            ("REPO_UPLOADS", REPO_UPLOADS, &[]),
            ("DELETE_REPO_MANIFESTS", DELETE_REPO_MANIFESTS, &[]),
            ("DELETE_REPO_LINKS", DELETE_REPO_LINKS, &[]),
            ("IS_LINKED", IS_LINKED, &[]),
            ("MANIFEST_ID", MANIFEST_ID, &[]),
            ("MANIFEST_BY_TAG", MANIFEST_BY_TAG, &[]),
            ("MANIFEST_BY_DIGEST", MANIFEST_BY_DIGEST, &[]),
            ("REFERRERS", REFERRERS, &[]),
            ("DELETE_MANIFEST", DELETE_MANIFEST, &[]),
            ("DELETE_TAG", DELETE_TAG, &[]),
            ("TAG_TARGET", TAG_TARGET, &[]),
            ("TAG_DIGEST", TAG_DIGEST, &[]),
            ("MANIFEST_TAGS", MANIFEST_TAGS, &[]),
            ("MANIFEST_REFERRER", MANIFEST_REFERRER, &[]),
            ("REPO_TAGS", REPO_TAGS, &[]),
            ("LIST_TAGS", LIST_TAGS, &[]),
            ("BLOB_IN_REPO", BLOB_IN_REPO, &[]),
            ("BLOB_EXISTS", BLOB_EXISTS, &[]),
            ("BLOB_HOLDERS", BLOB_HOLDERS, &[]),
            ("UNLINK", UNLINK, &[]),
            ("LIST_BLOBS", LIST_BLOBS, &[]),
            ("GET_UPLOAD", GET_UPLOAD, &[]),
            ("OWNER_UPLOAD_COUNT", OWNER_UPLOAD_COUNT, &[]),
            ("REPO_UPLOAD_COUNT", REPO_UPLOAD_COUNT, &[]),
            ("SAVE_UPLOAD_STATE", SAVE_UPLOAD_STATE, &[]),
            ("UPLOAD_REPO", UPLOAD_REPO, &[]),
            ("UPLOADS_IDLE", UPLOADS_IDLE, &[]),
            ("PRUNE_REPOSITORY", PRUNE_REPOSITORY, &[]),
            // The scan is of the window, at most LIMIT rows.
            ("SWEEP_WINDOW", SWEEP_WINDOW, &["(subquery-1)"]),
            ("SWEEPABLE", SWEEPABLE, &[]),
            ("LIST_RULES", LIST_RULES, &["policy_rules"]),
            ("GET_RULE", GET_RULE, &[]),
            ("RULE_GENERATION", RULE_GENERATION, &[]),
            ("LIST_RETENTION", LIST_RETENTION, &["retention_policies"]),
            ("GET_RETENTION", GET_RETENTION, &[]),
            ("GRAPH_MANIFESTS", GRAPH_MANIFESTS, &[]),
            ("GRAPH_CHILDREN", GRAPH_CHILDREN, &[]),
            ("GRAPH_TAGS", GRAPH_TAGS, &[]),
            ("DROP_ENDED_REVOCATIONS", DROP_ENDED_REVOCATIONS, &[]),
            ("LIVE_REVOCATIONS", LIVE_REVOCATIONS, &["revoked_tokens"]),
            ("QUOTA_BY_SCOPE", QUOTA_BY_SCOPE, &[]),
            // Every quota, by design (at most MAX_QUOTAS).
            ("LIST_QUOTAS", LIST_QUOTAS, &["quotas"]),
            ("DELETE_QUOTA", DELETE_QUOTA, &[]),
            ("REPO_USAGE", REPO_USAGE, &[]),
            // The scan is of the namespace's distinct manifests.
            (
                "NAMESPACE_USAGE",
                NAMESPACE_USAGE,
                &["(subquery-3)", "CONSTANT"],
            ),
            ("BLOB_IN_NAMESPACE", BLOB_IN_NAMESPACE, &[]),
            ("MANIFEST_IN_NAMESPACE", MANIFEST_IN_NAMESPACE, &[]),
            ("BLOB_IN_NAMED_REPO", BLOB_IN_NAMED_REPO, &[]),
            ("MANIFEST_IN_NAMED_REPO", MANIFEST_IN_NAMED_REPO, &[]),
            ("REPO_NAME", REPO_NAME, &[]),
            ("EVENTS_AFTER", EVENTS_AFTER, &[]),
            ("COUNT_EVENTS_AFTER", COUNT_EVENTS_AFTER, &[]),
            // AUTOINCREMENT's own table: one row per such table.
            (
                "LAST_EVENT_ID",
                LAST_EVENT_ID,
                &["sqlite_sequence", "CONSTANT"],
            ),
            ("PRUNE_EVENTS", PRUNE_EVENTS, &[]),
            // Every webhook's state, by design (at most MAX_WEBHOOKS).
            ("DELIVERY_STATES", DELIVERY_STATES, &["webhook_deliveries"]),
            ("DELETE_DELIVERY_STATE", DELETE_DELIVERY_STATE, &[]),
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
        // Every shape of the repository listing: it walks the
        // repositories (`r`, and the page `p` of a keyed order) by design,
        // but every count and sum seeks an index.
        let mut listings = Vec::new();
        for sort in RepoSort::ALL {
            for order in [SortOrder::Asc, SortOrder::Desc] {
                for (filter, after) in [(None, None), (Some("a"), Some(("7", "a/b")))] {
                    let q = RepoQuery {
                        filter: filter.map(str::to_string),
                        sort,
                        order,
                        after: after.map(|(k, n)| RepoCursor {
                            key: Some(k.parse().unwrap()),
                            name: n.to_string(),
                        }),
                        limit: 50,
                    };
                    listings.push(("a repository listing", summaries_sql(&q).0));
                }
            }
        }
        let mut failures = Vec::new();
        let all_statements = statements
            .iter()
            .map(|&(name, sql, scans)| (name, sql.to_string(), scans))
            .chain(audits.into_iter().map(|(n, s)| (n, s, &[] as &[&str])))
            .chain(
                listings
                    .into_iter()
                    .map(|(n, s)| (n, s, &["r", "p"] as &[&str])),
            );
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
            ("REFERRERS", REFERRERS, "manifests_by_subject"),
            ("SWEEPABLE", SWEEPABLE, "manifest_references_by_digest"),
            ("SWEEPABLE", SWEEPABLE, "repository_blobs_by_digest"),
            ("UPLOADS_IDLE", UPLOADS_IDLE, "uploads_by_active"),
            ("DELETE_MANIFEST", DELETE_MANIFEST, "tags_by_manifest"),
            (
                "MANIFEST_REFERRER",
                MANIFEST_REFERRER,
                "manifests_by_subject",
            ),
            (
                "MANIFEST_REFERRER",
                MANIFEST_REFERRER,
                "manifest_references_by_digest",
            ),
            (
                "NAMESPACE_USAGE",
                NAMESPACE_USAGE,
                "manifests_by_repository_digest",
            ),
            (
                "MANIFEST_IN_NAMESPACE",
                MANIFEST_IN_NAMESPACE,
                "manifests_by_digest",
            ),
            (
                "BLOB_IN_NAMESPACE",
                BLOB_IN_NAMESPACE,
                "repository_blobs_by_digest",
            ),
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
}
