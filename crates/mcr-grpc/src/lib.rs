//! # mcr-grpc: the gRPC edge of MCR
//!
//! The tonic services generated from `proto/mcr/v1` ([`pb`]):
//! `RegistryService`, `PolicyService`, `AuditService` and `AdminService`.
//! Like the REST handlers in `mcr-http`, each RPC parses its request
//! ([`convert`]), calls one [`Registry`] use case and maps the result; the
//! one mapping from engine errors to status codes is [`error::status`].
//! No business rule lives here.
//!
//! Every request passes the interceptor chain of [`interceptors`]: request
//! log and [`metrics`] (method, peer, code, duration; never the token) →
//! authentication of the `authorization: Bearer` metadata (Health, Ready
//! and Login bypass it) → admin role check for admin RPCs.
//!
//! [`router`] gives the services with their interceptors, for any server;
//! [`serve`] runs them on a listener, plain or TLS 1.3. [`client`] connects
//! a [`tonic::transport::Channel`] the same way, for `mcrctl` and `mcr-web`.

pub mod client;
pub mod convert;
pub mod error;
pub mod interceptors;
pub mod metrics;
mod serve;
mod services;

use std::sync::Arc;

use mcr_core::registry::Registry;
use tokio_util::task::TaskTracker;
use tonic::service::Routes;

/// The protobuf well-known types the messages use (`Timestamp`).
pub use prost_types;
pub use serve::{serve, Conn, ServeLimits};

/// The messages and the generated clients and servers of `mcr.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("mcr.v1");
}

/// Largest request message accepted, in bytes; admin requests are small.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The four services behind the interceptor chain, ready for
/// `tonic::transport::Server::add_routes` or, through
/// [`Routes::into_axum_router`], any hyper server. Work that outlives a
/// call (a GC run) is spawned on `tasks`, whose owner waits for it on
/// shutdown. Build the routes after the program installed its metrics
/// recorder, if any ([`metrics`]).
pub fn router(registry: Arc<Registry>, tasks: TaskTracker) -> Routes {
    use pb::admin_service_server::AdminServiceServer;
    use pb::audit_service_server::AuditServiceServer;
    use pb::policy_service_server::PolicyServiceServer;
    use pb::registry_service_server::RegistryServiceServer;

    let api = services::Api::new(Arc::clone(&registry), tasks);
    let routes = Routes::new(
        RegistryServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES),
    )
    .add_service(PolicyServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
    .add_service(AuditServiceServer::new(api.clone()).max_decoding_message_size(MAX_REQUEST_BYTES))
    .add_service(AdminServiceServer::new(api).max_decoding_message_size(MAX_REQUEST_BYTES));
    Routes::from(
        routes
            .into_axum_router()
            .layer(interceptors::InterceptorLayer::new(registry)),
    )
}
