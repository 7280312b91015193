//! `PostgresMetaStore`: the `MetaStore` port on PostgreSQL, for several
//! `mcrsrv` replicas sharing one database.
//!
//! This module owns the connection pool, the transactions every step runs
//! in, and the mapping of driver errors to the engine's. The ports'
//! methods live one trait a module (`repositories`, `manifests`, `blobs`,
//! `uploads`, `policy`, `quotas`, `audit`, `gc`, `status`, `revocations`), their
//! statements in `sql`, what the statements share in `rows`, and the
//! numbered migrations in `schema`.
//!
//! tokio-postgres (the native async driver) under a deadpool pool;
//! statements are prepared once per connection and cached. A read of one
//! statement runs on its own; a read of several runs in one `REPEATABLE
//! READ` transaction so they all see one snapshot. Each step that writes
//! is one `READ COMMITTED` transaction, spawned on its own task so a
//! caller that stops waiting (a client that hung up) does not cut it
//! short: it commits or rolls back whole either way.
//!
//! ## Concurrency: what replaces SQLite's one writer at a time
//!
//! SQLite runs writers one after another; here they run side by side, so
//! the steps that must not interleave take row locks, always in the same
//! order (repository → blob row → link/upload/manifest), and re-read after
//! waiting (under `READ COMMITTED` every statement sees what committed
//! before it started):
//! - a step that adds rows to a repository holds the repository's row `FOR
//!   KEY SHARE` (`rows::ensure_repo`, `rows::lock_repo`); deleting or
//!   pruning a repository locks the row `FOR UPDATE` first and decides in
//!   a later statement, so it sees every addition that committed while it
//!   waited, and later ones wait for it;
//! - `put_manifest` holds the links and child manifests it relies on `FOR
//!   KEY SHARE`; GC's sweep locks its candidate blob rows and their links
//!   `FOR UPDATE`, then selects again among them: a manifest either
//!   committed before (its references spare the blob) or finds the link
//!   gone (`ManifestBlobUnknown`), as on SQLite;
//! - completing an upload and mounting hold the blob row `FOR KEY SHARE`
//!   before linking, so a sweep of the same content either finishes first
//!   (the row is made again) or waits for the new link that spares it;
//! - a pushed upload, mount or manifest locks the quotas covering its
//!   repository `FOR UPDATE` last, after the rows above, then measures
//!   them (`quotas::charge`): pushes under one quota go one at a time
//!   from there to their commit.
//!
//! Should two steps still deadlock, or fail a serialization check,
//! PostgreSQL aborts one and [`PostgresMetaStore`] runs it again from the
//! start (a few times), so the caller sees it succeed.
//!
//! Nothing lives in process memory: every replica over the same database
//! sees the same state the moment a step commits.

mod audit;
mod blobs;
mod coordination;
mod events;
mod gc;
mod manifests;
mod policy;
mod quotas;
mod repositories;
mod retention;
mod revocations;
mod rows;
mod schema;
mod sql;
mod status;
#[cfg(feature = "postgres-testing")]
pub mod testing;
mod uploads;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Transaction,
};
use mcr_core::ports::Secret;
use mcr_core::{Error, Result, StorageError, StorageErrorKind};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Config, IsolationLevel, NoTls};

pub use coordination::PostgresCoordination;
pub use schema::LATEST_VERSION as SCHEMA_VERSION;

/// Connections a replica keeps at most, unless configured otherwise.
/// PostgreSQL's default `max_connections` is 100: three replicas at 16
/// leave room for an operator's tools and a fourth replica.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
/// How long a connection attempt may take when the URL does not say
/// (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a step waits for a free pooled connection.
const POOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Rows a streamed listing reads per statement: each page is one short
/// read, so a listing of millions never holds a transaction open or the
/// rows in memory.
const LIST_PAGE: usize = 256;
/// How many times a write runs when PostgreSQL aborts it for a deadlock or
/// a serialization failure.
const WRITE_ATTEMPTS: u32 = 5;

/// Where and how to connect: a PostgreSQL URL (`postgres://user@host:port/db`,
/// or the `key=value` form, with any libpq option tokio-postgres knows),
/// optionally a password from elsewhere (a file), and the pool's size.
///
/// Its `Debug` and [`PostgresConfig::target`] name the host, port,
/// database and user, never the password.
#[derive(Clone)]
pub struct PostgresConfig {
    config: Config,
    max_connections: usize,
}

impl PostgresConfig {
    /// Parses a connection URL. Fails with `Error::Invalid` (field
    /// `database.url`) saying what is wrong, without repeating the URL,
    /// which may hold a password.
    pub fn from_url(url: &str) -> Result<PostgresConfig> {
        let mut config =
            Config::from_str(url).map_err(|e| Error::invalid("database.url", describe(&e)))?;
        if config.get_hosts().is_empty() {
            return Err(Error::invalid(
                "database.url",
                "names no host (postgres://user@host:port/database)",
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("mcrsrv");
        }
        Ok(PostgresConfig {
            config,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        })
    }

    /// Uses `password` instead of any in the URL (read from a
    /// `password_file`, say).
    pub fn password(mut self, password: &Secret) -> PostgresConfig {
        self.config.password(password.expose());
        self
    }

    /// Keeps at most `n` connections open (at least 1).
    pub fn max_connections(mut self, n: usize) -> PostgresConfig {
        self.max_connections = n.max(1);
        self
    }

    /// The server, database and user, for messages:
    /// `127.0.0.1:5432, database mcr, user mcr`.
    pub fn target(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let host = match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                };
                let port = self
                    .config
                    .get_ports()
                    .get(i)
                    .or(self.config.get_ports().first())
                    .copied()
                    .unwrap_or(5432);
                format!("{host}:{port}")
            })
            .collect();
        let user = self.config.get_user().unwrap_or("(the OS user)");
        let db = self.config.get_dbname().unwrap_or(user);
        format!("{}, database {db}, user {user}", hosts.join(","))
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("target", &self.target())
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Metadata in a PostgreSQL database: the
/// [`MetaStore`](mcr_core::ports::MetaStore) adapter for replicas.
///
/// Cheap to clone (the clones share the pool). Needs a Tokio runtime.
#[derive(Clone)]
pub struct PostgresMetaStore {
    pool: Pool,
    target: String,
}

impl fmt::Debug for PostgresMetaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresMetaStore")
            .field("target", &self.target)
            .field("connections", &status.size)
            .field("max_connections", &status.max_size)
            .finish()
    }
}

impl PostgresMetaStore {
    /// Connects, checks the server answers, and applies pending migrations
    /// (under an advisory lock, so replicas starting together migrate
    /// once).
    ///
    /// Fails with a storage error naming the server, database and user and
    /// the cause: of kind `Unavailable` when the server cannot be reached
    /// (refused, timed out, shutting down, out of connections),
    /// `Permanent` when it refuses us (authentication, no such database,
    /// permissions) or a newer MCR migrated the schema past
    /// [`SCHEMA_VERSION`].
    pub async fn connect(config: &PostgresConfig) -> Result<PostgresMetaStore> {
        let target = config.target();
        let manager = Manager::from_config(
            config.config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(
                config
                    .config
                    .get_connect_timeout()
                    .copied()
                    .unwrap_or(CONNECT_TIMEOUT),
            ))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::storage(format!("PostgreSQL at {target}"), e))?;
        let store = PostgresMetaStore { pool, target };
        let at = format!("connecting to {}", store.target);
        let mut client = store.client().await.map_err(|e| e.context(&at))?;
        schema::migrate(&mut client)
            .await
            .map_err(|e| e.into_error().context(&at))?;
        drop(client);
        Ok(store)
    }

    /// The server, database and user this store works on.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The highest migration applied to the database.
    pub async fn schema_version(&self) -> Result<i64> {
        let client = self.client().await?;
        schema::version(&client)
            .await
            .map_err(|e| e.into_error().context("reading the schema version"))
    }

    /// A pooled connection.
    async fn client(&self) -> Result<Object> {
        get(&self.pool).await.map_err(TxError::into_error)
    }

    /// Runs `f` with a pooled connection (statements outside a
    /// transaction, each its own), naming `op` in any error.
    async fn run<D, T, F>(&self, op: &'static str, data: D, f: F) -> Result<T>
    where
        D: Send + Sync,
        F: for<'a> FnOnce(&'a Object, &'a D) -> StepFuture<'a, T> + Send,
    {
        let out = match get(&self.pool).await {
            Ok(client) => f(&client, &data).await,
            Err(e) => Err(e),
        };
        out.map_err(|e| e.into_error().context(op))
    }

    /// Runs a read of several statements in one `REPEATABLE READ READ
    /// ONLY` transaction, so every statement sees the same snapshot.
    async fn read<D, T, F>(&self, op: &'static str, data: D, f: F) -> Result<T>
    where
        D: Send + Sync,
        F: for<'a> FnOnce(&'a Transaction<'a>, &'a D) -> StepFuture<'a, T> + Send,
    {
        let step = async {
            let mut client = get(&self.pool).await?;
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let out = f(&tx, &data).await?;
            tx.commit().await?;
            Ok(out)
        };
        step.await.map_err(|e: TxError| e.into_error().context(op))
    }

    /// Runs `f` in one `READ COMMITTED` transaction: committed if `f`
    /// returns `Ok`, rolled back whole otherwise. Runs on a task of its
    /// own, so it ends the same whether or not the caller keeps waiting,
    /// and again from the start (up to [`WRITE_ATTEMPTS`] times) when
    /// PostgreSQL aborts it for a deadlock or a serialization failure.
    async fn write<D, T, F>(&self, op: &'static str, data: D, f: F) -> Result<T>
    where
        D: Send + Sync + 'static,
        T: Send + 'static,
        F: for<'a> Fn(&'a Transaction<'a>, &'a D) -> StepFuture<'a, T> + Send + Sync + 'static,
    {
        let pool = self.pool.clone();
        let step = async move {
            let mut attempt = 1;
            loop {
                let out: StepResult<T> = async {
                    let mut client = get(&pool).await?;
                    let tx = client.transaction().await?;
                    let out = f(&tx, &data).await?;
                    tx.commit().await?;
                    Ok(out)
                }
                .await;
                match out {
                    Err(e) if e.is_transient_conflict() && attempt < WRITE_ATTEMPTS => {
                        attempt += 1;
                        tracing::debug!(op, attempt, "PostgreSQL aborted a write ({e}); again");
                    }
                    out => return out.map_err(TxError::into_error),
                }
            }
        };
        let out = match tokio::spawn(step).await {
            Ok(out) => out,
            Err(e) => Err(Error::storage("the database task", e)),
        };
        out.map_err(|e| e.context(op))
    }
}

/// What a step's body returns: it borrows the connection or transaction
/// and the step's data for as long as it runs.
pub(crate) type StepFuture<'a, T> = Pin<Box<dyn Future<Output = StepResult<T>> + Send + 'a>>;
pub(crate) type StepResult<T> = std::result::Result<T, TxError>;

/// An error inside a step: the driver's (kept whole, so the write loop can
/// tell a deadlock from a real failure) or the engine's (a domain error
/// such as `ManifestBlobUnknown`, or a row that failed validation).
#[derive(Debug)]
pub(crate) enum TxError {
    Db(tokio_postgres::Error),
    Pool(PoolError),
    Engine(Error),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<Error> for TxError {
    fn from(e: Error) -> Self {
        TxError::Engine(e)
    }
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Db(e) => f.write_str(&describe(e)),
            TxError::Pool(e) => write!(f, "{e}"),
            TxError::Engine(e) => write!(f, "{e}"),
        }
    }
}

impl TxError {
    /// A deadlock or serialization failure: PostgreSQL rolled the
    /// transaction back, and running it again may well succeed.
    fn is_transient_conflict(&self) -> bool {
        matches!(self, TxError::Db(e) if matches!(
            e.code(),
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        ))
    }

    /// The engine's error: a storage error of the kind the driver's error
    /// means ([`kind_of`]), with the driver's error as its source; domain
    /// errors pass through.
    pub(crate) fn into_error(self) -> Error {
        match self {
            TxError::Engine(e) => e,
            TxError::Pool(PoolError::Backend(e)) => TxError::Db(e).into_error(),
            TxError::Pool(e @ PoolError::Timeout(_)) => Error::Storage(StorageError::unavailable(
                format!(
                    "no database connection free within {} s",
                    POOL_TIMEOUT.as_secs()
                ),
                e.to_string(),
            )),
            TxError::Pool(e) => Error::storage("the connection pool", e.to_string()),
            TxError::Db(e) => {
                Error::Storage(StorageError::new(kind_of(&e), "PostgreSQL", DriverError(e)))
            }
        }
    }
}

/// The driver's error, displayed with its causes on one line:
/// tokio-postgres's own `Display` names only the kind ("error connecting
/// to server"), the cause says why ("Connection refused").
#[derive(Debug)]
pub(crate) struct DriverError(tokio_postgres::Error);

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(&self.0))
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

async fn get(pool: &Pool) -> StepResult<Object> {
    pool.get().await.map_err(TxError::Pool)
}

/// What a driver error means for the engine:
/// - `Unavailable` (worth retrying later): the connection failed, timed
///   out or broke; the server is shutting down, starting, out of
///   connections or memory; a lock or statement timeout; a conflict that
///   persisted through every retry;
/// - `NoSpace`: the server's disk is full;
/// - `ReadOnly`: a read-only server (a standby, or
///   `default_transaction_read_only`);
/// - `Permanent`: anything else the server refused.
fn kind_of(e: &tokio_postgres::Error) -> StorageErrorKind {
    let Some(code) = e.code() else {
        // No server error: the connection itself failed, or a value did
        // not convert.
        let connection =
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
        return if connection {
            StorageErrorKind::Unavailable
        } else {
            StorageErrorKind::Permanent
        };
    };
    match code.code() {
        "53100" => StorageErrorKind::NoSpace,
        "25006" => StorageErrorKind::ReadOnly,
        c if c.starts_with("08") // connection exception
            || c.starts_with("53") // insufficient resources
            || c.starts_with("57P") // admin or crash shutdown, cannot connect now
            || c.starts_with("40") // serialization failure, deadlock
            || c == "57014" // query canceled (statement timeout)
            || c == "55P03" =>
        // lock not available
        {
            StorageErrorKind::Unavailable
        }
        _ => StorageErrorKind::Permanent,
    }
}

/// The driver's error with its causes, on one line: tokio-postgres's
/// `Display` names only the kind ("error connecting to server"), the
/// cause says why ("Connection refused").
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            s.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            s.push_str(&format!("; hint: {hint}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    s
}
