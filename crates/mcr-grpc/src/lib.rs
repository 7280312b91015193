//! # mcr-grpc: the gRPC admin API of MCR
//!
//! Will own the tonic services generated from `proto/mcr/v1`
//! (RegistryService, PolicyService, AuditService, AdminService) and their
//! interceptors, calling the same `mcr_core` use cases as the REST API.
