//! The four services. Each method takes the caller the interceptors
//! established, parses its request, calls one use case and maps the result.

mod admin;
mod audit;
mod policy;
mod registry;

use std::sync::Arc;

use mcr_core::registry::Registry;
use tokio_util::task::TaskTracker;

/// What every service holds: the engine, and the tracker that owns work
/// outliving a call (a GC run).
#[derive(Clone)]
pub(crate) struct Api {
    registry: Arc<Registry>,
    tasks: TaskTracker,
}

impl Api {
    pub(crate) fn new(registry: Arc<Registry>, tasks: TaskTracker) -> Api {
        Api { registry, tasks }
    }
}
