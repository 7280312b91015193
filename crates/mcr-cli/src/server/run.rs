//! The composition root: the only place that names concrete adapters,
//! and the owner of what runs beside the listeners ([`Background`]).

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use mcr_adapters::fs::FsBlobStore;
use mcr_adapters::local_identity::LocalIdentity;
use mcr_adapters::mcias::{MciasConfig, MciasTokenValidator};
use mcr_adapters::postgres::{PostgresConfig, PostgresCoordination, PostgresMetaStore};
use mcr_adapters::s3::S3BlobStore;
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_adapters::upstream::{HttpUpstream, UpstreamConfig};
use mcr_adapters::webhook::HttpEventSink;
use mcr_core::policy::Engine;
use mcr_core::ports::{
    BlobStore, Coordination, MetaStore, RevocationStore, Secret, SnapshotStore, TokenValidator,
};
use mcr_core::proxy::ProxyConfig;
use mcr_core::registry::{Registry, RegistryConfig};
use mcr_core::time::SystemClock;
use mcr_http::{AppState, HttpConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::config::{Config, Database, DatabaseSection, StorageBackend};
use super::listen;
use super::metrics::Metrics;
use super::tasks::{Background, Tracked};

/// How often stale upload sessions are looked for: often enough that
/// sessions that never received a byte (`storage.unused_upload_max_age`)
/// soon free their slot of the caps on open sessions.
const PURGE_INTERVAL: Duration = Duration::from_secs(300);
/// How often delivered events are pruned from the outbox.
const OUTBOX_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// The engine and the HTTP state, built from a validated config. Work a
/// request leaves running (a GC run, a pull-through fill) goes to `tasks`. When the config
/// serves metrics, the recorder must be installed before this is called
/// ([`super::metrics::Metrics::install`]).
pub async fn build(config: &Config, tasks: TaskTracker) -> anyhow::Result<AppState> {
    let metadata = metadata(config).await?;
    let blobs = blob_store(config).await?;
    let identity = identity(
        config,
        metadata.default_key_dir.as_deref(),
        metadata.store.clone(),
    )
    .await?;
    // Replicas sharing PostgreSQL change manifests and links this process
    // never hears of, so they cannot keep the read caches true: off.
    let defaults = RegistryConfig::default();
    let (manifest_cache_entries, blob_link_cache_entries) = match metadata.coordination {
        Some(_) => (0, 0),
        None => (
            defaults.manifest_cache_entries,
            defaults.blob_link_cache_entries,
        ),
    };
    let mut registry = Registry::new(metadata.store, blobs, identity, Arc::new(Engine::new()))
        .with_config(RegistryConfig {
            gc_grace_period: config.gc_grace_period()?,
            gc_interval: config.gc_interval()?,
            retention_interval: config.retention_interval()?,
            upload_max_age: config.upload_max_age()?,
            unused_upload_max_age: config.unused_upload_max_age()?,
            max_uploads_per_principal: config.upload_caps()?.0,
            max_uploads_per_repository: config.upload_caps()?.1,
            rate_limit: config.rate_limit()?,
            max_requests_in_flight: config.max_requests_in_flight(),
            login_limit: config.login_limit()?,
            manifest_cache_entries,
            blob_link_cache_entries,
            ..defaults
        });
    if let Some(snapshots) = metadata.snapshots {
        registry = registry.with_snapshots(snapshots);
    }
    if let Some(coordination) = metadata.coordination {
        registry = registry.with_coordination(coordination);
    }
    // A pull-through fill goes on to its commit after the pull that
    // started it, and shutdown waits for it as for a GC run.
    registry = registry
        .with_proxies(proxies(config)?)
        .context("[[proxy]]")?
        .with_spawner(Arc::new(Tracked(tasks.clone())));
    let webhooks = config.webhooks()?;
    if !webhooks.is_empty() {
        for hook in &webhooks {
            tracing::info!(webhook = %hook.key(), "sending events");
        }
        let sink = HttpEventSink::new().context("[[webhook]]")?;
        registry = registry.with_webhooks(
            webhooks,
            Arc::new(sink),
            config.event_source(),
            config.event_settings()?.backoff,
        );
    }
    registry
        .prepare_webhooks()
        .await
        .context("cannot read or set up the webhooks' delivery state")?;
    registry.check_proxy_prefixes().await.context("[[proxy]]")?;
    registry
        .reload_policy()
        .await
        .context("cannot load the policy rules")?;
    if config.metrics_addr()?.is_some() {
        registry
            .publish_gc_metrics()
            .await
            .context("cannot read the last GC run for its metrics")?;
    }
    Ok(AppState::new(
        Arc::new(registry),
        HttpConfig {
            service_name: config.service_name(),
            external_url: config.server.external_url.clone(),
            tls: config.server.tls_cert.is_some(),
            metrics: config.metrics_addr()?.is_some(),
            body_timeout: config.conn_limits()?.read_timeout,
            min_body_rate: config.min_body_rate(),
            ..HttpConfig::default()
        },
        tasks,
    ))
}

/// The pull-through cache's upstreams, one HTTP client each.
fn proxies(config: &Config) -> anyhow::Result<Vec<ProxyConfig>> {
    config
        .proxies()?
        .into_iter()
        .map(|p| {
            let upstream = HttpUpstream::new(UpstreamConfig {
                url: p.upstream.clone(),
                credentials: p.credentials,
                ca_cert: p.ca_cert,
                timeout: p.timeout,
            })
            .with_context(|| format!("[[proxy]] prefix {}", p.prefix))?;
            tracing::info!(prefix = %p.prefix, upstream = %p.upstream, "mirroring");
            Ok(ProxyConfig {
                prefix: p.prefix,
                upstream: Arc::new(upstream),
                tag_ttl: p.tag_ttl,
                offline: p.offline,
                docker_hub: p.docker_hub,
                max_size: p.max_size,
            })
        })
        .collect()
}

/// The metadata adapters `[database]` picks, and what comes with them.
struct Metadata {
    store: Arc<dyn MetaStore>,
    /// SQLite's online copy; PostgreSQL has none (`pg_dump` instead).
    snapshots: Option<Arc<dyn SnapshotStore>>,
    /// Locks shared by every replica on PostgreSQL; `None` keeps the
    /// engine's in-process locks (one `mcrsrv` on SQLite).
    coordination: Option<Arc<dyn Coordination>>,
    /// Where the local identity's key goes unless `local.key_path` says:
    /// beside the SQLite file (replicas must name a shared file).
    default_key_dir: Option<std::path::PathBuf>,
}

/// Opens the SQLite file, or connects to PostgreSQL (applying pending
/// migrations) and opens this replica's lock session. Fails, naming the
/// database and the cause, when it is unreachable or refuses us.
async fn metadata(config: &Config) -> anyhow::Result<Metadata> {
    match config.database()? {
        Database::Sqlite(path) => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(dir) = dir {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("cannot create the database directory {}", dir.display())
                })?;
            }
            let meta = Arc::new(
                SqliteMetaStore::open(path)
                    .with_context(|| format!("cannot open the database {}", path.display()))?,
            );
            Ok(Metadata {
                store: meta.clone(),
                snapshots: Some(meta),
                coordination: None,
                default_key_dir: Some(dir.unwrap_or_else(|| Path::new(".")).to_path_buf()),
            })
        }
        Database::Postgres(section) => {
            let pg = postgres_config(section)?;
            let cannot = || {
                format!(
                    "cannot use the PostgreSQL database (database.url: {})",
                    pg.target()
                )
            };
            let meta = PostgresMetaStore::connect(&pg).await.with_context(cannot)?;
            let locks = PostgresCoordination::connect(&pg)
                .await
                .with_context(cannot)?;
            tracing::info!(target = %pg.target(), "metadata in PostgreSQL");
            Ok(Metadata {
                store: Arc::new(meta),
                snapshots: None,
                coordination: Some(Arc::new(locks)),
                default_key_dir: None,
            })
        }
    }
}

/// The blob store `storage.backend` names, checked to be usable: an S3
/// bucket that cannot be listed stops the start with its endpoint, bucket
/// and reason.
async fn blob_store(config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    match config.storage_backend()? {
        StorageBackend::Fs => {
            let layers = config
                .storage
                .layers_path
                .as_ref()
                .context("storage.layers_path is required but missing")?;
            let blobs = FsBlobStore::open(layers, &config.uploads_path()?)
                .context("cannot open blob storage")?;
            Ok(Arc::new(blobs))
        }
        StorageBackend::S3 => {
            let s3 = config.s3()?;
            let blobs = S3BlobStore::connect(&s3).await.with_context(|| {
                format!(
                    "cannot use S3 bucket {:?} at {} ([storage.s3]); check that the endpoint \
                     answers, the bucket exists and the key may read and write it",
                    s3.bucket, s3.endpoint
                )
            })?;
            Ok(Arc::new(blobs))
        }
    }
}

/// The connection settings of `[database]` with `url`.
fn postgres_config(section: &DatabaseSection) -> anyhow::Result<PostgresConfig> {
    let url = section
        .url
        .as_deref()
        .context("database.url is required but missing")?;
    let mut pg = PostgresConfig::from_url(url)?;
    if let Some(file) = &section.password_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read database.password_file {}", file.display()))?;
        let password = text.lines().next().unwrap_or_default();
        if password.is_empty() {
            anyhow::bail!("database.password_file {} is empty", file.display());
        }
        pg = pg.password(&Secret::new(password.to_string()));
    }
    if let Some(n) = section.max_connections {
        pg = pg.max_connections(n);
    }
    Ok(pg)
}

/// MCIAS when `[mcias] server_url` is set, else the local identity, its
/// logouts kept in `revocations` (the metadata store, shared by replicas).
async fn identity(
    config: &Config,
    default_key_dir: Option<&Path>,
    revocations: Arc<dyn RevocationStore>,
) -> anyhow::Result<Arc<dyn TokenValidator>> {
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
    let key_path = match (&config.local.key_path, default_key_dir) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => dir.join("token.key"),
        (None, None) => anyhow::bail!(
            "local.key_path is required with database.url: every replica must sign tokens \
             with the same key file"
        ),
    };
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
    })?
    .keep_revocations_in(revocations)
    .await
    .context("cannot load the revoked tokens")?;
    Ok(Arc::new(identity))
}

/// What [`serve`] listens on besides the API, and the limits every
/// listener's connections live under.
pub struct Extra {
    /// gRPC, sharing the API's TLS certificate.
    pub grpc: Option<TcpListener>,
    /// Prometheus metrics, plain HTTP.
    pub metrics: Option<(TcpListener, Metrics)>,
    /// `[server]` timeouts and connection cap, for every listener.
    pub limits: listen::ConnLimits,
    /// How often a caught-up webhook looks for new events
    /// (`events.poll_interval`).
    pub event_poll: Duration,
}

/// Serves until `shutdown` resolves (SIGINT or SIGTERM in `mcrsrv`, see
/// [`shutdown_signal`]), then stops accepting, drains in-flight requests
/// and the background tasks (GC runs, the upload purge, the GC schedule,
/// the audit writer's last batch), all within `shutdown_timeout` of the
/// signal. Stale upload sessions are purged every five minutes; GC and
/// retention run on their schedules when the config sets them.
pub async fn serve(
    state: AppState,
    background: Background,
    listener: TcpListener,
    extra: Extra,
    tls: Option<TlsAcceptor>,
    shutdown_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let registry = Arc::clone(&state.registry);
    let limits = extra.limits;
    background.write_audit(&registry);
    background.purge_uploads(Arc::clone(&registry), PURGE_INTERVAL);
    background.schedule_gc(Arc::clone(&registry));
    background.schedule_retention(Arc::clone(&registry));
    background.deliver_events(
        Arc::clone(&registry),
        extra.event_poll,
        OUTBOX_PRUNE_INTERVAL,
    );
    let stop = background.stopping();
    // The other listeners stop with the API's and are background tasks
    // like the rest: the drain below waits for their calls too.
    // gRPC shares the engine, the certificate and the connection cap.
    let grpc_limits = mcr_grpc::ServeLimits {
        max_connections: limits.max_connections,
        ..mcr_grpc::ServeLimits::default()
    };
    if let Some(l) = extra.grpc {
        let grpc = mcr_grpc::serve(
            l,
            tls.clone(),
            Arc::clone(&registry),
            grpc_limits,
            background.tracker(),
            stop.clone().cancelled_owned(),
        );
        background.tracker().spawn(async move {
            if let Err(e) = grpc.await {
                tracing::error!(error = %e, "gRPC server failed");
            }
        });
    }
    if let Some((l, m)) = extra.metrics {
        m.upkeep(&background);
        let app = m.router(Arc::clone(&registry));
        let (limits, stopped) = (limits.clone(), stop.clone().cancelled_owned());
        background.tracker().spawn(async move {
            let serving = listen::serve(l, None, app, &limits, stopped, shutdown_timeout);
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    let signalled = OnceLock::new();
    let on_signal = async {
        shutdown.await;
        let _ = signalled.set(Instant::now());
        stop.cancel();
    };
    let app = mcr_http::router(state);
    let result = listen::serve(listener, tls, app, &limits, on_signal, shutdown_timeout).await;
    let deadline = signalled.get().copied().unwrap_or_else(Instant::now) + shutdown_timeout;
    if background
        .shutdown(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        tracing::info!("background tasks finished");
    }
    result
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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
