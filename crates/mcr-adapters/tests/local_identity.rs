//! The local identity: password logins, signed tokens, expiry, revocation
//! and the signing key file.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use mcr_adapters::local_identity::{hash_password, load_or_create_key, LocalIdentity, LocalUser};
use mcr_core::ports::{Secret, TokenValidator};
use mcr_core::principal::{AccountType, Role};
use mcr_core::testing::ManualClock;
use mcr_core::Error;

fn users() -> Vec<LocalUser> {
    vec![
        LocalUser {
            username: "alice".into(),
            password_hash: hash_password(&Secret::new("wonderland")).unwrap(),
            account_type: AccountType::Human,
            roles: vec![Role::Admin],
        },
        LocalUser {
            username: "ci".into(),
            password_hash: hash_password(&Secret::new("pipeline")).unwrap(),
            account_type: AccountType::System,
            roles: vec![],
        },
    ]
}

fn identity(dir: &std::path::Path, clock: Arc<ManualClock>) -> LocalIdentity {
    LocalIdentity::new(
        users(),
        &dir.join("token.key"),
        Duration::from_secs(3600),
        clock,
    )
    .unwrap()
}

#[tokio::test]
async fn login_gives_a_token_that_validates_to_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(dir.path(), Arc::new(ManualClock::default()));
    let issued = id.login("alice", &Secret::new("wonderland")).await.unwrap();
    let p = id.validate(&issued.token).await.unwrap();
    assert_eq!(p.subject, "local:alice");
    assert_eq!(p.account_type, AccountType::Human);
    assert_eq!(p.roles, vec![Role::Admin]);
    let ci = id.login("ci", &Secret::new("pipeline")).await.unwrap();
    let p = id.validate(&ci.token).await.unwrap();
    assert_eq!((p.account_type, p.roles.len()), (AccountType::System, 0));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_fail_alike() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity(dir.path(), Arc::new(ManualClock::default()));
    let a = id.login("alice", &Secret::new("nope")).await.unwrap_err();
    let b = id
        .login("mallory", &Secret::new("wonderland"))
        .await
        .unwrap_err();
    assert!(matches!(&a, Error::Unauthenticated(_)), "{a}");
    assert_eq!(a.to_string(), b.to_string());
    assert!(
        !a.to_string().contains("nope"),
        "the password never appears in an error"
    );
}

#[tokio::test]
async fn tampered_expired_and_revoked_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let id = identity(dir.path(), clock.clone());
    let token = id
        .login("ci", &Secret::new("pipeline"))
        .await
        .unwrap()
        .token;
    let (payload, mac) = token.expose().split_once('.').unwrap();
    let admin_claims = payload.replace('A', "B");
    for forged in [
        format!("{admin_claims}.{mac}"),
        format!("{payload}.AAAA"),
        "garbage".to_string(),
        String::new(),
    ] {
        assert!(matches!(
            id.validate(&Secret::new(forged)).await,
            Err(Error::Unauthenticated(_))
        ));
    }
    // Another key (another server) does not accept this one's tokens.
    let other = tempfile::tempdir().unwrap();
    let stranger = identity(other.path(), clock.clone());
    assert!(stranger.validate(&token).await.is_err());

    id.validate(&token).await.unwrap();
    id.logout(&token).await.unwrap();
    let err = id.validate(&token).await.unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");

    let fresh = id
        .login("ci", &Secret::new("pipeline"))
        .await
        .unwrap()
        .token;
    clock.advance(Duration::from_secs(3601));
    let err = id.validate(&fresh).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test]
async fn the_key_is_created_private_reused_and_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.key");
    let clock = Arc::new(ManualClock::default());
    let id = identity(dir.path(), clock.clone());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let token = id
        .login("alice", &Secret::new("wonderland"))
        .await
        .unwrap()
        .token;
    // A restart reads the same key: tokens survive it.
    let again = identity(dir.path(), clock);
    again.validate(&token).await.unwrap();
    assert!(
        !format!("{:?}", load_or_create_key(&path).unwrap()).contains(|c: char| c.is_ascii_digit())
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = load_or_create_key(&path).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::write(&path, b"short").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = load_or_create_key(&path).unwrap_err().to_string();
    assert!(err.contains("5 bytes"), "{err}");
}

#[tokio::test]
async fn a_user_list_with_a_bad_hash_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut u = users();
    u[0].password_hash = "plaintext".into();
    let err = LocalIdentity::new(
        u,
        &dir.path().join("k"),
        Duration::from_secs(60),
        Arc::new(ManualClock::default()),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("alice") && err.contains("password_hash"),
        "{err}"
    );
}
