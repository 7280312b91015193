//! What the adapters record through the `metrics` facade; the program
//! installs the recorder (mcrsrv: Prometheus), or none.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `mcr_token_validations_total` | counter | `result`: `valid`, `invalid` (unknown, expired, revoked, malformed), `error` (the identity service failed) |
//! | `mcr_token_validation_cache_hits_total` | counter | — (validations answered from the adapter's cache: MCIAS answers reused, or tokens the local identity verified before) |
//! | `mcr_mcias_request_duration_seconds` | histogram | `op`: `validate`, `login`, `logout` |
//! | `mcr_mcias_request_failures_total` | counter | `op`: unreachable, timed out, an error status or an unusable answer |
//!
//! Handles are made when an adapter is built: build adapters after the
//! program installed its recorder.

use std::time::Duration;

use mcr_core::{Error, Result};
use metrics::{Counter, Histogram};

pub const TOKEN_VALIDATIONS: &str = "mcr_token_validations_total";
pub const TOKEN_CACHE_HITS: &str = "mcr_token_validation_cache_hits_total";
pub const MCIAS_DURATION: &str = "mcr_mcias_request_duration_seconds";
pub const MCIAS_FAILURES: &str = "mcr_mcias_request_failures_total";

/// Token validations by outcome; each identity adapter keeps one.
pub(crate) struct TokenMetrics {
    valid: Counter,
    invalid: Counter,
    error: Counter,
    cache_hits: Counter,
}

impl TokenMetrics {
    pub(crate) fn new() -> TokenMetrics {
        metrics::describe_counter!(
            TOKEN_VALIDATIONS,
            "Bearer tokens checked, by result: valid, invalid, or error (the identity service failed)"
        );
        metrics::describe_counter!(
            TOKEN_CACHE_HITS,
            "Token validations answered from the identity adapter's cache (MCIAS answers, tokens verified before)"
        );
        TokenMetrics {
            cache_hits: metrics::counter!(TOKEN_CACHE_HITS),
            valid: metrics::counter!(TOKEN_VALIDATIONS, "result" => "valid"),
            invalid: metrics::counter!(TOKEN_VALIDATIONS, "result" => "invalid"),
            error: metrics::counter!(TOKEN_VALIDATIONS, "result" => "error"),
        }
    }

    /// Counts a validation answered from the adapter's cache.
    pub(crate) fn cache_hit(&self) {
        self.cache_hits.increment(1);
    }

    /// Counts a validation's outcome, and hands it back.
    pub(crate) fn record<T>(&self, outcome: Result<T>) -> Result<T> {
        match &outcome {
            Ok(_) => &self.valid,
            Err(Error::Unauthenticated(_)) => &self.invalid,
            Err(_) => &self.error,
        }
        .increment(1);
        outcome
    }
}

/// The MCIAS calls, by operation (as the adapter names it in its errors:
/// `token validation`, `login`, `logout`).
pub(crate) struct MciasMetrics {
    ops: [(&'static str, Histogram, Counter); 3],
}

impl MciasMetrics {
    pub(crate) fn new() -> MciasMetrics {
        metrics::describe_histogram!(
            MCIAS_DURATION,
            metrics::Unit::Seconds,
            "Time MCIAS took to answer, by operation"
        );
        metrics::describe_counter!(
            MCIAS_FAILURES,
            "MCIAS calls that got no usable answer (unreachable, timed out, error status, unreadable)"
        );
        let op = |op: &'static str, label: &'static str| {
            (
                op,
                metrics::histogram!(MCIAS_DURATION, "op" => label),
                metrics::counter!(MCIAS_FAILURES, "op" => label),
            )
        };
        MciasMetrics {
            ops: [
                op("token validation", "validate"),
                op("login", "login"),
                op("logout", "logout"),
            ],
        }
    }

    fn op(&self, op: &str) -> Option<&(&'static str, Histogram, Counter)> {
        self.ops.iter().find(|(o, _, _)| *o == op)
    }

    /// Records how long a call of `op` took to be answered.
    pub(crate) fn answered(&self, op: &str, took: Duration) {
        if let Some((_, duration, _)) = self.op(op) {
            duration.record(took.as_secs_f64());
        }
    }

    /// Counts a call of `op` that got no usable answer.
    pub(crate) fn failed(&self, op: &str) {
        if let Some((_, _, failures)) = self.op(op) {
            failures.increment(1);
        }
    }
}
