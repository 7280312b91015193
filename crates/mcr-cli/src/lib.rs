//! # mcr-cli: the MCR binaries
//!
//! `mcrsrv` ([`server`]) is the daemon and the only composition root: it
//! reads the configuration, names the concrete adapters, wires them into
//! `mcr_core`, and owns serving and shutdown. `mcrctl`, the admin CLI over
//! REST or gRPC, joins it in a later step.

pub mod server;
