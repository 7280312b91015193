//! The one mapping from engine errors to gRPC status codes.

use mcr_core::Error;
use tonic::{Code, Status};

/// The status for an engine error. Storage failures are logged in full and
/// answered vaguely: their text may hold paths and SQL that are the
/// operator's business.
pub fn status(e: Error) -> Status {
    let code = match &e {
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::Denied { .. } => Code::PermissionDenied,
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
        Error::Storage(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %e, "request failed");
        return Status::new(code, "internal error; see the registry's log");
    }
    Status::new(code, e.to_string())
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
        let s = status(Error::Storage("/srv/mcr/mcr.db: disk I/O error".into()));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("/srv"), "{}", s.message());
    }
}
