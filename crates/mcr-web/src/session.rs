//! The session: the bearer token `mcrsrv` issued at login, and who it
//! stands for, kept in the browser in an encrypted cookie.
//!
//! The cookie is sealed with AES-256-GCM by `axum-extra`'s
//! [`PrivateCookieJar`] (the `cookie` crate's private jar), so the browser
//! holds the token only encrypted and cannot change a role it claims.
//! It is `HttpOnly`, `SameSite=Strict`, `Secure` unless the UI is served
//! over plain HTTP for `mcrsrv dev`, and lives until the token expires.
//! The server keeps no session state: every request takes the token from
//! the cookie and `mcrsrv` decides again what it may do.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use mcr_core::principal::{Principal, Role};
use mcr_core::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::state::Web;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mcr_session";

/// Length of a generated session key file, in bytes (the `cookie` crate
/// derives its signing and encryption keys from 64).
const KEY_LEN: usize = 64;

/// A logged-in user: the token and what the UI shows of its principal.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// The bearer token for `mcrsrv`; never shown, logged or put in a URL.
    pub token: String,
    /// When the token expires (milliseconds since the epoch).
    pub expires_at: i64,
    pub subject: String,
    pub username: Option<String>,
    pub roles: Vec<Role>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("token", &"***")
            .field("subject", &self.subject)
            .field("roles", &self.roles)
            .finish()
    }
}

impl Session {
    pub fn new(token: String, expires_at: Timestamp, principal: &Principal) -> Session {
        Session {
            token,
            expires_at: expires_at.as_millis(),
            subject: principal.subject.clone(),
            username: principal.username.clone(),
            roles: principal.roles.clone(),
        }
    }

    /// Whether the admin pages are offered (`mcrsrv` checks again).
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    /// The name the page header shows.
    pub fn name(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.subject)
    }

    /// The cookie that carries this session, sealed with the jar's key.
    pub fn cookie(&self, secure: bool, now: Timestamp) -> Cookie<'static> {
        let value = serde_json::to_string(self).expect("a session serialises");
        let seconds = (self.expires_at - now.as_millis()).max(0) / 1000;
        let mut cookie = base_cookie(SESSION_COOKIE, value, secure);
        cookie.set_max_age(time::Duration::seconds(seconds));
        cookie
    }

    /// The session in `jar`, if there is one that has not expired.
    pub fn from_jar(jar: &PrivateCookieJar, now: Timestamp) -> Option<Session> {
        let cookie = jar.get(SESSION_COOKIE)?;
        let session: Session = serde_json::from_str(cookie.value()).ok()?;
        (session.expires_at > now.as_millis()).then_some(session)
    }
}

/// A cookie with the attributes every cookie of the UI has.
pub fn base_cookie(name: &'static str, value: String, secure: bool) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .build()
}

/// The cookie that removes a cookie of the UI.
pub fn removal(name: &'static str) -> Cookie<'static> {
    Cookie::build(name).path("/").build()
}

/// A handler argument: the logged-in user. Without a live session the
/// request is sent to the login page (htmx requests with `HX-Redirect`,
/// so the whole page goes, not a fragment).
pub struct LoggedIn(pub Session);

impl FromRequestParts<Web> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Response> {
        let jar = PrivateCookieJar::<Key>::from_headers(&parts.headers, Key::from_ref(web));
        match Session::from_jar(&jar, web.now()) {
            Some(s) => Ok(LoggedIn(s)),
            None => Err(to_login(parts.headers.contains_key("hx-request"))),
        }
    }
}

/// Marks the answer to a request whose session `mcrsrv` no longer
/// accepts (its token revoked or signed with a key since replaced), for
/// [`htmx_login`].
#[derive(Debug, Clone, Copy)]
pub struct SessionEnded;

/// The answer when `mcrsrv` refuses a session's token: the session cookie
/// removed (else the login page, finding it, would send the browser back
/// to the page that refused it, for ever) and the browser sent to log in.
pub fn ended_session() -> Response {
    let mut gone = removal(SESSION_COOKIE);
    gone.make_removal();
    let mut resp = (
        [(axum::http::header::SET_COOKIE, gone.to_string())],
        Redirect::to("/login"),
    )
        .into_response();
    resp.extensions_mut().insert(SessionEnded);
    resp
}

/// Middleware: an htmx request whose session ended is answered with
/// `HX-Redirect` (and the cookie's removal) rather than a redirect, which
/// the browser would follow inside the request and swap the login page
/// into a fragment.
pub async fn htmx_login(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let htmx = request.headers().contains_key("hx-request");
    let mut resp = next.run(request).await;
    if htmx && resp.extensions().get::<SessionEnded>().is_some() {
        *resp.status_mut() = axum::http::StatusCode::OK;
        let headers = resp.headers_mut();
        headers.remove(axum::http::header::LOCATION);
        headers.insert(
            "hx-redirect",
            axum::http::HeaderValue::from_static("/login"),
        );
    }
    resp
}

/// Sends the browser to the login page.
pub fn to_login(htmx: bool) -> Response {
    if htmx {
        ([("hx-redirect", "/login")], "").into_response()
    } else {
        Redirect::to("/login").into_response()
    }
}

/// Reads the session key from `path`, or creates one there (mode 0600)
/// if the file does not exist.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<Key> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "web.session_key_file {} is readable by others (mode {mode:o}); chmod 600 it",
                    path.display()
                );
            }
            Key::try_from(bytes.as_slice()).map_err(|_| {
                anyhow::anyhow!(
                    "web.session_key_file {} holds {} bytes; it needs at least {KEY_LEN} \
                     (delete it to have one generated)",
                    path.display(),
                    bytes.len()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; KEY_LEN];
            getrandom::getrandom(&mut bytes)
                .map_err(|e| anyhow::anyhow!("no randomness for the session key: {e}"))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| {
                    format!("cannot create web.session_key_file {}", path.display())
                })?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            Ok(Key::from(&bytes))
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot read web.session_key_file {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_made_once_with_mode_0600_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web/session.key");
        let key = load_or_create_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_key(&path).unwrap().master(), key.master());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_key(&path).unwrap_err().to_string();
        assert!(err.contains("readable by others"), "{err}");
        std::fs::write(dir.path().join("short"), [1u8; 10]).unwrap();
        let short = dir.path().join("short");
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_or_create_key(&short).unwrap_err().to_string();
        assert!(err.contains("at least 64"), "{err}");
    }

    #[test]
    fn a_session_never_shows_its_token() {
        let s = Session {
            token: "secret-token".into(),
            expires_at: 0,
            subject: "alice".into(),
            username: None,
            roles: vec![Role::User],
        };
        assert!(!format!("{s:?}").contains("secret-token"));
    }
}
