//! The one error type of the engine.
//!
//! Each variant names a condition a caller can act on; the HTTP and gRPC
//! edges map variants to status codes in one place each. Ports return this
//! type too, so an adapter can report `ManifestBlobUnknown` from inside the
//! transaction that discovered it.

use crate::digest::Digest;
use crate::names::RepoName;
use crate::principal::Action;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value failed validation; `field` names it for the caller.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },

    #[error("repository name invalid: {0}")]
    NameInvalid(String),
    #[error("tag invalid: {0}")]
    TagInvalid(String),
    #[error("digest invalid: {0}")]
    DigestInvalid(String),
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },

    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest is {size} bytes, over the limit of {limit} bytes")]
    ManifestTooLarge { size: u64, limit: u64 },
    #[error("manifest references blob {0}, which is not in the repository")]
    ManifestBlobUnknown(Digest),
    #[error("index references manifest {0}, which is not in the repository")]
    ManifestChildUnknown(Digest),

    #[error("repository {0} not known")]
    NameUnknown(RepoName),
    #[error("manifest {0} not known")]
    ManifestUnknown(String),
    #[error("blob {0} not known in this repository")]
    BlobUnknown(Digest),
    #[error("upload {0} not known")]
    UploadUnknown(String),
    #[error("upload invalid: {0}")]
    UploadInvalid(String),
    /// A chunk did not start where the upload ends.
    #[error("chunk starts at {got}, but the upload has {expected} bytes")]
    RangeInvalid { expected: u64, got: u64 },
    #[error("requested range not satisfiable for {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("operation unsupported: {0}")]
    Unsupported(String),

    /// The caller's credentials were missing or not valid.
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    #[error("{subject} may not {action} {}", repo_label(.repository))]
    Denied {
        subject: String,
        action: Action,
        repository: Option<RepoName>,
    },

    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("conflict: {0}")]
    Conflict(String),

    /// A dependency (identity service, database) could not be reached.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Storage failed underneath; the message is for logs and operators.
    #[error("storage error: {0}")]
    Storage(String),
}

fn repo_label(repo: &Option<RepoName>) -> String {
    match repo {
        Some(r) => format!("repository {r}"),
        None => "the registry".to_string(),
    }
}

impl Error {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub fn storage(err: impl std::fmt::Display) -> Self {
        Error::Storage(err.to_string())
    }

    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        Error::NotFound {
            kind,
            id: id.to_string(),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Storage(e.to_string())
    }
}
