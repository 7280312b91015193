//! What every handler shares: the gRPC channel to `mcrsrv`, the cookie
//! key, and how the UI is served.

use std::sync::Arc;

use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;
use mcr_core::time::{Clock, Timestamp};
use tonic::transport::Channel;

use crate::backend::Backend;

/// The UI's state, cheap to clone.
#[derive(Clone)]
pub struct Web {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    key: Key,
    secure_cookies: bool,
    registry_host: Option<String>,
    clock: Arc<dyn Clock>,
}

/// How the UI is wired, as the binary (or `mcrsrv dev`) decides.
pub struct WebOptions {
    /// The channel to `mcrsrv`'s gRPC API (see
    /// `mcr_grpc::client::connect_lazy`), and its address for messages.
    pub channel: Channel,
    pub grpc_addr: String,
    /// Signs and encrypts the cookies.
    pub key: Key,
    /// Mark cookies `Secure`: always, but for plain-HTTP `mcrsrv dev`.
    pub secure_cookies: bool,
    /// The registry's host for pull references (`registry.example:8443`).
    pub registry_host: Option<String>,
    /// What "now" is, for cookie lifetimes and session expiry.
    pub clock: Arc<dyn Clock>,
}

impl Web {
    pub fn new(o: WebOptions) -> Web {
        Web {
            inner: Arc::new(Inner {
                backend: Backend::new(o.channel, o.grpc_addr),
                key: o.key,
                secure_cookies: o.secure_cookies,
                registry_host: o.registry_host,
                clock: o.clock,
            }),
        }
    }

    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    pub fn secure_cookies(&self) -> bool {
        self.inner.secure_cookies
    }

    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// How a client pulls `name` at `reference` (`@sha256:…` or `:tag`).
    pub fn pull_ref(&self, name: &str, reference: &str) -> String {
        match &self.inner.registry_host {
            Some(host) => format!("{host}/{name}{reference}"),
            None => format!("{name}{reference}"),
        }
    }
}

impl FromRef<Web> for Key {
    fn from_ref(web: &Web) -> Key {
        web.inner.key.clone()
    }
}
