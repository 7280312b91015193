//! # mcr-cli: the MCR binaries
//!
//! Will own `mcrsrv`, the daemon and the only composition root, and
//! `mcrctl`, the admin CLI over REST or gRPC.
