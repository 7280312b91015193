//! `HttpEventSink`: the `EventSink` port over HTTP(S), posting each
//! CloudEvent (structured mode, `application/cloudevents+json`) to its
//! webhook, signed.
//!
//! The signature lets a receiver check that an event comes from the
//! registry and was not replayed long after: `X-MCR-Timestamp` is the
//! Unix time of the attempt in seconds, and `X-MCR-Signature-256` is
//! `sha256=` and the lowercase hex HMAC-SHA256, keyed with the webhook's
//! secret, of the timestamp, a `.`, and the body exactly as received
//! ([`signature`]). A receiver recomputes it, compares in constant time,
//! and refuses a timestamp too far from its clock. Each retry is signed
//! anew with its own timestamp; the event's `id` stays the same.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use mcr_core::events::Webhook;
use mcr_core::ports::EventSink;
use mcr_core::{Error, Result};
use sha2::Sha256;

use crate::http_client::{self, error_chain, Versions};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-MCR-Signature-256";
/// The header carrying the signed Unix time, in seconds.
pub const TIMESTAMP_HEADER: &str = "X-MCR-Timestamp";
/// The media type of a structured-mode CloudEvent (CloudEvents HTTP
/// binding § 3.2).
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json; charset=utf-8";
/// Longest wait for a connection, whatever the webhook's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp`
/// (Unix seconds) with `secret`: `sha256=<hex HMAC-SHA256(secret,
/// "<timestamp>." + body)>`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts events to webhooks over one connection pool.
#[derive(Debug, Clone)]
pub struct HttpEventSink {
    http: reqwest::Client,
}

impl HttpEventSink {
    /// A sink trusting the Mozilla roots. Redirects are not followed: a
    /// webhook answering 3xx has moved, and its URL in the configuration
    /// should say where (the attempt fails and is retried).
    pub fn new() -> Result<HttpEventSink> {
        let tls = http_client::config("webhook", None, Versions::Tls13And12)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("mcr/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::Unavailable(format!("cannot set up the webhooks' HTTP client: {e}"))
            })?;
        Ok(HttpEventSink { http })
    }
}

#[async_trait]
impl EventSink for HttpEventSink {
    async fn send(&self, hook: &Webhook, body: Bytes) -> Result<()> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sig = signature(hook.secret.expose().as_bytes(), timestamp, &body);
        let sent = self
            .http
            .post(&hook.url)
            .timeout(hook.timeout)
            .header(reqwest::header::CONTENT_TYPE, CLOUDEVENTS_JSON)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, sig)
            .body(body)
            .send()
            .await;
        // Errors without the URL: it may hold credentials.
        let resp = sent.map_err(|e| Error::Unavailable(error_chain(&e.without_url())))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        Err(Error::Unavailable(format!(
            "{} answered {status}",
            hook.key()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // HMAC-SHA256("key", "1700000000.{}"), computed by Python's
        // hmac module: what a receiver in another language computes.
        let got = signature(b"key", 1_700_000_000, b"{}");
        assert_eq!(
            got,
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
        assert_ne!(got, signature(b"other", 1_700_000_000, b"{}"));
        assert_ne!(got, signature(b"key", 1_700_000_001, b"{}"));
    }
}
