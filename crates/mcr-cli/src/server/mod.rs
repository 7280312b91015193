//! The daemon: configuration, the composition root that wires concrete
//! adapters into the engine, and serving with graceful shutdown.

pub mod config;
mod conn;
pub mod dev;
pub mod listen;
pub mod run;
pub mod snapshot;
