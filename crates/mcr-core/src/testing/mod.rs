//! Test support (feature `testing`): in-memory fakes of every port, a
//! registry wired to them, and the port contract suite.
//!
//! - [`FakeMetaStore`], [`FakeBlobStore`], [`FakeIdentity`],
//!   [`FakeUpstream`] and [`ManualClock`] implement the ports in memory. They are `Send + Sync`,
//!   use only `std` locks and never block on I/O, so they run under any
//!   executor. [`FakeMetaStore`] is the reference semantics of
//!   [`MetaStore`](crate::ports::MetaStore): where its docs leave a choice,
//!   the fake's choice is the contract.
//! - [`TestRegistry`] wires the fakes, the policy [`Engine`](crate::policy::Engine)
//!   and a manual clock into an `Arc<Registry>`; [`admin`], [`user`],
//!   [`guest`] and [`system`] are ready-made callers.
//! - [`FaultyBlobStore`] wraps a real blob store and fails with `EIO`
//!   where a test arms a [`Fault`] (write, fsync, rename).
//! - [`audited`] and [`pushed`] make the audit event a test hands a
//!   store's change that records one.
//! - [`contract`] holds the generic async checks every adapter of a port
//!   runs, so the fakes and the real adapters are held to the same
//!   assertions.

mod blob_store;
mod clock;
pub mod contract;
mod counters;
mod events;
mod faulty;
mod gated;
mod hold;
mod identity;
mod meta_store;
mod registry;
mod upstream;

pub use blob_store::FakeBlobStore;
pub use clock::ManualClock;
pub use counters::Counters;
pub use events::{
    assert_backfilled_event_ids, audited, blob_unlink, manifest_deletion, pushed, repo_deletion,
    tag_deletion,
};
pub use faulty::{Fault, Faults, FaultyBlobStore};
pub use gated::GatedUpstream;
pub use hold::Hold;
pub use identity::FakeIdentity;
pub use meta_store::FakeMetaStore;
pub use registry::{admin, guest, system, user, TestRegistry, TEST_PASSWORD};
pub use upstream::FakeUpstream;
