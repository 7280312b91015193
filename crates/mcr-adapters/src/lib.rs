//! # mcr-adapters: the ports of `mcr-core` made real
//!
//! Will own `SqliteMetaStore` (rusqlite + r2d2), `FsBlobStore` (content-
//! addressed files), the MCIAS token validator and the local identity.
