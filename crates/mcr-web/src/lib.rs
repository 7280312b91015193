//! # mcr-web: the web UI of MCR
//!
//! Will own the `mcr-web` binary: an htmx UI (login, dashboard,
//! repositories, manifests, policy and audit views) that talks to `mcrsrv`
//! over gRPC, with CSRF protection and strict session cookies.
