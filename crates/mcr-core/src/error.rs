//! The one error type of the engine, and the storage failure it carries.
//!
//! Each variant names a condition a caller can act on; the HTTP and gRPC
//! edges map variants to status codes in one place each. Ports return this
//! type too, so an adapter can report `ManifestBlobUnknown` from inside the
//! transaction that discovered it, and a [`StorageError`] of the right
//! [`StorageErrorKind`] when the storage underneath fails.

use std::fmt;
use std::io;

use crate::digest::Digest;
use crate::names::RepoName;
use crate::policy::TagRefusal;
use crate::principal::Action;
use crate::quota::QuotaRefusal;

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
    /// An upload session that is not known: the whole message, from
    /// [`Error::upload_unknown`] or the parse of a malformed id.
    #[error("{0}")]
    UploadUnknown(String),
    #[error("upload invalid: {0}")]
    UploadInvalid(String),
    /// An upload would grow past the largest blob the registry accepts.
    #[error("blob would be over the limit of {limit} bytes")]
    BlobTooLarge { limit: u64 },
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

    /// A tag action refused by a rule: the tag is immutable for this
    /// principal (HTTP 403 `DENIED`); the message names the rule and how
    /// an admin lifts it.
    #[error("{0}")]
    TagRefused(Box<TagRefusal>),

    /// A push that would take a repository or namespace past its quota
    /// (HTTP 403 `DENIED`); nothing was linked or stored.
    #[error("{0}")]
    QuotaExceeded(Box<QuotaRefusal>),

    /// A push or delete into a pull-through cache's mirror.
    #[error(
        "{repository} is a read-only mirror of {upstream}: pushes and deletes are refused \
         (push to a repository outside the mirror's prefix; its cache empties through \
         `mcrctl proxy drop` or eviction)"
    )]
    ReadOnlyMirror {
        repository: RepoName,
        upstream: String,
    },

    /// A limit on the caller was reached; `retry_after` says when to try
    /// again (HTTP 429 `TOOMANYREQUESTS` with `Retry-After`).
    #[error("too many {what}; try again in {}s", retry_secs(*.retry_after))]
    TooManyRequests {
        what: String,
        retry_after: std::time::Duration,
    },

    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("conflict: {0}")]
    Conflict(String),

    /// A dependency (identity service, database) could not be reached.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Storage failed underneath: what was being done, why, and whether
    /// trying again later may help. Its text is for logs and operators;
    /// the edges answer clients by its kind only.
    #[error("storage error: {0}")]
    Storage(StorageError),
}

/// What kind of storage failure happened, so a use case or an edge can act
/// on it (modelled on `object_store`'s and `std::io`'s error kinds, folded
/// to what a registry does differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The backend could not be reached or is overloaded; the same request
    /// may succeed later (connection refused or reset, a timeout, no free
    /// pooled connection, a database lock held too long, S3's 503
    /// `SlowDown`). HTTP 503, gRPC `UNAVAILABLE`.
    Unavailable,
    /// No space left (`ENOSPC`, `EDQUOT`, a bucket quota): writes fail
    /// until an operator frees space; reads go on.
    NoSpace,
    /// The storage refuses writes (`EROFS`, a read-only database or
    /// replica) until an operator makes it writable again; reads go on.
    ReadOnly,
    /// Anything else: the same request will fail the same way (permissions,
    /// corrupt data, a bug). Only an operator can help.
    Permanent,
}

impl StorageErrorKind {
    /// Whether the same request may succeed if retried later, unchanged.
    pub fn is_retryable(self) -> bool {
        self == StorageErrorKind::Unavailable
    }

    /// What a client is told about a storage failure of this kind: what
    /// happened and what helps, never the details (those go to the log).
    /// The HTTP and gRPC edges both answer with it.
    pub fn client_message(self) -> &'static str {
        match self {
            StorageErrorKind::Unavailable => {
                "the registry's storage is unavailable for now; try again later"
            }
            StorageErrorKind::NoSpace => {
                "the registry's storage is full; nothing was stored (an operator must free space)"
            }
            StorageErrorKind::ReadOnly => {
                "the registry's storage is read-only; nothing was stored \
                 (an operator must make it writable)"
            }
            StorageErrorKind::Permanent => "internal error; see the registry's log",
        }
    }

    /// The kind of an I/O error, by what `std` makes of the OS error.
    pub fn of_io(e: &io::Error) -> StorageErrorKind {
        use io::ErrorKind as K;
        match e.kind() {
            K::StorageFull | K::QuotaExceeded => StorageErrorKind::NoSpace,
            K::ReadOnlyFilesystem => StorageErrorKind::ReadOnly,
            K::TimedOut
            | K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::ResourceBusy
            | K::WouldBlock
            | K::Interrupted => StorageErrorKind::Unavailable,
            _ => StorageErrorKind::Permanent,
        }
    }
}

impl fmt::Display for StorageErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageErrorKind::Unavailable => "storage unavailable",
            StorageErrorKind::NoSpace => "no space left in storage",
            StorageErrorKind::ReadOnly => "storage is read-only",
            StorageErrorKind::Permanent => "storage failure",
        })
    }
}

/// A storage failure: its [`StorageErrorKind`], the operation that failed
/// (`op`, in words: "creating an upload session: opening /srv/mcr.db"),
/// and the underlying error as its [`source`](std::error::Error::source),
/// so a caller can still downcast it (to an `io::Error`, say).
///
/// Displays as `<op>: <source>`: the whole story for a log line. It may
/// name paths and statements, never a secret; the edges still answer
/// clients by the kind only.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct StorageError {
    kind: StorageErrorKind,
    op: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StorageError {
    pub fn new(
        kind: StorageErrorKind,
        op: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StorageError {
        StorageError {
            kind,
            op: op.into(),
            source: source.into(),
        }
    }

    /// A failure that retrying will not fix.
    pub fn permanent(
        op: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StorageError {
        StorageError::new(StorageErrorKind::Permanent, op, source)
    }

    /// A backend that could not answer now.
    pub fn unavailable(
        op: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StorageError {
        StorageError::new(StorageErrorKind::Unavailable, op, source)
    }

    /// An I/O failure, its kind taken from the OS error
    /// ([`StorageErrorKind::of_io`]).
    pub fn io(op: impl Into<String>, source: io::Error) -> StorageError {
        StorageError::new(StorageErrorKind::of_io(&source), op, source)
    }

    pub fn kind(&self) -> StorageErrorKind {
        self.kind
    }

    /// What was being done, outermost step first.
    pub fn op(&self) -> &str {
        &self.op
    }

    /// Names the enclosing step: the op becomes `<outer>: <op>`.
    pub fn context(mut self, outer: impl fmt::Display) -> StorageError {
        self.op = format!("{outer}: {}", self.op);
        self
    }
}

fn repo_label(repo: &Option<RepoName>) -> String {
    match repo {
        Some(r) => format!("repository {r}"),
        None => "the registry".to_string(),
    }
}

/// Whole seconds to wait, rounded up so a client never retries too soon
/// (and never told 0).
pub fn retry_secs(d: std::time::Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl Error {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// A [`StorageErrorKind::Permanent`] storage error: `op` failed with
    /// `source`.
    pub fn storage(
        op: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Storage(StorageError::permanent(op, source))
    }

    /// The storage failure, if this is one.
    pub fn as_storage(&self) -> Option<&StorageError> {
        match self {
            Error::Storage(s) => Some(s),
            _ => None,
        }
    }

    /// Names the step a storage error happened in (see
    /// [`StorageError::context`]); other errors, the domain's, pass
    /// through untouched.
    pub fn context(self, outer: impl fmt::Display) -> Self {
        match self {
            Error::Storage(s) => Error::Storage(s.context(outer)),
            other => other,
        }
    }

    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        Error::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    /// `UploadUnknown` for a well-formed id no session has (any more).
    pub fn upload_unknown(id: impl fmt::Display) -> Self {
        Error::UploadUnknown(format!(
            "upload {id} not known (finished, cancelled or expired); {NEW_UPLOAD}"
        ))
    }

    /// `UploadUnknown` for text that cannot be an upload id.
    pub fn upload_id_malformed(text: &str) -> Self {
        Error::UploadUnknown(format!(
            "{:?} is not an upload id (32 lowercase hex characters, from the \
             Location of the POST that started the upload); {NEW_UPLOAD}",
            text.chars().take(64).collect::<String>()
        ))
    }
}

/// What a client told of an unknown upload does next.
const NEW_UPLOAD: &str = "start an upload with POST /v2/<name>/blobs/uploads/";

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::Storage(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_error_keeps_its_source_kind_and_steps() {
        let enospc = io::Error::from(io::ErrorKind::StorageFull);
        let e = Error::from(StorageError::io("writing upload /u/1", enospc)).context("appending");
        let s = e.as_storage().expect("a storage error");
        assert_eq!(s.kind(), StorageErrorKind::NoSpace);
        assert!(!s.kind().is_retryable());
        assert_eq!(s.op(), "appending: writing upload /u/1");
        let source = std::error::Error::source(s).expect("the source is kept");
        assert_eq!(
            source.downcast_ref::<io::Error>().map(io::Error::kind),
            Some(io::ErrorKind::StorageFull)
        );
        assert!(
            e.to_string()
                .starts_with("storage error: appending: writing upload /u/1: "),
            "{e}"
        );
        assert!(matches!(
            Error::NotFound {
                kind: "x",
                id: "1".into()
            }
            .context("ignored"),
            Error::NotFound { .. }
        ));
    }

    #[test]
    fn io_errors_map_to_kinds() {
        let kind = |k: io::ErrorKind| StorageErrorKind::of_io(&io::Error::from(k));
        assert_eq!(
            kind(io::ErrorKind::ReadOnlyFilesystem),
            StorageErrorKind::ReadOnly
        );
        assert_eq!(
            kind(io::ErrorKind::QuotaExceeded),
            StorageErrorKind::NoSpace
        );
        assert_eq!(kind(io::ErrorKind::TimedOut), StorageErrorKind::Unavailable);
        assert!(kind(io::ErrorKind::ConnectionRefused).is_retryable());
        assert_eq!(
            kind(io::ErrorKind::PermissionDenied),
            StorageErrorKind::Permanent
        );
        assert_eq!(kind(io::ErrorKind::NotFound), StorageErrorKind::Permanent);
    }
}
