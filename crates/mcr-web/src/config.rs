//! The `[web]` section of a config file: where `mcr-web` listens, where
//! `mcrsrv`'s gRPC API is and how to trust it, and the session key.
//!
//! The section may sit in `mcrsrv`'s own config file or in a file of its
//! own; `mcr-cli`'s config loader reads the file and applies the
//! `MCR_WEB_<KEY>` environment overrides as for every section, and hands
//! the section to [`WebConfig::from_table`].
//!
//! ```toml
//! [web]
//! listen_addr = "0.0.0.0:8080"
//! grpc_addr = "https://registry.example:9443"
//! ca_cert = "/etc/mcr/ca.pem"
//! session_key_file = "/srv/mcr/web/session.key"
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Deserialize;

/// The `[web]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Address to serve the UI on, e.g. `0.0.0.0:8080`. Required.
    pub listen_addr: Option<String>,
    /// `mcrsrv`'s gRPC API: `https://host:port` (TLS 1.3), or
    /// `http://host:port` on a trusted network. Required.
    pub grpc_addr: Option<String>,
    /// PEM file of the CA that signed `mcrsrv`'s certificate; without it,
    /// the public web roots are trusted.
    pub ca_cert: Option<PathBuf>,
    /// 64 or more random bytes that sign and encrypt the cookies. Created
    /// (mode 0600) if missing; sessions survive a restart while it stays.
    /// Required.
    pub session_key_file: Option<PathBuf>,
    /// Serve HTTPS (TLS 1.3) with this certificate chain (PEM) ...
    pub tls_cert: Option<PathBuf>,
    /// ... and this private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The registry's host (and port) as clients pull from it, for the
    /// copyable pull references, e.g. `registry.example:8443`. Without
    /// it the references name the repository alone.
    pub registry_host: Option<String>,
}

impl WebConfig {
    /// The `[web]` section as read from a config file, refusing unknown
    /// keys by name.
    pub fn from_table(table: toml::Table) -> anyhow::Result<WebConfig> {
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("[web]: {}", e.message()))
    }

    /// Checks what `mcr-web server` needs, naming any missing or bad key.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        self.grpc_addr()?;
        require(&self.session_key_file, "web.session_key_file")?;
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => bail!("web.tls_key is required when web.tls_cert is set"),
            (None, Some(_)) => bail!("web.tls_cert is required when web.tls_key is set"),
            _ => Ok(()),
        }
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        let a = require(&self.listen_addr, "web.listen_addr")?;
        a.parse()
            .with_context(|| format!("web.listen_addr {a:?} is not an address like 0.0.0.0:8080"))
    }

    pub fn grpc_addr(&self) -> anyhow::Result<&str> {
        let a = require(&self.grpc_addr, "web.grpc_addr")?;
        if !(a.starts_with("https://") || a.starts_with("http://")) {
            bail!(
                "web.grpc_addr {a:?} must say its scheme: https://host:port (TLS), \
                 or http://host:port"
            );
        }
        Ok(a)
    }
}

fn require<'a, T>(v: &'a Option<T>, name: &str) -> anyhow::Result<&'a T> {
    v.as_ref()
        .ok_or_else(|| anyhow::anyhow!("{name} is required but missing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(text: &str) -> anyhow::Result<WebConfig> {
        WebConfig::from_table(text.parse().unwrap())
    }

    #[test]
    fn a_complete_section_is_valid() {
        let c = web(
            "listen_addr = \"127.0.0.1:8080\"\ngrpc_addr = \"https://r:9443\"\n\
             session_key_file = \"/k\"\nregistry_host = \"r:8443\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen_addr().unwrap().port(), 8080);
        assert_eq!(c.registry_host.as_deref(), Some("r:8443"));
    }

    #[test]
    fn names_what_is_missing_or_wrong() {
        let err = |text: &str| {
            web(text)
                .and_then(|c| c.validate())
                .unwrap_err()
                .to_string()
        };
        assert!(err("").contains("web.listen_addr"));
        assert!(err("listen_addr=\"127.0.0.1:1\"\n").contains("web.grpc_addr"));
        assert!(err("listen_addr=\"127.0.0.1:1\"\ngrpc_addr=\"r:1\"\n").contains("scheme"));
        assert!(err(
            "listen_addr=\"127.0.0.1:1\"\ngrpc_addr=\"http://r:1\"\nsession_key_file=\"k\"\ntls_cert=\"c\"\n"
        )
        .contains("web.tls_key"));
        assert!(err("listen_adr=\"x\"\n").contains("listen_adr"));
    }
}
