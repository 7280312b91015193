//! Events for webhooks: what the registry reports to the outside, in
//! CloudEvents 1.0 (structured JSON mode).
//!
//! An event is never written on its own: a store writes it into its
//! outbox ([`EventOutbox`](crate::ports::EventOutbox)) in the same
//! transaction as the audit record of the change it reports, from that
//! record ([`outbox_events`]). So an event exists exactly when its change
//! committed, and a change that failed leaves none. The delivery worker
//! ([`Registry::deliver_webhook`](crate::registry::Registry::deliver_webhook))
//! reads the outbox in id order and posts each event to every configured
//! [`Webhook`] whose filters it passes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::audit::{EventType, NewAuditEvent};
use crate::digest::Digest;
use crate::display::redact_url;
use crate::error::{Error, Result};
use crate::media::MediaType;
use crate::names::{RepoName, Tag};
use crate::policy::RepoPattern;
use crate::ports::Secret;
use crate::time::Timestamp;

/// The prefix of every CloudEvents `type` the registry sends.
pub const CLOUDEVENTS_TYPE_PREFIX: &str = "dev.mcr.";
/// The CloudEvents version of the events sent.
pub const CLOUDEVENTS_SPEC_VERSION: &str = "1.0";
/// Most webhooks a configuration may have.
pub const MAX_WEBHOOKS: usize = 32;
/// Most `repositories` patterns one webhook may have.
pub const MAX_WEBHOOK_PATTERNS: usize = 64;
/// Longest webhook URL, in bytes.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;
/// Events read from the outbox at a time by a delivery pass.
pub const DELIVERY_BATCH: usize = 100;
/// Longest `last_error` kept for a webhook, in bytes.
pub const MAX_DELIVERY_ERROR_LEN: usize = 512;

macro_rules! event_kinds {
    ($($variant:ident => $name:literal,)*) => {
        /// The kinds of event sent to webhooks. The name (`manifest.pushed`)
        /// is what a webhook's `events` filter lists; the CloudEvents
        /// `type` is it under [`CLOUDEVENTS_TYPE_PREFIX`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($variant,)*
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The short name, `manifest.pushed`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }
        }
    };
}

event_kinds! {
    ManifestPushed => "manifest.pushed",
    ManifestDeleted => "manifest.deleted",
    TagMoved => "tag.moved",
    TagDeleted => "tag.deleted",
    RepositoryDeleted => "repository.deleted",
    GcCompleted => "gc.completed",
    QuotaExceeded => "quota.exceeded",
}

impl EventKind {
    /// The CloudEvents `type`: `dev.mcr.manifest.pushed`.
    pub fn cloudevents_type(self) -> String {
        format!("{CLOUDEVENTS_TYPE_PREFIX}{}", self.as_str())
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = Error;

    /// The short name, or the full CloudEvents type.
    fn from_str(s: &str) -> Result<EventKind> {
        let short = s.strip_prefix(CLOUDEVENTS_TYPE_PREFIX).unwrap_or(s);
        EventKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == short)
            .ok_or_else(|| {
                let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                Error::Invalid {
                    field: "event type",
                    reason: format!("unknown event type {s:?}: use one of {}", names.join(", ")),
                }
            })
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The CloudEvents `id` of an event: a UUIDv7 (RFC 9562) drawn when the
/// event is written to the outbox and stored with it, so every delivery
/// and retry of the event sends the same one. Random rather than the
/// outbox row's number: a restored snapshot rolls the row numbers back,
/// and a receiver de-duplicating on `id` would drop the new events that
/// reused them. Written and read as the hyphenated lower-case form,
/// `0192f0c4-7b1e-7cc4-9d3a-52f1e0a8b6c2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(uuid::Uuid);

impl EventId {
    /// A new id: the millisecond `time` of the event (before 1970: the
    /// epoch) and 74 random bits.
    pub fn generate(time: Timestamp) -> EventId {
        let millis = u64::try_from(time.as_millis()).unwrap_or(0);
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            millis / 1000,
            (millis % 1000) as u32 * 1_000_000,
        );
        EventId(uuid::Uuid::new_v7(ts))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for EventId {
    type Err = Error;

    /// A UUID in any of its text forms; `Invalid` (field `event id`).
    fn from_str(s: &str) -> Result<EventId> {
        uuid::Uuid::parse_str(s)
            .map(EventId)
            .map_err(|e| Error::Invalid {
                field: "event id",
                reason: format!("{s:?} is not a UUID: {e}"),
            })
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An event to append to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxEvent {
    /// Its CloudEvents `id`, stored with it.
    pub event_id: EventId,
    pub time: Timestamp,
    pub kind: EventKind,
    /// The repository it is about (the CloudEvents `subject`); none for a
    /// GC run.
    pub repository: Option<RepoName>,
    /// The CloudEvents `data`: a JSON object.
    pub data: Value,
}

/// An event in the outbox. `id`s (row numbers, the delivery cursor) are
/// assigned by the store in commit order, only grow, and are not reused
/// while the database lives on (a restored snapshot rolls them back);
/// `event_id` is the CloudEvents `id`, unique for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    pub id: i64,
    pub event_id: EventId,
    pub time: Timestamp,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub repository: Option<RepoName>,
    pub data: Value,
}

/// What a store knows about a manifest push beyond its audit record:
/// the manifest's media type and size, and the tags the push moved away
/// from another manifest (each with the digest it pointed at).
#[derive(Debug, Clone, Copy)]
pub struct PushFacts<'a> {
    pub media_type: &'a MediaType,
    pub size: u64,
    pub moved: &'a [(Tag, Digest)],
}

/// What a store step knows about its change beyond the audit record.
#[derive(Debug, Clone, Copy)]
pub enum StoreFacts<'a> {
    /// A manifest push.
    Push(PushFacts<'a>),
    /// The tags a deletion removed, each with the digest it pointed at:
    /// the one tag of a tag delete, or every tag a manifest delete took
    /// with it (each reported as its own `tag.deleted`).
    Untagged(&'a [(Tag, Digest)]),
}

/// The outbox events reporting the change `audit` records (none for most
/// kinds of audit record); `facts` adds what only the store step knows.
/// Each gets a new [`EventId`]. Called by the stores inside the change's
/// transaction.
pub fn outbox_events(audit: &NewAuditEvent, facts: Option<StoreFacts<'_>>) -> Vec<NewOutboxEvent> {
    let (push, untagged) = match facts {
        Some(StoreFacts::Push(p)) => (Some(p), &[][..]),
        Some(StoreFacts::Untagged(tags)) => (None, tags),
        None => (None, &[][..]),
    };
    let kind = match audit.event_type {
        EventType::ManifestPushed => EventKind::ManifestPushed,
        EventType::ManifestDeleted => EventKind::ManifestDeleted,
        EventType::TagDeleted => EventKind::TagDeleted,
        EventType::RepoDeleted => EventKind::RepositoryDeleted,
        EventType::GcCompleted => EventKind::GcCompleted,
        EventType::QuotaExceeded => EventKind::QuotaExceeded,
        _ => return Vec::new(),
    };
    let mut data = Map::new();
    if let Some(r) = &audit.repository {
        data.insert("repository".into(), json!(r.as_str()));
    }
    if let Some(d) = &audit.digest {
        data.insert("digest".into(), json!(d.to_string()));
    }
    if let Some(a) = &audit.actor_id {
        data.insert("actor".into(), json!(a));
    }
    let detail = |k: &str| audit.details.get(k).cloned();
    match kind {
        EventKind::ManifestPushed => {
            let tags: Vec<&str> = audit
                .details
                .get("tag")
                .map(|t| t.split(',').filter(|t| !t.is_empty()).collect())
                .unwrap_or_default();
            data.insert("tags".into(), json!(tags));
            if let Some(p) = push {
                data.insert("media_type".into(), json!(p.media_type.as_str()));
                data.insert("size".into(), json!(p.size));
            }
        }
        EventKind::ManifestDeleted => {}
        EventKind::TagDeleted => match untagged.first() {
            // What the store deleted, as it read it.
            Some((t, d)) => {
                data.insert("tag".into(), json!(t.as_str()));
                data.insert("digest".into(), json!(d.to_string()));
            }
            None => {
                if let Some(t) = detail("reference") {
                    data.insert("tag".into(), json!(t));
                }
            }
        },
        _ => {
            // GC totals, a quota's refusal: the audit record's details,
            // numbers as numbers.
            for (k, v) in &audit.details {
                let value = v.parse::<u64>().map_or_else(|_| json!(v), |n| json!(n));
                data.insert(k.clone(), value);
            }
        }
    }
    let event = |kind, data| NewOutboxEvent {
        event_id: EventId::generate(audit.time),
        time: audit.time,
        kind,
        repository: audit.repository.clone(),
        data,
    };
    let mut events = Vec::new();
    if kind == EventKind::ManifestDeleted {
        // The tags the manifest took with it, before the manifest: a
        // receiver tracking tags sees each go, as with a tag delete.
        for (tag, digest) in untagged {
            let mut gone = data.clone();
            gone.insert("tag".into(), json!(tag.as_str()));
            gone.insert("digest".into(), json!(digest.to_string()));
            events.push(event(EventKind::TagDeleted, Value::Object(gone)));
        }
    }
    events.push(event(kind, Value::Object(data.clone())));
    for (tag, from) in push.map(|p| p.moved).unwrap_or_default() {
        let mut moved = data.clone();
        moved.remove("tags");
        moved.insert("tag".into(), json!(tag.as_str()));
        moved.insert("previous_digest".into(), json!(from.to_string()));
        events.push(event(EventKind::TagMoved, Value::Object(moved)));
    }
    events
}

/// The CloudEvents 1.0 structured-mode JSON of `event`, as sent. `source`
/// is the registry's identity (its external URL): `source` + `id` names
/// the event uniquely, and `id` is its [`EventId`], the same on every
/// retry and never reused (not even after a restore), so a receiver
/// de-duplicates on the pair.
pub fn cloud_event(source: &str, event: &OutboxEvent) -> Value {
    let mut ce = json!({
        "specversion": CLOUDEVENTS_SPEC_VERSION,
        "id": event.event_id.to_string(),
        "source": source,
        "type": event.kind.cloudevents_type(),
        "time": event.time.to_rfc3339(),
        "datacontenttype": "application/json",
        "data": event.data,
    });
    if let Some(r) = &event.repository {
        ce["subject"] = json!(r.as_str());
    }
    ce
}

/// A configured webhook: where events go and which. Its `Debug` shows
/// the URL as [`Webhook::key`] does, never its secrets.
#[derive(Clone)]
pub struct Webhook {
    /// The URL, `http` or `https`.
    pub url: String,
    /// The HMAC-SHA256 key of the signature header.
    pub secret: Secret,
    /// Event kinds sent; empty: all.
    pub events: Vec<EventKind>,
    /// Repositories whose events are sent; empty: all (and events about
    /// no repository, a GC run's, go only to a webhook without patterns).
    pub repositories: Vec<RepoPattern>,
    /// Longest wait for an answer to one delivery.
    pub timeout: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.key())
            .field("secret", &self.secret)
            .field("events", &self.events)
            .field("repositories", &self.repositories)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Webhook {
    /// The key of its delivery state, and how it is shown (the admin
    /// API, logs): the URL as [`redact_url`] shows it, so no credential,
    /// path past its first segment, query value or fragment is stored or
    /// shown; when that hid
    /// anything, followed by ` (` + 8 hex digits of the whole URL's
    /// SHA-256 + `)`, so webhooks differing only in a hidden part (a
    /// `?token=`) keep apart. 32 bits tell a configuration's webhooks
    /// apart (a clash is refused at start as a duplicate) and are too few
    /// to confirm a guessed secret of more entropy than that.
    pub fn key(&self) -> String {
        let shown = redact_url(&self.url);
        if shown == self.url {
            return shown;
        }
        let digest = Sha256::digest(self.url.as_bytes());
        format!("{shown} ({})", hex::encode(&digest[..4]))
    }

    /// The key its delivery state had in the first release of webhooks
    /// (SQLite migration 15, PostgreSQL 10), where only `user:password@`
    /// was hidden; `None` when that is not a different key. Read once at
    /// start, to move such a state to [`Webhook::key`].
    pub fn earlier_key(&self) -> Option<String> {
        let (scheme, rest) = self.url.split_once("://")?;
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let earlier = match rest[..authority_end].rfind('@') {
            Some(at) => format!("{scheme}://***{}", &rest[at..]),
            None => self.url.clone(),
        };
        (earlier != self.key()).then_some(earlier)
    }

    /// Whether `event` passes its filters.
    pub fn wants(&self, event: &OutboxEvent) -> bool {
        if !self.events.is_empty() && !self.events.contains(&event.kind) {
            return false;
        }
        if self.repositories.is_empty() {
            return true;
        }
        event
            .repository
            .as_ref()
            .is_some_and(|r| self.repositories.iter().any(|p| p.matches(r.as_str())))
    }
}

/// Checks a webhook URL: `http` or `https` with a host, at most
/// [`MAX_WEBHOOK_URL_LEN`] bytes.
pub fn check_webhook_url(url: &str) -> Result<()> {
    if url.len() > MAX_WEBHOOK_URL_LEN {
        return Err(bad_url(format!(
            "it is {} bytes long, over the limit of {MAX_WEBHOOK_URL_LEN}",
            url.len()
        )));
    }
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            bad_url(format!(
                "{:?} must start with http:// or https://",
                redact_url(url)
            ))
        })?;
    if host.is_empty() || host.starts_with(['/', '?', '#']) {
        return Err(bad_url(format!("{:?} has no host", redact_url(url))));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad_url(format!(
            "{:?} contains whitespace or a control character",
            redact_url(url)
        )));
    }
    Ok(())
}

fn bad_url(reason: String) -> Error {
    Error::Invalid {
        field: "webhook url",
        reason,
    }
}

/// Where one webhook's delivery stands, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    /// [`Webhook::key`].
    pub webhook: String,
    /// Every outbox event up to this id has been delivered or skipped by
    /// the filters; the next delivery is of the first after it.
    pub delivered: i64,
    /// Failed attempts at the event after `delivered` (0 when the last
    /// attempt succeeded).
    pub attempts: u32,
    pub last_attempt: Option<Timestamp>,
    /// Why the last attempt failed; `None` after a success.
    pub last_error: Option<String>,
    /// When the failed event is tried again.
    pub next_attempt: Option<Timestamp>,
}

impl DeliveryState {
    /// A webhook's state before any delivery: starting after `last`, the
    /// outbox's newest event when it was first configured.
    pub fn new(webhook: String, last: i64) -> DeliveryState {
        DeliveryState {
            webhook,
            delivered: last,
            attempts: 0,
            last_attempt: None,
            last_error: None,
            next_attempt: None,
        }
    }
}

/// How a failed delivery is retried: exponential backoff from `initial`,
/// doubling per failure up to `max`, each wait drawn at random in its
/// upper half so endpoints failing together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 s, doubling to 5 min.
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The wait after the `attempts`-th failure in a row (from 1), before
    /// jitter: `initial * 2^(attempts-1)`, at most `max`.
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let doubled = self
            .initial
            .checked_mul(1u32 << attempts.saturating_sub(1).min(30))
            .unwrap_or(self.max);
        doubled.min(self.max)
    }

    /// The wait after the `attempts`-th failure: uniform in
    /// `[ceiling/2, ceiling]`, `unit` being a draw in `[0, 1)`.
    pub fn wait(&self, attempts: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempts);
        ceiling / 2 + ceiling.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }
}

/// One webhook's delivery state for the admin API: its configuration
/// (secret parts of the URL hidden, the secret never) and where delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookStatus {
    /// The URL with every secret part hidden ([`Webhook::key`]).
    pub url: String,
    /// Kinds sent; empty: all.
    pub events: Vec<EventKind>,
    /// Repository patterns; empty: all.
    pub repositories: Vec<String>,
    /// The last outbox id delivered or skipped.
    pub delivered: i64,
    /// Outbox events after `delivered`, before the filters: an upper
    /// bound of what is still to send.
    pub pending: u64,
    pub attempts: u32,
    pub last_attempt: Option<Timestamp>,
    pub last_error: Option<String>,
    pub next_attempt: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn audit(t: EventType, details: &[(&str, &str)]) -> NewAuditEvent {
        NewAuditEvent {
            time: Timestamp::from_millis(1_700_000_000_000),
            event_type: t,
            actor_id: Some("alice".into()),
            repository: Some(RepoName::new("team-a/app").unwrap()),
            digest: Some(Digest::sha256_of(b"m")),
            ip: None,
            details: details
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn a_push_reports_itself_and_each_tag_it_moved() {
        let media = MediaType::new("application/vnd.oci.image.manifest.v1+json").unwrap();
        let old = Digest::sha256_of(b"old");
        let moved = [(Tag::new("latest").unwrap(), old.clone())];
        let events = outbox_events(
            &audit(EventType::ManifestPushed, &[("tag", "latest,v1")]),
            Some(StoreFacts::Push(PushFacts {
                media_type: &media,
                size: 42,
                moved: &moved,
            })),
        );
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, EventKind::ManifestPushed);
        assert_eq!(events[0].data["tags"], json!(["latest", "v1"]));
        assert_eq!(events[0].data["size"], json!(42));
        assert_eq!(events[0].data["actor"], json!("alice"));
        assert_eq!(events[1].kind, EventKind::TagMoved);
        assert_eq!(events[1].data["tag"], json!("latest"));
        assert_eq!(events[1].data["previous_digest"], json!(old.to_string()));
    }

    #[test]
    fn only_reported_changes_make_events() {
        assert!(outbox_events(&audit(EventType::ManifestPulled, &[]), None).is_empty());
        assert!(outbox_events(&audit(EventType::BlobDeleted, &[]), None).is_empty());
        let quota = outbox_events(
            &audit(
                EventType::QuotaExceeded,
                &[("scope", "team-a/"), ("limit_bytes", "10")],
            ),
            None,
        );
        assert_eq!(quota[0].kind, EventKind::QuotaExceeded);
        assert_eq!(quota[0].data["scope"], json!("team-a/"));
        assert_eq!(quota[0].data["limit_bytes"], json!(10));
        let tag = outbox_events(&audit(EventType::TagDeleted, &[("reference", "v1")]), None);
        assert_eq!(tag[0].data["tag"], json!("v1"));
    }

    #[test]
    fn a_deleted_tag_names_the_digest_it_pointed_at() {
        let d = Digest::sha256_of(b"tagged");
        let gone = [(Tag::new("v1").unwrap(), d.clone())];
        let mut a = audit(EventType::TagDeleted, &[("reference", "v1")]);
        a.digest = None;
        let events = outbox_events(&a, Some(StoreFacts::Untagged(&gone)));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data["tag"], json!("v1"));
        assert_eq!(events[0].data["digest"], json!(d.to_string()));
    }

    #[test]
    fn a_manifest_delete_reports_each_tag_it_took_first() {
        let a = audit(EventType::ManifestDeleted, &[]);
        let d = a.digest.clone().unwrap();
        let gone = [
            (Tag::new("latest").unwrap(), d.clone()),
            (Tag::new("v1").unwrap(), d.clone()),
        ];
        let events = outbox_events(&a, Some(StoreFacts::Untagged(&gone)));
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::TagDeleted,
                EventKind::TagDeleted,
                EventKind::ManifestDeleted
            ]
        );
        for (e, tag) in events.iter().zip(["latest", "v1"]) {
            assert_eq!(e.data["tag"], json!(tag));
            assert_eq!(e.data["digest"], json!(d.to_string()));
            assert_eq!(e.data["repository"], json!("team-a/app"));
        }
        assert!(events[2].data.get("tag").is_none());
    }

    #[test]
    fn event_ids_are_uuid_v7_distinct_and_read_back() {
        let a = audit(EventType::ManifestDeleted, &[]);
        let first = outbox_events(&a, None)[0].event_id;
        let second = outbox_events(&a, None)[0].event_id;
        assert_ne!(first, second, "the same change twice: two ids");
        let text = first.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "7", "version 7: {text}");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
        // The millisecond time leads: 1_700_000_000_000 = 0x18bcfe56800.
        assert!(text.starts_with("018bcfe5-6800-"), "{text}");
        assert_eq!(text.parse::<EventId>().unwrap(), first);
        let err = "7".parse::<EventId>().unwrap_err().to_string();
        assert!(err.contains("not a UUID"), "{err}");
    }

    #[test]
    fn a_cloud_event_has_the_required_attributes() {
        let event_id = EventId::generate(Timestamp::from_millis(0));
        let e = OutboxEvent {
            id: 7,
            event_id,
            time: Timestamp::from_millis(0),
            kind: EventKind::TagDeleted,
            repository: Some(RepoName::new("a/b").unwrap()),
            data: json!({"tag": "v1"}),
        };
        let ce = cloud_event("https://mcr.example", &e);
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["id"], event_id.to_string(), "the stored id, not the row");
        assert_eq!(ce["source"], "https://mcr.example");
        assert_eq!(ce["type"], "dev.mcr.tag.deleted");
        assert_eq!(ce["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(ce["subject"], "a/b");
        assert_eq!(ce["datacontenttype"], "application/json");
        assert_eq!(ce["data"]["tag"], "v1");
    }

    #[test]
    fn kinds_parse_by_short_name_or_type_and_name_the_allowed_ones() {
        assert_eq!(
            "tag.moved".parse::<EventKind>().unwrap(),
            EventKind::TagMoved
        );
        assert_eq!(
            "dev.mcr.gc.completed".parse::<EventKind>().unwrap(),
            EventKind::GcCompleted
        );
        let err = "blob.pulled".parse::<EventKind>().unwrap_err().to_string();
        assert!(
            err.contains("manifest.pushed") && err.contains("quota.exceeded"),
            "{err}"
        );
    }

    #[test]
    fn filters_select_kinds_and_repositories() {
        let hook = Webhook {
            url: "https://ci.example/h".into(),
            secret: Secret::new("s"),
            events: vec![EventKind::TagDeleted],
            repositories: vec![RepoPattern::new("team-a/*").unwrap()],
            timeout: Duration::from_secs(5),
        };
        let event = |kind, repo: Option<&str>| OutboxEvent {
            id: 1,
            event_id: EventId::generate(Timestamp::from_millis(0)),
            time: Timestamp::from_millis(0),
            kind,
            repository: repo.map(|r| RepoName::new(r).unwrap()),
            data: json!({}),
        };
        assert!(hook.wants(&event(EventKind::TagDeleted, Some("team-a/app"))));
        assert!(!hook.wants(&event(EventKind::TagDeleted, Some("team-b/app"))));
        assert!(!hook.wants(&event(EventKind::ManifestPushed, Some("team-a/app"))));
        assert!(!hook.wants(&event(EventKind::TagDeleted, None)));
    }

    #[test]
    fn urls_are_checked_and_credentials_redacted() {
        assert!(check_webhook_url("https://ci.example/hooks").is_ok());
        assert!(check_webhook_url("http://127.0.0.1:9/h").is_ok());
        for bad in [
            "ftp://x/",
            "ci.example/h",
            "https://",
            "https:///x",
            "http://a b/",
        ] {
            assert!(check_webhook_url(bad).is_err(), "{bad}");
        }
        assert!(check_webhook_url(&format!("https://x/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn a_key_hides_secrets_and_keeps_webhooks_apart() {
        let hook = |url: &str| Webhook {
            url: url.into(),
            secret: Secret::new("s"),
            events: Vec::new(),
            repositories: Vec::new(),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(hook("https://ci.example/h").key(), "https://ci.example/h");
        let one = hook("https://ci.example/h?token=first-s3cret").key();
        let two = hook("https://ci.example/h?token=second-s3cret").key();
        assert_ne!(one, two, "differing only in the token");
        for key in [&one, &two] {
            assert!(key.starts_with("https://ci.example/h?token=*** ("), "{key}");
            assert!(!key.contains("s3cret"), "{key}");
        }
        assert_eq!(one, hook("https://ci.example/h?token=first-s3cret").key());
        let user = hook("https://u:pw@ci.example/h").key();
        assert!(user.starts_with("https://***@ci.example/h ("), "{user}");
        let path = hook("https://hooks.example/services/T0/B0/s3cret");
        assert!(path
            .key()
            .starts_with("https://hooks.example/services/*** ("));
        assert!(!format!("{path:?}").contains("s3cret"), "{path:?}");
        assert_eq!(hook("https://ci.example/h").earlier_key(), None);
        assert_eq!(
            path.earlier_key().as_deref(),
            Some("https://hooks.example/services/T0/B0/s3cret")
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(1), Duration::from_secs(1));
        assert_eq!(b.ceiling(4), Duration::from_secs(8));
        assert_eq!(b.ceiling(20), Duration::from_secs(300));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(300));
        assert_eq!(b.wait(4, 0.0), Duration::from_secs(4));
        assert_eq!(b.wait(4, 1.0), Duration::from_secs(8));
    }
}
