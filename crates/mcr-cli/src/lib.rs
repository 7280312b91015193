//! # mcr-cli: the MCR binaries
//!
//! `mcrsrv` ([`server`]) is the daemon and the only composition root: it
//! reads the configuration, names the concrete adapters, wires them into
//! `mcr_core`, and owns serving and shutdown. `mcrctl` ([`ctl`]) is the
//! admin CLI, over the REST or the gRPC admin API. `mcr-web` serves the
//! web UI of the `mcr-web` crate ([`server::web`]), through the same
//! listener as `mcrsrv`.

pub mod ctl;
pub mod server;
mod tls;

/// What `mcrsrv --version` and `mcrctl --version` print after the name:
/// the crate version and the git commit built from (`unknown` when built
/// outside a git checkout without `MCR_GIT_COMMIT`; see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MCR_GIT_COMMIT"),
    ")"
);
