//! A real PostgreSQL for tests (feature `postgres-testing`), never a mock.
//!
//! [`TestDatabase::create`] hands out a fresh, empty database, so tests
//! running side by side never see each other's rows or advisory locks
//! (those are per database). The server is, in order of preference:
//! - the one `MCR_TEST_POSTGRES_URL` names (a `postgres://` URL of a user
//!   who may create databases), for a developer's or CI's own server;
//! - else one this process starts, once, with `scripts/postgres.sh start
//!   --watch <our pid>`: `initdb` and `pg_ctl` in a temporary directory, as
//!   an unprivileged user, on a free loopback port (the script installs
//!   PostgreSQL when it is missing). The script's watcher stops the server
//!   and removes its directory when this process exits, however it exits.
//!
//! On a server named by `MCR_TEST_POSTGRES_URL`, each database is dropped
//! when its [`TestDatabase`] is; on a server of our own they stay until
//! the server goes with the process (dropping one costs more than the
//! test that used it).

use std::process::Command;
use std::sync::OnceLock;

use tokio_postgres::NoTls;

use super::{PostgresConfig, PostgresMetaStore};

/// The variable naming an existing server to use instead of starting one.
pub const SERVER_URL_VAR: &str = "MCR_TEST_POSTGRES_URL";

/// A server: where to connect as a user who may create databases.
struct Server {
    admin_url: String,
    /// Whether someone else runs it, so our databases must not outlive
    /// us.
    shared: bool,
}

/// The server for this process, started on first use.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var(SERVER_URL_VAR) {
        Ok(url) if !url.is_empty() => Server {
            admin_url: url,
            shared: true,
        },
        _ => start_server(),
    })
}

/// Runs `scripts/postgres.sh start` and reads the URL it prints.
fn start_server() -> Server {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/postgres.sh");
    let out = Command::new(script)
        .args(["start", "--watch", &std::process::id().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("could not run {script}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} start failed ({}):\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{SERVER_URL_VAR}=")))
        .map(|v| v.trim_matches('\'').to_string())
        .unwrap_or_else(|| panic!("{script} printed no {SERVER_URL_VAR}:\n{stdout}\n{stderr}"));
    Server {
        admin_url: url,
        shared: false,
    }
}

/// `url` with its database replaced by `name` (URL form only:
/// `postgres://user:password@host:port/database?options`).
fn with_database(url: &str, name: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let authority_start = url[scheme_end..]
        .rfind('@')
        .map_or(scheme_end, |i| scheme_end + i + 1);
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
    let (head, tail) = url.split_at(authority_start + authority_len);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{head}/{name}{query}")
}

/// Runs one statement as the server's admin user.
async fn admin(statement: &str) {
    let url = &server().admin_url;
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test server: {}", super::describe(&e)));
    let conn = tokio::spawn(connection);
    client
        .batch_execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {}", super::describe(&e)));
    drop(client);
    let _ = conn.await;
}

/// A fresh, empty database on the test server, dropped with this value.
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a database named for a random id. Panics, saying why, when
    /// no server can be started or reached: a test that needs PostgreSQL
    /// fails rather than skips.
    pub async fn create() -> TestDatabase {
        let server = tokio::task::spawn_blocking(server)
            .await
            .expect("starting the test server");
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id).expect("randomness for a database name");
        let name = format!("mcr_test_{}", hex::encode(id));
        admin(&format!("CREATE DATABASE {name}")).await;
        TestDatabase {
            url: with_database(&server.admin_url, &name),
            name,
        }
    }

    /// The database's URL, password included.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's connection settings.
    pub fn config(&self) -> PostgresConfig {
        PostgresConfig::from_url(&self.url).expect("the test server's URL parses")
    }

    /// A store on the database, migrated.
    pub async fn store(&self) -> PostgresMetaStore {
        PostgresMetaStore::connect(&self.config())
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !server().shared {
            return;
        }
        // Drop cannot await, and may run inside a runtime: a thread of its
        // own with a runtime of its own. FORCE ends the pools' sessions.
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop a test database")
                .block_on(admin(&statement));
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("could not drop the test database {}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        let cases = [
            ("postgres://u:p@h:1/postgres", "postgres://u:p@h:1/x"),
            ("postgres://u:p@h:1", "postgres://u:p@h:1/x"),
            (
                "postgres://u@h/db?sslmode=disable",
                "postgres://u@h/x?sslmode=disable",
            ),
            ("postgresql://h:5432/", "postgresql://h:5432/x"),
            ("postgres://u:p%40ss@h/db", "postgres://u:p%40ss@h/x"),
        ];
        for (url, want) in cases {
            assert_eq!(with_database(url, "x"), want, "{url}");
        }
    }
}
