//! # mcr-cli: the MCR binaries
//!
//! `mcrsrv` ([`server`]) is the daemon and the only composition root: it
//! reads the configuration, names the concrete adapters, wires them into
//! `mcr_core`, and owns serving and shutdown. `mcrctl` ([`ctl`]) is the
//! admin CLI, over the REST or the gRPC admin API.

pub mod ctl;
pub mod server;
