//! The daemon: configuration, the composition root that wires concrete
//! adapters into the engine, serving with graceful shutdown, the
//! background tasks it owns, and the metrics listener.

pub mod config;
mod conn;
pub mod dev;
pub mod listen;
pub mod metrics;
pub mod run;
pub mod snapshot;
pub mod tasks;
