//! `mcrsrv`: the MCR registry daemon.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use mcr_cli::server::config::{Config, Database};
use mcr_cli::server::metrics::Metrics;
use mcr_cli::server::tasks::Background;
use mcr_cli::server::{db_lock, dev, listen, run, snapshot, web};
use mcr_core::ports::Secret;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(name = "mcrsrv", version = mcr_cli::VERSION, about = "MCR, an OCI container registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry as the config file says.
    Server {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create the database and storage directories the config names.
    Init {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Copy the SQLite database, consistently and online, into
    /// <database dir>/backups/mcr-YYYYMMDD-HHMMSS.db (PostgreSQL: pg_dump).
    Snapshot {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Serve on embedded defaults: plain HTTP on loopback, data in one
    /// directory, user `admin` with a generated password.
    Dev {
        /// Where data lives.
        #[arg(long, default_value = "./mcr-data")]
        data: PathBuf,
        /// Address to listen on (loopback only).
        #[arg(long, default_value = "127.0.0.1:5000")]
        listen: String,
        /// Mirror an upstream registry under a prefix, `PREFIX=URL`
        /// (`hub=https://registry-1.docker.io`); repeatable. Credentials
        /// and other keys come from `MCR_PROXY_<PREFIX>_<KEY>`.
        #[arg(long = "proxy", value_name = "PREFIX=URL")]
        proxies: Vec<String>,
    },
    /// Read a password from standard input and print its argon2id hash
    /// for `[[local.users]]`.
    HashPassword,
}

fn main() -> anyhow::Result<()> {
    tune_malloc();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blob I/O and SQLite run on blocking threads; a bounded pool keeps
        // memory (stacks, allocator arenas) bounded under load.
        .max_blocking_threads(64)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server { config } => {
                let config = Config::load(&config)?;
                mcr_cli::server::init_logging(config.log.level.as_deref());
                config.validate_for_server()?;
                serve(&config, None).await
            }
            Command::Init { config } => {
                let config = Config::load(&config)?;
                config.validate_for_server()?;
                let _lock = db_lock::for_config(&config)?;
                // Nothing is served, so nothing runs in the background.
                run::build(&config, Background::new().tracker()).await?;
                println!("initialised database and storage");
                Ok(())
            }
            Command::Snapshot { config } => {
                let config = Config::load(&config)?;
                match config.database()? {
                    Database::Sqlite(db) => {
                        println!("{}", snapshot::snapshot(db).await?);
                        Ok(())
                    }
                    Database::Postgres(_) => anyhow::bail!(
                        "mcrsrv snapshot copies a SQLite database; back PostgreSQL \
                         (database.url) up with pg_dump (docs/postgresql.md)"
                    ),
                }
            }
            Command::Dev {
                data,
                listen,
                proxies,
            } => {
                let (config, password, generated) =
                    dev::dev_config(&data, &listen, &proxies, std::env::vars())?;
                mcr_cli::server::init_logging(config.log.level.as_deref());
                let file = data.join("admin.password");
                if generated {
                    println!(
                        "admin password: {} (saved in {})",
                        password.expose(),
                        file.display()
                    );
                } else {
                    println!("admin password: in {}", file.display());
                }
                serve(&config, Some(&data)).await
            }
            Command::HashPassword => {
                let password = read_password()?;
                println!(
                    "{}",
                    mcr_adapters::local_identity::hash_password(&password)?
                );
                Ok(())
            }
        }
    })
}

/// Serves the registry; with `dev_data`, the web UI too, on the next
/// free loopback port after the gRPC one.
async fn serve(config: &Config, dev_data: Option<&Path>) -> anyhow::Result<()> {
    // Held until the server has drained and returns.
    let _lock = db_lock::for_config(config)?;
    // The recorder first: adapters and routers make their handles as they
    // are built.
    let metrics = match config.metrics_addr()? {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} (server.metrics_addr)"))?;
            Some((l, Metrics::install()?))
        }
        None => None,
    };
    let limits = config.conn_limits()?;
    let grpc_listeners = usize::from(config.grpc_addr()?.is_some());
    // With gRPC, `dev` serves the web UI on a listener of its own.
    let ui_listeners = usize::from(dev_data.is_some()) * grpc_listeners;
    let listeners = 1 + grpc_listeners + ui_listeners;
    listen::ensure_fd_room(limits.max_connections * listeners)?;
    let background = Background::new();
    let state = run::build(config, background.tracker()).await?;
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(listen::tls_acceptor(cert, key)?),
        _ => None,
    };
    let addr = config.listen_addr()?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (server.listen_addr)"))?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("mcrsrv listening on {scheme}://{local}");
    tracing::info!(%local, scheme, "listening");
    let grpc = match config.grpc_addr()? {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} (server.grpc_addr)"))?;
            println!("mcrsrv gRPC on {}", l.local_addr()?);
            Some(l)
        }
        None => None,
    };
    let ui = match (dev_data, &grpc) {
        (Some(data), Some(g)) => {
            let grpc_addr = g.local_addr()?;
            // An ephemeral address asked for gets an ephemeral UI port.
            let from = match local.port() {
                0 => 0,
                _ => grpc_addr.port().saturating_add(1),
            };
            let l = web::next_free_listener(local.ip(), from).await?;
            println!("web UI on http://{}", l.local_addr()?);
            let app = web::dev_app(data, grpc_addr, local)?;
            let drain = config.shutdown_timeout()?;
            let limits = limits.clone();
            Some(tokio::spawn(async move {
                listen::serve(l, None, app, &limits, run::shutdown_signal(), drain).await
            }))
        }
        (Some(_), None) => {
            println!("web UI off: it needs the gRPC API (server.grpc_addr)");
            None
        }
        _ => None,
    };
    // The metrics line stays the last one printed: scripts and tests read
    // up to it and may close the pipe, and a line printed after that would
    // fail (println! panics on a closed stdout).
    if let Some((l, _)) = &metrics {
        println!("metrics on http://{}/metrics", l.local_addr()?);
    }
    let result = run::serve(
        state,
        background,
        listener,
        run::Extra {
            grpc,
            metrics,
            limits,
            event_poll: config.event_settings()?.poll_interval,
        },
        tls,
        config.shutdown_timeout()?,
        run::shutdown_signal(),
    )
    .await;
    if let Some(ui) = ui {
        match ui.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the web UI failed"),
            Err(e) => tracing::error!(error = %e, "the web UI's task panicked"),
        }
    }
    result
}

/// Keeps glibc's heap close to what is in use.
///
/// glibc gives every thread that allocates its own arena (up to 8 per
/// core), and freed blob buffers then sit in dozens of them; two arenas
/// are enough on 2 cores and the extra lock contention does not show.
///
/// glibc also raises its mmap threshold to the size of the largest block
/// freed so far, so after the first argon2 hash (7 MiB) is freed, every
/// later login's 7 MiB comes from the heap and stays resident. A fixed
/// 1 MiB threshold hands such blocks back to the kernel when freed; blob
/// chunks (at most 512 KiB) and upload batches (256 KiB) stay on the heap.
///
/// Fixing that threshold also fixes the trim threshold at its 128 KiB
/// default: the heap would then shrink after every freed read chunk and
/// fault the pages in again for the next, which doubled a download's CPU
/// time. 2 MiB covers a download's chunks in flight (1.5 MiB) and caps
/// what each of the two arenas may keep unused on top of its heap.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 << 20);
    }
}

fn read_password() -> anyhow::Result<Secret> {
    if std::io::stdin().is_terminal() {
        eprintln!("password (input is echoed; pipe it in to avoid that):");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        anyhow::bail!("empty password on standard input");
    }
    Ok(Secret::new(pw))
}
