//! The ports: what the engine needs from the world, as small async traits.
//!
//! Adapters (SQLite, the filesystem, MCIAS, ...) implement these; the use
//! cases in [`crate::registry`] only ever see the traits. Every adapter
//! runs the contract suite in `mcr_core::testing::contract` (feature
//! `testing`) so that the same assertions hold for every implementation.
//!
//! - Blobs: [`BlobStore`] (`blob_store`).
//! - Metadata, one trait per concern, gathered by the [`MetaStore`]
//!   umbrella (`meta_store`): [`RepositoryStore`] (`repositories`, with
//!   the listing's query in `repo_query`),
//!   [`ManifestStore`] (`manifests`), [`BlobIndex`] (`blob_index`),
//!   [`UploadSessionStore`] (`upload_sessions`), [`PolicyRuleStore`]
//!   (`policy_rules`), [`QuotaStore`] (`quotas`), [`AuditLog`]
//!   (`audit_log`), [`GcStore`] (`gc`),
//!   [`StoreStatus`] (`status`: readiness probe and totals for metrics),
//!   [`RevocationStore`] (`revocations`, for the local identity),
//!   [`RetentionStore`] (`retention`: retention policies and a
//!   repository's manifest graph), [`EventOutbox`] (`events`: webhook
//!   events and their delivery states), and,
//!   optional and outside the umbrella, [`SnapshotStore`]
//!   (`snapshots`).
//! - Identity: [`TokenValidator`] (`identity`).
//! - Webhook delivery: [`EventSink`] (`events`).
//! - Locks shared by everyone using the stores: [`Coordination`]
//!   (`coordination`).
//! - Tasks that outlive a request, on the embedder's runtime: [`Spawn`]
//!   (`spawn`).

mod audit_log;
mod blob_index;
mod blob_store;
mod coordination;
mod events;
mod gc;
mod identity;
mod listing;
mod manifests;
mod meta_store;
mod policy_rules;
mod quotas;
mod repo_query;
mod repositories;
mod retention;
mod revocations;
mod snapshots;
mod spawn;
mod status;
mod upload_sessions;
mod upstream;

pub use audit_log::AuditLog;
pub use blob_index::{BlobIndex, BlobInfo};
pub use blob_store::{BlobBody, BlobStore, ByteRange, ByteStream, UploadState, UploadWriter};
pub use coordination::{Coordination, LockGuard, LockKey};
pub use events::{EventOutbox, EventSink};
pub use gc::{GcStore, SweepStep};
pub use identity::{IssuedToken, Secret, TokenValidator};
pub use listing::{keyset_pages, ListStream};
pub use manifests::{
    check_tag_target, ManifestDelete, ManifestRecord, ManifestStore, NewManifest, Provenance,
};
pub use meta_store::MetaStore;
pub use policy_rules::{PolicyRuleStore, StoredRules};
pub use quotas::QuotaStore;
pub use repo_query::{RepoCursor, RepoQuery, RepoSort, SortOrder, MAX_FILTER_LEN};
pub use repositories::{ManifestSummary, Page, RepoDetail, RepoSummary, RepositoryStore, TagRef};
pub use retention::RetentionStore;
pub use revocations::{Revocation, RevocationStore};
pub use snapshots::SnapshotStore;
pub use spawn::{Spawn, Task};
pub use status::{StoreStatus, StoreTotals};
pub use upload_sessions::{UploadCaps, UploadSession, UploadSessionStore};
pub use upstream::{Upstream, UpstreamBlob, UpstreamManifest};

/// Every port trait, for `use mcr_core::ports::prelude::*;`: calling a
/// metadata method on a concrete store (not through `dyn MetaStore`) needs
/// the trait that declares it in scope.
pub mod prelude {
    pub use super::{
        AuditLog, BlobIndex, BlobStore, Coordination, EventOutbox, GcStore, ManifestStore,
        MetaStore, PolicyRuleStore, QuotaStore, RepositoryStore, RetentionStore, RevocationStore,
        SnapshotStore, StoreStatus, TokenValidator, UploadSessionStore, Upstream,
    };
}
