//! What goes wrong, as a page: one status and one message for each kind
//! of failure, mapped from `mcrsrv`'s gRPC codes in one place.

use askama::Template;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tonic::Code;

use crate::session::ended_session;

/// A failure a page reports.
#[derive(Debug)]
pub enum UiError {
    /// No session, or `mcrsrv` no longer accepts its token.
    LoggedOut,
    /// The account may not do this (403).
    NotAllowed(String),
    NotFound(String),
    /// The request was refused as invalid; the message says why (400).
    Invalid(String),
    /// Another operation is under way (409).
    Conflict(String),
    /// `mcrsrv` cannot be reached, or a service it needs is down (502).
    Unreachable(String),
    /// `mcrsrv` failed (502).
    Server(String),
    /// A state change without this site's CSRF token (403).
    Csrf,
    /// A request body over the limit (413).
    TooLarge,
}

impl UiError {
    /// The failure a gRPC status stands for.
    pub fn from_status(s: tonic::Status, addr: &str) -> UiError {
        let message = s.message().to_string();
        match s.code() {
            Code::Unauthenticated => UiError::LoggedOut,
            Code::PermissionDenied => UiError::NotAllowed(message),
            Code::NotFound => UiError::NotFound(message),
            Code::InvalidArgument | Code::OutOfRange => UiError::Invalid(message),
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
                UiError::Conflict(message)
            }
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                UiError::Unreachable(format!(
                    "the registry at {addr} cannot be reached or is not ready ({message}); \
                     check that mcrsrv is running and try again"
                ))
            }
            _ => UiError::Server(message),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            UiError::LoggedOut => StatusCode::UNAUTHORIZED,
            UiError::NotAllowed(_) | UiError::Csrf => StatusCode::FORBIDDEN,
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::Invalid(_) => StatusCode::BAD_REQUEST,
            UiError::Conflict(_) => StatusCode::CONFLICT,
            UiError::Unreachable(_) | UiError::Server(_) => StatusCode::BAD_GATEWAY,
            UiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The words of the message, for a form to show beside its fields.
    pub fn message(&self) -> String {
        match self {
            UiError::LoggedOut => "your session has ended; log in again".into(),
            UiError::NotAllowed(m) => format!("Your account is not allowed to do this. ({m})"),
            UiError::NotFound(m)
            | UiError::Invalid(m)
            | UiError::Conflict(m)
            | UiError::Unreachable(m)
            | UiError::Server(m) => m.clone(),
            UiError::Csrf => "This form was not sent by this site's page, or the page is too \
                              old. Reload the page and try again."
                .into(),
            UiError::TooLarge => format!(
                "The request is larger than the {} KiB a form may send.",
                crate::csrf::MAX_BODY / 1024
            ),
        }
    }

    fn title(&self) -> &'static str {
        match self {
            UiError::LoggedOut => "Logged out",
            UiError::NotAllowed(_) | UiError::Csrf => "Not allowed",
            UiError::NotFound(_) => "Not found",
            UiError::Invalid(_) | UiError::TooLarge => "Refused",
            UiError::Conflict(_) => "Busy",
            UiError::Unreachable(_) => "Registry unreachable",
            UiError::Server(_) => "Registry error",
        }
    }
}

/// A request whose address or form the page cannot read (a rule id that
/// is not a number, `offset=-1`, a form missing a field) gets the error
/// page like any other refusal, not the extractor's plain text; handlers
/// take such parts through `WithRejection<_, UiError>`.
fn unreadable(what: &str, detail: String) -> UiError {
    UiError::Invalid(format!(
        "This {what} cannot be read ({detail}). Go back and follow a link or send the form again."
    ))
}

impl From<PathRejection> for UiError {
    fn from(r: PathRejection) -> UiError {
        unreadable("address", r.body_text())
    }
}

impl From<QueryRejection> for UiError {
    fn from(r: QueryRejection) -> UiError {
        unreadable("address", r.body_text())
    }
}

impl From<axum_extra::extract::QueryRejection> for UiError {
    fn from(r: axum_extra::extract::QueryRejection) -> UiError {
        unreadable("address", r.body_text())
    }
}

impl From<axum_extra::extract::FormRejection> for UiError {
    fn from(r: axum_extra::extract::FormRejection) -> UiError {
        unreadable("form", r.body_text())
    }
}

impl From<FormRejection> for UiError {
    fn from(r: FormRejection) -> UiError {
        unreadable("form", r.body_text())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: String,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        if let UiError::LoggedOut = self {
            return ended_session();
        }
        let page = ErrorPage {
            title: self.title(),
            message: self.message(),
        };
        match page.render() {
            Ok(html) => (self.status(), Html(html)).into_response(),
            Err(e) => (self.status(), format!("{}: {e}", self.title())).into_response(),
        }
    }
}
