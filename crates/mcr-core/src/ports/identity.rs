//! The `TokenValidator` port: who holds a token, and logging in.

use std::fmt;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::Result;
use crate::principal::Principal;
use crate::time::Timestamp;

/// A token or password. Its `Debug` and `Display` never show the value, so
/// it cannot leak into a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A token handed out by a login.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    #[serde(serialize_with = "expose")]
    pub token: Secret,
    pub expires_at: Timestamp,
}

fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

/// Validates bearer tokens and logs users in.
///
/// Errors: `Error::Unauthenticated` for bad credentials or an invalid,
/// expired or revoked token; `Error::Unavailable` when the identity service
/// cannot answer (the edge must not turn that into a 401, which would make
/// clients prompt for a password again).
#[async_trait]
pub trait TokenValidator: Send + Sync + 'static {
    async fn validate(&self, token: &Secret) -> Result<Principal>;
    async fn login(&self, username: &str, password: &Secret) -> Result<IssuedToken>;
    /// Revokes a token where the identity service supports it.
    async fn logout(&self, token: &Secret) -> Result<()>;
}
