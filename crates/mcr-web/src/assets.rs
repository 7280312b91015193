//! The static files, embedded in the binary: htmx (vendored, BSD Zero
//! Clause licence in `assets/htmx.LICENSE`), the copy buttons' script and
//! the stylesheet. Nothing is fetched from elsewhere.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::UiError;

/// (name, content type, bytes).
const FILES: [(&str, &str, &[u8]); 3] = [
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/htmx.min.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/style.css"),
    ),
];

/// `GET /static/{file}`.
pub async fn file(Path(name): Path<String>) -> Result<Response, UiError> {
    let (_, content_type, bytes) = FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| UiError::NotFound(format!("no static file {name:?}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, *content_type),
            // They change only with the binary.
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        *bytes,
    )
        .into_response())
}
