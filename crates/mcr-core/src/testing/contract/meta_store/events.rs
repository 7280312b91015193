//! The outbox checks of the [`MetaStore`] contract: an event exists
//! exactly when the change it reports committed, in commit order; a
//! deleted tag names the digest it pointed at, and a manifest delete
//! reports each tag it took; event ids are distinct and read back the
//! same; the delivery states are saved, listed and forgotten; pruning
//! spares what a webhook has not passed.

use std::collections::BTreeSet;

use super::super::support::{err_of, ok, repo, sha256, t, tag};
use super::{image, immutable_v_tags, info, put, tagged, upload, Store, ALL};
use crate::audit::{EventType, NewAuditEvent};
use crate::error::Error;
use crate::events::{DeliveryState, EventKind, OutboxEvent};
use crate::policy::TagGuard;
use crate::principal::Action;
use crate::testing::{audited, pushed};
use crate::time::Timestamp;

async fn outbox(s: &Store) -> Vec<OutboxEvent> {
    ok(s.outbox_after(0, ALL).await, "outbox_after")
}

fn kinds(events: &[OutboxEvent]) -> Vec<(EventKind, Option<String>)> {
    events
        .iter()
        .map(|e| (e.kind, e.repository.as_ref().map(|r| r.to_string())))
        .collect()
}

fn about(event_type: EventType, r: &str, at: Timestamp) -> NewAuditEvent {
    NewAuditEvent {
        repository: Some(repo(r)),
        ..audited(event_type, at)
    }
}

pub(super) async fn events_exist_exactly_for_committed_changes(s: Store) {
    assert_eq!(ok(s.last_outbox_id().await, "last_outbox_id"), 0);
    let a = repo("ev/a");
    let blob = upload(&s, &a, b"event layer", t(1)).await;
    assert!(outbox(&s).await.is_empty(), "an upload is no event");

    let m1 = tagged(image(&a, "one", &[&blob], t(2)), "v1");
    put(&s, &m1).await;
    let m2 = tagged(image(&a, "two", &[&blob], t(3)), "v1");
    put(&s, &m2).await;
    // A failed push, delete and tag delete: no event.
    let missing = image(&a, "missing", &[&info(b"never uploaded")], t(4));
    err_of(
        s.put_manifest(missing.clone(), &pushed(&missing)).await,
        "put_manifest with an absent blob",
    );
    let ghost = sha256(b"ghost");
    let none = s
        .delete_manifest(
            &a,
            &ghost,
            &TagGuard::open(),
            crate::ports::ManifestDelete::WithTags,
            &about(EventType::ManifestDeleted, "ev/a", t(5)),
        )
        .await;
    assert!(!ok(none, "delete_manifest of an absent manifest"));
    let none = s
        .delete_tag(
            &a,
            &tag("absent"),
            None,
            &about(EventType::TagDeleted, "ev/a", t(5)),
        )
        .await;
    assert!(!ok(none, "delete_tag of an absent tag"));
    let refused = s
        .delete_manifest(
            &a,
            &m2.digest,
            &immutable_v_tags(&a, Action::TagDelete),
            crate::ports::ManifestDelete::WithTags,
            &about(EventType::ManifestDeleted, "ev/a", t(5)),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::TagRefused(_))),
        "deleting a manifest under an immutable tag is refused: {refused:?}"
    );
    // A record that reports nothing, and one that is its own change.
    ok(
        s.record_audit(&about(EventType::ManifestPulled, "ev/a", t(6)))
            .await,
        "record_audit",
    );
    ok(
        s.record_audit(&audited(EventType::GcCompleted, t(6))).await,
        "record_audit",
    );

    let gone = s
        .delete_tag(
            &a,
            &tag("v1"),
            None,
            &about(EventType::TagDeleted, "ev/a", t(7)),
        )
        .await;
    assert!(ok(gone, "delete_tag"));
    let gone = s
        .delete_manifest(
            &a,
            &m1.digest,
            &TagGuard::open(),
            crate::ports::ManifestDelete::WithTags,
            &about(EventType::ManifestDeleted, "ev/a", t(8)),
        )
        .await;
    assert!(ok(gone, "delete_manifest"));
    let b = repo("ev/b");
    let other = upload(&s, &b, b"b layer", t(9)).await;
    put(&s, &image(&b, "b", &[&other], t(9))).await;
    let dropped = s
        .delete_repository(
            &b,
            &TagGuard::open(),
            &about(EventType::RepoDeleted, "ev/b", t(10)),
        )
        .await;
    assert!(ok(dropped, "delete_repository").is_some());
    let none = s
        .delete_repository(
            &b,
            &TagGuard::open(),
            &about(EventType::RepoDeleted, "ev/b", t(11)),
        )
        .await;
    assert!(ok(none, "delete_repository of an absent repository").is_none());

    let events = outbox(&s).await;
    let a_ = || Some("ev/a".to_string());
    let b_ = || Some("ev/b".to_string());
    assert_eq!(
        kinds(&events),
        vec![
            (EventKind::ManifestPushed, a_()),
            (EventKind::ManifestPushed, a_()),
            (EventKind::TagMoved, a_()),
            (EventKind::GcCompleted, None),
            (EventKind::TagDeleted, a_()),
            (EventKind::ManifestDeleted, a_()),
            (EventKind::ManifestPushed, b_()),
            (EventKind::RepositoryDeleted, b_()),
        ],
        "one event per committed change, in commit order"
    );
    assert!(
        events.windows(2).all(|w| w[0].id < w[1].id),
        "ids grow: {:?}",
        events.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    let moved = &events[2];
    assert_eq!(moved.data["tag"], "v1");
    assert_eq!(moved.data["previous_digest"], m1.digest.to_string());
    assert_eq!(moved.data["digest"], m2.digest.to_string());
    assert_eq!(events[1].data["media_type"], m2.media_type.as_str());
    assert_eq!(events[1].data["size"], m2.raw.len() as u64);
    assert_eq!(ok(s.last_outbox_id().await, "last_outbox_id"), events[7].id);
    // Paging and counting after an id.
    let after = ok(s.outbox_after(events[2].id, 2).await, "outbox_after");
    assert_eq!(after, events[3..5].to_vec());
    assert_eq!(
        ok(
            s.outbox_count_after(events[2].id).await,
            "outbox_count_after"
        ),
        5
    );
    // Every recorded change is audited, the audit log and the outbox
    // agreeing on what happened.
    let deleted = ok(
        s.query_audit(&crate::audit::AuditQuery {
            event_type: Some(EventType::TagDeleted),
            limit: ALL,
            ..Default::default()
        })
        .await,
        "query_audit",
    );
    assert_eq!(
        deleted.len(),
        1,
        "only the tag delete that happened is audited"
    );
}

pub(super) async fn tag_deletions_name_their_digest_and_event_ids_are_distinct_and_stable(
    s: Store,
) {
    let a = repo("ev/t");
    let blob = upload(&s, &a, b"tagged layer", t(1)).await;
    let mut m = tagged(image(&a, "tagged", &[&blob], t(2)), "v1");
    m.tags.push(tag("latest"));
    put(&s, &m).await;
    let other = tagged(image(&a, "other", &[&blob], t(3)), "keep");
    put(&s, &other).await;
    let gone = s
        .delete_tag(
            &a,
            &tag("keep"),
            None,
            &about(EventType::TagDeleted, "ev/t", t(4)),
        )
        .await;
    assert!(ok(gone, "delete_tag"));
    let gone = s
        .delete_manifest(
            &a,
            &m.digest,
            &TagGuard::open(),
            crate::ports::ManifestDelete::WithTags,
            &about(EventType::ManifestDeleted, "ev/t", t(5)),
        )
        .await;
    assert!(ok(gone, "delete_manifest"));

    let events = outbox(&s).await;
    let t_ = || Some("ev/t".to_string());
    assert_eq!(
        kinds(&events),
        vec![
            (EventKind::ManifestPushed, t_()),
            (EventKind::ManifestPushed, t_()),
            (EventKind::TagDeleted, t_()),
            (EventKind::TagDeleted, t_()),
            (EventKind::TagDeleted, t_()),
            (EventKind::ManifestDeleted, t_()),
        ],
        "each tag the manifest delete took, before it"
    );
    let tag_and_digest = |e: &OutboxEvent| (e.data["tag"].clone(), e.data["digest"].clone());
    let (m_digest, other_digest) = (m.digest.to_string(), other.digest.to_string());
    assert_eq!(
        tag_and_digest(&events[2]),
        ("keep".into(), other_digest.into())
    );
    assert_eq!(
        tag_and_digest(&events[3]),
        ("latest".into(), m_digest.clone().into())
    );
    assert_eq!(tag_and_digest(&events[4]), ("v1".into(), m_digest.into()));

    let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "event ids are distinct: {ids:?}"
    );
    let again: Vec<_> = outbox(&s).await.iter().map(|e| e.event_id).collect();
    assert_eq!(again, ids, "event ids read back the same");
    let later = ok(s.outbox_after(events[1].id, ALL).await, "outbox_after");
    assert_eq!(
        later.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        ids[2..],
        "and read back the same from any cursor"
    );
}

pub(super) async fn delivery_states_and_pruning(s: Store) {
    assert!(ok(s.delivery_states().await, "delivery_states").is_empty());
    let a = repo("ev/p");
    let blob = upload(&s, &a, b"prune layer", t(1)).await;
    for (i, at) in [(1, t(10)), (2, t(20)), (3, t(30))] {
        put(&s, &image(&a, &format!("p{i}"), &[&blob], at)).await;
    }
    let ids: Vec<i64> = outbox(&s).await.iter().map(|e| e.id).collect();
    let mut one = DeliveryState::new("https://one.example/h".into(), ids[0]);
    ok(s.save_delivery_state(&one).await, "save_delivery_state");
    let two = DeliveryState::new("https://two.example/h".into(), 0);
    ok(s.save_delivery_state(&two).await, "save_delivery_state");
    one.attempts = 3;
    one.last_attempt = Some(t(40));
    one.last_error = Some("503 Service Unavailable".into());
    one.next_attempt = Some(t(44));
    ok(
        s.save_delivery_state(&one).await,
        "save_delivery_state again",
    );
    assert_eq!(
        ok(s.delivery_states().await, "delivery_states"),
        vec![one.clone(), two.clone()],
        "states by webhook key, the last save of each"
    );
    assert_eq!(
        ok(
            s.forget_delivery_states(&["https://one.example/h".into()])
                .await,
            "forget_delivery_states"
        ),
        1
    );
    assert_eq!(ok(s.delivery_states().await, "delivery_states"), vec![one]);

    // Through the second event, recorded before t(25): the first two go.
    assert_eq!(ok(s.prune_outbox(ids[1], t(25)).await, "prune_outbox"), 2);
    // The third is past `through`: it stays however old.
    assert_eq!(ok(s.prune_outbox(ids[1], t(99)).await, "prune_outbox"), 0);
    assert_eq!(
        outbox(&s).await.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    assert_eq!(
        ok(s.last_outbox_id().await, "last_outbox_id"),
        ids[2],
        "the last id survives pruning"
    );
    ok(s.prune_outbox(ids[2], t(99)).await, "prune_outbox");
    assert_eq!(
        ok(s.last_outbox_id().await, "last_outbox_id"),
        ids[2],
        "and an empty outbox"
    );
    put(&s, &image(&a, "p4", &[&blob], t(50))).await;
    assert!(
        outbox(&s).await[0].id > ids[2],
        "ids are never reused after a prune"
    );
}
