//! `mcrsrv dev`: the registry on embedded defaults, for a laptop or a test.
//!
//! Data under one directory, plain HTTP on a loopback address only (the
//! API, gRPC on the next port, metrics on a free one), the
//! local identity with one user `admin` whose generated password is kept in
//! `DIR/admin.password` (mode 0600) and reused on the next start.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mcr_adapters::local_identity::{hash_password, LocalUser};
use mcr_core::ports::Secret;
use mcr_core::principal::{AccountType, Role};

use super::config::Config;

/// The dev config for `data` and `listen`, mirroring each of `proxies`
/// (`PREFIX=URL`), with `MCR_*` overrides applied. Returns it with the
/// admin password and whether it was just generated.
pub fn dev_config(
    data: &Path,
    listen: &str,
    proxies: &[String],
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<(Config, Secret, bool)> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create the data directory {}", data.display()))?;
    let mut table = toml::Table::new();
    let mut section = |name: &str, pairs: &[(&str, String)]| {
        let t: toml::Table = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), toml::Value::String(v.clone())))
            .collect();
        table.insert(name.to_string(), toml::Value::Table(t));
    };
    let path = |p: &str| data.join(p).display().to_string();
    section("server", &[("listen_addr", listen.to_string())]);
    section("database", &[("path", path("mcr.db"))]);
    section(
        "storage",
        &[
            ("layers_path", path("layers")),
            ("uploads_path", path("uploads")),
        ],
    );
    // No rate limit on a laptop unless MCR_SERVER_RATE_LIMIT sets one.
    if let Some(toml::Value::Table(server)) = table.get_mut("server") {
        server.insert("rate_limit".to_string(), toml::Value::Integer(0));
    }
    let mut mirrors = Vec::new();
    for p in proxies {
        let Some((prefix, upstream)) = p.split_once('=') else {
            bail!("--proxy {p:?} is not PREFIX=URL, like hub=https://registry-1.docker.io");
        };
        let t: toml::Table = [("prefix", prefix), ("upstream", upstream)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), toml::Value::String(v.to_string())))
            .collect();
        mirrors.push(toml::Value::Table(t));
    }
    if !mirrors.is_empty() {
        table.insert("proxy".to_string(), toml::Value::Array(mirrors));
    }
    let mut config = Config::from_table(table, env)?;
    let addr = config.listen_addr()?;
    // gRPC on the next port, unless MCR_SERVER_GRPC_ADDR says otherwise.
    if config.server.grpc_addr.is_none() {
        let port = if addr.port() == 0 {
            0
        } else {
            addr.port().wrapping_add(1)
        };
        config.server.grpc_addr = Some(std::net::SocketAddr::new(addr.ip(), port).to_string());
    }
    // Metrics on a free loopback port, unless MCR_SERVER_METRICS_ADDR
    // says otherwise.
    if config.server.metrics_addr.is_none() {
        config.server.metrics_addr = Some(std::net::SocketAddr::new(addr.ip(), 0).to_string());
    }
    for (what, a) in [
        ("listen", Some(addr)),
        ("gRPC", config.grpc_addr()?),
        ("metrics", config.metrics_addr()?),
    ] {
        if let Some(a) = a.filter(|a| !a.ip().is_loopback()) {
            bail!("mcrsrv dev serves plain HTTP and only on loopback; its {what} address {a} is not one (use `mcrsrv server` with TLS)");
        }
    }
    config.server.tls_cert = None;
    config.server.tls_key = None;
    config.mcias.server_url = None;
    let (password, generated) = admin_password(&data.join("admin.password"))?;
    config.local.users = vec![LocalUser {
        username: "admin".to_string(),
        password_hash: hash_password(&password).context("cannot hash the admin password")?,
        account_type: AccountType::Human,
        roles: vec![Role::Admin],
    }];
    config.validate_for_server()?;
    Ok((config, password, generated))
}

/// Reads the admin password, or generates one into `file` with mode 0600.
fn admin_password(file: &PathBuf) -> anyhow::Result<(Secret, bool)> {
    match std::fs::read_to_string(file) {
        Ok(text) => {
            let mode = std::fs::metadata(file)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "{} is readable by others (mode {mode:o}); chmod 600 it or delete it to get a new password",
                    file.display()
                );
            }
            let pw = text.trim().to_string();
            if pw.is_empty() {
                bail!(
                    "{} is empty; delete it to get a new password",
                    file.display()
                );
            }
            Ok((Secret::new(pw), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 18];
            getrandom::getrandom(&mut bytes)
                .map_err(|e| anyhow::anyhow!("no randomness for the admin password: {e}"))?;
            let pw = hex::encode(bytes);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(file)
                .with_context(|| format!("cannot create {}", file.display()))?;
            writeln!(f, "{pw}")?;
            f.sync_all()?;
            Ok((Secret::new(pw), true))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_generated_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (c, pw, generated) = dev_config(dir.path(), "127.0.0.1:0", &[], []).unwrap();
        assert!(generated);
        let file = dir.path().join("admin.password");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (_, again, generated) = dev_config(dir.path(), "127.0.0.1:0", &[], []).unwrap();
        assert!(!generated);
        assert_eq!(pw, again);
        assert_eq!(c.local.users[0].username, "admin");
    }

    #[test]
    fn refuses_a_non_loopback_address_and_honours_env() {
        let dir = tempfile::tempdir().unwrap();
        let err = dev_config(dir.path(), "0.0.0.0:5000", &[], [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("loopback"), "{err}");
        let (c, _, _) = dev_config(
            dir.path(),
            "127.0.0.1:0",
            &[],
            [("MCR_GC_GRACE_PERIOD".to_string(), "5s".to_string())],
        )
        .unwrap();
        assert_eq!(c.gc_grace_period().unwrap().as_secs(), 5);
    }

    #[test]
    fn no_rate_limit_unless_the_environment_sets_one() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _, _) = dev_config(dir.path(), "127.0.0.1:0", &[], []).unwrap();
        assert_eq!(c.rate_limit().unwrap(), None);
        let (c, _, _) = dev_config(
            dir.path(),
            "127.0.0.1:0",
            &[],
            [("MCR_SERVER_RATE_LIMIT".to_string(), "5".to_string())],
        )
        .unwrap();
        assert_eq!(c.rate_limit().unwrap().map(|r| r.per_second.get()), Some(5));
    }
}
