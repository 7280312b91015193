//! Serving the web UI (`mcr_web`): for `mcr-web server` from the `[web]`
//! section, and beside `mcrsrv dev` on the next free loopback port.
//!
//! The UI reaches the registry only through its gRPC API, over a channel
//! that connects lazily: it starts while `mcrsrv` is down, shows a
//! "registry unreachable" page meanwhile, and recovers when it is back.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_extra::extract::cookie::Key;
use mcr_core::time::SystemClock;
use mcr_web::config::WebConfig;
use mcr_web::session::load_or_create_key;
use mcr_web::{Web, WebOptions};
use tokio::net::TcpListener;

use super::listen;

/// How long in-flight pages may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves the UI as `config` says until SIGINT or SIGTERM.
pub async fn server(config: &WebConfig) -> anyhow::Result<()> {
    config.validate()?;
    let grpc_addr = config.grpc_addr()?;
    let key_file = config
        .session_key_file
        .as_deref()
        .context("web.session_key_file is required but missing")?;
    let key = load_or_create_key(key_file)?;
    let tls_client = if grpc_addr.starts_with("https://") {
        let roots = crate::tls::trusted_roots(config.ca_cert.as_deref(), "web.ca_cert")
            .map_err(anyhow::Error::msg)?;
        Some(mcr_grpc::client::tls_config(roots).context("TLS 1.3 is not available")?)
    } else {
        None
    };
    let channel = mcr_grpc::client::connect_lazy(grpc_addr, tls_client)
        .map_err(|e| anyhow::anyhow!("web.grpc_addr: {e}"))?;
    let web = Web::new(WebOptions {
        channel,
        grpc_addr: grpc_addr.to_string(),
        key,
        secure_cookies: true,
        registry_host: config.registry_host.clone(),
        clock: Arc::new(SystemClock),
    });
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            Some(listen::tls_acceptor(cert, key).context("web.tls_cert and web.tls_key")?)
        }
        _ => None,
    };
    let addr = config.listen_addr()?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (web.listen_addr)"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("mcr-web listening on {scheme}://{}", listener.local_addr()?);
    listen::serve(
        listener,
        tls,
        mcr_web::app(web),
        // A person's browser: the daemon's defaults bound it as well.
        &listen::ConnLimits::default(),
        super::run::shutdown_signal(),
        DRAIN,
    )
    .await
}

/// The UI for `mcrsrv dev`: plain HTTP on loopback (so cookies are not
/// `Secure`), reaching the registry's gRPC API at `grpc`, its session key
/// kept in `data`.
pub fn dev_app(
    data: &Path,
    grpc: SocketAddr,
    registry: SocketAddr,
) -> anyhow::Result<axum::Router> {
    let key: Key = load_or_create_key(&data.join("web-session.key"))?;
    let channel = mcr_grpc::client::connect_lazy(&format!("http://{grpc}"), None)
        .map_err(|e| anyhow::anyhow!("the dev UI's gRPC address: {e}"))?;
    Ok(mcr_web::app(Web::new(WebOptions {
        channel,
        grpc_addr: grpc.to_string(),
        key,
        secure_cookies: false,
        registry_host: Some(registry.to_string()),
        clock: Arc::new(SystemClock),
    })))
}

/// The first free port on `ip` from `from` up (at most 100 tried).
pub async fn next_free_listener(ip: std::net::IpAddr, from: u16) -> anyhow::Result<TcpListener> {
    for port in from..from.saturating_add(100) {
        if let Ok(l) = TcpListener::bind(SocketAddr::new(ip, port)).await {
            return Ok(l);
        }
    }
    anyhow::bail!("no free port on {ip} from {from} for the web UI")
}
