//! Audit events for tests that call the stores' changes directly: each
//! change that is audited records its event in the same step
//! (`complete_upload`, `mount_blob`, `put_manifest`, and the deletes).

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

/// The event of a direct `delete_manifest` in a test: `manifest_deleted`,
/// naming no repository (so no test depends on its details).
pub fn manifest_deletion() -> NewAuditEvent {
    audited(EventType::ManifestDeleted, Timestamp::from_millis(0))
}

/// The event of a direct `delete_tag` in a test: `tag_deleted`.
pub fn tag_deletion() -> NewAuditEvent {
    audited(EventType::TagDeleted, Timestamp::from_millis(0))
}

/// The event of a direct `delete_repository` in a test: `repo_deleted`.
pub fn repo_deletion() -> NewAuditEvent {
    audited(EventType::RepoDeleted, Timestamp::from_millis(0))
}

/// The event of a direct `unlink_blob` in a test: `blob_deleted`.
pub fn blob_unlink() -> NewAuditEvent {
    audited(EventType::BlobDeleted, Timestamp::from_millis(0))
}

/// What a store's migration must give the outbox events it found (three,
/// inserted in this order: two at 1 700 000 000 000 ms, one at -5 ms):
/// distinct UUIDv7 [`EventId`](crate::events::EventId)s in their
/// lower-case hyphenated form, led by each event's time (the epoch for
/// one before it). Panics naming the id that is not.
pub fn assert_backfilled_event_ids(ids: &[String]) {
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_ne!(ids[0], ids[1], "same time, still distinct");
    for id in ids {
        let parsed: crate::events::EventId = id.parse().unwrap();
        assert_eq!(&parsed.to_string(), id, "lower-case hyphenated");
        assert_eq!(&id[14..15], "7", "version 7: {id}");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
    }
    assert!(ids[0].starts_with("018bcfe5-6800-7"), "{}", ids[0]);
    assert!(ids[2].starts_with("00000000-0000-7"), "{}", ids[2]);
}
