//! The example configs in `deploy/examples/` as an operator uses them:
//! each file read by the real loader (`Config::load`, the code behind
//! `mcrsrv server --config`) and validated as the daemon validates it,
//! with the values the comments in the file promise.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mcr_adapters::local_identity::{Key, LocalIdentity};
use mcr_cli::server::config::{Config, Database, StorageBackend};
use mcr_cli::server::listen::ConnLimits;
use mcr_core::ports::{Secret, TokenValidator};
use mcr_core::time::SystemClock;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/examples")
        .join(name)
}

fn load(name: &str) -> Config {
    let config = Config::load(&example(name)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    config
        .validate_for_server()
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    config
}

#[test]
fn the_production_example_is_valid_and_matches_the_deployment() {
    let c = load("mcr.toml");
    // The ports the container image exposes and the runbook uses.
    assert_eq!(c.listen_addr().unwrap().port(), 8443);
    assert_eq!(c.grpc_addr().unwrap().unwrap().port(), 9443);
    // Everything lives under the volume /srv/mcr.
    for path in [
        c.database.path.as_deref(),
        c.storage.layers_path.as_deref(),
        c.server.tls_cert.as_deref(),
        c.server.tls_key.as_deref(),
    ] {
        let path = path.expect("set in the example");
        assert!(path.starts_with("/srv/mcr"), "{}", path.display());
    }
    assert_eq!(c.uploads_path().unwrap(), PathBuf::from("/srv/mcr/uploads"));
    assert!(c.mcias.server_url.is_some(), "production uses MCIAS");
    assert_eq!(c.gc_grace_period().unwrap(), Duration::from_secs(3600));
    assert_eq!(c.shutdown_timeout().unwrap(), Duration::from_secs(60));
    // Metrics on loopback only, where the runbook scrapes them; GC only
    // when an admin asks, until the operator sets an interval.
    let metrics = c.metrics_addr().unwrap().expect("metrics on");
    assert!(metrics.ip().is_loopback(), "{metrics}");
    assert_eq!(metrics.port(), 9444);
    assert_eq!(c.gc_interval().unwrap(), None);
    // The limits it spells out are the defaults.
    assert_eq!(c.conn_limits().unwrap(), ConnLimits::default());
    let rate = c.rate_limit().unwrap().expect("a rate limit");
    assert_eq!((rate.per_second.get(), rate.burst.get()), (100, 500));
}

#[tokio::test]
async fn the_dev_example_is_valid_and_admin_logs_in_with_the_documented_password() {
    let c = load("mcr-dev.toml");
    let addr = c.listen_addr().unwrap();
    assert!(addr.ip().is_loopback(), "dev listens on loopback only");
    assert!(c.server.tls_cert.is_none(), "dev is plain HTTP");
    assert_eq!(
        c.rate_limit().unwrap(),
        None,
        "no rate limit, as in mcrsrv dev"
    );
    // The file says the password of `admin` is "admin".
    let identity = LocalIdentity::with_key(
        c.local.users.clone(),
        Key::generate().unwrap(),
        c.token_ttl().unwrap(),
        Arc::new(SystemClock),
    )
    .unwrap();
    identity
        .login("admin", &Secret::new("admin".to_string()))
        .await
        .expect("admin logs in with the password the example names");
}

#[test]
fn the_replica_example_is_valid_and_keeps_its_state_off_the_machine() {
    let c = load("mcr-replica.toml");
    // Metadata in the shared PostgreSQL database, the password not in
    // the file.
    let Database::Postgres(db) = c.database().unwrap() else {
        panic!("the replica example must use database.url");
    };
    let url = db.url.as_deref().unwrap();
    assert!(url.starts_with("postgres://mcr@"), "no password in {url}");
    assert!(db.password_file.is_some());
    assert_eq!(db.max_connections, Some(16));
    // Blobs in the shared bucket, the key from the environment; nothing
    // on the replica's disk.
    assert_eq!(c.storage_backend().unwrap(), StorageBackend::S3);
    let s3 = c.s3().unwrap();
    assert_eq!((s3.bucket.as_str(), s3.region.as_str()), ("mcr", "garage"));
    assert!(s3.access_key_id.is_none() && s3.secret_access_key.is_none());
    assert!(c.storage.layers_path.is_none() && c.storage.uploads_path.is_none());
    // Plain HTTP behind the TLS-terminating load balancer, whose URL the
    // clients use; every client has its address, so failed logins are
    // counted per username only.
    assert!(c.server.tls_cert.is_none() && c.server.tls_key.is_none());
    let external = c.server.external_url.as_deref().unwrap();
    assert!(external.starts_with("https://"), "{external}");
    let logins = c.login_limit().unwrap().expect("a login limit");
    assert_eq!((logins.per_username, logins.per_address), (10, 0));
    assert!(c.mcias.server_url.is_some(), "production uses MCIAS");
    assert_eq!(c.gc_grace_period().unwrap(), Duration::from_secs(3600));
    assert_eq!(
        c.gc_interval().unwrap(),
        Some(Duration::from_secs(24 * 3600))
    );
}
