//! Call metrics, through the `metrics` facade: the program that serves
//! the routes installs the recorder (mcrsrv: Prometheus), or none.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `mcr_grpc_requests_total` | counter | `service`, `method`, `code` |
//! | `mcr_grpc_request_duration_seconds` | histogram | `service`, `method` |
//!
//! `service` and `method` come from the proto files (`mcr.v1.AdminService`,
//! `Ready`); a path that names no RPC is `unknown` in both, so a client
//! cannot mint label values. `code` is the gRPC status code's canonical
//! name (`OK`, `UNAVAILABLE`).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use metrics::{Counter, Histogram};
use tonic::Code;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/methods.rs"));
}

pub use generated::METHODS;

pub const REQUESTS: &str = "mcr_grpc_requests_total";
pub const DURATION: &str = "mcr_grpc_request_duration_seconds";

const UNKNOWN: &str = "unknown";

/// The handles of every RPC, made when the routes are built.
pub(crate) struct GrpcMetrics {
    methods: HashMap<&'static str, MethodMetrics>,
    unknown: MethodMetrics,
}

struct MethodMetrics {
    service: &'static str,
    method: &'static str,
    duration: Histogram,
    /// By code; a method answers few distinct ones.
    codes: RwLock<Vec<(Code, Counter)>>,
}

impl MethodMetrics {
    fn new(service: &'static str, method: &'static str) -> MethodMetrics {
        MethodMetrics {
            service,
            method,
            duration: metrics::histogram!(DURATION, "service" => service, "method" => method),
            codes: RwLock::default(),
        }
    }
}

impl GrpcMetrics {
    pub(crate) fn new() -> GrpcMetrics {
        metrics::describe_counter!(
            REQUESTS,
            "gRPC calls answered, by service, method and status code"
        );
        metrics::describe_histogram!(
            DURATION,
            metrics::Unit::Seconds,
            "Time to answer a gRPC call"
        );
        GrpcMetrics {
            methods: METHODS
                .iter()
                .map(|&(path, service, method)| (path, MethodMetrics::new(service, method)))
                .collect(),
            unknown: MethodMetrics::new(UNKNOWN, UNKNOWN),
        }
    }

    /// Records one call to `path` that answered `code` after `elapsed`.
    pub(crate) fn record(&self, path: &str, code: Code, elapsed: Duration) {
        let m = self.methods.get(path).unwrap_or(&self.unknown);
        m.duration.record(elapsed.as_secs_f64());
        let known = m
            .codes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, counter)| counter.clone());
        let counter = known.unwrap_or_else(|| {
            let mut codes = m.codes.write().unwrap_or_else(|p| p.into_inner());
            if let Some((_, c)) = codes.iter().find(|(c, _)| *c == code) {
                return c.clone();
            }
            let c = metrics::counter!(
                REQUESTS,
                "service" => m.service,
                "method" => m.method,
                "code" => code_name(code),
            );
            codes.push((code, c.clone()));
            c
        });
        counter.increment(1);
    }
}

/// The canonical name of a status code, as gRPC's documentation spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_proto_files_is_known() {
        assert!(METHODS.contains(&("/mcr.v1.AdminService/Ready", "mcr.v1.AdminService", "Ready")));
        let rpcs = [
            include_str!("../../../proto/mcr/v1/admin.proto"),
            include_str!("../../../proto/mcr/v1/audit.proto"),
            include_str!("../../../proto/mcr/v1/policy.proto"),
            include_str!("../../../proto/mcr/v1/registry.proto"),
        ]
        .iter()
        .flat_map(|f| f.lines())
        .filter(|l| l.trim_start().starts_with("rpc "))
        .count();
        assert_eq!(METHODS.len(), rpcs);
    }
}
