//! The `MetaStore` umbrella: every metadata trait the engine needs, for an
//! adapter that implements them all over one database.
//!
//! The metadata port is split by what the use cases ask of it, one trait
//! a module: [`RepositoryStore`], [`ManifestStore`], [`BlobIndex`],
//! [`UploadSessionStore`], [`PolicyRuleStore`], [`QuotaStore`], [`AuditLog`],
//! [`GcStore`], [`StoreStatus`], [`RevocationStore`], [`RetentionStore`]
//! and [`EventOutbox`].
//! Each method is one atomic step of a use case, so an
//! adapter can make it one transaction; the contract suite
//! (`testing::contract::run_meta_store_contract`) pins down what each must
//! do. A type that implements all of them is a [`MetaStore`] by the
//! blanket impl below, so the engine holds one `Arc<dyn MetaStore>`.
//!
//! Snapshots ([`SnapshotStore`](super::SnapshotStore)) are not part of
//! it: they are an optional capability a store may offer (a file copy on
//! SQLite, a dump elsewhere), wired separately.

use super::audit_log::AuditLog;
use super::blob_index::BlobIndex;
use super::events::EventOutbox;
use super::gc::GcStore;
use super::manifests::ManifestStore;
use super::policy_rules::PolicyRuleStore;
use super::quotas::QuotaStore;
use super::repositories::RepositoryStore;
use super::retention::RetentionStore;
use super::revocations::RevocationStore;
use super::status::StoreStatus;
use super::upload_sessions::UploadSessionStore;

/// Metadata storage: all the metadata traits at once.
///
/// Never implemented by hand: implement the traits and the blanket impl
/// makes the type a `MetaStore`.
pub trait MetaStore:
    RepositoryStore
    + ManifestStore
    + BlobIndex
    + UploadSessionStore
    + PolicyRuleStore
    + QuotaStore
    + AuditLog
    + GcStore
    + StoreStatus
    + RevocationStore
    + RetentionStore
    + EventOutbox
{
}

impl<T> MetaStore for T where
    T: RepositoryStore
        + ManifestStore
        + BlobIndex
        + UploadSessionStore
        + PolicyRuleStore
        + QuotaStore
        + AuditLog
        + GcStore
        + StoreStatus
        + RevocationStore
        + RetentionStore
        + EventOutbox
        + ?Sized
{
}
