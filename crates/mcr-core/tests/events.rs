//! Webhook delivery through the engine, on the fakes and a scripted
//! sink: a failure is recorded and retried on the backoff's schedule, not
//! before; success moves the cursor; filtered events are passed over;
//! events arrive in outbox order; pruning spares nothing undelivered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mcr_core::audit::{EventType, NewAuditEvent};
use mcr_core::events::{Backoff, DeliveryState, Webhook};
use mcr_core::names::RepoName;
use mcr_core::policy::{Engine, PolicyEngine, RepoPattern};
use mcr_core::ports::{AuditLog, EventOutbox, EventSink, Secret};
use mcr_core::registry::{DeliveryPass, Registry, DELIVERED_EVENTS_KEPT};
use mcr_core::testing::{
    admin, user, Counters, FakeBlobStore, FakeIdentity, FakeMetaStore, ManualClock,
};
use mcr_core::time::{Clock, Timestamp};
use mcr_core::{Error, Result};
use serde_json::Value;

/// Fails the first `failures` sends, then accepts; keeps what it accepted.
#[derive(Default)]
struct Scripted {
    failures: Mutex<usize>,
    calls: Mutex<usize>,
    /// The CloudEvents id of every send, accepted or not.
    attempted_ids: Mutex<Vec<String>>,
    accepted: Mutex<Vec<Value>>,
}

#[async_trait]
impl EventSink for Scripted {
    async fn send(&self, _hook: &Webhook, body: Bytes) -> Result<()> {
        *self.calls.lock().unwrap() += 1;
        let event: Value = serde_json::from_slice(&body).unwrap();
        let id = event["id"].as_str().unwrap_or_default().to_string();
        self.attempted_ids.lock().unwrap().push(id);
        let mut failures = self.failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(Error::Unavailable("receiver answered 503".into()));
        }
        self.accepted.lock().unwrap().push(event);
        Ok(())
    }
}

fn event(event_type: EventType, repo: Option<&str>, at: Timestamp) -> NewAuditEvent {
    NewAuditEvent {
        time: at,
        event_type,
        actor_id: Some("ops".into()),
        repository: repo.map(|r| RepoName::new(r).unwrap()),
        digest: None,
        ip: None,
        details: BTreeMap::new(),
    }
}

/// A registry on the fakes, no rules, delivering to `hook` through `sink`
/// with the default backoff.
fn with_one_webhook(
    clock: &Arc<ManualClock>,
    meta: &Arc<FakeMetaStore>,
    hook: Webhook,
    sink: Arc<Scripted>,
) -> Registry {
    let policy = Arc::new(Engine::new());
    policy.set_rules(Vec::new());
    Registry::new(
        meta.clone(),
        Arc::new(FakeBlobStore::new()),
        Arc::new(FakeIdentity::new(clock.clone())),
        policy,
    )
    .with_clock(clock.clone())
    .with_webhooks(vec![hook], sink, "urn:mcr:test".into(), Backoff::default())
}

#[test]
fn failures_back_off_success_moves_the_cursor_and_filters_pass_over() {
    let counters = Counters::default();
    metrics::with_local_recorder(&counters, || {
        futures_executor::block_on(failures_back_off());
    });
    // `mcr_webhook_deliveries_total`, by outcome: two refusals, then the
    // two events the filters let through.
    let deliveries =
        |outcome| counters.get("mcr_webhook_deliveries_total", &[("outcome", outcome)]);
    assert_eq!(deliveries("failed"), 2);
    assert_eq!(deliveries("delivered"), 2);
}

async fn failures_back_off() {
    let clock = Arc::new(ManualClock::default());
    let meta = Arc::new(FakeMetaStore::new());
    let identity = Arc::new(FakeIdentity::new(clock.clone()));
    for caller in [admin(), user()] {
        let name = caller.principal.subject.clone();
        identity.add_user(&name, "pw", caller.principal);
    }
    let policy = Arc::new(Engine::new());
    policy.set_rules(Vec::new());
    let sink = Arc::new(Scripted {
        failures: Mutex::new(2),
        ..Scripted::default()
    });
    let hook = Webhook {
        url: "https://u:p@ci.example/h".into(),
        secret: Secret::new("0123456789abcdef"),
        events: Vec::new(),
        repositories: vec![RepoPattern::new("a/*").unwrap()],
        timeout: Duration::from_secs(5),
    };
    let backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(4),
    };
    let registry = Registry::new(
        meta.clone(),
        Arc::new(FakeBlobStore::new()),
        identity,
        policy,
    )
    .with_clock(clock.clone())
    .with_webhooks(
        vec![hook],
        sink.clone(),
        "https://mcr.example".into(),
        backoff,
    );

    // Before the webhook is first prepared: not sent to it.
    meta.record_audit(&event(EventType::RepoDeleted, Some("a/old"), clock.now()))
        .await
        .unwrap();
    registry.prepare_webhooks().await.unwrap();
    for (t, repo) in [
        (EventType::RepoDeleted, Some("a/one")),
        (EventType::RepoDeleted, Some("b/other")),
        (EventType::GcCompleted, None),
        (EventType::RepoDeleted, Some("a/two")),
    ] {
        meta.record_audit(&event(t, repo, clock.now()))
            .await
            .unwrap();
    }

    // Two failures, each waiting its backoff (jitter in the upper half).
    let mut expected_wait = Duration::from_secs(1);
    for attempt in 1..=2 {
        let now = clock.now();
        let DeliveryPass::RetryAt(at) = registry.deliver_webhook(0).await.unwrap() else {
            panic!("attempt {attempt} failed and must be retried");
        };
        let wait = Duration::from_millis((at.as_millis() - now.as_millis()) as u64);
        assert!(
            wait >= expected_wait / 2 && wait <= expected_wait,
            "attempt {attempt}: {wait:?}"
        );
        let status = &registry.webhook_status(&admin()).await.unwrap()[0];
        assert!(
            status.url.starts_with("https://***@ci.example/h ("),
            "{}",
            status.url
        );
        assert_eq!(status.attempts, attempt);
        assert_eq!(status.last_error.as_deref(), Some("receiver answered 503"));
        assert_eq!(status.next_attempt, Some(at));
        assert_eq!(status.pending, 4);
        // Not before its time: no send.
        let calls = *sink.calls.lock().unwrap();
        assert_eq!(
            registry.deliver_webhook(0).await.unwrap(),
            DeliveryPass::RetryAt(at)
        );
        assert_eq!(*sink.calls.lock().unwrap(), calls);
        clock.set(at);
        expected_wait *= 2;
    }

    assert_eq!(
        registry.deliver_webhook(0).await.unwrap(),
        DeliveryPass::CaughtUp
    );
    let accepted = sink.accepted.lock().unwrap().clone();
    let subjects: Vec<&str> = accepted
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["a/one", "a/two"], "in order, filtered");
    // The CloudEvents ids are the stored ones of outbox rows 2 and 5,
    // the same as the failed attempts sent.
    let stored = meta.outbox_after(0, 100).await.unwrap();
    let stored_id = |row: i64| {
        let e = stored.iter().find(|e| e.id == row).unwrap();
        e.event_id.to_string()
    };
    let ids: Vec<&str> = accepted.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [stored_id(2), stored_id(5)]);
    assert_eq!(
        sink.attempted_ids.lock().unwrap()[..3],
        [stored_id(2), stored_id(2), stored_id(2)],
        "every retry of an event sends its id"
    );
    assert_eq!(accepted[0]["type"], "dev.mcr.repository.deleted");
    assert_eq!(accepted[0]["source"], "https://mcr.example");
    let status = &registry.webhook_status(&admin()).await.unwrap()[0];
    assert_eq!(
        (status.delivered, status.pending, status.attempts),
        (5, 0, 0)
    );
    assert_eq!(status.last_error, None);
    assert!(matches!(
        registry.webhook_status(&user()).await,
        Err(Error::Denied { .. })
    ));

    // Delivered events go once a day old; the first one too (no webhook
    // is before it).
    assert_eq!(registry.prune_events().await.unwrap(), 0, "too recent");
    clock.advance(DELIVERED_EVENTS_KEPT + Duration::from_secs(1));
    assert_eq!(registry.prune_events().await.unwrap(), 5);
    assert!(meta.outbox_after(0, 100).await.unwrap().is_empty());
}

#[test]
fn an_undelivered_event_is_never_pruned() {
    futures_executor::block_on(undelivered_stays());
}

async fn undelivered_stays() {
    let clock = Arc::new(ManualClock::default());
    let meta = Arc::new(FakeMetaStore::new());
    let sink = Arc::new(Scripted {
        failures: Mutex::new(usize::MAX),
        ..Scripted::default()
    });
    let hook = Webhook {
        url: "https://ci.example/h".into(),
        secret: Secret::new("0123456789abcdef"),
        events: Vec::new(),
        repositories: Vec::new(),
        timeout: Duration::from_secs(5),
    };
    let registry = with_one_webhook(&clock, &meta, hook, sink);
    registry.prepare_webhooks().await.unwrap();
    meta.record_audit(&event(EventType::GcCompleted, None, clock.now()))
        .await
        .unwrap();
    assert!(matches!(
        registry.deliver_webhook(0).await.unwrap(),
        DeliveryPass::RetryAt(_)
    ));
    clock.advance(DELIVERED_EVENTS_KEPT * 3);
    assert_eq!(registry.prune_events().await.unwrap(), 0);
    assert_eq!(meta.outbox_after(0, 100).await.unwrap().len(), 1);
}

#[test]
fn a_state_under_the_first_releases_key_keeps_its_pending_events() {
    futures_executor::block_on(earlier_key_moves());
}

async fn earlier_key_moves() {
    let clock = Arc::new(ManualClock::default());
    let meta = Arc::new(FakeMetaStore::new());
    let sink = Arc::new(Scripted::default());
    let hook = Webhook {
        url: "https://u:p@ci.example/h/s3cret?token=s3cret".into(),
        secret: Secret::new("0123456789abcdef"),
        events: Vec::new(),
        repositories: Vec::new(),
        timeout: Duration::from_secs(5),
    };
    // The first release keyed a state by the URL with only `u:p@` hidden,
    // and two events were pending for it when it stopped.
    let earlier = hook.earlier_key().expect("a different key");
    assert_eq!(earlier, "https://***@ci.example/h/s3cret?token=s3cret");
    let mut state = DeliveryState::new(earlier, 0);
    state.last_error = Some(format!("{} answered 503", hook.url));
    meta.save_delivery_state(&state).await.unwrap();
    for repo in ["a/one", "a/two"] {
        meta.record_audit(&event(EventType::RepoDeleted, Some(repo), clock.now()))
            .await
            .unwrap();
    }
    let registry = with_one_webhook(&clock, &meta, hook, sink.clone());
    registry.prepare_webhooks().await.unwrap();
    let states = meta.delivery_states().await.unwrap();
    assert_eq!(states.len(), 1, "{states:?}");
    assert!(!format!("{states:?}").contains("s3cret"), "{states:?}");
    registry.deliver_webhook(0).await.unwrap();
    let subjects: Vec<Value> = sink
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["subject"].clone())
        .collect();
    assert_eq!(subjects, ["a/one", "a/two"]);
}
