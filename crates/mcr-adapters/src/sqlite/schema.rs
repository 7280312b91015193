//! The schema, as numbered migrations recorded in `schema_migrations`.
//!
//! Each migration runs once, in its own transaction, and is recorded with
//! it; running the set again changes nothing. A new migration goes at the
//! end with the next number; an applied one is never edited.

use rusqlite::{params, Connection};

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
];

/// Applies every migration not yet recorded.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            applied_at INTEGER NOT NULL
        );",
    )?;
    for &(version, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let applied: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
            params![version],
            |r| r.get(0),
        )?;
        if !applied {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, strftime('%s','now') * 1000)",
                params![version],
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// The highest applied version.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )
}
