//! The four services. Each method takes the caller the interceptors
//! established, parses its request, calls one use case and maps the result.

mod admin;
mod audit;
mod policy;
mod registry;

use std::sync::Arc;

use mcr_core::registry::Registry;

/// What every service holds: the engine.
#[derive(Clone)]
pub(crate) struct Api {
    registry: Arc<Registry>,
}

impl Api {
    pub(crate) fn new(registry: Arc<Registry>) -> Api {
        Api { registry }
    }
}
