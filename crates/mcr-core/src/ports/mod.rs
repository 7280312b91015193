//! The ports: what the engine needs from the world, as small async traits.
//!
//! Adapters (SQLite, the filesystem, MCIAS, ...) implement these; the use
//! cases in [`crate::registry`] only ever see the traits. Every adapter
//! runs the contract suite in `mcr_core::testing::contract` (feature
//! `testing`) so that the same assertions hold for every implementation.

mod blob_store;
mod identity;
mod meta_store;

pub use blob_store::{BlobBody, BlobStore, ByteRange, ByteStream};
pub use identity::{IssuedToken, Secret, TokenValidator};
pub use meta_store::{
    BlobInfo, ManifestRecord, MetaStore, NewManifest, Page, RepoDetail, RepoSummary, UploadSession,
};
