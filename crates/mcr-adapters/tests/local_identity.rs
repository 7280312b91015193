//! The local identity: password logins, signed tokens, expiry, revocation,
//! the login cache and the signing key file.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use mcr_adapters::local_identity::{
    hash_password, load_or_create_key, LocalIdentity, LocalUser, DEFAULT_TOKEN_TTL,
    LOGIN_CACHE_TTL, REVOCATION_MAX_STALENESS,
};
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::ports::{RevocationStore, Secret, TokenValidator};
use mcr_core::principal::{AccountType, Role};
use mcr_core::time::{Clock, Timestamp};
use mcr_core::Error;

/// A clock that moves only when the test moves it.
struct ManualClock(AtomicI64);

impl ManualClock {
    fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(1_704_067_200_000)))
    }

    fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap();
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

fn users() -> Vec<LocalUser> {
    vec![
        LocalUser {
            username: "alice".into(),
            password_hash: hash_password(&Secret::new("wonderland")).unwrap(),
            account_type: AccountType::Human,
            roles: vec![Role::Admin, Role::User],
        },
        LocalUser {
            username: "ci".into(),
            password_hash: hash_password(&Secret::new("pipeline")).unwrap(),
            account_type: AccountType::System,
            roles: vec![],
        },
    ]
}

fn identity(dir: &Path, clock: Arc<ManualClock>) -> LocalIdentity {
    LocalIdentity::new(users(), &dir.join("token.key"), DEFAULT_TOKEN_TTL, clock).unwrap()
}

fn unauthenticated(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Unauthenticated(why)) => why,
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
}

#[tokio::test]
async fn login_gives_a_token_that_validates_to_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let id = identity(dir.path(), clock.clone());

    let issued = id.login("alice", &Secret::new("wonderland")).await.unwrap();
    assert_eq!(
        issued.expires_at,
        clock.now().saturating_add(DEFAULT_TOKEN_TTL)
    );
    let p = id.validate(&issued.token).await.unwrap();
    assert_eq!(p.subject, "local:alice");
    assert_eq!(p.username.as_deref(), Some("alice"));
    assert_eq!(p.account_type, AccountType::Human);
    assert_eq!(p.roles, vec![Role::Admin, Role::User]);

    let ci = id.login("ci", &Secret::new("pipeline")).await.unwrap();
    let p = id.validate(&ci.token).await.unwrap();
    assert_eq!(p.subject, "local:ci");
    assert_eq!(p.account_type, AccountType::System);
    assert!(p.roles.is_empty());
    assert_ne!(issued.token, ci.token);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_fail_alike() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(dir.path(), ManualClock::new());

    let wrong = unauthenticated(id.login("alice", &Secret::new("nope")).await);
    assert_eq!(id.verifications(), 1);
    // An unknown user still costs an argon2 run (against a dummy hash), so
    // timing does not tell which usernames exist.
    let unknown = unauthenticated(id.login("mallory", &Secret::new("wonderland")).await);
    assert_eq!(id.verifications(), 2);
    assert_eq!(wrong, "invalid username or password");
    assert_eq!(wrong, unknown);
    let empty = unauthenticated(id.login("", &Secret::new("")).await);
    assert_eq!(empty, wrong);
}

#[tokio::test]
async fn tampered_and_foreign_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let id = identity(dir.path(), clock.clone());
    let token = id
        .login("ci", &Secret::new("pipeline"))
        .await
        .unwrap()
        .token;
    let (payload, mac) = token.expose().split_once('.').unwrap();

    // Granting oneself admin under the original MAC.
    let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert!(claims.contains(r#""roles":[]"#), "{claims}");
    let escalated = URL_SAFE_NO_PAD.encode(claims.replace(r#""roles":[]"#, r#""roles":["admin"]"#));
    // A MAC with one bit flipped.
    let mut bytes = URL_SAFE_NO_PAD.decode(mac).unwrap();
    bytes[0] ^= 1;
    let flipped = URL_SAFE_NO_PAD.encode(bytes);

    for forged in [
        format!("{escalated}.{mac}"),
        format!("{payload}.{flipped}"),
        format!("{payload}."),
        payload.to_string(),
        format!("{payload}.{mac}.{mac}"),
        "garbage".to_string(),
        String::new(),
    ] {
        assert_eq!(
            unauthenticated(id.validate(&Secret::new(forged)).await),
            "invalid token"
        );
    }

    // Another server (another key) does not accept this one's tokens.
    let other = tempfile::tempdir().unwrap();
    let stranger = identity(other.path(), clock);
    unauthenticated(stranger.validate(&token).await);
    id.validate(&token).await.unwrap();
}

#[tokio::test]
async fn a_token_expires_with_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let id = LocalIdentity::new(
        users(),
        &dir.path().join("token.key"),
        Duration::from_secs(600),
        clock.clone(),
    )
    .unwrap();
    let token = id
        .login("alice", &Secret::new("wonderland"))
        .await
        .unwrap()
        .token;
    clock.advance(Duration::from_secs(599));
    id.validate(&token).await.unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(unauthenticated(id.validate(&token).await), "token expired");
}

#[tokio::test]
async fn logout_revokes_that_token_only() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(dir.path(), ManualClock::new());
    let first = id
        .login("alice", &Secret::new("wonderland"))
        .await
        .unwrap()
        .token;
    let second = id
        .login("alice", &Secret::new("wonderland"))
        .await
        .unwrap()
        .token;

    // Verified once (and so remembered), then revoked: refused all the same.
    id.validate(&first).await.unwrap();
    id.logout(&first).await.unwrap();
    assert_eq!(unauthenticated(id.validate(&first).await), "token revoked");
    id.validate(&second).await.unwrap();
    // Logging out twice is harmless; logging out a forgery is not allowed.
    id.logout(&first).await.unwrap();
    unauthenticated(id.logout(&Secret::new("forged.token")).await);
}

#[tokio::test]
async fn a_login_is_cached_for_its_ttl_and_failures_never() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let id = identity(dir.path(), clock.clone());
    let good = Secret::new("wonderland");

    id.login("alice", &good).await.unwrap();
    assert_eq!(id.verifications(), 1);
    // Repeated Basic auth within the TTL: no argon2, still a fresh token
    // that validates.
    clock.advance(LOGIN_CACHE_TTL - Duration::from_secs(1));
    let again = id.login("alice", &good).await.unwrap();
    assert_eq!(id.verifications(), 1);
    assert_eq!(
        id.validate(&again.token).await.unwrap().subject,
        "local:alice"
    );
    // The cache is keyed by the password too: a wrong one is checked.
    unauthenticated(id.login("alice", &Secret::new("wonderlan")).await);
    assert_eq!(id.verifications(), 2);
    unauthenticated(id.login("alice", &Secret::new("wonderlan")).await);
    assert_eq!(id.verifications(), 3, "a failed login is never cached");

    clock.advance(Duration::from_secs(1));
    id.login("alice", &good).await.unwrap();
    assert_eq!(id.verifications(), 4, "past the TTL, argon2 runs again");
    id.login("alice", &good).await.unwrap();
    assert_eq!(id.verifications(), 4);
}

#[test]
fn login_works_without_a_tokio_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(dir.path(), ManualClock::new());
    let password = Secret::new("pipeline");
    let mut login = std::pin::pin!(id.login("ci", &password));
    // With no runtime to hand the check to, it runs inline: the first poll
    // finishes.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match login.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(issued) => assert!(issued.is_ok()),
        std::task::Poll::Pending => panic!("login waited for a runtime that is not there"),
    }
}

#[tokio::test]
async fn the_key_is_created_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.key");
    let clock = ManualClock::new();
    let id = identity(dir.path(), clock.clone());
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
    let bytes = std::fs::read(&path).unwrap();

    let token = id
        .login("alice", &Secret::new("wonderland"))
        .await
        .unwrap()
        .token;
    // A restart reads the same key, so tokens survive it.
    let again = identity(dir.path(), clock);
    again.validate(&token).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn servers_starting_together_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.key");
    let clock = ManualClock::new();
    let ids: Vec<LocalIdentity> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| identity(dir.path(), clock.clone())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 32);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = rt
        .block_on(ids[0].login("ci", &Secret::new("pipeline")))
        .unwrap()
        .token;
    for id in &ids {
        rt.block_on(id.validate(&token)).unwrap();
    }
}

#[test]
fn a_loose_or_damaged_key_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.key");
    load_or_create_key(&path).unwrap();

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = load_or_create_key(&path).unwrap_err().to_string();
    assert!(
        err.contains("token.key") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(load_or_create_key(&path).is_err());

    std::fs::write(&path, b"short").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = load_or_create_key(&path).unwrap_err().to_string();
    assert!(
        err.contains("token.key") && err.contains("5 bytes"),
        "{err}"
    );
    std::fs::write(&path, [0u8; 33]).unwrap();
    let err = load_or_create_key(&path).unwrap_err().to_string();
    assert!(err.contains("33 bytes"), "{err}");

    let err = load_or_create_key(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn a_bad_user_list_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("token.key");
    let try_users = |u: Vec<LocalUser>| {
        LocalIdentity::new(u, &key, DEFAULT_TOKEN_TTL, ManualClock::new())
            .unwrap_err()
            .to_string()
    };

    let mut u = users();
    u[0].password_hash = "plaintext".into();
    let err = try_users(u);
    assert!(
        err.contains("alice") && err.contains("password_hash"),
        "{err}"
    );

    let mut u = users();
    // A valid PHC string, but not argon2id.
    u[1].password_hash = "$argon2i$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into();
    let err = try_users(u);
    assert!(err.contains("ci") && err.contains("argon2id"), "{err}");

    let mut u = users();
    u[1].username = "alice".into();
    let err = try_users(u);
    assert!(err.contains("alice") && err.contains("twice"), "{err}");

    let mut u = users();
    u[1].username = "a:b".into();
    assert!(try_users(u).contains("a:b"));
}

#[tokio::test]
async fn secrets_stay_out_of_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(dir.path(), ManualClock::new());
    let user = &users()[0];
    let issued = id.login("alice", &Secret::new("wonderland")).await.unwrap();
    let key = load_or_create_key(&dir.path().join("token.key")).unwrap();
    let key_bytes = std::fs::read(dir.path().join("token.key")).unwrap();

    let shown = format!("{id:?} {user:?} {issued:?} {key:?}");
    assert!(!shown.contains(&user.password_hash), "{shown}");
    assert!(!shown.contains(issued.token.expose()), "{shown}");
    assert!(!shown.contains(&format!("{:?}", key_bytes)), "{shown}");
    assert!(!shown.contains(&hex::encode(&key_bytes)), "{shown}");
    assert!(shown.contains("alice"), "{shown}");
}

#[test]
fn users_deserialize_from_the_config() {
    let u: LocalUser = serde_json::from_value(serde_json::json!({
        "username": "bob",
        "password_hash": "$argon2id$v=19$m=12288,t=3,p=1$c2FsdHNhbHQ$aGFzaA",
        "account_type": "system",
        "roles": ["user", "guest"],
    }))
    .unwrap();
    assert_eq!(u.account_type, AccountType::System);
    assert_eq!(u.roles, vec![Role::User, Role::Guest]);
}

/// Issue 16, case 6: with the metadata store keeping revocations, a
/// logout survives a restart, and an expired revocation is dropped.
#[tokio::test]
async fn a_logout_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let db = dir.path().join("mcr.db");
    let start = |clock: Arc<ManualClock>| {
        let store = Arc::new(SqliteMetaStore::open(&db).unwrap());
        identity(dir.path(), clock).keep_revocations_in(store)
    };
    let id = start(clock.clone()).await.unwrap();
    let password = Secret::new("wonderland");
    let login = || id.login("alice", &password);
    let (revoked, kept) = (login().await.unwrap().token, login().await.unwrap().token);
    id.logout(&revoked).await.unwrap();
    drop(id);

    let id = start(clock.clone()).await.unwrap();
    assert_eq!(
        unauthenticated(id.validate(&revoked).await),
        "token revoked"
    );
    id.validate(&kept).await.unwrap();
    drop(id);

    clock.advance(DEFAULT_TOKEN_TTL);
    let store = SqliteMetaStore::open(&db).unwrap();
    let live = store.live_revocations(clock.now()).await.unwrap();
    assert!(live.is_empty(), "a revocation outlived its token: {live:?}");
}

/// Issue 14: replicas sharing the metadata store (and the key) refuse a
/// token another one logged out, within `REVOCATION_MAX_STALENESS`.
#[tokio::test]
async fn a_logout_through_one_replica_holds_on_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let store: Arc<dyn RevocationStore> = Arc::new(mcr_core::testing::FakeMetaStore::new());
    let one = identity(dir.path(), clock.clone())
        .keep_revocations_in(store.clone())
        .await
        .unwrap();
    let other = identity(dir.path(), clock.clone())
        .keep_revocations_in(store)
        .await
        .unwrap();
    let password = Secret::new("wonderland");
    let token = one.login("alice", &password).await.unwrap().token;
    other.validate(&token).await.unwrap();

    one.logout(&token).await.unwrap();
    assert_eq!(unauthenticated(one.validate(&token).await), "token revoked");
    // The other's copy is fresh enough to be used until the bound...
    clock.advance(REVOCATION_MAX_STALENESS - Duration::from_millis(1));
    other.validate(&token).await.unwrap();
    // ...and read again once it passed.
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        unauthenticated(other.validate(&token).await),
        "token revoked"
    );
}

/// Review r16, D1: a token's holder is the user as configured at the
/// latest start. Removed from `[[local.users]]`, every token of theirs is
/// refused; with their roles changed, every token carries the new roles.
#[tokio::test]
async fn a_restart_with_a_user_removed_or_changed_holds_for_their_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let id = identity(dir.path(), clock.clone());
    let alice = id
        .login("alice", &Secret::new("wonderland"))
        .await
        .unwrap()
        .token;
    let ci = id
        .login("ci", &Secret::new("pipeline"))
        .await
        .unwrap()
        .token;
    drop(id);

    let mut changed = users();
    changed.retain(|u| u.username != "ci");
    changed[0].roles = vec![Role::User];
    let key = dir.path().join("token.key");
    let id = LocalIdentity::new(changed, &key, DEFAULT_TOKEN_TTL, clock).unwrap();
    let why = unauthenticated(id.validate(&ci).await);
    assert!(why.contains("no longer configured"), "{why}");
    // A second time, as a verified token would be looked up.
    unauthenticated(id.validate(&ci).await);
    let p = id.validate(&alice).await.unwrap();
    assert_eq!(p.roles, vec![Role::User], "the token's old roles held");
    let p = id.validate(&alice).await.unwrap();
    assert_eq!(p.roles, vec![Role::User]);
}
