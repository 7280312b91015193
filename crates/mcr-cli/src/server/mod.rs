//! The daemon: configuration, the composition root that wires concrete
//! adapters into the engine, serving with graceful shutdown, the
//! background tasks it owns, and the metrics listener; and the web UI's
//! serving ([`web`]).

pub mod config;
mod conn;
pub mod db_lock;
pub mod dev;
pub mod listen;
pub mod metrics;
pub mod run;
pub mod snapshot;
pub mod tasks;
pub mod web;

/// Logs to standard error at `level` (default `info`; `MCR_LOG` wins),
/// with colour only for a person at a terminal, not in journald.
pub fn init_logging(level: Option<&str>) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MCR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or("info")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
