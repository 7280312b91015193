//! The UI over a real gRPC server (`mcr_grpc::serve` on a loopback port,
//! over the engine on in-memory fakes), driven request by request with the
//! cookies a browser would keep: login and its refusals, the session and
//! CSRF cookies' attributes, CSRF refusals that change nothing, escaping
//! of registry values, the admin pages' 403, the security headers, and a
//! readable page when `mcrsrv` is down. The browser suite
//! (`crates/mcr-cli/tests/browser.rs`) does the same through Chromium.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use mcr_core::digest::Digest;
use mcr_core::names::{Reference, RepoName};
use mcr_core::ports::ByteStream;
use mcr_core::testing::{admin, TestRegistry, TEST_PASSWORD};
use mcr_web::{Web, WebOptions};
use tokio::net::TcpListener;
use tower::ServiceExt;

struct Ui {
    t: TestRegistry,
    app: Router,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Ui {
    let t = TestRegistry::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let registry = Arc::clone(&t.registry);
    tokio::spawn(async move {
        let limits = mcr_grpc::ServeLimits::default();
        let tasks = tokio_util::task::TaskTracker::new();
        mcr_grpc::serve(listener, None, registry, limits, tasks, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let app = app_for(&format!("http://{addr}"), &t);
    Ui {
        t,
        app,
        _stop: stop,
    }
}

fn app_for(grpc: &str, t: &TestRegistry) -> Router {
    let channel = mcr_grpc::client::connect_lazy(grpc, None).unwrap();
    mcr_web::app(Web::new(WebOptions {
        channel,
        grpc_addr: grpc.to_string(),
        key: axum_extra::extract::cookie::Key::generate(),
        secure_cookies: true,
        registry_host: Some("registry.test:5000".into()),
        clock: t.clock.clone(),
    }))
}

/// A browser: the cookies it holds, sent with every request.
#[derive(Default)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    html: String,
}

impl Browser {
    async fn send(&mut self, app: &Router, req: Request<Body>) -> Page {
        let mut req = req;
        let cookies: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !cookies.is_empty() {
            req.headers_mut()
                .insert(header::COOKIE, cookies.join("; ").parse().unwrap());
        }
        let resp = app.clone().oneshot(req).await.unwrap();
        for c in resp.headers().get_all(header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            headers,
            html: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&mut self, app: &Router, path: &str) -> Page {
        self.send(app, Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    async fn post(&mut self, app: &Router, path: &str, form: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(app, req).await
    }

    /// The CSRF token of the last page's forms.
    fn csrf(page: &Page) -> String {
        let at = page
            .html
            .find("name=\"csrf\" value=\"")
            .expect("a form with the CSRF token");
        page.html[at + 19..at + 19 + 64].to_string()
    }

    async fn login(&mut self, app: &Router, user: &str) -> Page {
        let form = self.get(app, "/login").await;
        let csrf = Browser::csrf(&form);
        self.post(
            app,
            "/login",
            &[
                ("csrf", &csrf),
                ("username", user),
                ("password", TEST_PASSWORD),
            ],
        )
        .await
    }
}

fn body(data: &[u8]) -> ByteStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from(data.to_vec()))]))
}

/// Pushes an image whose manifest carries `annotation` as `note`.
async fn push(t: &TestRegistry, repo: &str, tag: &str, annotation: &str) -> Digest {
    let repo = RepoName::new(repo).unwrap();
    let config = format!("{{\"tag\":\"{tag}\"}}");
    let config = t
        .registry
        .upload_blob(
            &admin(),
            &repo,
            &Digest::sha256_of(config.as_bytes()),
            body(config.as_bytes()),
        )
        .await
        .unwrap();
    let raw = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.digest.to_string(), "size": config.size},
        "layers": [],
        "annotations": {"note": annotation},
    })
    .to_string();
    t.registry
        .put_manifest(
            &admin(),
            &repo,
            &Reference::parse(tag).unwrap(),
            None,
            Bytes::from(raw),
        )
        .await
        .unwrap()
        .digest
}

#[tokio::test]
async fn login_sets_strict_cookies_and_the_dashboard_shows_the_registry() {
    let ui = start().await;
    push(&ui.t, "team/app", "v1", "x").await;
    let mut b = Browser::default();
    let login = b.get(&ui.app, "/login").await;
    assert_eq!(login.status, StatusCode::OK);
    let csrf_cookie = login
        .headers
        .get(header::SET_COOKIE)
        .expect("a CSRF cookie")
        .to_str()
        .unwrap()
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(csrf_cookie.contains(attr), "{csrf_cookie}");
    }
    let done = b.login(&ui.app, "user").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    let session = done
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("mcr_session="))
        .expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Max-Age="] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(
        !session.contains("token") && !session.contains("user"),
        "the session is sealed: {session}"
    );
    let dash = b.get(&ui.app, "/").await;
    assert_eq!(dash.status, StatusCode::OK);
    assert!(dash.html.contains("id=\"repo-count\">1<"), "{}", dash.html);
    assert!(dash.html.contains("team/app"));
    assert!(!dash.html.contains("gc-state"), "GC is for admins");
    let policy = dash.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"));

    // Logging out ends the session.
    let csrf = Browser::csrf(&dash);
    let out = b.post(&ui.app, "/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after = b.get(&ui.app, "/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.headers[header::LOCATION], "/login");
}

#[tokio::test]
async fn guests_and_wrong_passwords_are_refused_with_a_reason() {
    let ui = start().await;
    let mut b = Browser::default();
    let page = b.login(&ui.app, "guest").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.html.contains("only the guest role"), "{}", page.html);
    assert!(!b.cookies.contains_key("mcr_session"));
    let form = b.get(&ui.app, "/login").await;
    let csrf = Browser::csrf(&form);
    let page = b
        .post(
            &ui.app,
            "/login",
            &[("csrf", &csrf), ("username", "user"), ("password", "nope")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.html.contains("Wrong username or password"));
}

#[tokio::test]
async fn a_state_change_without_the_csrf_token_is_refused_and_changes_nothing() {
    let ui = start().await;
    let mut b = Browser::default();
    b.login(&ui.app, "admin").await;
    let rule = [
        ("priority", "5"),
        ("effect", "deny"),
        ("actions", "registry:pull"),
    ];
    let page = b.post(&ui.app, "/policy/rules", &rule).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.html.contains("not sent by this site"), "{}", page.html);
    let mut with_wrong = rule.to_vec();
    with_wrong.push(("csrf", "0"));
    let page = b.post(&ui.app, "/policy/rules", &with_wrong).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(ui.t.registry.list_rules(&admin()).await.unwrap().len() <= 4);
    let stored =
        ui.t.registry
            .list_rules(&admin())
            .await
            .unwrap()
            .into_iter()
            .filter(|r| !r.is_builtin())
            .count();
    assert_eq!(stored, 0, "nothing was created");

    // With the token it works, and a refused rule shows the API's words.
    let policy = b.get(&ui.app, "/policy").await;
    let csrf = Browser::csrf(&policy);
    let mut good = rule.to_vec();
    good.push(("csrf", &csrf));
    let page = b.post(&ui.app, "/policy/rules", &good).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    let mut bad = good.clone();
    bad[0] = ("priority", "0");
    let page = b.post(&ui.app, "/policy/rules", &bad).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.html.contains("priority"), "{}", page.html);
}

#[tokio::test]
async fn registry_values_render_as_text() {
    let ui = start().await;
    let digest = push(&ui.t, "app", "v1", "<script>alert(1)</script><b>bold</b>").await;
    let mut b = Browser::default();
    b.login(&ui.app, "user").await;
    let page = b
        .get(&ui.app, &format!("/repositories/app/-/manifests/{digest}"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    // askama writes `<` and `>` as character references.
    let escaped = ["&lt;script&gt;alert(1)", "&#60;script&#62;alert(1)"];
    assert!(
        escaped.iter().any(|e| page.html.contains(e)),
        "the annotation is shown, escaped: {}",
        page.html
    );
    assert!(!page.html.contains("<script>alert"));
    assert!(!page.html.contains("<b>bold"));
    // No inline script anywhere: every <script> has a src.
    for tag in page.html.split("<script").skip(1) {
        assert!(tag.trim_start().starts_with("src="), "inline script: {tag}");
    }
}

#[tokio::test]
async fn admin_pages_answer_not_allowed_to_others() {
    let ui = start().await;
    let mut b = Browser::default();
    b.login(&ui.app, "user").await;
    for path in ["/policy", "/audit", "/gc", "/policy/explain?subject=x"] {
        let page = b.get(&ui.app, path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.html.contains("Not allowed"), "{path}: {}", page.html);
    }
}

/// An address or form the page cannot read is refused with the error page,
/// not the extractor's plain text.
#[tokio::test]
async fn unreadable_addresses_and_forms_get_the_error_page() {
    let ui = start().await;
    let mut b = Browser::default();
    b.login(&ui.app, "admin").await;
    let csrf = Browser::csrf(&b.get(&ui.app, "/policy").await);
    let pages = [
        b.get(&ui.app, "/audit?offset=-1").await,
        b.post(&ui.app, "/policy/rules/abc/delete", &[("csrf", &csrf)])
            .await,
        b.post(&ui.app, "/policy/rules/1/enabled", &[("csrf", &csrf)])
            .await,
    ];
    for page in pages {
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.html);
        let content_type = page.headers[header::CONTENT_TYPE].to_str().unwrap();
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(page.html.contains("cannot be read"), "{}", page.html);
    }
}

#[tokio::test]
async fn an_unreachable_registry_gets_a_readable_page() {
    let t = TestRegistry::new();
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let app = app_for(&format!("http://{addr}"), &t);
    let mut b = Browser::default();
    let page = b.login(&app, "user").await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{}", page.html);
    assert!(page.html.contains("cannot be reached"), "{}", page.html);
    assert!(page.html.contains(&addr.to_string()));
}

/// Review of issue 18, defect 1: when mcrsrv no longer accepts a
/// session's token (here revoked by a logout elsewhere), the browser is
/// sent to log in with the session cookie removed — not back and forth
/// between the page and `/login` — and an htmx request gets
/// `HX-Redirect`.
#[tokio::test]
async fn a_session_mcrsrv_refuses_ends_at_the_login_form() {
    let ui = start().await;
    let mut b = Browser::default();
    b.login(&ui.app, "user").await;
    let mut stale = Browser {
        cookies: b.cookies.clone(),
    };
    let mut htmx_stale = Browser {
        cookies: b.cookies.clone(),
    };
    let page = b.get(&ui.app, "/").await;
    let csrf = Browser::csrf(&page);
    b.post(&ui.app, "/logout", &[("csrf", &csrf)]).await;

    let page = stale.get(&ui.app, "/repositories").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    assert_eq!(page.headers[header::LOCATION], "/login");
    assert!(
        !stale.cookies.contains_key(mcr_web::session::SESSION_COOKIE),
        "the session cookie is removed: {:?}",
        page.headers.get_all(header::SET_COOKIE)
    );
    let form = stale.get(&ui.app, "/login").await;
    assert_eq!(form.status, StatusCode::OK, "the login form, no redirect");

    let req = Request::get("/repositories?sort=size")
        .header("hx-request", "true")
        .body(Body::empty())
        .unwrap();
    let page = htmx_stale.send(&ui.app, req).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers["hx-redirect"], "/login");
    assert!(!htmx_stale
        .cookies
        .contains_key(mcr_web::session::SESSION_COOKIE));
}

/// Review of issue 18 (second round), D1–D3: a form older than the
/// session — a second logout, a tab still open after logging out, a login
/// form from before mcr-web's key changed — goes to the login page, not
/// to a 403 that reloading cannot clear; a logged-in user's form without
/// the token is still refused.
#[tokio::test]
async fn stale_forms_go_to_the_login_page() {
    let ui = start().await;
    let mut b = Browser::default();
    b.login(&ui.app, "admin").await;
    let page = b.get(&ui.app, "/policy").await;
    let csrf = Browser::csrf(&page);
    let mut other_tab = Browser {
        cookies: b.cookies.clone(),
    };
    let page = b.post(&ui.app, "/logout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let again = b.post(&ui.app, "/logout", &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.html);
    assert_eq!(again.headers[header::LOCATION], "/login");

    // The other tab still holds the session cookie of a revoked token
    // and the old CSRF cookie; its session ended at mcrsrv, so its form
    // goes to the login page once mcr-web learns that.
    other_tab.cookies.remove(mcr_web::session::SESSION_COOKIE);
    let req = Request::post("/policy/rules/1/enabled")
        .header("hx-request", "true")
        .header("x-csrf-token", "0".repeat(64))
        .body(Body::empty())
        .unwrap();
    let page = other_tab.send(&ui.app, req).await;
    assert_eq!(page.headers["hx-redirect"], "/login", "{}", page.html);

    let mut stale = Browser::default();
    stale.get(&ui.app, "/login").await;
    let page = stale
        .post(
            &ui.app,
            "/login",
            &[
                ("csrf", &"1".repeat(64)),
                ("username", "admin"),
                ("password", TEST_PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    assert_eq!(page.headers[header::LOCATION], "/login");
    let form = stale.get(&ui.app, "/login").await;
    assert_eq!(form.status, StatusCode::OK);
}
