//! The pace a request body must keep: it may go no longer than
//! `body_timeout` without a byte, and after a grace of `body_timeout` it
//! must have come at `min_body_rate` on average (Apache's `mod_reqtimeout`
//! `MinRate`).
//!
//! Why both: the first alone lets a client that sends one byte every few
//! seconds hold its request, its connection slot and an upload's
//! half-written chunk for as long as it likes (review of issue 16, D1).
//! The clocks start when the body is first read, so time a handler spends
//! before reading (waiting for an upload's lock) is not the client's.
//! A body that falls behind ends in [`BodyTooSlow`], which the handlers
//! answer with 408, discarding a half-sent chunk, as
//! [`crate::oci::body`] says.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The pace request bodies must keep ([`crate::HttpConfig::body_timeout`]
/// and [`crate::HttpConfig::min_body_rate`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Longest wait for a byte, and the grace before the rate counts.
    pub timeout: Duration,
    /// Least average bytes per second after the grace; 0 for none.
    pub min_rate: u64,
}

impl Pace {
    /// When the body fails if no byte comes before: `timeout` after the
    /// last byte, or when `received` bytes fall behind the rate.
    fn deadline(&self, started: Instant, received: u64, now: Instant) -> Instant {
        let idle = now + self.timeout;
        if self.min_rate == 0 {
            return idle;
        }
        let earned = Duration::from_millis(received.saturating_mul(1000) / self.min_rate);
        idle.min(started + self.timeout + earned)
    }
}

/// Why a request body was cut off: it fell behind its [`Pace`].
#[derive(Debug)]
pub(crate) struct BodyTooSlow;

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body stopped arriving, or came too slowly")
    }
}

impl std::error::Error for BodyTooSlow {}

/// Middleware: puts every request body under `pace`.
pub(crate) async fn pace_bodies(pace: Pace, request: Request, next: Next) -> Response {
    next.run(request.map(|body| Body::new(PacedBody::new(body, pace))))
        .await
}

/// A request body that fails with [`BodyTooSlow`] once it falls behind
/// its [`Pace`].
struct PacedBody {
    inner: Body,
    pace: Pace,
    /// When the body was first read.
    started: Option<Instant>,
    /// Bytes received so far.
    received: u64,
    timer: Pin<Box<Sleep>>,
}

impl PacedBody {
    fn new(inner: Body, pace: Pace) -> PacedBody {
        PacedBody {
            inner,
            pace,
            started: None,
            received: 0,
            // Set on the first read.
            timer: Box::pin(tokio::time::sleep(pace.timeout)),
        }
    }
}

impl http_body::Body for PacedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let started = match this.started {
            Some(started) => started,
            None => {
                let now = Instant::now();
                this.timer.as_mut().reset(now + this.pace.timeout);
                *this.started.insert(now)
            }
        };
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                let deadline = this.pace.deadline(started, this.received, Instant::now());
                this.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow)))),
                Poll::Pending => Poll::Pending,
            },
            done => done,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_the_sooner_of_the_idle_wait_and_the_rate() {
        let pace = Pace {
            timeout: Duration::from_secs(10),
            min_rate: 100,
        };
        let t0 = Instant::now();
        // At the start: the grace.
        assert_eq!(pace.deadline(t0, 0, t0), t0 + Duration::from_secs(10));
        // 500 bytes earn 5 s beyond the grace; a byte at 12 s leaves 3 s.
        let at = t0 + Duration::from_secs(12);
        assert_eq!(pace.deadline(t0, 500, at), t0 + Duration::from_secs(15));
        // Far ahead of the rate, only the idle wait counts.
        assert_eq!(pace.deadline(t0, 1 << 30, at), at + Duration::from_secs(10));
        let off = Pace {
            min_rate: 0,
            ..pace
        };
        assert_eq!(off.deadline(t0, 0, at), at + Duration::from_secs(10));
    }
}
