//! The schema, as numbered migrations recorded in `schema_migrations`.
//!
//! Each migration runs once, in its own transaction, and is recorded in
//! that transaction: a crash mid-migration leaves the version unapplied
//! and the schema untouched (PostgreSQL's DDL is transactional), and
//! running the set again changes nothing. Every transaction that reads or
//! applies migrations first takes one advisory lock
//! ([`MIGRATION_LOCK`]), so replicas starting at once apply each
//! migration exactly once: the others wait, then find it recorded. A new
//! migration goes at the end with the next number; an applied one is
//! never edited, since databases in the field already ran it.
//!
//! The tables are SQLite's (`sqlite::schema` says what each holds) in
//! PostgreSQL's types: times are `bigint` `Timestamp` milliseconds, ids
//! identity columns (never reused), manifests' bytes `bytea`, rules and
//! audit details `jsonb`. Names, tags and digests are `text COLLATE "C"`,
//! so listings and page bounds compare bytes, whatever the database's
//! locale.

use deadpool_postgres::{GenericClient, Object};
use mcr_core::Error;

use super::rows::now;
use super::{StepResult, TxError};

/// The advisory lock every migration transaction holds: "mcr_migr" in
/// ASCII, a number no other lock of MCR uses.
pub const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"mcr_migr");

/// (version, SQL) in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"CREATE TABLE repositories (
        id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name    text COLLATE "C" NOT NULL UNIQUE,
        created bigint NOT NULL
    );
    CREATE TABLE manifests (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        repository_id  bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        digest         text COLLATE "C" NOT NULL,
        media_type     text NOT NULL,
        raw            bytea NOT NULL,
        size           bigint NOT NULL,
        subject_digest text COLLATE "C",
        artifact_type  text,
        created        bigint NOT NULL,
        UNIQUE (repository_id, digest)
    );
    CREATE INDEX manifests_by_subject ON manifests (repository_id, subject_digest, digest)
        WHERE subject_digest IS NOT NULL;
    CREATE TABLE tags (
        repository_id bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        name          text COLLATE "C" NOT NULL,
        manifest_id   bigint NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
        updated       bigint NOT NULL,
        PRIMARY KEY (repository_id, name)
    );
    CREATE INDEX tags_by_manifest ON tags (manifest_id);
    CREATE TABLE blobs (
        digest  text COLLATE "C" PRIMARY KEY,
        size    bigint NOT NULL,
        created bigint NOT NULL
    );
    CREATE TABLE manifest_references (
        manifest_id bigint NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
        kind        text NOT NULL CHECK (kind IN ('blob', 'manifest')),
        digest      text COLLATE "C" NOT NULL,
        PRIMARY KEY (manifest_id, kind, digest)
    );
    CREATE INDEX manifest_references_by_digest ON manifest_references (digest, kind);
    CREATE TABLE repository_blobs (
        repository_id bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        digest        text COLLATE "C" NOT NULL REFERENCES blobs(digest) ON DELETE CASCADE,
        linked_at     bigint NOT NULL,
        PRIMARY KEY (repository_id, digest)
    );
    CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest, linked_at);
    CREATE TABLE uploads (
        id            text COLLATE "C" PRIMARY KEY,
        repository_id bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        received      bigint NOT NULL,
        writer_state  bytea NOT NULL,
        active        bigint NOT NULL
    );
    CREATE INDEX uploads_by_active ON uploads (active, id);
    CREATE INDEX uploads_by_repository ON uploads (repository_id);
    CREATE TABLE policy_rules (
        id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        priority  bigint NOT NULL,
        enabled   boolean NOT NULL,
        rule      jsonb NOT NULL,
        created   bigint NOT NULL,
        updated   bigint NOT NULL
    );
    CREATE TABLE audit_log (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time       bigint NOT NULL,
        event_type text NOT NULL,
        actor_id   text,
        repository text COLLATE "C",
        digest     text COLLATE "C",
        ip         text,
        details    jsonb NOT NULL
    );
    CREATE INDEX audit_by_time ON audit_log (time, id);
    CREATE INDEX audit_by_type ON audit_log (event_type, time, id);
    CREATE INDEX audit_by_actor ON audit_log (actor_id, time, id);
    CREATE INDEX audit_by_repository ON audit_log (repository, time, id);"#,
    ),
    (
        2,
        // The generation of the stored rule set, one row, advanced by
        // every rule change in its own transaction: a replica whose
        // engine holds an older one reloads the rules.
        "CREATE TABLE policy_generation (
            id         integer PRIMARY KEY CHECK (id = 1),
            generation bigint NOT NULL
        );
        INSERT INTO policy_generation (id, generation) VALUES (1, 0);",
    ),
    (
        3,
        // Tokens the local identity revoked, kept until they would have
        // expired anyway: every replica refuses them, also after a restart.
        r#"CREATE TABLE revoked_tokens (
            token_id text COLLATE "C" PRIMARY KEY,
            expires  bigint NOT NULL
        );
        CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires);"#,
    ),
    (
        4,
        // Who opened each upload session, counted against the cap of
        // open sessions per principal; older sessions count for nobody.
        r#"ALTER TABLE uploads ADD COLUMN owner text COLLATE "C" NOT NULL DEFAULT '';
        CREATE INDEX uploads_by_owner ON uploads (owner);"#,
    ),
    (
        5,
        // Whether a manifest was pushed or mirrored from an upstream, so a
        // `[[proxy]]` prefix laid over pushed images is refused at start.
        // Stored manifests are known pushed when the audit log holds their
        // `manifest_pushed` event (every push records one).
        "ALTER TABLE manifests ADD COLUMN pushed boolean NOT NULL DEFAULT false;
        UPDATE manifests SET pushed = true WHERE (repository_id, digest) IN (
            SELECT r.id, a.digest FROM audit_log a JOIN repositories r ON r.name = a.repository
            WHERE a.event_type = 'manifest_pushed'
        );",
    ),
    (
        6,
        // Whether a blob link was made by a push (an upload or mount) or
        // by a pull-through cache's fill, so a `[[proxy]]` prefix laid
        // over pushed blobs, with no manifest yet, is refused at start
        // too. Existing links are known pushed when the audit log holds a
        // `blob_uploaded` or `blob_mounted` event for them (every upload
        // and mount records one).
        "ALTER TABLE repository_blobs ADD COLUMN pushed boolean NOT NULL DEFAULT false;
        UPDATE repository_blobs SET pushed = true WHERE (repository_id, digest) IN (
            SELECT r.id, a.digest FROM audit_log a JOIN repositories r ON r.name = a.repository
            WHERE a.event_type IN ('blob_uploaded', 'blob_mounted')
        );",
    ),
    (
        7,
        // Each repository's size (its manifests plus its linked blobs),
        // kept by triggers in the transaction of every change, so the
        // listing sorted by size reads an index instead of summing every
        // repository's links per page. Re-linking a blob is an upsert (an
        // UPDATE), so it counts once; GC removes only blobs no repository
        // links. Concurrent changes to one repository queue on its row
        // for the rest of their (short) transactions.
        "ALTER TABLE repositories ADD COLUMN size bigint NOT NULL DEFAULT 0;
        UPDATE repositories SET size =
            (SELECT COALESCE(SUM(m.size), 0) FROM manifests m WHERE m.repository_id = repositories.id)
            + (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs rb
               JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = repositories.id);
        CREATE FUNCTION repository_size_of_manifests() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                UPDATE repositories SET size = size + NEW.size WHERE id = NEW.repository_id;
            ELSE
                UPDATE repositories SET size = size - OLD.size WHERE id = OLD.repository_id;
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER repository_size_of_manifests AFTER INSERT OR DELETE ON manifests
            FOR EACH ROW EXECUTE FUNCTION repository_size_of_manifests();
        CREATE FUNCTION repository_size_of_links() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                UPDATE repositories
                SET size = size + (SELECT size FROM blobs WHERE digest = NEW.digest)
                WHERE id = NEW.repository_id;
            ELSE
                UPDATE repositories
                SET size = size - COALESCE((SELECT size FROM blobs WHERE digest = OLD.digest), 0)
                WHERE id = OLD.repository_id;
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER repository_size_of_links AFTER INSERT OR DELETE ON repository_blobs
            FOR EACH ROW EXECUTE FUNCTION repository_size_of_links();
        CREATE INDEX repositories_by_size ON repositories (size, name);",
    ),
    (
        8,
        // Quotas, one per scope (a repository name, or a namespace prefix
        // ending in '/'). A push's step locks the covering quotas' rows
        // `FOR UPDATE`, so pushes under one quota measure and link one at
        // a time, and measures each scope: a namespace through the
        // names' index, its links and its manifests' (digest, size) from
        // these indexes, and whether a manifest is already in it by
        // digest.
        r#"CREATE TABLE quotas (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            scope       text COLLATE "C" NOT NULL UNIQUE,
            limit_bytes bigint NOT NULL CHECK (limit_bytes > 0)
        );
        CREATE INDEX manifests_by_repository_digest ON manifests (repository_id, digest, size);
        CREATE INDEX manifests_by_digest ON manifests (digest, repository_id);"#,
    ),
    (
        9,
        // Retention policies, each body as JSON (checked again when read).
        "CREATE TABLE retention_policies (
            id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            policy  jsonb NOT NULL,
            created bigint NOT NULL,
            updated bigint NOT NULL
        );",
    ),
    (
        10,
        // Webhook events (an outbox written in the transaction of the
        // change each reports, ids handed out in commit order under a
        // transaction advisory lock, see `events::append`) and each
        // webhook's delivery state, keyed by its URL without credentials.
        "CREATE TABLE event_outbox (
            id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            time       bigint NOT NULL,
            kind       text NOT NULL,
            repository text,
            data       jsonb NOT NULL
        );
        CREATE TABLE webhook_deliveries (
            webhook      text PRIMARY KEY,
            delivered    bigint NOT NULL,
            attempts     integer NOT NULL,
            last_attempt bigint,
            last_error   text,
            next_attempt bigint
        );",
    ),
    (
        11,
        // Each event's CloudEvents id, a UUIDv7 drawn when it is written
        // (`events::EventId`): the row number is rolled back by a restored
        // snapshot, and a receiver would drop the new events reusing it.
        // Events already in the outbox get one here: a random UUID with
        // the event's millisecond time over its first 48 bits and version
        // 7 over its version digit.
        "ALTER TABLE event_outbox ADD COLUMN event_id text;
        UPDATE event_outbox SET event_id = overlay(overlay(overlay(gen_random_uuid()::text
            PLACING substr(lpad(to_hex(greatest(time, 0) & 281474976710655), 12, '0'), 1, 8)
                FROM 1 FOR 8)
            PLACING substr(lpad(to_hex(greatest(time, 0) & 281474976710655), 12, '0'), 9, 4)
                FROM 10 FOR 4)
            PLACING '7' FROM 15 FOR 1);
        ALTER TABLE event_outbox ALTER COLUMN event_id SET NOT NULL;
        CREATE UNIQUE INDEX event_outbox_event_id ON event_outbox (event_id);",
    ),
];

/// The schema version this build writes and understands.
pub const LATEST_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    bigint PRIMARY KEY,
    applied_at bigint NOT NULL
)";
const VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";
const RECORD: &str = "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)";

/// Applies every migration not yet recorded, refusing a database that a
/// newer build has migrated further than this one knows.
pub(super) async fn migrate(client: &mut Object) -> StepResult<()> {
    migrate_to(client, LATEST_VERSION).await
}

/// [`migrate`], stopping after version `target`.
async fn migrate_to(client: &mut Object, target: i64) -> StepResult<()> {
    let current = {
        let tx = client.transaction().await?;
        lock(&tx).await?;
        tx.batch_execute(CREATE_MIGRATIONS_TABLE).await?;
        let current = version(&tx).await?;
        tx.commit().await?;
        current
    };
    if current > LATEST_VERSION {
        return Err(TxError::Engine(Error::storage(
            "checking the schema version",
            format!(
                "the database is at schema version {current}, newer than this build's \
                 {LATEST_VERSION}; run the MCR that migrated it, or restore a backup"
            ),
        )));
    }
    for &(number, sql) in MIGRATIONS.iter().filter(|m| m.0 > current && m.0 <= target) {
        let tx = client.transaction().await?;
        lock(&tx).await?;
        // Checked again under the lock: another replica may have applied
        // it since we looked.
        if version(&tx).await? < number {
            tx.batch_execute(sql).await.map_err(|e| {
                TxError::Engine(
                    TxError::Db(e)
                        .into_error()
                        .context(format!("migration {number}")),
                )
            })?;
            tx.execute(RECORD, &[&number, &now()]).await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Takes the migration lock until the transaction ends.
async fn lock<C: GenericClient>(c: &C) -> StepResult<()> {
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    Ok(())
}

/// The highest applied version (0 for a new database).
pub(super) async fn version<C: GenericClient>(c: &C) -> StepResult<i64> {
    Ok(c.query_one(VERSION, &[]).await?.try_get(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_by_one() {
        for (i, &(number, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(number, i as i64 + 1);
        }
    }

    #[test]
    fn the_migration_lock_spells_its_name() {
        assert_eq!(&MIGRATION_LOCK.to_be_bytes(), b"mcr_migr");
    }

    #[cfg(feature = "postgres-testing")]
    #[tokio::test]
    async fn outbox_events_from_before_migration_11_get_distinct_uuid_v7_ids() {
        use deadpool_postgres::{Manager, Pool};
        use tokio_postgres::NoTls;

        let db = super::super::testing::TestDatabase::create().await;
        let manager = Manager::new(db.config().config, NoTls);
        let pool = Pool::builder(manager).max_size(1).build().unwrap();
        let mut client = pool.get().await.unwrap();
        migrate_to(&mut client, 10).await.unwrap();
        client
            .batch_execute(
                "INSERT INTO event_outbox (time, kind, repository, data)
                     VALUES (1700000000000, 'manifest.pushed', 'a', '{}'),
                            (1700000000000, 'manifest.pushed', 'a', '{}'),
                            (-5, 'gc.completed', NULL, '{}');",
            )
            .await
            .unwrap();
        migrate(&mut client).await.unwrap();
        let ids: Vec<String> = client
            .query("SELECT event_id FROM event_outbox ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        mcr_core::testing::assert_backfilled_event_ids(&ids);
    }
}
