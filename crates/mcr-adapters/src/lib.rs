//! # mcr-adapters: the ports of `mcr-core` made real
//!
//! - [`sqlite::SqliteMetaStore`]: the `MetaStore` on SQLite (rusqlite with
//!   an r2d2 pool; blocking calls run off the async workers).
//! - [`fs::FsBlobStore`]: the `BlobStore` on a local filesystem,
//!   content-addressed, crash-safe, streaming.
//!
//! - [`local_identity::LocalIdentity`]: the `TokenValidator` for
//!   standalone use: argon2id users from the config, server-signed tokens.
//!
//! The MCIAS adapter joins them in a later step. This crate holds no
//! business rule: those live in `mcr-core`.

pub mod fs;
pub mod local_identity;
pub mod sqlite;
