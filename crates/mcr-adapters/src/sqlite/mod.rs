//! `SqliteMetaStore`: the `MetaStore` port on SQLite.
//!
//! rusqlite over an r2d2 pool; every call runs on a blocking thread
//! (`spawn_blocking`) so the async workers never wait on the disk. Each
//! method that writes is one `BEGIN IMMEDIATE` transaction, so the use
//! cases' atomic steps (a manifest with its references and tag, a
//! completed upload, a mount, a repository delete, GC phase one) are
//! all-or-nothing and never deadlock upgrading a read lock. The database
//! runs in WAL mode with `synchronous=NORMAL`: durable across a crash of
//! the process, which is what an acknowledged push promises.

mod schema;
mod store;

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use mcr_core::{Error, Result};
use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use schema::version as schema_version;

/// Connections kept open; SQLite serialises writers anyway, readers run in
/// parallel under WAL.
const POOL_SIZE: u32 = 8;
/// How long a writer waits for the lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Metadata in one SQLite file.
#[derive(Clone)]
pub struct SqliteMetaStore {
    pool: Pool<SqliteConnectionManager>,
}

pub(crate) fn storage(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{what}: {e}"))
}

impl SqliteMetaStore {
    /// Opens (creating with mode 0600) the database at `path` and applies
    /// pending migrations.
    pub fn open(path: &Path) -> Result<SqliteMetaStore> {
        secure_file(path)?;
        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            c.busy_timeout(BUSY_TIMEOUT)?;
            c.execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;",
            )
        });
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .connection_timeout(Duration::from_secs(30))
            .build(manager)
            .map_err(|e| storage(&format!("opening database {}", path.display()), e))?;
        let mut conn = pool.get().map_err(|e| storage("database pool", e))?;
        schema::migrate(&mut conn).map_err(|e| storage("migrating the database", e))?;
        Ok(SqliteMetaStore { pool })
    }

    /// A consistent online copy of the database at `dest` (which must not
    /// exist), with mode 0600.
    pub fn snapshot(&self, dest: &Path) -> Result<()> {
        if dest.exists() {
            return Err(Error::invalid(
                "snapshot",
                format!(
                    "{} already exists; refusing to overwrite it",
                    dest.display()
                ),
            ));
        }
        // VACUUM INTO writes a consistent copy from one read transaction.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(|e| storage(&format!("creating {}", dest.display()), e))?;
        std::fs::remove_file(dest).map_err(|e| storage("preparing the snapshot", e))?;
        let conn = self.pool.get().map_err(|e| storage("database pool", e))?;
        let dest_str = dest
            .to_str()
            .ok_or_else(|| Error::invalid("snapshot", "the destination path is not UTF-8"))?;
        conn.execute("VACUUM INTO ?1", [dest_str])
            .map_err(|e| storage("writing the snapshot", e))?;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| storage("restricting the snapshot's mode", e))?;
        Ok(())
    }

    /// Runs `f` with a pooled connection on a blocking thread.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| storage("database pool", e))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| storage("database task", e))?
    }

    /// Runs `f` in one write transaction on a blocking thread; any error
    /// rolls everything back.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| storage("starting a transaction", e))?;
            let out = f(&tx)?;
            tx.commit().map_err(|e| storage("committing", e))?;
            Ok(out)
        })
        .await
    }
}

/// Creates the file with mode 0600 before SQLite does (SQLite would use
/// the umask), and tightens an existing one.
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
