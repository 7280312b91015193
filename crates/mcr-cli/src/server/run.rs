//! The composition root: the only place that names concrete adapters.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mcr_adapters::fs::FsBlobStore;
use mcr_adapters::local_identity::LocalIdentity;
use mcr_adapters::mcias::{MciasConfig, MciasTokenValidator};
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::policy::Engine;
use mcr_core::ports::TokenValidator;
use mcr_core::registry::{Registry, RegistryConfig};
use mcr_core::time::SystemClock;
use mcr_http::{AppState, HttpConfig};
use tokio::net::TcpListener;

use tokio_rustls::TlsAcceptor;

use super::config::Config;
use super::listen;

/// How often stale upload sessions are looked for.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// The engine and the HTTP state, built from a validated config.
pub async fn build(config: &Config) -> anyhow::Result<AppState> {
    let db_path = config
        .database
        .path
        .as_ref()
        .context("database.path is required but missing")?;
    if let Some(dir) = db_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the database directory {}", dir.display()))?;
    }
    let meta = SqliteMetaStore::open(db_path)
        .with_context(|| format!("cannot open the database {}", db_path.display()))?;
    let layers = config
        .storage
        .layers_path
        .as_ref()
        .context("storage.layers_path is required but missing")?;
    let blobs =
        FsBlobStore::open(layers, &config.uploads_path()?).context("cannot open blob storage")?;
    let identity = identity(config, db_path)?;
    let meta = Arc::new(meta);
    let registry = Registry::new(
        meta.clone(),
        Arc::new(blobs),
        identity,
        Arc::new(Engine::new()),
    )
    .with_snapshots(meta)
    .with_config(RegistryConfig {
        gc_grace_period: config.gc_grace_period()?,
        upload_max_age: config.upload_max_age()?,
        ..RegistryConfig::default()
    });
    registry
        .reload_policy()
        .await
        .context("cannot load the policy rules")?;
    Ok(AppState::new(
        Arc::new(registry),
        HttpConfig {
            service_name: config.service_name(),
            external_url: config.server.external_url.clone(),
            tls: config.server.tls_cert.is_some(),
            ..HttpConfig::default()
        },
    ))
}

/// MCIAS when `[mcias] server_url` is set, else the local identity.
fn identity(config: &Config, db_path: &Path) -> anyhow::Result<Arc<dyn TokenValidator>> {
    if let Some(url) = &config.mcias.server_url {
        let mcias = MciasTokenValidator::new(
            MciasConfig {
                server_url: url.clone(),
                ca_cert: config.mcias.ca_cert.clone(),
                service_name: config.service_name(),
                tags: config.mcias.tags.clone(),
            },
            Arc::new(SystemClock),
        )
        .context("[mcias]")?;
        return Ok(Arc::new(mcias));
    }
    let key_path = config.local.key_path.clone().unwrap_or_else(|| {
        db_path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("token.key")
    });
    let identity = LocalIdentity::new(
        config.local.users.clone(),
        &key_path,
        config.token_ttl()?,
        Arc::new(SystemClock),
    )
    .with_context(|| {
        format!(
            "cannot set up the local identity (key {})",
            key_path.display()
        )
    })?;
    Ok(Arc::new(identity))
}

/// Serves until SIGINT or SIGTERM, then drains in-flight requests for at
/// most the shutdown timeout, and then writes the pull events still queued
/// for the audit writer. Stale upload sessions are purged hourly.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    grpc: Option<TcpListener>,
    tls: Option<TlsAcceptor>,
    shutdown_timeout: Duration,
) -> anyhow::Result<()> {
    let registry = Arc::clone(&state.registry);
    // Pull events are written in batches by this task, which stops (and
    // writes the rest) only once every request has been answered.
    let (stop_audit, audit_stopped) = tokio::sync::oneshot::channel::<()>();
    let audit = tokio::spawn(registry.audit_writer().run(async {
        let _ = audit_stopped.await;
    }));
    let purge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        loop {
            tick.tick().await;
            match registry.purge_stale_uploads().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "purged stale upload sessions"),
                Err(e) => tracing::warn!(error = %e, "purging stale uploads failed"),
            }
        }
    });
    // gRPC shares the engine and the certificate; it stops on the same
    // signals and gets the same time to drain.
    let grpc_task = grpc.map(|l| {
        tokio::spawn(mcr_grpc::serve(
            l,
            tls.clone(),
            Arc::clone(&state.registry),
            shutdown_signal(),
        ))
    });
    let app = mcr_http::router(state);
    let result = listen::serve(listener, tls, app, shutdown_signal(), shutdown_timeout).await;
    purge.abort();
    if let Some(task) = grpc_task {
        match tokio::time::timeout(shutdown_timeout, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "gRPC server failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "gRPC task panicked"),
            Err(_) => tracing::warn!("gRPC calls still in flight at the shutdown timeout"),
        }
    }
    let _ = stop_audit.send(());
    match audit.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "writing the last audit events failed"),
        Err(e) => tracing::error!(error = %e, "the audit writer panicked"),
    }
    result
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
