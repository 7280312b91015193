//! The schema, as numbered migrations recorded in `schema_migrations`.
//!
//! Each migration runs once, in its own transaction, and is recorded in
//! that transaction: a crash mid-migration leaves the version unapplied
//! and the schema untouched, and running the set again changes nothing. A
//! new migration goes at the end with the next number; an applied one is
//! never edited, since databases in the field already ran it.
//!
//! Tables (all times are `Timestamp` milliseconds, digests `algo:hex`):
//! `repositories`; `manifests` (raw bytes, subject, artifact type, unique
//! per repository and digest); `tags` (→ manifest, cascading);
//! `blobs` (one row per content); `manifest_references` (what a manifest
//! needs: `blob` rows protect blobs from GC, `manifest` rows name an
//! index's children); `repository_blobs` (the links that make a blob
//! visible in a repository, stamped for GC's grace period); `uploads`
//! (with the blob store's state of each, `offset` and `writer_state`, and
//! the principal that opened it, `owner`);
//! `policy_rules` (the rule as JSON, with its sort keys as columns);
//! `policy_generation` (one row: the rule set's generation);
//! `revoked_tokens` (local-identity logouts, until the token's expiry);
//! `quotas` (a byte limit per repository or namespace prefix);
//! `retention_policies` (each policy's body as JSON);
//! `audit_log`.

use std::time::SystemTime;

use mcr_core::time::Timestamp;
use mcr_core::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::db;

/// (version, SQL) in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE repositories (
            id      INTEGER PRIMARY KEY,
            name    TEXT NOT NULL UNIQUE,
            created INTEGER NOT NULL
        );
        CREATE TABLE manifests (
            id             INTEGER PRIMARY KEY,
            repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
            digest         TEXT NOT NULL,
            media_type     TEXT NOT NULL,
            raw            BLOB NOT NULL,
            size           INTEGER NOT NULL,
            subject_digest TEXT,
            artifact_type  TEXT,
            created        INTEGER NOT NULL,
            UNIQUE (repository_id, digest)
        );
        CREATE INDEX manifests_by_subject ON manifests (repository_id, subject_digest)
            WHERE subject_digest IS NOT NULL;
        CREATE TABLE tags (
            repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
            name          TEXT NOT NULL,
            manifest_id   INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
            updated       INTEGER NOT NULL,
            PRIMARY KEY (repository_id, name)
        ) WITHOUT ROWID;
        CREATE INDEX tags_by_manifest ON tags (manifest_id);
        CREATE TABLE blobs (
            digest  TEXT PRIMARY KEY,
            size    INTEGER NOT NULL,
            created INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE manifest_references (
            manifest_id INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
            kind        TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
            digest      TEXT NOT NULL,
            PRIMARY KEY (manifest_id, kind, digest)
        ) WITHOUT ROWID;
        CREATE INDEX manifest_references_by_digest ON manifest_references (digest, kind);
        CREATE TABLE repository_blobs (
            repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
            digest        TEXT NOT NULL REFERENCES blobs(digest) ON DELETE CASCADE,
            linked_at     INTEGER NOT NULL,
            PRIMARY KEY (repository_id, digest)
        ) WITHOUT ROWID;
        CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest);
        CREATE TABLE uploads (
            id            TEXT PRIMARY KEY,
            repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
            offset        INTEGER NOT NULL,
            started       INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX uploads_by_started ON uploads (started);
        CREATE INDEX uploads_by_repository ON uploads (repository_id);",
    ),
    (
        2,
        "CREATE TABLE policy_rules (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            priority  INTEGER NOT NULL,
            enabled   INTEGER NOT NULL,
            rule_json TEXT NOT NULL
        );
        CREATE TABLE audit_log (
            id         INTEGER PRIMARY KEY,
            time       INTEGER NOT NULL,
            event_type TEXT NOT NULL,
            actor_id   TEXT,
            repository TEXT,
            digest     TEXT,
            ip         TEXT,
            details    TEXT NOT NULL
        );
        CREATE INDEX audit_by_time ON audit_log (time, id);
        CREATE INDEX audit_by_type ON audit_log (event_type, time);
        CREATE INDEX audit_by_actor ON audit_log (actor_id, time);
        CREATE INDEX audit_by_repository ON audit_log (repository, time);",
    ),
    (
        3,
        // When a stored rule was made and last changed, for operators
        // reading the table; rules from before this migration read 0.
        // The links' index gains `linked_at` so GC's sweep answers "was
        // any link made since the cutoff?" from the index alone; the
        // subject index gains `digest`, the referrers' order, without
        // which the planner preferred walking every manifest of the
        // repository in digest order.
        "ALTER TABLE policy_rules ADD COLUMN created INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE policy_rules ADD COLUMN updated INTEGER NOT NULL DEFAULT 0;
        DROP INDEX repository_blobs_by_digest;
        CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest, linked_at);
        DROP INDEX manifests_by_subject;
        CREATE INDEX manifests_by_subject ON manifests (repository_id, subject_digest, digest)
            WHERE subject_digest IS NOT NULL;",
    ),
    (
        4,
        // An upload's time becomes that of its last activity, so that the
        // purge of stale sessions spares a long upload still receiving
        // chunks; for a session that received nothing since this
        // migration, the start is its last activity.
        "ALTER TABLE uploads RENAME COLUMN started TO active;
        DROP INDEX uploads_by_started;
        CREATE INDEX uploads_by_active ON uploads (active);",
    ),
    (
        5,
        // What the blob store needs to continue an upload (its
        // `UploadState::data`), recorded with the size (`offset`) after
        // every chunk, so any process can take the next one.
        "ALTER TABLE uploads ADD COLUMN writer_state BLOB NOT NULL DEFAULT x'';",
    ),
    (
        6,
        // The generation of the stored rule set, one row, advanced by
        // every rule change in its own transaction: a policy engine
        // refuses a listing older than the one it holds.
        "CREATE TABLE policy_generation (
            id         INTEGER PRIMARY KEY CHECK (id = 1),
            generation INTEGER NOT NULL
        );
        INSERT INTO policy_generation (id, generation) VALUES (1, 0);",
    ),
    (
        7,
        // Tokens the local identity revoked, kept until they would have
        // expired anyway, so a logout survives a restart.
        "CREATE TABLE revoked_tokens (
            token_id TEXT PRIMARY KEY,
            expires  INTEGER NOT NULL
        );
        CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires);",
    ),
    (
        8,
        // Who opened each upload session, counted against the cap of
        // open sessions per principal; older sessions count for nobody.
        "ALTER TABLE uploads ADD COLUMN owner TEXT NOT NULL DEFAULT '';
        CREATE INDEX uploads_by_owner ON uploads (owner);",
    ),
    (
        9,
        // Whether a manifest was pushed (1) or mirrored from an upstream
        // (0), so a `[[proxy]]` prefix laid over pushed images is refused
        // at start. Stored manifests are known pushed when the audit log
        // holds their `manifest_pushed` event (every push records one).
        "ALTER TABLE manifests ADD COLUMN pushed INTEGER NOT NULL DEFAULT 0;
        UPDATE manifests SET pushed = 1 WHERE (repository_id, digest) IN (
            SELECT r.id, a.digest FROM audit_log a JOIN repositories r ON r.name = a.repository
            WHERE a.event_type = 'manifest_pushed'
        );",
    ),
    (
        10,
        // The repository listing and the dashboard add up manifests per
        // repository (count, bytes, newest) on every page: this index
        // answers them without reading the rows, whose raw bytes come
        // before `size` and would otherwise be read too.
        "CREATE INDEX manifests_by_repository ON manifests (repository_id, created, size);",
    ),
    (
        11,
        // Whether a blob link was made by a push (1: an upload or mount)
        // or by a pull-through cache's fill (0), so a `[[proxy]]` prefix
        // laid over pushed blobs, with no manifest yet, is refused at
        // start too. Existing links are known pushed when the audit log
        // holds a `blob_uploaded` or `blob_mounted` event for them (every
        // upload and mount records one).
        "ALTER TABLE repository_blobs ADD COLUMN pushed INTEGER NOT NULL DEFAULT 0;
        UPDATE repository_blobs SET pushed = 1 WHERE (repository_id, digest) IN (
            SELECT r.id, a.digest FROM audit_log a JOIN repositories r ON r.name = a.repository
            WHERE a.event_type IN ('blob_uploaded', 'blob_mounted')
        );",
    ),
    (
        12,
        // Each repository's size (its manifests plus its linked blobs),
        // kept by triggers in the transaction of every change, so the
        // listing sorted by size reads an index instead of summing every
        // repository's links per page (147 ms at 2,000 repositories).
        // Re-linking a blob is an upsert (an UPDATE), so it counts once;
        // GC removes only blobs no repository links.
        "ALTER TABLE repositories ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
        UPDATE repositories SET size =
            (SELECT COALESCE(SUM(m.size), 0) FROM manifests m WHERE m.repository_id = repositories.id)
            + (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs rb
               JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = repositories.id);
        CREATE TRIGGER repository_size_manifest_added AFTER INSERT ON manifests BEGIN
            UPDATE repositories SET size = size + NEW.size WHERE id = NEW.repository_id;
        END;
        CREATE TRIGGER repository_size_manifest_removed AFTER DELETE ON manifests BEGIN
            UPDATE repositories SET size = size - OLD.size WHERE id = OLD.repository_id;
        END;
        CREATE TRIGGER repository_size_blob_linked AFTER INSERT ON repository_blobs BEGIN
            UPDATE repositories
            SET size = size + (SELECT size FROM blobs WHERE digest = NEW.digest)
            WHERE id = NEW.repository_id;
        END;
        CREATE TRIGGER repository_size_blob_unlinked AFTER DELETE ON repository_blobs BEGIN
            UPDATE repositories
            SET size = size - COALESCE((SELECT size FROM blobs WHERE digest = OLD.digest), 0)
            WHERE id = OLD.repository_id;
        END;
        CREATE INDEX repositories_by_size ON repositories (size, name);",
    ),
    (
        13,
        // Quotas, one per scope (a repository name, or a namespace prefix
        // ending in '/'). A push's step measures each covering scope: a
        // namespace through the names' index, its links and its
        // manifests' (digest, size) from these two indexes (the rows
        // themselves hold the raw bytes before `size`), and whether a
        // manifest is already in it by digest.
        "CREATE TABLE quotas (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            scope       TEXT NOT NULL UNIQUE,
            limit_bytes INTEGER NOT NULL CHECK (limit_bytes > 0)
        );
        CREATE INDEX manifests_by_repository_digest ON manifests (repository_id, digest, size);
        CREATE INDEX manifests_by_digest ON manifests (digest, repository_id);",
    ),
    (
        14,
        // Retention policies, each body as JSON (checked again when read).
        "CREATE TABLE retention_policies (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            policy_json TEXT NOT NULL,
            created     INTEGER NOT NULL,
            updated     INTEGER NOT NULL
        );",
    ),
    (
        15,
        // Webhook events (an outbox written in the transaction of the
        // change each reports; AUTOINCREMENT: ids never reused, so a
        // webhook's cursor never passes an event it has not seen) and
        // each webhook's delivery state, keyed by its URL without
        // credentials.
        "CREATE TABLE event_outbox (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            time       INTEGER NOT NULL,
            kind       TEXT NOT NULL,
            repository TEXT,
            data       TEXT NOT NULL
        );
        CREATE TABLE webhook_deliveries (
            webhook      TEXT PRIMARY KEY,
            delivered    INTEGER NOT NULL,
            attempts     INTEGER NOT NULL,
            last_attempt INTEGER,
            last_error   TEXT,
            next_attempt INTEGER
        );",
    ),
    (
        16,
        // Each event's CloudEvents id, a UUIDv7 drawn when it is written
        // (`events::EventId`): the row number is rolled back by a restored
        // snapshot, and a receiver would drop the new events reusing it.
        // Events already in the outbox get one here, from their time and
        // random bits.
        "ALTER TABLE event_outbox ADD COLUMN event_id TEXT NOT NULL DEFAULT '';
        UPDATE event_outbox SET event_id = lower(
            substr(printf('%012x', max(time, 0) & 281474976710655), 1, 8) || '-' ||
            substr(printf('%012x', max(time, 0) & 281474976710655), 9, 4) || '-7' ||
            substr(hex(randomblob(2)), 2) || '-' ||
            substr('89ab', 1 + (random() & 3), 1) || substr(hex(randomblob(2)), 2) || '-' ||
            hex(randomblob(6))
        );
        CREATE UNIQUE INDEX event_outbox_event_id ON event_outbox (event_id);",
    ),
];

/// The schema version this build writes and understands.
pub const LATEST_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Applies every migration not yet recorded, refusing a database that a
/// newer build has migrated further than this one knows.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, LATEST_VERSION)
}

/// [`migrate`], stopping after version `target` (tests start from an old
/// schema this way).
fn migrate_to(conn: &mut Connection, target: i64) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            applied_at INTEGER NOT NULL
        );",
    )
    .map_err(db)?;
    let current = version(conn)?;
    if current > LATEST_VERSION {
        return Err(Error::storage(
            "checking the schema version",
            format!(
                "the database is at schema version {current}, newer than this build's \
                 {LATEST_VERSION}; run the MCR that migrated it, or restore a snapshot"
            ),
        ));
    }
    // Up to date: touch nothing, so opening a live database (`mcrsrv
    // snapshot` next to a running server) takes no write lock.
    if current >= target {
        return Ok(());
    }
    for &(number, sql) in MIGRATIONS.iter().take_while(|m| m.0 <= target) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        // Checked again under the write lock: another process may have
        // applied it since we looked.
        let applied = tx
            .query_row(
                "SELECT 1 FROM schema_migrations WHERE version = ?1",
                params![number],
                |_| Ok(()),
            )
            .optional()
            .map_err(db)?
            .is_some();
        if !applied {
            tx.execute_batch(sql)
                .and_then(|()| {
                    tx.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                        params![
                            number,
                            Timestamp::from_system(SystemTime::now()).as_millis()
                        ],
                    )
                })
                .map_err(|e| during_migration(number, e))?;
        }
        tx.commit().map_err(db)?;
    }
    Ok(())
}

fn during_migration(number: i64, e: rusqlite::Error) -> Error {
    db(e).context(format!("migration {number}"))
}

/// The highest applied version (0 for a new file).
pub fn version(conn: &Connection) -> Result<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )
    .map_err(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database made by the first release (schema 2) with data in it
    /// keeps every row through the later migrations.
    #[test]
    fn later_migrations_keep_existing_rows() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        migrate_to(&mut c, 2).unwrap();
        assert_eq!(version(&c).unwrap(), 2);
        c.execute_batch(
            "INSERT INTO repositories (id, name, created) VALUES (1, 'app', 1);
             INSERT INTO manifests (id, repository_id, digest, media_type, raw, size, subject_digest, created)
                 VALUES (1, 1, 'sha256:aa', 'application/json', x'7b7d', 2, 'sha256:bb', 1);
             INSERT INTO blobs (digest, size, created) VALUES ('sha256:cc', 3, 1);
             INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES (1, 'sha256:cc', 1);
             INSERT INTO policy_rules (priority, enabled, rule_json) VALUES (5, 1, '{}');",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        assert_eq!(version(&c).unwrap(), LATEST_VERSION);
        let row: (i64, i64, i64) = c
            .query_row(
                "SELECT priority, created, updated FROM policy_rules",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(row, (5, 0, 0), "older rules read 0 for unknown times");
        let kept: i64 = c
            .query_row(
                "SELECT (SELECT COUNT(*) FROM manifests WHERE subject_digest = 'sha256:bb')
                      + (SELECT COUNT(*) FROM repository_blobs WHERE digest = 'sha256:cc')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, 2);
    }

    #[test]
    fn an_upload_from_before_migration_4_is_active_since_it_started() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        migrate_to(&mut c, 3).unwrap();
        c.execute_batch(
            "INSERT INTO repositories (id, name, created) VALUES (1, 'app', 1);
             INSERT INTO uploads (id, repository_id, offset, started) VALUES ('u1', 1, 7, 42);",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let row: (i64, i64) = c
            .query_row(
                "SELECT offset, active FROM uploads WHERE id = 'u1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(row, (7, 42));
    }

    #[test]
    fn a_manifest_from_before_migration_9_is_pushed_if_its_push_was_audited() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        migrate_to(&mut c, 8).unwrap();
        c.execute_batch(
            "INSERT INTO repositories (id, name, created) VALUES (1, 'app', 1), (2, 'hub/x', 1);
             INSERT INTO manifests (repository_id, digest, media_type, raw, size, created)
                 VALUES (1, 'sha256:aa', 'm', x'', 0, 1), (2, 'sha256:aa', 'm', x'', 0, 1);
             INSERT INTO audit_log (time, event_type, repository, digest, details)
                 VALUES (1, 'manifest_pushed', 'app', 'sha256:aa', '{}'),
                        (2, 'proxy_fetched', 'hub/x', 'sha256:aa', '{}');",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let pushed: Vec<(String, i64)> = c
            .prepare(
                "SELECT r.name, m.pushed FROM manifests m
                 JOIN repositories r ON r.id = m.repository_id ORDER BY r.name",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(pushed, [("app".to_string(), 1), ("hub/x".to_string(), 0)]);
    }

    #[test]
    fn a_blob_link_from_before_migration_11_is_pushed_if_its_upload_or_mount_was_audited() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        migrate_to(&mut c, 10).unwrap();
        c.execute_batch(
            "INSERT INTO repositories (id, name, created)
                 VALUES (1, 'app', 1), (2, 'hub/up', 1), (3, 'hub/mnt', 1), (4, 'hub/x', 1);
             INSERT INTO blobs (digest, size, created) VALUES ('sha256:aa', 1, 1), ('sha256:bb', 1, 1);
             INSERT INTO repository_blobs (repository_id, digest, linked_at)
                 VALUES (1, 'sha256:aa', 1), (2, 'sha256:bb', 1), (3, 'sha256:aa', 1),
                        (4, 'sha256:aa', 1);
             INSERT INTO audit_log (time, event_type, repository, digest, details)
                 VALUES (1, 'blob_uploaded', 'app', 'sha256:aa', '{}'),
                        (1, 'blob_uploaded', 'hub/up', 'sha256:aa', '{}'),
                        (2, 'blob_mounted', 'hub/mnt', 'sha256:aa', '{}'),
                        (3, 'proxy_fetched', 'hub/x', 'sha256:aa', '{}');",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let pushed: Vec<(String, i64)> = c
            .prepare(
                "SELECT r.name, rb.pushed FROM repository_blobs rb
                 JOIN repositories r ON r.id = rb.repository_id ORDER BY r.name",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        // hub/up's audited upload was of another digest than its link's.
        assert_eq!(
            pushed,
            [
                ("app".to_string(), 1),
                ("hub/mnt".to_string(), 1),
                ("hub/up".to_string(), 0),
                ("hub/x".to_string(), 0)
            ]
        );
    }

    #[test]
    fn repositories_from_before_migration_12_get_their_size_and_keep_it() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        migrate_to(&mut c, 11).unwrap();
        c.execute_batch(
            "INSERT INTO repositories (id, name, created) VALUES (1, 'app', 1), (2, 'empty', 1);
             INSERT INTO manifests (repository_id, digest, media_type, raw, size, created)
                 VALUES (1, 'sha256:aa', 'm', x'', 7, 1);
             INSERT INTO blobs (digest, size, created) VALUES ('sha256:cc', 30, 1), ('sha256:dd', 500, 1);
             INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES (1, 'sha256:cc', 1);",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let sizes = |c: &Connection| -> Vec<(String, i64)> {
            c.prepare("SELECT name, size FROM repositories ORDER BY name")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert_eq!(
            sizes(&c),
            [("app".to_string(), 37), ("empty".to_string(), 0)]
        );
        c.execute_batch(
            "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES (2, 'sha256:dd', 2);
             INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES (1, 'sha256:cc', 3)
                 ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at;
             DELETE FROM manifests WHERE digest = 'sha256:aa';",
        )
        .unwrap();
        assert_eq!(
            sizes(&c),
            [("app".to_string(), 30), ("empty".to_string(), 500)]
        );
    }

    #[test]
    fn outbox_events_from_before_migration_16_get_distinct_uuid_v7_ids() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate_to(&mut c, 15).unwrap();
        c.execute_batch(
            "INSERT INTO event_outbox (time, kind, repository, data)
                 VALUES (1700000000000, 'manifest.pushed', 'a', '{}'),
                        (1700000000000, 'manifest.pushed', 'a', '{}'),
                        (-5, 'gc.completed', NULL, '{}');",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let ids: Vec<String> = c
            .prepare("SELECT event_id FROM event_outbox ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        mcr_core::testing::assert_backfilled_event_ids(&ids);
    }

    #[test]
    fn migrations_are_numbered_one_by_one() {
        for (i, &(number, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(number, i as i64 + 1);
        }
    }
}
