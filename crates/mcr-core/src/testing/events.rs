//! Audit events for tests that call the stores' changes directly: each
//! change that is audited records its event in the same step
//! (`complete_upload`, `mount_blob`, `put_manifest`).

use std::collections::BTreeMap;

use crate::audit::{EventType, NewAuditEvent};
use crate::ports::NewManifest;
use crate::time::Timestamp;

/// An event of `event_type` at `at` by the actor `contract`, naming no
/// repository or digest.
pub fn audited(event_type: EventType, at: Timestamp) -> NewAuditEvent {
    NewAuditEvent {
        time: at,
        event_type,
        actor_id: Some("contract".to_string()),
        repository: None,
        digest: None,
        ip: None,
        details: BTreeMap::new(),
    }
}

/// The `manifest_pushed` event stored with `m`, at its `created`.
pub fn pushed(m: &NewManifest) -> NewAuditEvent {
    NewAuditEvent {
        repository: Some(m.repository.clone()),
        digest: Some(m.digest.clone()),
        ..audited(EventType::ManifestPushed, m.created)
    }
}
