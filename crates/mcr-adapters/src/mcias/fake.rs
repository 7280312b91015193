//! A fake MCIAS for tests (feature `fake-mcias`).
//!
//! [`FakeMcias::start`] serves the MCIAS wire contract (`docs/mcias.md`) on
//! `127.0.0.1:<free port>`, over plain HTTP or over TLS with a certificate
//! from a CA it makes on the spot ([`FakeMcias::ca_cert_pem`]). It holds
//! accounts and the tokens it issued, and lets a test look inside and break
//! things: revoke or expire a token, count calls, read the last login's
//! `service_name` and `tags`, answer 500, be slow, drop the logout
//! endpoint, or stop.
//!
//! Other crates' tests enable it as a dev-dependency feature:
//! `mcr-adapters = { workspace = true, features = ["fake-mcias"] }`.
//! Setup failures panic with a message: this is a test fixture.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use mcr_core::principal::AccountType;
use mcr_core::time::{Clock, SystemClock, Timestamp};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// How to start the fake.
#[derive(Clone)]
pub struct FakeMciasOptions {
    /// Serve HTTPS with a certificate for `127.0.0.1` and `localhost`
    /// signed by a fresh CA ([`FakeMcias::ca_cert_pem`]).
    pub tls: bool,
    /// With `tls`, offer TLS 1.2 only (to check that clients refuse it).
    pub tls12_only: bool,
    /// Lifetime of the tokens it issues.
    pub token_ttl: Duration,
    /// Its clock for token expiry; share a `ManualClock` with the code
    /// under test to expire tokens without sleeping.
    pub clock: Arc<dyn Clock>,
}

impl Default for FakeMciasOptions {
    fn default() -> Self {
        FakeMciasOptions {
            tls: false,
            tls12_only: false,
            token_ttl: Duration::from_secs(3600),
            clock: Arc::new(SystemClock),
        }
    }
}

/// An account the fake knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeAccount {
    pub username: String,
    pub password: String,
    /// The `sub` of its tokens.
    pub subject: String,
    pub account_type: AccountType,
    /// Role names as MCIAS sends them (unknown ones allowed).
    pub roles: Vec<String>,
}

impl FakeAccount {
    /// A human account with subject `sub-<username>` and no roles.
    pub fn new(username: &str, password: &str) -> FakeAccount {
        FakeAccount {
            username: username.into(),
            password: password.into(),
            subject: format!("sub-{username}"),
            account_type: AccountType::Human,
            roles: vec![],
        }
    }

    pub fn with_roles(mut self, roles: &[&str]) -> FakeAccount {
        self.roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }

    pub fn system(mut self) -> FakeAccount {
        self.account_type = AccountType::System;
        self
    }
}

/// What the last login asked for (the password is not kept).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoginRecord {
    pub username: String,
    pub service_name: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A running fake MCIAS; stops when dropped.
pub struct FakeMcias {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: bool,
    ca_cert_pem: Option<String>,
    server: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    clock: Arc<dyn Clock>,
    token_ttl: Duration,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    accounts: HashMap<String, FakeAccount>,
    tokens: HashMap<String, IssuedRecord>,
    login_calls: usize,
    validate_calls: usize,
    logout_calls: usize,
    last_login: Option<LoginRecord>,
    failing: bool,
    no_logout: bool,
    delay: Duration,
}

struct IssuedRecord {
    username: String,
    expires_at: Timestamp,
    revoked: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn issue(&self, username: &str) -> String {
        let mut raw = [0u8; 24];
        getrandom::getrandom(&mut raw).expect("the OS has randomness for a fake token");
        let token = format!("fake-mcias-{}", hex::encode(raw));
        let expires_at = self.clock.now().saturating_add(self.token_ttl);
        self.state().tokens.insert(
            token.clone(),
            IssuedRecord {
                username: username.into(),
                expires_at,
                revoked: false,
            },
        );
        token
    }
}

impl FakeMcias {
    /// Starts a fake MCIAS on `127.0.0.1:0` in the current tokio runtime.
    pub async fn start(options: FakeMciasOptions) -> FakeMcias {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake MCIAS to 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("the fake MCIAS listener has an address");
        let (acceptor, ca_cert_pem) = if options.tls {
            let (acceptor, ca) = tls_setup(options.tls12_only);
            (Some(acceptor), Some(ca))
        } else {
            (None, None)
        };
        let shared = Arc::new(Shared {
            clock: options.clock,
            token_ttl: options.token_ttl,
            state: Mutex::new(FakeState::default()),
        });
        let app = Router::new()
            .route("/v1/auth/login", post(login))
            .route("/v1/token/validate", post(validate))
            .route("/v1/auth/logout", post(logout))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(serve(listener, app, acceptor));
        FakeMcias {
            shared,
            addr,
            tls: options.tls,
            ca_cert_pem,
            server: Mutex::new(Some(server)),
        }
    }

    /// The base URL: `http://127.0.0.1:<port>` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The PEM of the CA that signed the server certificate (with `tls`).
    pub fn ca_cert_pem(&self) -> Option<&str> {
        self.ca_cert_pem.as_deref()
    }

    /// Adds or replaces an account.
    pub fn add_account(&self, account: FakeAccount) {
        self.shared
            .state()
            .accounts
            .insert(account.username.clone(), account);
    }

    /// Issues a token for `username` as a login would, without a request
    /// (`None` for an unknown account).
    pub fn issue_token(&self, username: &str) -> Option<String> {
        if !self.shared.state().accounts.contains_key(username) {
            return None;
        }
        Some(self.shared.issue(username))
    }

    /// Revokes a token: it validates as `valid: false` from now on.
    pub fn revoke(&self, token: &str) {
        if let Some(t) = self.shared.state().tokens.get_mut(token) {
            t.revoked = true;
        }
    }

    /// Makes a token expire now, by the fake's clock.
    pub fn expire(&self, token: &str) {
        let now = self.shared.clock.now();
        if let Some(t) = self.shared.state().tokens.get_mut(token) {
            t.expires_at = now;
        }
    }

    /// Whether a token is known and neither revoked nor expired.
    pub fn is_live(&self, token: &str) -> bool {
        let now = self.shared.clock.now();
        self.shared
            .state()
            .tokens
            .get(token)
            .is_some_and(|t| !t.revoked && now < t.expires_at)
    }

    pub fn login_calls(&self) -> usize {
        self.shared.state().login_calls
    }

    pub fn validate_calls(&self) -> usize {
        self.shared.state().validate_calls
    }

    pub fn logout_calls(&self) -> usize {
        self.shared.state().logout_calls
    }

    /// The username, `service_name` and `tags` of the last login request.
    pub fn last_login(&self) -> Option<LoginRecord> {
        self.shared.state().last_login.clone()
    }

    /// While `true`, every endpoint answers 500.
    pub fn set_failing(&self, failing: bool) {
        self.shared.state().failing = failing;
    }

    /// Waits this long before every answer (for timeout tests).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.state().delay = delay;
    }

    /// While `false`, `/v1/auth/logout` answers 404, as an MCIAS without
    /// logout does.
    pub fn set_logout_supported(&self, supported: bool) {
        self.shared.state().no_logout = !supported;
    }

    /// Stops serving: the port is closed and open connections are dropped.
    pub async fn stop(&self) {
        let handle = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            h.abort();
            // Wait until the task, its listener and connections are gone.
            let _ = h.await;
        }
    }
}

impl Drop for FakeMcias {
    fn drop(&mut self) {
        if let Some(h) = self.server.lock().unwrap_or_else(|p| p.into_inner()).take() {
            h.abort();
        }
    }
}

/// The accept loop; aborting it drops the listener and every connection.
async fn serve(listener: TcpListener, app: Router, tls: Option<TlsAcceptor>) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let svc = TowerToHyperService::new(app.clone());
        let tls = tls.clone();
        conns.spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}

/// A CA, a server certificate for 127.0.0.1 and localhost signed by it,
/// and the rustls acceptor serving that certificate.
fn tls_setup(tls12_only: bool) -> (TlsAcceptor, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate().expect("generate the fake CA key");
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).expect("empty SAN list is valid");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fake MCIAS test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .expect("self-sign the fake CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().expect("generate the fake server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("127.0.0.1 and localhost are valid names");
    params
        .distinguished_name
        .push(DnType::CommonName, "fake MCIAS");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &issuer)
        .expect("sign the fake server certificate");

    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("the fake certificate fits its key");
    (TlsAcceptor::from(Arc::new(config)), ca_cert.pem())
}

/// Applies the delay and the failure switch; `Some` is the answer to give
/// instead of the real one.
async fn gate(shared: &Shared) -> Option<Response> {
    let (delay, failing) = {
        let s = shared.state();
        (s.delay, s.failing)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    failing.then(|| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "internal error"})),
        )
            .into_response()
    })
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    service_name: String,
    #[serde(default)]
    tags: Vec<String>,
}

async fn login(State(shared): State<Arc<Shared>>, Json(body): Json<LoginBody>) -> Response {
    {
        let mut s = shared.state();
        s.login_calls += 1;
        s.last_login = Some(LoginRecord {
            username: body.username.clone(),
            service_name: body.service_name.clone(),
            tags: body.tags.clone(),
        });
    }
    if let Some(r) = gate(&shared).await {
        return r;
    }
    let ok = shared
        .state()
        .accounts
        .get(&body.username)
        .is_some_and(|a| a.password == body.password);
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid credentials"})),
        )
            .into_response();
    }
    let token = shared.issue(&body.username);
    let expires_at = shared
        .state()
        .tokens
        .get(&token)
        .map(|t| t.expires_at)
        .unwrap_or_default();
    Json(json!({"token": token, "expires_at": expires_at.to_rfc3339()})).into_response()
}

#[derive(Deserialize)]
struct ValidateBody {
    token: String,
}

async fn validate(State(shared): State<Arc<Shared>>, Json(body): Json<ValidateBody>) -> Response {
    shared.state().validate_calls += 1;
    if let Some(r) = gate(&shared).await {
        return r;
    }
    let now = shared.clock.now();
    let s = shared.state();
    let live = s
        .tokens
        .get(&body.token)
        .filter(|t| !t.revoked && now < t.expires_at)
        .and_then(|t| s.accounts.get(&t.username).map(|a| (a, t.expires_at)));
    match live {
        Some((a, expires_at)) => Json(json!({
            "valid": true,
            "sub": a.subject,
            "account_type": a.account_type.as_str(),
            "roles": a.roles,
            "expires_at": expires_at.to_rfc3339(),
        }))
        .into_response(),
        None => Json(json!({"valid": false})).into_response(),
    }
}

async fn logout(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let no_logout = {
        let mut s = shared.state();
        s.logout_calls += 1;
        s.no_logout
    };
    if let Some(r) = gate(&shared).await {
        return r;
    }
    if no_logout {
        return StatusCode::NOT_FOUND.into_response();
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let now = shared.clock.now();
    let mut s = shared.state();
    match token.and_then(|t| s.tokens.get_mut(&t)) {
        Some(t) if !t.revoked && now < t.expires_at => {
            t.revoked = true;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid token"})),
        )
            .into_response(),
    }
}
