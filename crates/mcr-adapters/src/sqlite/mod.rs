//! `SqliteMetaStore`: the `MetaStore` port on SQLite.
//!
//! This module owns the database file (its mode, pragmas and schema) and
//! the way work reaches it. The ports' methods live one trait a module
//! (`repositories`, `manifests`, `blobs`, `uploads`, `policy`, `quotas`, `audit`,
//! `gc`, `status` for readiness and totals, and `backup` for snapshots),
//! their statements in `sql`, what the statements share in `rows`, the
//! numbered migrations in `schema`, and the readiness checks of the file
//! in `probe`.
//!
//! rusqlite over an r2d2 pool; every call runs on a blocking thread
//! (`spawn_blocking`) so the async workers never wait on the disk. A
//! writer takes its turn (one writer of this process at a time) *before*
//! it enters that pool: the pool is shared with blob reads and upload
//! writes, and writers queued inside it would hold its threads idle while
//! downloads wait for one. Each
//! method that writes is one `BEGIN IMMEDIATE` transaction, so the use
//! cases' atomic steps (a manifest with its references and tag, a
//! completed upload, a mount, a repository delete, GC phase one) are
//! all-or-nothing, and two writers never deadlock trying to upgrade read
//! locks: the second waits (up to the busy timeout) before it reads
//! anything. The database runs in WAL mode with `synchronous=NORMAL`:
//! durable across a crash of the process, which is what an acknowledged
//! push promises (a power loss may drop the last transactions, never
//! corrupt the file).
//!
//! A caller that stops waiting (a dropped future, a client that hung up)
//! does not cancel the step: the blocking task runs its transaction to
//! commit or rollback either way, so nothing is ever half-written.

mod audit;
mod backup;
mod blobs;
mod checkpoint;
mod events;
mod gc;
mod manifests;
mod policy;
mod probe;
mod quotas;
mod repositories;
mod retention;
mod revocations;
mod rows;
mod schema;
mod sql;
mod status;
mod uploads;

use std::fmt;
use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mcr_core::{Error, Result, StorageError, StorageErrorKind};
use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

pub use backup::backup_path;
pub use schema::LATEST_VERSION as SCHEMA_VERSION;

/// Connections kept open. SQLite serialises writers anyway; under WAL,
/// readers run in parallel with them and with each other.
const POOL_SIZE: u32 = 8;
/// How long a statement waits for another connection's lock before it
/// fails with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows a streamed listing reads per statement: each page is one short
/// read, so a listing of millions never holds a transaction open or the
/// rows in memory.
const LIST_PAGE: usize = 256;
/// How long a call waits for a free pooled connection.
const POOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Pragmas every connection needs. `foreign_keys`, `busy_timeout` and
/// `synchronous` are per connection and reset on each open, so the pool
/// sets them on every connection it makes; `journal_mode=WAL` persists in
/// the file and is a no-op once set.
/// `wal_autocheckpoint = 0`: the store's own thread checkpoints
/// (`checkpoint`), so no commit does it while writers wait.
const CONNECTION_PRAGMAS: &str = "PRAGMA journal_mode = WAL;
     PRAGMA synchronous = NORMAL;
     PRAGMA foreign_keys = ON;
     PRAGMA wal_autocheckpoint = 0;";

/// Metadata in one SQLite file: the [`MetaStore`](mcr_core::ports::MetaStore)
/// adapter.
///
/// Cheap to clone (the clones share the pool). Its async methods hand the
/// SQL to Tokio's blocking pool when called inside a Tokio runtime, and run
/// it in place otherwise.
#[derive(Clone)]
pub struct SqliteMetaStore {
    pool: Pool<SqliteConnectionManager>,
    path: PathBuf,
    /// The file `path` named when the store opened it, for the readiness
    /// probe to notice the file being removed or replaced.
    opened: probe::FileId,
    /// Writers of this process take turns here before asking SQLite for
    /// its write lock: a writer that finds the lock busy sleeps in SQLite's
    /// busy handler (in steps of milliseconds), which under many
    /// concurrent writes turns into tail latency. Waiting on a mutex wakes
    /// the next writer the moment the last one commits. The turn is an
    /// async (FIFO) mutex taken before the blocking pool is entered, so a
    /// waiting writer holds no thread. Other processes are still
    /// arbitrated by SQLite's lock and the busy timeout.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// The file that was opened, checked before every commit.
    file: Arc<FileIdentity>,
    /// Told of every commit; checkpoints the WAL on its own thread.
    checkpointer: checkpoint::Checkpointer,
}

/// Which file a path named when the store opened it (device and inode).
///
/// SQLite keeps writing through its open descriptors when the database
/// file, or its directory, is moved or deleted: in WAL mode it does not
/// notice. Commits would then land in a file nobody will open again and
/// be lost at the next start, after being acknowledged. So a write checks,
/// before it commits, that the path still names the file it opened, and
/// fails as `Unavailable` (nothing committed) while it does not.
#[derive(Debug)]
struct FileIdentity {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> Result<FileIdentity> {
        let m = std::fs::metadata(path).map_err(|e| {
            Error::Storage(StorageError::io(format!("reading {}", path.display()), e))
        })?;
        Ok(FileIdentity {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// `Unavailable` unless the path still names the opened file.
    fn check(&self) -> Result<()> {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => Ok(()),
            found => Err(Error::Storage(StorageError::unavailable(
                "committing",
                format!(
                    "the database file {} is not the one opened ({}); \
                     nothing was committed, since the change would be lost \
                     at the next start: put the file back, or restart",
                    self.path.display(),
                    match found {
                        Ok(_) => "another file is there now".to_string(),
                        Err(e) => e.to_string(),
                    }
                ),
            ))),
        }
    }
}

impl fmt::Debug for SqliteMetaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteMetaStore")
            .field("path", &self.path)
            .field("pool", &self.pool.state())
            .finish()
    }
}

/// A permanent storage error: `what` failed with `e`.
pub(crate) fn storage(what: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
    Error::storage(what, e)
}

/// A rusqlite error as the engine's error, of the kind the engine acts on:
/// lock exhaustion means contention (or a stuck writer), not a broken
/// database, so it is retryable; a full disk and a read-only file are
/// their own kinds.
pub(crate) fn db(e: rusqlite::Error) -> Error {
    let (kind, op) = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => (
            StorageErrorKind::Unavailable,
            format!(
                "sqlite: the database stayed locked by another writer for over {} s",
                BUSY_TIMEOUT.as_secs()
            ),
        ),
        Some(ErrorCode::DiskFull) => (StorageErrorKind::NoSpace, "sqlite".to_string()),
        Some(ErrorCode::ReadOnly) => (StorageErrorKind::ReadOnly, "sqlite".to_string()),
        _ => (StorageErrorKind::Permanent, "sqlite".to_string()),
    };
    Error::Storage(StorageError::new(kind, op, e))
}

/// Prefixes a storage error with the step that failed; other errors (the
/// domain's, such as `ManifestBlobUnknown`) pass through untouched.
fn during(op: impl fmt::Display) -> impl FnOnce(Error) -> Error {
    move |e| e.context(op)
}

impl SqliteMetaStore {
    /// Opens the database at `path`, creating it with mode 0600 (and
    /// tightening an existing file to 0600), switches it to WAL and applies
    /// pending migrations.
    ///
    /// Fails with `Error::Storage` if the file cannot be created or opened,
    /// if it is not a database, or if a newer MCR has migrated it past
    /// [`SCHEMA_VERSION`]. Blocking: call it before serving, or from a
    /// blocking context.
    pub fn open(path: &Path) -> Result<SqliteMetaStore> {
        secure_file(path)?;
        let opening = |e: rusqlite::Error| during(format!("opening {}", path.display()))(db(e));
        // One connection first, alone: switching a new file to WAL and
        // migrating it are easier to reason about without eight pool
        // connections racing to do the same.
        let mut conn = Connection::open(path).map_err(opening)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(opening)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(opening)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(storage(
                &format!("opening {}", path.display()),
                format!("could not switch to WAL mode (journal mode is {mode})"),
            ));
        }
        conn.execute_batch("PRAGMA foreign_keys = ON;")
            .map_err(opening)?;
        schema::migrate(&mut conn).map_err(during(format!("migrating {}", path.display())))?;
        drop(conn);
        let opened = probe::FileId::of(path)
            .map_err(|e| storage(&format!("inspecting {}", path.display()), e))?;

        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            c.busy_timeout(BUSY_TIMEOUT)?;
            c.execute_batch(CONNECTION_PRAGMAS)
        });
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .connection_timeout(POOL_TIMEOUT)
            .build(manager)
            .map_err(|e| storage(&format!("opening {}", path.display()), e))?;
        let checkpointer = checkpoint::Checkpointer::start(path)
            .map_err(during(format!("opening {}", path.display())))?;
        Ok(SqliteMetaStore {
            pool,
            path: path.to_path_buf(),
            opened,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            file: Arc::new(FileIdentity::of(path)?),
            checkpointer,
        })
    }

    /// The file this store works on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The highest migration applied to the file.
    pub async fn schema_version(&self) -> Result<i64> {
        self.read("reading the schema version", |c| schema::version(c))
            .await
    }

    /// Runs `f` with a pooled connection off the async workers, naming
    /// `op` in any storage error.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.run_with(op, None, f).await
    }

    /// [`SqliteMetaStore::run`], holding `turn` (when given) from before a
    /// connection is taken until `f` is done. The turn is taken here, on
    /// the async side; a caller that stops waiting for it has started
    /// nothing.
    async fn run_with<T, F>(
        &self,
        op: &'static str,
        turn: Option<&Arc<tokio::sync::Mutex<()>>>,
        f: F,
    ) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let turn = match turn {
            Some(m) => Some(Arc::clone(m).lock_owned().await),
            None => None,
        };
        let pool = self.pool.clone();
        let work = move || {
            // Released when the step is done, on whichever thread ran it.
            let _turn = turn;
            let mut conn = pool.get().map_err(|e| {
                Error::Storage(StorageError::unavailable(
                    format!(
                        "no database connection free within {} s",
                        POOL_TIMEOUT.as_secs()
                    ),
                    e,
                ))
            })?;
            f(&mut conn)
        };
        let out = match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt
                .spawn_blocking(work)
                .await
                .map_err(|e| storage("database task", e))
                .and_then(|r| r),
            // Outside Tokio (a plain executor, a test), block in place
            // rather than panic.
            Err(_) => work(),
        };
        out.map_err(during(op))
    }

    /// Runs a read of several statements in one deferred transaction, so
    /// every statement sees the same snapshot of the database.
    async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.run(op, move |conn| {
            let tx = conn.transaction().map_err(db)?;
            let out = f(&tx)?;
            // Nothing to commit; ending the transaction releases the
            // snapshot.
            tx.finish().map_err(db)?;
            Ok(out)
        })
        .await
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed if `f`
    /// returns `Ok` and the database file is still where it was opened
    /// ([`FileIdentity`]), rolled back entirely (on drop) otherwise.
    async fn write<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let file = Arc::clone(&self.file);
        let checkpointer = self.checkpointer.clone();
        self.run_with(op, Some(&self.writer), move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let out = f(&tx)?;
            file.check()?;
            tx.commit().map_err(db)?;
            checkpointer.committed();
            Ok(out)
        })
        .await
    }

    /// A `PASSIVE` checkpoint now, on a pooled connection (see
    /// `checkpoint`): it neither waits for nor blocks a reader or a
    /// writer. A failure is logged, not returned: the checkpoint thread
    /// tries again after the next commit.
    async fn checkpoint_now(&self) {
        let name = self.path.display().to_string();
        let done = self
            .run("checkpointing the WAL", |conn| {
                checkpoint::passive(conn).map_err(db)
            })
            .await;
        if let Err(e) = done {
            tracing::warn!(database = name, error = %e, "WAL checkpoint failed");
        }
    }
}

/// Creates the file with mode 0600 before SQLite does (SQLite would follow
/// the umask), and tightens an existing one. SQLite gives its `-wal` and
/// `-shm` files the main file's mode.
fn secure_file(path: &Path) -> Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| storage(&format!("setting the mode of {}", path.display()), e))
        }
        Err(e) => Err(storage(&format!("creating {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma(c: &Connection, name: &str) -> String {
        c.query_row(&format!("PRAGMA {name}"), [], |r| {
            r.get::<_, rusqlite::types::Value>(0)
        })
        .map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(s) => s,
            other => format!("{other:?}"),
        })
        .unwrap()
    }

    #[test]
    fn every_pooled_connection_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetaStore::open(&dir.path().join("mcr.db")).unwrap();
        // Hold every connection at once so each one is checked.
        let conns: Vec<_> = (0..POOL_SIZE).map(|_| store.pool.get().unwrap()).collect();
        for c in &conns {
            assert_eq!(pragma(c, "journal_mode"), "wal");
            assert_eq!(pragma(c, "foreign_keys"), "1");
            assert_eq!(pragma(c, "synchronous"), "1", "NORMAL");
            assert_eq!(pragma(c, "busy_timeout"), "5000");
            assert_eq!(pragma(c, "wal_autocheckpoint"), "0");
        }
    }

    #[tokio::test]
    async fn commits_reach_the_database_file_without_an_automatic_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcr.db");
        let store = SqliteMetaStore::open(&path).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        store
            .write("writing 1 MiB", |tx| {
                tx.execute_batch(
                    "CREATE TABLE filler (b BLOB);
                     INSERT INTO filler VALUES (zeroblob(1048576));",
                )
                .map_err(db)
            })
            .await
            .unwrap();
        // Only a checkpoint moves the pages from the log into the file;
        // no connection of the store checkpoints on commit any more.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&path).unwrap().len() < before + 1_048_576 {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_failed_write_rolls_back_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetaStore::open(&dir.path().join("mcr.db")).unwrap();
        let e = store
            .write("a step that fails halfway", |tx| {
                tx.execute(
                    "INSERT INTO repositories (name, created) VALUES ('half/written', 1)",
                    [],
                )
                .map_err(db)?;
                Err::<(), _>(storage("injected", "a failure for the test"))
            })
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "storage error: a step that fails halfway: injected: a failure for the test"
        );
        let n: i64 = store
            .run("count", |c| {
                c.query_row("SELECT COUNT(*) FROM repositories", [], |r| r.get(0))
                    .map_err(db)
            })
            .await
            .unwrap();
        assert_eq!(n, 0);
    }

    /// Writers waiting for their turn must not sit in the blocking pool:
    /// with the pool full of them, a blob read (or any blocking task)
    /// would wait for every queued write. Here the pool has two threads,
    /// one write holds the turn, four more are queued, and a plain
    /// blocking task must still run before the first write is released.
    #[test]
    fn queued_writers_hold_no_blocking_thread() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteMetaStore::open(&dir.path().join("mcr.db")).unwrap();
            let (release, held) = std::sync::mpsc::channel::<()>();
            let (started, holding) = tokio::sync::oneshot::channel();
            let first = tokio::spawn({
                let store = store.clone();
                async move {
                    store
                        .write("holding the turn", move |_| {
                            let _ = started.send(());
                            let _ = held.recv();
                            Ok(())
                        })
                        .await
                }
            });
            holding.await.unwrap();
            // Polled once each: a writer that entered the blocking pool
            // before taking its turn would now occupy the second thread
            // and queue the rest there.
            let mut queued: Vec<_> = (0..4)
                .map(|_| Box::pin(store.write("queued", |_| Ok(()))))
                .collect();
            for w in &mut queued {
                assert!(futures_util::future::poll_immediate(w).await.is_none());
            }
            let probe =
                tokio::time::timeout(Duration::from_secs(20), tokio::task::spawn_blocking(|| 42))
                    .await;
            release.send(()).unwrap();
            assert_eq!(
                probe
                    .expect("a blocking task waited behind queued writers")
                    .unwrap(),
                42
            );
            first.await.unwrap().unwrap();
            for w in queued {
                w.await.unwrap();
            }
        });
    }

    #[test]
    fn works_outside_a_tokio_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteMetaStore::open(&dir.path().join("mcr.db")).unwrap();
        let v = futures_util::FutureExt::now_or_never(store.schema_version());
        assert_eq!(v.map(|r| r.unwrap()), Some(SCHEMA_VERSION));
    }
}
