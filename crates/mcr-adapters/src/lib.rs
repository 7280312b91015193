//! # mcr-adapters: the ports of `mcr-core` made real
//!
//! - [`fs::FsBlobStore`]: the `BlobStore` on a local filesystem,
//!   content-addressed, crash-safe, streaming.
//!
//! The SQLite metadata store and the identity adapters join it in later
//! steps. This crate holds no business rule: those live in `mcr-core`.

pub mod fs;
