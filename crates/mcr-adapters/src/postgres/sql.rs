//! The statements, named for what they do: every one a constant, prepared
//! once per connection (`prepare_cached`) and checked against the indexes
//! by the adapter's tests (`tests/postgres_store.rs`); only the audit
//! query, whose filters vary, is assembled per call (`audit::audit_sql`),
//! and the repository listing, whose order varies
//! (`crate::repo_listing`).
//!
//! Locks (`FOR KEY SHARE`, `FOR UPDATE`) follow the rules in the module
//! docs of `postgres`.

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
/// from `repositories r`; sums are cast back to `bigint` (PostgreSQL
/// sums `bigint`s as `numeric`).
macro_rules! summary_columns {
    () => {
        "r.name, r.created,
            (SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id),
            (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id),
            r.size,
            GREATEST((SELECT COALESCE(MAX(m.created), 0) FROM manifests m WHERE m.repository_id = r.id),
                     (SELECT COALESCE(MAX(t.updated), 0) FROM tags t WHERE t.repository_id = r.id)),
            r.id"
    };
}

macro_rules! summary_select {
    () => {
        concat!("SELECT ", summary_columns!(), " FROM repositories r ")
    };
}

// Repositories. Pages compare with `COALESCE($1, '')`: every name sorts
// after '', and the bound stays a plain range the index can seek to.
pub(super) const LOCK_REPO: &str = "SELECT id FROM repositories WHERE name = $1 FOR KEY SHARE";
pub(super) const LOCK_REPO_FOR_DELETE: &str =
    "SELECT id FROM repositories WHERE name = $1 FOR UPDATE";
pub(super) const INSERT_REPO: &str =
    "INSERT INTO repositories (name, created) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
pub(super) const REPO_VISIBLE: &str = concat!(
    "SELECT 1 FROM repositories r WHERE r.name = $1 AND ",
    holds_content!()
);
pub(super) const LIST_REPOS: &str = concat!(
    "SELECT r.name FROM repositories r WHERE r.name > COALESCE($1, '') AND ",
    holds_content!(),
    " ORDER BY r.name LIMIT $2"
);
/// The repository listing in this dialect (`crate::repo_listing`).
pub(super) const LISTING: Dialect = Dialect {
    placeholder: |n| format!("${n}"),
    contains: |p| format!("strpos(r.name, {p}) > 0"),
    holds_content: holds_content!(),
    summary_select: summary_select!(),
    sort_keys: [
    "(SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id)",
    "(SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id)",
    "r.size",
    "GREATEST((SELECT COALESCE(MAX(m.created), 0) FROM manifests m WHERE m.repository_id = r.id),
              (SELECT COALESCE(MAX(t.updated), 0) FROM tags t WHERE t.repository_id = r.id))",
    ],
    summaries_of_page: concat!(
        "SELECT ",
        summary_columns!(),
        " FROM ({page}) p JOIN repositories r ON r.id = p.id ORDER BY {order}"
    ),
};
pub(super) const STORED_BYTES: &str = "SELECT ((SELECT COALESCE(SUM(size), 0) FROM blobs)
    + (SELECT COALESCE(SUM(size), 0) FROM manifests))::bigint";
// Names under `prefix/` sort from `prefix/` up to `prefix0` ('0' follows
// '/'), by the bytes: names are COLLATE "C".
pub(super) const PUSHED_REPOS: &str = "SELECT r.name FROM repositories r
    WHERE (r.name = $1 OR (r.name >= $1 || '/' AND r.name < $1 || '0'))
    AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id AND m.pushed)
        OR EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = r.id AND rb.pushed))
    ORDER BY r.name LIMIT $2";
pub(super) const SUMMARY: &str = concat!(
    summary_select!(),
    "WHERE r.name = $1 AND ",
    holds_content!()
);
pub(super) const DETAIL_TAGS: &str = "SELECT t.name, m.digest FROM tags t
    JOIN manifests m ON m.id = t.manifest_id WHERE t.repository_id = $1 ORDER BY t.name";
pub(super) const DETAIL_MANIFESTS: &str = "SELECT digest, media_type, size, created FROM manifests
    WHERE repository_id = $1 ORDER BY created DESC, digest";
pub(super) const DETAIL_BLOBS: &str = "SELECT b.digest, b.size FROM repository_blobs rb
    JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = $1 ORDER BY rb.digest";
pub(super) const REPO_UPLOADS: &str = "SELECT id FROM uploads WHERE repository_id = $1 ORDER BY id";
pub(super) const DELETE_REPO: &str = "DELETE FROM repositories WHERE id = $1";
pub(super) const DELETE_REPO_MANIFESTS: &str = "DELETE FROM manifests WHERE repository_id = $1";
pub(super) const DELETE_REPO_LINKS: &str = "DELETE FROM repository_blobs WHERE repository_id = $1";
pub(super) const PRUNE_REPO: &str = "DELETE FROM repositories r WHERE r.id = $1
    AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)
    AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = r.id)
    AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.repository_id = r.id)";

// Manifests and tags.
/// The listed digests linked to the repository, held until the step ends.
pub(super) const LOCK_LINKS: &str = "SELECT digest FROM repository_blobs
    WHERE repository_id = $1 AND digest = ANY($2) FOR KEY SHARE";
/// The listed digests stored as manifests in the repository, held.
pub(super) const LOCK_MANIFESTS: &str = "SELECT digest FROM manifests
    WHERE repository_id = $1 AND digest = ANY($2) FOR KEY SHARE";
pub(super) const MANIFEST_ID: &str =
    "SELECT id FROM manifests WHERE repository_id = $1 AND digest = $2";
/// Returns the new id, or no row if the manifest was already stored.
pub(super) const INSERT_MANIFEST: &str = "INSERT INTO manifests
    (repository_id, digest, media_type, raw, size, subject_digest, artifact_type, created, pushed)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (repository_id, digest) DO NOTHING RETURNING id";
pub(super) const INSERT_REFERENCES: &str =
    "INSERT INTO manifest_references (manifest_id, kind, digest)
    SELECT $1, $2, d FROM unnest($3::text[]) AS d ON CONFLICT DO NOTHING";
pub(super) const UPSERT_TAG: &str = "INSERT INTO tags (repository_id, name, manifest_id, updated)
    VALUES ($1, $2, $3, $4) ON CONFLICT (repository_id, name)
    DO UPDATE SET manifest_id = excluded.manifest_id, updated = excluded.updated";
pub(super) const MANIFEST_BY_TAG: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    " FROM repositories r JOIN tags t ON t.repository_id = r.id
      JOIN manifests m ON m.id = t.manifest_id WHERE r.name = $1 AND t.name = $2"
);
pub(super) const MANIFEST_BY_DIGEST: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    " FROM repositories r JOIN manifests m ON m.repository_id = r.id
      WHERE r.name = $1 AND m.digest = $2"
);
pub(super) const REFERRERS: &str = concat!(
    "SELECT ",
    manifest_columns!(),
    " FROM repositories r JOIN manifests m ON m.repository_id = r.id
      WHERE r.name = $1 AND m.subject_digest = $2 ORDER BY m.digest"
);
/// Tags and references go with it (`ON DELETE CASCADE`).
pub(super) const DELETE_MANIFEST: &str = "DELETE FROM manifests
    WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2";
pub(super) const DELETE_TAG: &str = "DELETE FROM tags WHERE repository_id = $1 AND name = $2";
/// Where a tag points now: what a push's tag guard compares with.
pub(super) const TAG_TARGET: &str = "SELECT m.digest FROM tags t
    JOIN manifests m ON m.id = t.manifest_id WHERE t.repository_id = $1 AND t.name = $2";
/// Where a tag points, its row held until commit: what a push's
/// `tag.moved` event reports as the digest it moved from, exact even
/// when another push moves the tag at the same time (this read waits for
/// it and sees its result).
pub(super) const TAG_TARGET_LOCKED: &str = "SELECT m.digest FROM tags t
    JOIN manifests m ON m.id = t.manifest_id WHERE t.repository_id = $1 AND t.name = $2
    FOR UPDATE OF t";
/// The tags a manifest delete would take with it.
pub(super) const MANIFEST_TAGS: &str = "SELECT t.name FROM manifests m
    JOIN tags t ON t.manifest_id = m.id
    WHERE m.repository_id = $1 AND m.digest = $2 ORDER BY t.name";
/// A manifest of the repository (by id) that refers to the digest as
/// its subject or as an index's child: what keeps a planned manifest.
pub(super) const MANIFEST_REFERRER: &str = "SELECT m.digest FROM manifests m
    WHERE m.repository_id = $1 AND m.subject_digest = $2
    UNION ALL
    SELECT m.digest FROM manifest_references mr JOIN manifests m ON m.id = mr.manifest_id
    WHERE mr.digest = $2 AND mr.kind = 'manifest' AND m.repository_id = $1
    LIMIT 1";
/// The tags a repository delete would take with it.
pub(super) const REPO_TAGS: &str = "SELECT name FROM tags WHERE repository_id = $1 ORDER BY name";
pub(super) const LIST_TAGS: &str = "SELECT name FROM tags
    WHERE repository_id = (SELECT id FROM repositories WHERE name = $1)
      AND name > COALESCE($2, '') ORDER BY name LIMIT $3";

// Blobs and links.
pub(super) const BLOB_IN_REPO: &str = "SELECT b.digest, b.size FROM repositories r
    JOIN repository_blobs rb ON rb.repository_id = r.id JOIN blobs b ON b.digest = rb.digest
    WHERE r.name = $1 AND rb.digest = $2";
pub(super) const BLOB_EXISTS: &str = "SELECT 1 FROM blobs WHERE digest = $1";
/// The blob row, held until the step ends: a sweep deletes it only before
/// or after.
pub(super) const LOCK_BLOB: &str = "SELECT size FROM blobs WHERE digest = $1 FOR KEY SHARE";
pub(super) const INSERT_BLOB: &str = "INSERT INTO blobs (digest, size, created) VALUES ($1, $2, $3)
    ON CONFLICT (digest) DO NOTHING";
/// A link a push made once stays pushed.
pub(super) const LINK: &str =
    "INSERT INTO repository_blobs (repository_id, digest, linked_at, pushed)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at,
        pushed = repository_blobs.pushed OR excluded.pushed";
/// The repositories linked to a blob, by name after `$2`, at most `$3`.
pub(super) const BLOB_HOLDERS: &str = "SELECT r.name FROM repository_blobs rb
    JOIN repositories r ON r.id = rb.repository_id
    WHERE rb.digest = $1 AND r.name > COALESCE($2, '') ORDER BY r.name LIMIT $3";
pub(super) const UNLINK: &str = "DELETE FROM repository_blobs
    WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2";
/// A page of blob rows after `$1` (keyset paging: reconcile streams them).
pub(super) const LIST_BLOBS: &str =
    "SELECT digest, size FROM blobs WHERE digest > COALESCE($1, '') ORDER BY digest LIMIT $2";

// Status.
/// Blob rows and their total size (`SUM` of bigints is numeric: cast back).
pub(super) const BLOB_TOTALS: &str = "SELECT COUNT(*), COALESCE(SUM(size), 0)::bigint FROM blobs";
pub(super) const UPLOAD_TOTAL: &str = "SELECT COUNT(*) FROM uploads";
pub(super) const IN_RECOVERY: &str = "SELECT pg_is_in_recovery()";

// Upload sessions.
pub(super) const INSERT_UPLOAD: &str = "INSERT INTO uploads
    (id, repository_id, received, writer_state, active, owner) VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (id) DO NOTHING";
/// Held until the transaction ends, so that two replicas opening a
/// session in one repository count one after the other (`FOR NO KEY
/// UPDATE` leaves `complete_upload`'s `FOR KEY SHARE` free).
pub(super) const LOCK_REPO_FOR_UPLOADS: &str =
    "SELECT id FROM repositories WHERE id = $1 FOR NO KEY UPDATE";
/// The same for one owner's sessions, on a transaction-level advisory
/// lock in the two-key space (class 1), apart from the one-key locks of
/// `coordination`. Always taken after the repository's row: nothing that
/// holds it waits for a row, so the two cannot deadlock.
pub(super) const LOCK_UPLOAD_OWNER: &str = "SELECT pg_advisory_xact_lock(1, hashtext($1))";
pub(super) const OWNER_UPLOAD_COUNT: &str = "SELECT COUNT(*) FROM uploads WHERE owner = $1";
pub(super) const REPO_UPLOAD_COUNT: &str = "SELECT COUNT(*) FROM uploads WHERE repository_id = $1";
pub(super) const GET_UPLOAD: &str =
    "SELECT u.id, r.name, u.received, u.writer_state, u.active FROM uploads u
    JOIN repositories r ON r.id = u.repository_id WHERE u.id = $1";
/// Only from the size the writer started at (`$2`): two writers that
/// raced cannot both record.
pub(super) const SAVE_UPLOAD_STATE: &str = "UPDATE uploads
    SET received = $3, writer_state = $4, active = $5 WHERE id = $1 AND received = $2";
pub(super) const UPLOAD_REPO: &str = "SELECT repository_id FROM uploads WHERE id = $1";
/// The session's repository, held (see `complete_upload`).
pub(super) const LOCK_REPO_BY_ID: &str = "SELECT id FROM repositories WHERE id = $1 FOR KEY SHARE";
pub(super) const TAKE_UPLOAD: &str = "DELETE FROM uploads WHERE id = $1 RETURNING repository_id";
pub(super) const DELETE_UPLOAD: &str = "DELETE FROM uploads WHERE id = $1";
/// A page of the sessions idle since `$1`, after (`$2` active, `$3` id):
/// keyset paging, so the purge deleting sessions as it goes skips none.
pub(super) const UPLOADS_IDLE: &str =
    "SELECT u.id, r.name, u.received, u.writer_state, u.active FROM uploads u
    JOIN repositories r ON r.id = u.repository_id
    WHERE u.active < $1 AND (u.active, u.id) > ($2, $3)
    ORDER BY u.active, u.id LIMIT $4";

// GC. Strict comparisons: a row or link made exactly at the cutoff
// protects the blob. Only `blob` references protect blobs; `manifest`
// ones name manifests, which are not in `blobs`.
macro_rules! sweepable {
    () => {
        "b.created < $1
          AND NOT EXISTS (SELECT 1 FROM manifest_references mr
                          WHERE mr.digest = b.digest AND mr.kind = 'blob')
          AND NOT EXISTS (SELECT 1 FROM repository_blobs rb
                          WHERE rb.digest = b.digest AND rb.linked_at >= $1)"
    };
}
/// GC's window: how many blob rows follow `$1` (at most `$2`) and the
/// last of them.
pub(super) const SWEEP_WINDOW: &str = "SELECT count(*), max(digest) FROM
    (SELECT digest FROM blobs WHERE digest > $1 ORDER BY digest LIMIT $2) w";
/// The candidates in GC's window (`$2`, `$3`], locked in digest order:
/// nobody links them while the sweep decides.
pub(super) const SWEEP_CANDIDATES: &str = concat!(
    "SELECT b.digest FROM blobs b WHERE b.digest > $2 AND b.digest <= $3 AND ",
    sweepable!(),
    " ORDER BY b.digest FOR UPDATE OF b"
);
/// Their links, locked: a manifest relying on one commits first.
pub(super) const LOCK_BLOB_LINKS: &str =
    "SELECT 1 FROM repository_blobs WHERE digest = ANY($1) FOR UPDATE";
/// Which of the digests `$1` still have a row (GC phase two).
pub(super) const BLOBS_WITH_ROWS: &str = "SELECT digest FROM blobs WHERE digest = ANY($1)";
/// The candidates that are still sweepable now that nothing can change
/// them: deleted, with their links (`ON DELETE CASCADE`).
pub(super) const SWEEP: &str = concat!(
    "DELETE FROM blobs b WHERE b.digest = ANY($2) AND ",
    sweepable!(),
    " RETURNING b.digest, b.size"
);

// Policy rules.
pub(super) const LIST_RULES: &str = "SELECT id, rule::text FROM policy_rules ORDER BY id";
pub(super) const GET_RULE: &str = "SELECT id, rule::text FROM policy_rules WHERE id = $1";
/// The rule's JSON is filled in once the id is known.
pub(super) const INSERT_RULE: &str = "INSERT INTO policy_rules
    (priority, enabled, rule, created, updated) VALUES ($1, $2, '{}', $3, $3) RETURNING id";
pub(super) const UPDATE_RULE: &str = "UPDATE policy_rules
    SET priority = $2, enabled = $3, rule = $4::text::jsonb, updated = $5 WHERE id = $1";
pub(super) const DELETE_RULE: &str = "DELETE FROM policy_rules WHERE id = $1";
/// The rule, held until the step ends: an update compares and replaces
/// it with no other change in between.
pub(super) const LOCK_RULE: &str =
    "SELECT id, rule::text FROM policy_rules WHERE id = $1 FOR UPDATE";
pub(super) const LIST_RETENTION: &str =
    "SELECT id, policy::text, created, updated FROM retention_policies ORDER BY id";
pub(super) const GET_RETENTION: &str =
    "SELECT id, policy::text, created, updated FROM retention_policies WHERE id = $1";
pub(super) const INSERT_RETENTION: &str =
    "INSERT INTO retention_policies (policy, created, updated)
    VALUES ($1::text::jsonb, $2, $2) RETURNING id";
pub(super) const REPLACE_RETENTION: &str =
    "UPDATE retention_policies SET policy = $2::text::jsonb, updated = $3 WHERE id = $1";
pub(super) const DELETE_RETENTION: &str = "DELETE FROM retention_policies WHERE id = $1";
/// A repository's manifests, by digest, for a retention run.
pub(super) const GRAPH_MANIFESTS: &str = "SELECT m.digest, m.created, m.subject_digest
    FROM manifests m JOIN repositories r ON r.id = m.repository_id
    WHERE r.name = $1 ORDER BY m.digest";
/// Each index's children in a repository.
pub(super) const GRAPH_CHILDREN: &str = "SELECT m.digest, mr.digest FROM manifests m
    JOIN repositories r ON r.id = m.repository_id
    JOIN manifest_references mr ON mr.manifest_id = m.id AND mr.kind = 'manifest'
    WHERE r.name = $1 ORDER BY m.digest, mr.digest";
/// A repository's tags with their manifest and when each was last set.
pub(super) const GRAPH_TAGS: &str = "SELECT t.name, m.digest, t.updated FROM tags t
    JOIN repositories r ON r.id = t.repository_id
    JOIN manifests m ON m.id = t.manifest_id
    WHERE r.name = $1 ORDER BY t.name";
pub(super) const RULE_GENERATION: &str = "SELECT generation FROM policy_generation WHERE id = 1";
/// Also takes the row's lock until commit: rule changes advance the
/// generation one after another, in commit order.
pub(super) const NEXT_RULE_GENERATION: &str =
    "UPDATE policy_generation SET generation = generation + 1 WHERE id = 1";

// Revoked tokens.
pub(super) const REVOKE_TOKEN: &str = "INSERT INTO revoked_tokens (token_id, expires)
    VALUES ($1, $2) ON CONFLICT (token_id) DO NOTHING";
pub(super) const DROP_ENDED_REVOCATIONS: &str = "DELETE FROM revoked_tokens WHERE expires <= $1";
pub(super) const LIVE_REVOCATIONS: &str =
    "SELECT token_id, expires FROM revoked_tokens WHERE expires > $1 ORDER BY token_id";

// Audit log.
pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit_log
    (time, event_type, actor_id, repository, digest, ip, details)
    VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)";

// Quotas.
/// Serialises quota changes (the count against `MAX_QUOTAS`); pushes'
/// row locks (`ROW SHARE`) do not wait on it.
pub(super) const LOCK_QUOTAS: &str = "LOCK TABLE quotas IN SHARE ROW EXCLUSIVE MODE";
pub(super) const QUOTA_BY_SCOPE: &str = "SELECT id FROM quotas WHERE scope = $1";
pub(super) const LIST_QUOTAS: &str = "SELECT id, scope, limit_bytes FROM quotas ORDER BY scope";
pub(super) const QUOTA_COUNT: &str = "SELECT COUNT(*) FROM quotas";
pub(super) const INSERT_QUOTA: &str =
    "INSERT INTO quotas (scope, limit_bytes) VALUES ($1, $2) RETURNING id";
pub(super) const UPDATE_QUOTA: &str = "UPDATE quotas SET limit_bytes = $2 WHERE id = $1";
pub(super) const DELETE_QUOTA: &str =
    "DELETE FROM quotas WHERE id = $1 RETURNING id, scope, limit_bytes";
/// The quotas on these scopes, locked in scope order (so two pushes
/// never take them crosswise): pushes under one quota wait here for each
/// other's commit, then measure what it left.
pub(super) const LOCK_COVERING_QUOTAS: &str =
    "SELECT scope, limit_bytes FROM quotas WHERE scope = ANY($1) ORDER BY scope FOR UPDATE";
/// A repository's use is its stored size (migration 7): its manifests
/// and linked blobs, each once.
pub(super) const REPO_USAGE: &str = "SELECT size FROM repositories WHERE name = $1";
/// A namespace's use (names in [$1, $2)): each blob linked in any of its
/// repositories once, plus each manifest stored in any of them once.
pub(super) const NAMESPACE_USAGE: &str = "SELECT
    (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN (
        SELECT rb.digest FROM repositories r
        JOIN repository_blobs rb ON rb.repository_id = r.id
        WHERE r.name >= $1 AND r.name < $2))::bigint
    + (SELECT COALESCE(SUM(size), 0) FROM (SELECT DISTINCT m.digest, m.size
        FROM repositories r JOIN manifests m ON m.repository_id = r.id
        WHERE r.name >= $1 AND r.name < $2) d)::bigint";
pub(super) const BLOB_IN_NAMESPACE: &str = "SELECT 1 FROM repository_blobs rb
    JOIN repositories r ON r.id = rb.repository_id
    WHERE rb.digest = $1 AND r.name >= $2 AND r.name < $3 LIMIT 1";
pub(super) const MANIFEST_IN_NAMESPACE: &str = "SELECT 1 FROM manifests m
    JOIN repositories r ON r.id = m.repository_id
    WHERE m.digest = $1 AND r.name >= $2 AND r.name < $3 LIMIT 1";
pub(super) const BLOB_IN_NAMED_REPO: &str = "SELECT 1 FROM repository_blobs rb
    JOIN repositories r ON r.id = rb.repository_id WHERE rb.digest = $1 AND r.name = $2";
pub(super) const MANIFEST_IN_NAMED_REPO: &str = "SELECT 1 FROM manifests m
    JOIN repositories r ON r.id = m.repository_id WHERE m.digest = $1 AND r.name = $2";
pub(super) const REPO_NAME: &str = "SELECT name FROM repositories WHERE id = $1";

// ---- events ----------------------------------------------------------

/// Taken by every transaction that appends events, just before it does,
/// and held until it commits: ids are then handed out in commit order
/// (an identity alone hands them out at insert, so a reader past id `n`
/// could later see an `n - 1` commit, and skip it). The two-key form
/// keeps it apart from the coordination's one-key locks.
pub(super) const LOCK_OUTBOX: &str = "SELECT pg_advisory_xact_lock(1296257605, 1)";
pub(super) const INSERT_EVENT: &str =
    "INSERT INTO event_outbox (event_id, time, kind, repository, data) \
     VALUES ($1, $2, $3, $4, $5::text::jsonb)";
pub(super) const EVENTS_AFTER: &str = "SELECT id, time, kind, repository, data::text, event_id \
     FROM event_outbox WHERE id > $1 ORDER BY id LIMIT $2";
pub(super) const COUNT_EVENTS_AFTER: &str = "SELECT count(*) FROM event_outbox WHERE id > $1";
/// The last id handed out, by the identity's sequence: kept once its row
/// is pruned.
pub(super) const LAST_EVENT_ID: &str = "SELECT COALESCE(pg_sequence_last_value(\
     pg_get_serial_sequence('event_outbox', 'id')::regclass), 0)";
pub(super) const PRUNE_EVENTS: &str = "DELETE FROM event_outbox WHERE id <= $1 AND time < $2";
pub(super) const DELIVERY_STATES: &str = "SELECT webhook, delivered, attempts, last_attempt, \
     last_error, next_attempt FROM webhook_deliveries ORDER BY webhook";
pub(super) const SAVE_DELIVERY_STATE: &str = "INSERT INTO webhook_deliveries \
     (webhook, delivered, attempts, last_attempt, last_error, next_attempt) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (webhook) DO UPDATE SET delivered = excluded.delivered, \
     attempts = excluded.attempts, last_attempt = excluded.last_attempt, \
     last_error = excluded.last_error, next_attempt = excluded.next_attempt";
pub(super) const FORGET_DELIVERY_STATES: &str =
    "DELETE FROM webhook_deliveries WHERE NOT (webhook = ANY($1))";
