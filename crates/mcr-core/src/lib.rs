//! # mcr-core: the MCR registry engine
//!
//! The pure core of MCR, a container registry that speaks the OCI
//! Distribution API. It holds:
//!
//! - the domain types ([`digest`], [`names`], [`media`], [`manifest`],
//!   [`principal`]) that cannot hold invalid values;
//! - the [`ports`]: [`ports::BlobStore`], [`ports::MetaStore`],
//!   [`ports::TokenValidator`] and [`policy::PolicyEngine`], small async
//!   traits that adapters implement;
//! - the use cases on [`registry::Registry`]: pull, push, delete, garbage
//!   collection and administration, each policy-checked and audited;
//! - the [`policy`] engine;
//! - [`retention`] policies and the plan of what a run deletes.
//!
//! It knows nothing of SQLite, HTTP, gRPC or an async runtime; those live in
//! the adapter and transport crates. With the `testing` feature it also
//! ships in-memory fakes of every port and the port contract suite.
//!
//! Embedding it takes a few lines: see `examples/embedded.rs`.

pub mod audit;
pub mod coordination;
pub mod digest;
pub mod display;
pub mod error;
pub mod events;
pub mod ids;
pub mod manifest;
pub mod media;
pub mod names;
pub mod policy;
pub mod ports;
pub mod principal;
pub mod proxy;
pub mod quota;
pub mod registry;
pub mod retention;
pub mod time;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, Result, StorageError, StorageErrorKind};
