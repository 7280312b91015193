//! Snapshots: a consistent copy of the metadata, taken online on an
//! admin's request (`POST /v1/snapshot`, the `Snapshot` RPC). Blobs are not
//! copied: they are immutable files an ordinary file backup takes as they
//! are.

use serde::{Deserialize, Serialize};

use super::{details, Caller, Registry};
use crate::audit::EventType;
use crate::error::{Error, Result};
use crate::time::Timestamp;

/// A snapshot taken: where the copy went (as the store names it, e.g. a
/// file path) and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub location: String,
    pub taken_at: Timestamp,
}

impl Registry {
    /// Copies the metadata to the store's backups (admin only); audited
    /// with the copy's location. `Error::Conflict` if a snapshot of the
    /// same time (to the store's precision) exists; `Error::Unsupported`
    /// if the registry was wired without a [`SnapshotStore`].
    ///
    /// [`SnapshotStore`]: crate::ports::SnapshotStore
    pub async fn snapshot(&self, caller: &Caller) -> Result<Snapshot> {
        self.authorize_admin(caller).await?;
        let store = self.snapshots.as_ref().ok_or_else(|| {
            Error::Unsupported(
                "this registry's metadata store takes no snapshots; back the database up \
                 with its own tools"
                    .into(),
            )
        })?;
        let taken_at = self.clock.now();
        let location = store.snapshot(taken_at).await?;
        self.audit(
            caller,
            EventType::SnapshotTaken,
            None,
            None,
            details([("location", location.clone())]),
        )
        .await?;
        Ok(Snapshot { location, taken_at })
    }
}
