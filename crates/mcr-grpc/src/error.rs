//! The one mapping from engine errors to gRPC status codes.

use mcr_core::{Error, StorageErrorKind};
use tonic::{Code, Status};

/// The status for an engine error. Storage failures are logged in full and
/// answered by their kind only (their text may hold paths and SQL that are
/// the operator's business): `UNAVAILABLE` when a retry may succeed,
/// `RESOURCE_EXHAUSTED` when the storage is full, `INTERNAL` otherwise.
pub fn status(e: Error) -> Status {
    let code = match &e {
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::Denied { .. }
        | Error::TagRefused(_)
        | Error::QuotaExceeded(_)
        | Error::ReadOnlyMirror { .. } => Code::PermissionDenied,
        Error::NotFound { .. }
        | Error::NameUnknown(_)
        | Error::ManifestUnknown(_)
        | Error::BlobUnknown(_)
        | Error::UploadUnknown(_) => Code::NotFound,
        Error::Invalid { .. }
        | Error::NameInvalid(_)
        | Error::TagInvalid(_)
        | Error::DigestInvalid(_)
        | Error::DigestMismatch { .. }
        | Error::ManifestInvalid(_)
        | Error::ManifestTooLarge { .. }
        | Error::BlobTooLarge { .. }
        | Error::ManifestBlobUnknown(_)
        | Error::ManifestChildUnknown(_)
        | Error::UploadInvalid(_)
        | Error::RangeInvalid { .. } => Code::InvalidArgument,
        Error::RangeNotSatisfiable { .. } => Code::OutOfRange,
        Error::Unsupported(_) => Code::Unimplemented,
        // The engine's conflicts are states that forbid the operation now
        // (a garbage collection already running), not entities that exist.
        Error::Conflict(_) => Code::FailedPrecondition,
        Error::Unavailable(_) => Code::Unavailable,
        Error::TooManyRequests { .. } => Code::ResourceExhausted,
        Error::Storage(s) => {
            tracing::error!(error = %e, kind = ?s.kind(), "request failed");
            let code = match s.kind() {
                StorageErrorKind::Unavailable => Code::Unavailable,
                StorageErrorKind::NoSpace => Code::ResourceExhausted,
                _ => Code::Internal,
            };
            return Status::new(code, s.kind().client_message());
        }
    };
    let mut status = Status::new(code, e.to_string());
    if let Error::TooManyRequests { retry_after, .. } = &e {
        // The HTTP header's name and meaning, for clients that back off.
        let secs = mcr_core::error::retry_secs(*retry_after);
        status.metadata_mut().insert("retry-after", secs.into());
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_core::principal::Action;

    #[test]
    fn maps_each_kind_of_error() {
        let cases = [
            (Error::Unauthenticated("x".into()), Code::Unauthenticated),
            (
                Error::Denied {
                    subject: "u".into(),
                    action: Action::PolicyManage,
                    repository: None,
                },
                Code::PermissionDenied,
            ),
            (Error::not_found("policy rule", 7), Code::NotFound),
            (Error::invalid("priority", "bad"), Code::InvalidArgument),
            (Error::NameInvalid("A".into()), Code::InvalidArgument),
            (Error::Conflict("gc".into()), Code::FailedPrecondition),
            (Error::Unavailable("mcias".into()), Code::Unavailable),
        ];
        for (e, code) in cases {
            assert_eq!(status(e).code(), code);
        }
        for (kind, code) in [
            (StorageErrorKind::Permanent, Code::Internal),
            (StorageErrorKind::ReadOnly, Code::Internal),
            (StorageErrorKind::NoSpace, Code::ResourceExhausted),
            (StorageErrorKind::Unavailable, Code::Unavailable),
        ] {
            let s = status(Error::Storage(mcr_core::StorageError::new(
                kind,
                "opening /srv/mcr/mcr.db",
                "disk I/O error",
            )));
            assert_eq!(s.code(), code, "{kind:?}");
            assert!(!s.message().contains("/srv"), "{}", s.message());
        }
    }
}
