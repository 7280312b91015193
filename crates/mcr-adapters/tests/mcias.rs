//! The MCIAS adapter against the fake MCIAS: logins, validation, the
//! cache, logout, TLS, the unavailable paths, and that no secret reaches a
//! log line.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcr_adapters::mcias::fake::{FakeAccount, FakeMcias, FakeMciasOptions};
use mcr_adapters::mcias::{MciasConfig, MciasTokenValidator};
use mcr_core::ports::{Secret, TokenValidator};
use mcr_core::principal::{AccountType, Role};
use mcr_core::testing::ManualClock;
use mcr_core::time::Clock;
use mcr_core::Error;

const PASSWORD: &str = "correct-horse-7f3a9c";

fn config(url: &str) -> MciasConfig {
    MciasConfig {
        server_url: url.into(),
        ca_cert: None,
        service_name: "mcr-test".into(),
        tags: vec!["env:restricted".into(), "team:infra".into()],
    }
}

/// A fake MCIAS with alice (human admin) and ci (system, no known role),
/// and a validator pointed at it; both read `clock`.
async fn setup(
    options: FakeMciasOptions,
    clock: Arc<ManualClock>,
) -> (FakeMcias, MciasTokenValidator) {
    let fake = FakeMcias::start(FakeMciasOptions {
        clock: clock.clone(),
        ..options
    })
    .await;
    fake.add_account(FakeAccount::new("alice", PASSWORD).with_roles(&["admin", "user"]));
    fake.add_account(
        FakeAccount::new("ci", "pipeline-pw")
            .system()
            .with_roles(&["deployer"]),
    );
    let v = MciasTokenValidator::new(config(&fake.url()), clock).unwrap();
    (fake, v)
}

async fn plain() -> (FakeMcias, MciasTokenValidator, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    let (fake, v) = setup(FakeMciasOptions::default(), clock.clone()).await;
    (fake, v, clock)
}

fn unavailable(r: mcr_core::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(e @ Error::Unavailable(_)) => e.to_string(),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

fn unauthenticated(r: mcr_core::Result<impl std::fmt::Debug>) {
    match r {
        Err(Error::Unauthenticated(_)) => {}
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
}

#[tokio::test]
async fn login_gives_a_token_that_validates_to_the_account() {
    let (fake, v, clock) = plain().await;
    let issued = v.login("alice", &Secret::new(PASSWORD)).await.unwrap();
    assert_eq!(
        issued.expires_at,
        clock.now().saturating_add(Duration::from_secs(3600))
    );
    assert!(fake.is_live(issued.token.expose()));
    let p = v.validate(&issued.token).await.unwrap();
    assert_eq!(p.subject, "sub-alice");
    assert_eq!(p.account_type, AccountType::Human);
    assert_eq!(p.roles, vec![Role::Admin, Role::User]);

    let ci = v.login("ci", &Secret::new("pipeline-pw")).await.unwrap();
    let p = v.validate(&ci.token).await.unwrap();
    assert_eq!(p.account_type, AccountType::System);
    assert!(p.roles.is_empty(), "unknown MCIAS roles are skipped");
}

#[tokio::test]
async fn bad_credentials_are_unauthenticated() {
    let (fake, v, _) = plain().await;
    unauthenticated(v.login("alice", &Secret::new("wrong")).await);
    unauthenticated(v.login("nobody", &Secret::new(PASSWORD)).await);
    assert_eq!(fake.login_calls(), 2);
}

#[tokio::test]
async fn unknown_and_malformed_tokens_are_unauthenticated() {
    let (fake, v, _) = plain().await;
    unauthenticated(v.validate(&Secret::new("no-such-token")).await);
    assert_eq!(fake.validate_calls(), 1);
    unauthenticated(v.validate(&Secret::new("")).await);
    unauthenticated(v.validate(&Secret::new("two words")).await);
    assert_eq!(fake.validate_calls(), 1, "malformed tokens are not sent");
}

#[tokio::test]
async fn revoked_tokens_are_unauthenticated() {
    let (fake, v, _) = plain().await;
    let token = fake.issue_token("alice").unwrap();
    fake.revoke(&token);
    unauthenticated(v.validate(&Secret::new(&token)).await);
}

#[tokio::test]
async fn a_revocation_shows_once_the_cached_answer_runs_out() {
    let (fake, v, clock) = plain().await;
    let token = Secret::new(fake.issue_token("alice").unwrap());
    v.validate(&token).await.unwrap();
    fake.revoke(token.expose());
    v.validate(&token).await.unwrap();
    clock.advance(MciasTokenValidator::CACHE_TTL);
    unauthenticated(v.validate(&token).await);
}

#[tokio::test]
async fn expired_tokens_are_unauthenticated() {
    let clock = Arc::new(ManualClock::default());
    let options = FakeMciasOptions {
        token_ttl: Duration::from_secs(10),
        ..Default::default()
    };
    let (fake, v) = setup(options, clock.clone()).await;
    let issued = v.login("alice", &Secret::new(PASSWORD)).await.unwrap();
    v.validate(&issued.token).await.unwrap();
    // Past the token's expiry but inside the cache TTL: the cache entry
    // ends with the token, so MCIAS is asked again and says no.
    clock.advance(Duration::from_secs(11));
    unauthenticated(v.validate(&issued.token).await);
    assert_eq!(fake.validate_calls(), 2);

    let other = Secret::new(fake.issue_token("alice").unwrap());
    fake.expire(other.expose());
    unauthenticated(v.validate(&other).await);
}

#[tokio::test]
async fn validations_are_cached_for_30_seconds() {
    let (fake, v, clock) = plain().await;
    let token = Secret::new(fake.issue_token("alice").unwrap());
    for _ in 0..3 {
        assert_eq!(v.validate(&token).await.unwrap().subject, "sub-alice");
    }
    assert_eq!(fake.validate_calls(), 1, "hits inside the TTL");
    clock.advance(Duration::from_secs(29));
    v.validate(&token).await.unwrap();
    assert_eq!(fake.validate_calls(), 1, "still a hit at 29 s");
    clock.advance(Duration::from_secs(1));
    v.validate(&token).await.unwrap();
    assert_eq!(fake.validate_calls(), 2, "a miss at 30 s");
    v.validate(&token).await.unwrap();
    assert_eq!(fake.validate_calls(), 2, "and cached again");
}

#[tokio::test]
async fn invalid_answers_are_not_cached() {
    let (fake, v, _) = plain().await;
    let token = Secret::new("not-issued-yet");
    unauthenticated(v.validate(&token).await);
    unauthenticated(v.validate(&token).await);
    assert_eq!(fake.validate_calls(), 2);
}

#[tokio::test]
async fn logout_revokes_and_forgets_the_cached_answer() {
    let (fake, v, _) = plain().await;
    let issued = v.login("alice", &Secret::new(PASSWORD)).await.unwrap();
    v.validate(&issued.token).await.unwrap();
    v.logout(&issued.token).await.unwrap();
    assert_eq!(fake.logout_calls(), 1);
    assert!(!fake.is_live(issued.token.expose()));
    unauthenticated(v.validate(&issued.token).await);
    assert_eq!(
        fake.validate_calls(),
        2,
        "the cache was not used after logout"
    );
    unauthenticated(v.logout(&issued.token).await);
}

#[tokio::test]
async fn logout_without_mcias_support_is_not_an_error() {
    let (fake, v, _) = plain().await;
    fake.set_logout_supported(false);
    let issued = v.login("alice", &Secret::new(PASSWORD)).await.unwrap();
    v.logout(&issued.token).await.unwrap();
    assert_eq!(fake.logout_calls(), 1);
    assert!(fake.is_live(issued.token.expose()));
}

#[tokio::test]
async fn service_name_and_tags_reach_mcias() {
    let (fake, v, _) = plain().await;
    v.login("alice", &Secret::new(PASSWORD)).await.unwrap();
    let rec = fake.last_login().unwrap();
    assert_eq!(rec.username, "alice");
    assert_eq!(rec.service_name, "mcr-test");
    assert_eq!(rec.tags, vec!["env:restricted", "team:infra"]);
}

#[tokio::test]
async fn a_stopped_mcias_is_unavailable_not_unauthenticated() {
    let (fake, v, _) = plain().await;
    let token = Secret::new(fake.issue_token("alice").unwrap());
    fake.stop().await;
    let err = unavailable(v.validate(&token).await);
    assert!(err.contains("unreachable"), "{err}");
    assert!(err.contains(&fake.url()), "{err}");
    let err = unavailable(v.login("alice", &Secret::new(PASSWORD)).await);
    assert!(err.contains("login"), "{err}");
    unavailable(v.logout(&token).await);
}

#[tokio::test]
async fn a_failing_mcias_is_unavailable_and_cached_answers_still_serve() {
    let (fake, v, _) = plain().await;
    let cached = Secret::new(fake.issue_token("alice").unwrap());
    v.validate(&cached).await.unwrap();
    let fresh = Secret::new(fake.issue_token("alice").unwrap());
    fake.set_failing(true);
    let err = unavailable(v.validate(&fresh).await);
    assert!(err.contains("HTTP 500"), "{err}");
    let err = unavailable(v.login("alice", &Secret::new(PASSWORD)).await);
    assert!(err.contains("HTTP 500"), "{err}");
    assert_eq!(v.validate(&cached).await.unwrap().subject, "sub-alice");
    fake.set_failing(false);
    v.validate(&fresh).await.unwrap();
}

#[tokio::test]
async fn a_slow_mcias_times_out_as_unavailable() {
    let clock = Arc::new(ManualClock::default());
    let fake = FakeMcias::start(FakeMciasOptions {
        clock: clock.clone(),
        ..Default::default()
    })
    .await;
    fake.add_account(FakeAccount::new("alice", PASSWORD));
    let token = Secret::new(fake.issue_token("alice").unwrap());
    fake.set_delay(Duration::from_secs(5));
    let v =
        MciasTokenValidator::with_timeout(config(&fake.url()), clock, Duration::from_millis(200))
            .unwrap();
    let err = unavailable(v.validate(&token).await);
    assert!(err.contains("no answer within 200ms"), "{err}");
}

/// Serves one canned 200 answer with `body` to every connection.
async fn canned(body: &str) -> String {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 64 * 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(response.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_unparseable_answer_is_unavailable() {
    let url = canned("not json!").await;
    let v = MciasTokenValidator::new(config(&url), Arc::new(ManualClock::default())).unwrap();
    let err = unavailable(v.validate(&Secret::new("some-token")).await);
    assert!(err.contains("unreadable answer"), "{err}");
    unavailable(v.login("alice", &Secret::new(PASSWORD)).await);

    let url = canned(r#"{"valid":true,"account_type":"human"}"#).await;
    let v = MciasTokenValidator::new(config(&url), Arc::new(ManualClock::default())).unwrap();
    let err = unavailable(v.validate(&Secret::new("some-token")).await);
    assert!(err.contains("no sub"), "{err}");
}

fn write_ca(fake: &FakeMcias, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("mcias-ca.pem");
    std::fs::write(&path, fake.ca_cert_pem().unwrap()).unwrap();
    path
}

#[tokio::test]
async fn tls_with_the_custom_ca_works() {
    let clock = Arc::new(ManualClock::default());
    let fake = FakeMcias::start(FakeMciasOptions {
        tls: true,
        clock: clock.clone(),
        ..Default::default()
    })
    .await;
    assert!(fake.url().starts_with("https://127.0.0.1:"));
    fake.add_account(FakeAccount::new("alice", PASSWORD));
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake.url());
    c.ca_cert = Some(write_ca(&fake, dir.path()));
    let v = MciasTokenValidator::new(c, clock).unwrap();
    let issued = v.login("alice", &Secret::new(PASSWORD)).await.unwrap();
    assert_eq!(
        v.validate(&issued.token).await.unwrap().subject,
        "sub-alice"
    );
    v.logout(&issued.token).await.unwrap();
}

#[tokio::test]
async fn tls_without_the_ca_fails_with_a_clear_error() {
    let fake = FakeMcias::start(FakeMciasOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    fake.add_account(FakeAccount::new("alice", PASSWORD));
    let v =
        MciasTokenValidator::new(config(&fake.url()), Arc::new(ManualClock::default())).unwrap();
    let err = unavailable(v.login("alice", &Secret::new(PASSWORD)).await);
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert_eq!(fake.login_calls(), 0);
}

#[tokio::test]
async fn tls_1_2_is_refused() {
    let fake = FakeMcias::start(FakeMciasOptions {
        tls: true,
        tls12_only: true,
        ..Default::default()
    })
    .await;
    fake.add_account(FakeAccount::new("alice", PASSWORD));
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fake.url());
    c.ca_cert = Some(write_ca(&fake, dir.path()));
    let v = MciasTokenValidator::new(c, Arc::new(ManualClock::default())).unwrap();
    let err = unavailable(v.login("alice", &Secret::new(PASSWORD)).await);
    assert!(err.to_lowercase().contains("version"), "{err}");
    assert_eq!(fake.login_calls(), 0);
}

/// A `MakeWriter` appending to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn no_token_or_password_reaches_the_logs() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .finish();
    // A current-thread runtime: the fake, the client and the validator all
    // log on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let (fake, v, _) = plain().await;
    unauthenticated(v.login("alice", &Secret::new("wrong-password-4b1d")).await);
    let issued = v.login("alice", &Secret::new(PASSWORD)).await.unwrap();
    v.validate(&issued.token).await.unwrap();
    v.validate(&issued.token).await.unwrap();
    v.logout(&issued.token).await.unwrap();
    unauthenticated(v.validate(&issued.token).await);
    let fresh = fake.issue_token("alice").unwrap();
    fake.set_failing(true);
    unavailable(v.validate(&Secret::new(&fresh)).await);
    unavailable(v.login("alice", &Secret::new(PASSWORD)).await);
    fake.set_failing(false);
    fake.set_logout_supported(false);
    let second = v.login("alice", &Secret::new(PASSWORD)).await.unwrap();
    v.logout(&second.token).await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for expected in [
        "MCIAS login succeeded",
        "MCIAS refused the login",
        "MCIAS validated a token",
        "from the cache",
        "MCIAS unavailable",
        "HTTP 500",
        "no logout endpoint",
    ] {
        assert!(logs.contains(expected), "{expected:?} not logged:\n{logs}");
    }
    for secret in [
        issued.token.expose(),
        second.token.expose(),
        fresh.as_str(),
        PASSWORD,
        "wrong-password-4b1d",
        "fake-mcias-",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret:?} leaked into the logs:\n{logs}"
        );
    }
}
