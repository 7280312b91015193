//! # mcr-adapters: the ports of `mcr-core` made real
//!
//! Each adapter sits behind a cargo feature of its name, so a program
//! compiles only the backends it uses (the default features are SQLite,
//! files, local identity and MCIAS; `postgres` and `s3` are opt-in):
//!
//! - [`sqlite::SqliteMetaStore`] (`sqlite`): the `MetaStore` on SQLite
//!   (rusqlite with an r2d2 pool; blocking calls run off the async
//!   workers).
//! - `postgres::PostgresMetaStore` (`postgres`): the `MetaStore` on
//!   PostgreSQL (tokio-postgres with a deadpool pool), for several
//!   replicas sharing one database; with `postgres-testing`, a throwaway
//!   server for tests (`postgres::testing`).
//! - [`fs::FsBlobStore`] (`fs`): the `BlobStore` on a local filesystem,
//!   content-addressed, crash-safe, streaming.
//! - `s3::S3BlobStore` (feature `s3`): the `BlobStore` on an S3-protocol
//!   object store, uploads resumable on any replica.
//!
//! - [`local_identity::LocalIdentity`] (`local-identity`): the `TokenValidator` for
//!   standalone use: argon2id users from the config, server-signed tokens.
//! - [`mcias::MciasTokenValidator`] (`mcias`): the `TokenValidator` over MCIAS's HTTP
//!   API (TLS 1.3, validations cached 30 s by token hash); with the
//!   `fake-mcias` feature, `mcias::fake::FakeMcias` for tests.
//! - [`upstream::HttpUpstream`] (feature `upstream`): the `Upstream` port,
//!   an OCI distribution client of the registry a pull-through cache
//!   mirrors (bearer-token challenges, custom CA, timeouts, retries).
//! - `webhook::HttpEventSink` (feature `webhooks`): the `EventSink` port,
//!   posting CloudEvents to webhooks, signed with HMAC-SHA256.
//!
//! The identity adapters record token validations and MCIAS calls as
//! metrics ([`metrics`]).
//!
//! This crate holds no business rule: those live in `mcr-core`.

#[cfg(feature = "fs")]
pub mod fs;
#[cfg(any(feature = "mcias", feature = "upstream", feature = "webhooks"))]
mod http_client;
#[cfg(feature = "local-identity")]
pub mod local_identity;
#[cfg(feature = "mcias")]
pub mod mcias;
pub mod metrics;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod repo_listing;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "upstream")]
pub mod upstream;
#[cfg(feature = "webhooks")]
pub mod webhook;
