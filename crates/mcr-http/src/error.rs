//! Mapping engine errors to HTTP: the OCI error table for `/v2/`, and the
//! `{"error": "..."}` form for `/v1/`. Each mapping lives here once.
//!
//! Storage failures answer 503 when the storage is unavailable (a retry
//! may succeed) and 500 otherwise, with a message naming only the kind
//! (full, read-only); the whole error goes to the log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mcr_core::{Error, StorageErrorKind};
use serde_json::json;

use crate::auth::Challenge;

/// An error answered in the OCI JSON form.
pub struct OciError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub challenge: Option<Box<Challenge>>,
    /// For 416 on uploads: where the upload ends now.
    pub range: Option<u64>,
    /// For 416 on uploads: the session to resume.
    pub location: Option<String>,
    /// For 429: seconds until the client may try again.
    pub retry_after: Option<u64>,
}

impl OciError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> OciError {
        OciError {
            status,
            code,
            message: message.into(),
            challenge: None,
            range: None,
            location: None,
            retry_after: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>, challenge: Challenge) -> OciError {
        OciError {
            challenge: Some(Box::new(challenge)),
            ..OciError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
        }
    }

    pub fn unsupported(message: impl Into<String>) -> OciError {
        OciError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message)
    }
}

/// The OCI code and status for each engine error.
fn oci_code(e: &Error) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match e {
        Error::Invalid { .. } => (S::BAD_REQUEST, "UNSUPPORTED"),
        Error::NameInvalid(_) => (S::BAD_REQUEST, "NAME_INVALID"),
        Error::TagInvalid(_) => (S::BAD_REQUEST, "TAG_INVALID"),
        Error::DigestInvalid(_) | Error::DigestMismatch { .. } => {
            (S::BAD_REQUEST, "DIGEST_INVALID")
        }
        Error::ManifestInvalid(_) => (S::BAD_REQUEST, "MANIFEST_INVALID"),
        Error::ManifestTooLarge { .. } | Error::BlobTooLarge { .. } => {
            (S::PAYLOAD_TOO_LARGE, "SIZE_INVALID")
        }
        Error::ManifestBlobUnknown(_) | Error::ManifestChildUnknown(_) => {
            (S::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
        }
        Error::NameUnknown(_) => (S::NOT_FOUND, "NAME_UNKNOWN"),
        Error::ManifestUnknown(_) => (S::NOT_FOUND, "MANIFEST_UNKNOWN"),
        Error::BlobUnknown(_) => (S::NOT_FOUND, "BLOB_UNKNOWN"),
        Error::UploadUnknown(_) => (S::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        Error::UploadInvalid(_) => (S::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
        Error::RangeInvalid { .. } => (S::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        Error::RangeNotSatisfiable { .. } => (S::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN"),
        Error::Unsupported(_) => (S::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
        Error::Unauthenticated(_) => (S::UNAUTHORIZED, "UNAUTHORIZED"),
        Error::Denied { .. }
        | Error::TagRefused(_)
        | Error::QuotaExceeded(_)
        | Error::ReadOnlyMirror { .. } => (S::FORBIDDEN, "DENIED"),
        Error::NotFound { .. } => (S::NOT_FOUND, "NAME_UNKNOWN"),
        Error::Conflict(_) => (S::CONFLICT, "UNSUPPORTED"),
        Error::TooManyRequests { .. } => (S::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
        Error::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        Error::Storage(s) if s.kind() == StorageErrorKind::Unavailable => {
            (S::SERVICE_UNAVAILABLE, "UNAVAILABLE")
        }
        Error::Storage(_) => (S::INTERNAL_SERVER_ERROR, "UNKNOWN"),
    }
}

impl From<Error> for OciError {
    fn from(e: Error) -> OciError {
        let (status, code) = oci_code(&e);
        let range = match &e {
            Error::RangeInvalid { expected, .. } => Some(*expected),
            _ => None,
        };
        let message = public_message(&e, status);
        OciError {
            range,
            retry_after: retry_after(&e),
            ..OciError::new(status, code, message)
        }
    }
}

/// The `Retry-After` seconds of a refusal that passes with time.
fn retry_after(e: &Error) -> Option<u64> {
    match e {
        Error::TooManyRequests { retry_after, .. } => {
            Some(mcr_core::error::retry_secs(*retry_after))
        }
        _ => None,
    }
}

/// Sets `Retry-After` when there is one.
fn set_retry_after(resp: &mut Response, secs: Option<u64>) {
    if let Some(secs) = secs {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}

/// Storage failures are logged in full and answered by their kind only:
/// their text may hold paths and SQL that are the operator's business.
fn public_message(e: &Error, status: StatusCode) -> String {
    match e {
        Error::Storage(s) => {
            tracing::error!(error = %e, kind = ?s.kind(), "request failed");
            s.kind().client_message().to_string()
        }
        Error::Unavailable(_) | Error::Unsupported(_) => e.to_string(),
        _ if status.is_server_error() => {
            tracing::error!(error = %e, "request failed");
            "internal error; see the registry's log".to_string()
        }
        _ => e.to_string(),
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let body =
            json!({"errors": [{"code": self.code, "message": self.message, "detail": null}]});
        let mut resp = (self.status, axum::Json(body)).into_response();
        let headers = resp.headers_mut();
        if let Some(challenge) = self.challenge {
            if let Ok(v) = HeaderValue::from_str(&challenge.header_value()) {
                headers.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if let Some(loc) = self.location {
            if let Ok(v) = HeaderValue::from_str(&loc) {
                headers.insert(header::LOCATION, v);
            }
        }
        if let Some(end) = self.range {
            if let Ok(v) = HeaderValue::from_str(&crate::oci::range_header(end)) {
                headers.insert(header::RANGE, v);
            }
        }
        set_retry_after(&mut resp, self.retry_after);
        resp
    }
}

/// An error of the admin API: `{"error": "..."}` with the right status.
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// For 429: seconds until the client may try again.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        use StatusCode as S;
        let status = match &e {
            Error::Invalid { .. }
            | Error::NameInvalid(_)
            | Error::TagInvalid(_)
            | Error::DigestInvalid(_) => S::BAD_REQUEST,
            Error::NotFound { .. } | Error::NameUnknown(_) => S::NOT_FOUND,
            Error::Conflict(_) => S::CONFLICT,
            // Something this registry's wiring cannot do (a snapshot of a
            // store without them), not a method the route lacks.
            Error::Unsupported(_) => S::NOT_IMPLEMENTED,
            _ => oci_code(&e).0,
        };
        let message = public_message(&e, status);
        ApiError {
            retry_after: retry_after(&e),
            ..ApiError::new(status, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(json!({"error": self.message}))).into_response();
        set_retry_after(&mut resp, self.retry_after);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcr_core::StorageError;

    fn storage(kind: StorageErrorKind) -> Error {
        Error::Storage(StorageError::new(
            kind,
            "opening /srv/mcr/mcr.db",
            "password=hunter2 in the source",
        ))
    }

    #[test]
    fn storage_errors_answer_by_kind_and_never_with_their_text() {
        for (kind, status, code, says) in [
            (
                StorageErrorKind::Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "try again later",
            ),
            (
                StorageErrorKind::NoSpace,
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "storage is full",
            ),
            (
                StorageErrorKind::ReadOnly,
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "read-only",
            ),
            (
                StorageErrorKind::Permanent,
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "internal error",
            ),
        ] {
            let oci = OciError::from(storage(kind));
            assert_eq!((oci.status, oci.code), (status, code), "{kind:?}");
            assert!(oci.message.contains(says), "{kind:?}: {}", oci.message);
            let api = ApiError::from(storage(kind));
            assert_eq!(api.status, status, "{kind:?}");
            for m in [&oci.message, &api.message] {
                assert!(!m.contains("/srv") && !m.contains("hunter2"), "{m}");
            }
        }
    }

    #[test]
    fn an_unsupported_admin_operation_is_not_implemented() {
        let api = ApiError::from(Error::Unsupported("no snapshots here".into()));
        assert_eq!(api.status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(api.message, "operation unsupported: no snapshots here");
    }
}
