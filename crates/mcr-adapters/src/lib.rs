//! # mcr-adapters: the ports of `mcr-core` made real
//!
//! - [`sqlite::SqliteMetaStore`]: the `MetaStore` on SQLite (rusqlite with
//!   an r2d2 pool; blocking calls run off the async workers).
//! - [`fs::FsBlobStore`]: the `BlobStore` on a local filesystem,
//!   content-addressed, crash-safe, streaming.
//! - `s3::S3BlobStore` (feature `s3`): the `BlobStore` on an S3-protocol
//!   object store, uploads resumable on any replica.
//!
//! - [`local_identity::LocalIdentity`]: the `TokenValidator` for
//!   standalone use: argon2id users from the config, server-signed tokens.
//! - [`mcias::MciasTokenValidator`]: the `TokenValidator` over MCIAS's HTTP
//!   API (TLS 1.3, validations cached 30 s by token hash); with the
//!   `fake-mcias` feature, `mcias::fake::FakeMcias` for tests.
//!
//! The identity adapters record token validations and MCIAS calls as
//! metrics ([`metrics`]).
//!
//! This crate holds no business rule: those live in `mcr-core`.

pub mod fs;
pub mod local_identity;
pub mod mcias;
pub mod metrics;
#[cfg(feature = "s3")]
pub mod s3;
pub mod sqlite;
