//! # mcr-adapters: the ports of `mcr-core` made real
//!
//! - [`sqlite::SqliteMetaStore`]: the `MetaStore` on SQLite (rusqlite with
//!   an r2d2 pool; blocking calls run off the async workers).
//! - [`fs::FsBlobStore`]: the `BlobStore` on a local filesystem,
//!   content-addressed, crash-safe, streaming.
//!
//! Identity adapters (MCIAS and the local identity) join them in a later
//! step. This crate holds no business rule: those live in `mcr-core`.

pub mod fs;
pub mod sqlite;
