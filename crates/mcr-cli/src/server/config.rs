//! The daemon's configuration: a TOML file, overridden by environment
//! variables `MCR_<SECTION>_<KEY>`, validated with messages that name the
//! field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use mcr_adapters::local_identity::LocalUser;
use mcr_adapters::s3::S3Config;
use mcr_core::display::redact_url;
use mcr_core::events::{
    check_webhook_url, Backoff, EventKind, Webhook, MAX_WEBHOOKS, MAX_WEBHOOK_PATTERNS,
};
use mcr_core::names::RepoName;
use mcr_core::policy::RepoPattern;
use mcr_core::ports::Secret;
use mcr_core::registry::{LoginLimit, RateLimit, RegistryConfig};
use serde::Deserialize;

use super::listen::ConnLimits;

/// Longest config file read.
const MAX_CONFIG_SIZE: u64 = 1024 * 1024;
/// Requests per second per principal when `server.rate_limit` is unset.
const DEFAULT_RATE_LIMIT: usize = 100;
/// Burst per principal when `server.rate_burst` is unset.
const DEFAULT_RATE_BURST: usize = 500;
/// Requests in flight per principal when `server.max_requests_in_flight`
/// is unset: far more than a client pushing or pulling in parallel uses
/// (docker and containerd use 3 to 10), a sixteenth of `max_connections`.
const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 64;
/// Failed logins per username when `server.login_failures_per_user` is
/// unset.
const DEFAULT_LOGIN_FAILURES_PER_USER: u32 = 10;
/// Failed logins per client address when
/// `server.login_failures_per_address` is unset: higher than per user, as
/// several users may share an address.
const DEFAULT_LOGIN_FAILURES_PER_ADDRESS: u32 = 100;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub database: DatabaseSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub gc: GcSection,
    #[serde(default)]
    pub retention: RetentionSection,
    #[serde(default)]
    pub mcias: MciasSection,
    #[serde(default)]
    pub local: LocalSection,
    #[serde(default)]
    pub web: toml::Table,
    #[serde(default)]
    pub log: LogSection,
    /// Pull-through cache: one table per mirrored upstream.
    #[serde(default)]
    pub proxy: Vec<ProxySection>,
    /// How webhook deliveries are retried and polled.
    #[serde(default)]
    pub events: EventsSection,
    /// Webhooks: one table per endpoint events are posted to.
    #[serde(default)]
    pub webhook: Vec<WebhookSection>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen_addr: Option<String>,
    pub grpc_addr: Option<String>,
    /// Where Prometheus metrics are served (`GET /metrics`, plain HTTP);
    /// off when unset.
    pub metrics_addr: Option<String>,
    pub external_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How long a request's headers may take to arrive from their first
    /// byte, a new connection's first from its start, and a request body
    /// may go without a byte (default 60s).
    pub read_timeout: Option<String>,
    /// Least average rate of a request body once `read_timeout` has
    /// passed since it began, in bytes per second (default 1024; 0 turns
    /// it off); slower bodies fail with 408.
    pub min_body_rate: Option<u64>,
    /// How long a response may wait on a client that does not read it
    /// (default 60s).
    pub write_timeout: Option<String>,
    /// How long a kept-alive connection may stay open with no request in
    /// flight between requests (default 120s).
    pub idle_timeout: Option<String>,
    /// Most connections open at once (default 1024).
    pub max_connections: Option<usize>,
    /// Requests per second each principal may make on average (default
    /// 100; 0 turns the limit off, as `mcrsrv dev` does unless set).
    pub rate_limit: Option<usize>,
    /// Requests a principal may make at once after a quiet spell (default
    /// 500).
    pub rate_burst: Option<usize>,
    /// Requests each principal may have in flight at once (default 64; 0
    /// turns the limit off).
    pub max_requests_in_flight: Option<usize>,
    /// Failed logins per username within `login_failure_window` before
    /// its logins are refused for the rest of it (default 10; 0: off).
    pub login_failures_per_user: Option<u32>,
    /// The same per client address (default 100; 0: off). Behind a
    /// reverse proxy every client has the proxy's address.
    pub login_failures_per_address: Option<u32>,
    /// How long failed logins are counted from the first (default 5m).
    pub login_failure_window: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub service_name: Option<String>,
}

/// Where the metadata lives: a SQLite file (`path`) for one `mcrsrv`, or
/// a PostgreSQL database (`url`) that several replicas share. Exactly one
/// of the two.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// SQLite: the database file.
    pub path: Option<PathBuf>,
    /// PostgreSQL: `postgres://user[:password]@host:port/database`, or the
    /// `key=value` form, with any libpq option tokio-postgres knows.
    pub url: Option<String>,
    /// PostgreSQL: a file holding the password (first line), instead of
    /// one in the URL.
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: connections this replica keeps at most (default 16).
    pub max_connections: Option<usize>,
}

/// The metadata database `[database]` names.
#[derive(Debug, Clone, Copy)]
pub enum Database<'a> {
    /// A SQLite file.
    Sqlite(&'a Path),
    /// A PostgreSQL database shared by replicas.
    Postgres(&'a DatabaseSection),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Where blobs live: `fs` (the default: `layers_path`, `uploads_path`)
    /// or `s3` (`[storage.s3]`).
    pub backend: Option<String>,
    pub layers_path: Option<PathBuf>,
    pub uploads_path: Option<PathBuf>,
    /// Upload sessions that received nothing for this long are purged
    /// (default 24h).
    pub upload_max_age: Option<String>,
    /// Sessions that never received a byte are purged after this
    /// (default 15m).
    pub unused_upload_max_age: Option<String>,
    /// Upload sessions one principal may hold open (default 100).
    pub max_uploads_per_principal: Option<usize>,
    /// Upload sessions one repository may hold open (default 1000).
    pub max_uploads_per_repository: Option<usize>,
    #[serde(default)]
    pub s3: S3Section,
}

/// `[storage.s3]`: the bucket of `backend = "s3"` (docs/s3.md). The
/// credentials default to `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    /// Default `us-east-1`; Garage's is `garage`.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("S3Section")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Where blobs live (`storage.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageBackend {
    /// A local (or shared) filesystem: `layers_path` and `uploads_path`.
    Fs,
    /// An S3-protocol bucket: `[storage.s3]`.
    S3,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcSection {
    pub grace_period: Option<String>,
    /// How often GC runs on its own (e.g. `24h`); off when unset or `0s`.
    pub interval: Option<String>,
}

/// `[retention]`: the schedule of retention runs (the policies themselves
/// are stored, managed with `mcrctl retention`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// How often every enabled retention policy runs on its own (e.g.
    /// `24h`); off when unset or `0s`.
    pub interval: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MciasSection {
    pub server_url: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub service_name: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The built-in identity, used when `[mcias] server_url` is unset.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    #[serde(default)]
    pub users: Vec<LocalUser>,
    pub token_ttl: Option<String>,
    /// Token signing key; default `<database dir>/token.key`.
    pub key_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub level: Option<String>,
}

/// `[events]`: how webhook deliveries are retried (exponential backoff
/// from `retry_initial`, doubling to `retry_max`, with jitter) and how
/// often a caught-up webhook looks for new events.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// First wait after a failed delivery (default 1s).
    pub retry_initial: Option<String>,
    /// Longest wait between attempts (default 5m).
    pub retry_max: Option<String>,
    /// How often a caught-up webhook looks for new events (default 1s).
    pub poll_interval: Option<String>,
}

/// `[events]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSettings {
    pub backoff: Backoff,
    pub poll_interval: Duration,
}

/// One `[[webhook]]` table: where events are posted, which, and the
/// secret that signs them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// `https://ci.example/hooks/mcr`.
    pub url: String,
    /// The signing key itself; prefer `secret_file`.
    #[serde(default, deserialize_with = "secret")]
    pub secret: Option<Secret>,
    /// A file holding the signing key (a trailing newline is dropped).
    pub secret_file: Option<PathBuf>,
    /// Event types sent (`manifest.pushed`, ...); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Repository patterns (the policy rules' globs); empty: all.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Longest wait for a receiver's answer (default 10s).
    pub timeout: Option<String>,
}

/// Shortest secret accepted, in bytes: an HMAC key guessable by brute
/// force signs nothing.
const MIN_WEBHOOK_SECRET_LEN: usize = 16;
/// Longest secret accepted, in bytes.
const MAX_WEBHOOK_SECRET_LEN: usize = 1024;

impl WebhookSection {
    /// Checks the table (`n` is its position, for messages) and reads the
    /// secret file. No message shows the secret or the URL's credentials.
    pub fn validate(&self, n: usize) -> anyhow::Result<Webhook> {
        let at = format!("webhook[{n}] ({:?})", redact_url(&self.url));
        check_webhook_url(&self.url).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
        let secret = match (&self.secret, &self.secret_file) {
            (Some(_), Some(_)) => bail!("{at}: set secret or secret_file, not both"),
            (Some(s), None) => s.clone(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("{at}: cannot read secret_file {}", path.display()))?;
                Secret::new(text.trim_end_matches(['\r', '\n']))
            }
            (None, None) => {
                bail!("{at}: a secret is required to sign the events: set secret_file (or secret)")
            }
        };
        let len = secret.expose().len();
        if !(MIN_WEBHOOK_SECRET_LEN..=MAX_WEBHOOK_SECRET_LEN).contains(&len) {
            bail!(
                "{at}: the secret is {len} bytes; use {MIN_WEBHOOK_SECRET_LEN} to \
                 {MAX_WEBHOOK_SECRET_LEN} (e.g. `openssl rand -hex 32`)"
            );
        }
        if self.events.len() > EventKind::ALL.len() {
            bail!(
                "{at}: events lists {} types, more than there are",
                self.events.len()
            );
        }
        let mut events = Vec::new();
        for e in &self.events {
            let kind: EventKind = e
                .parse()
                .map_err(|e| anyhow::anyhow!("{at}: events: {e}"))?;
            if !events.contains(&kind) {
                events.push(kind);
            }
        }
        if self.repositories.len() > MAX_WEBHOOK_PATTERNS {
            bail!(
                "{at}: repositories lists {} patterns, over the limit of {MAX_WEBHOOK_PATTERNS}",
                self.repositories.len()
            );
        }
        let repositories = self
            .repositories
            .iter()
            .map(|p| RepoPattern::new(p).map_err(|e| anyhow::anyhow!("{at}: repositories: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let timeout = duration(&format!("{at}: timeout"), self.timeout.as_deref(), "10s")?;
        if timeout.is_zero() || timeout > Duration::from_secs(300) {
            bail!("{at}: timeout {timeout:?} must be above 0 and at most 5m");
        }
        Ok(Webhook {
            url: self.url.clone(),
            secret,
            events,
            repositories,
            timeout,
        })
    }
}

/// One `[[proxy]]` table: a repository prefix mirroring an upstream
/// registry (spec § "Pull-through cache").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// `hub`: MCR's `hub/library/alpine` is the upstream's `library/alpine`.
    pub prefix: String,
    /// `https://registry-1.docker.io`.
    pub upstream: String,
    pub username: Option<String>,
    /// The password itself; prefer `password_file` or
    /// `MCR_PROXY_<PREFIX>_PASSWORD`.
    #[serde(default, deserialize_with = "secret")]
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    /// How long a tag's answer is trusted locally (default 5m).
    pub tag_ttl: Option<String>,
    /// Serve what is cached when the upstream fails (default true).
    pub offline: Option<bool>,
    /// Connect timeout and longest silence within an answer (default 30s).
    pub timeout: Option<String>,
    /// Cache size cap, `50GiB` (default: none): each GC run first evicts
    /// least-recently-pulled repositories of the mirror until it is under.
    pub max_size: Option<String>,
}

/// A proxy's settings, checked.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub prefix: RepoName,
    pub upstream: String,
    pub credentials: Option<(String, Secret)>,
    pub ca_cert: Option<PathBuf>,
    pub tag_ttl: Duration,
    pub offline: bool,
    pub timeout: Duration,
    /// Docker Hub: a one-component name means `library/<name>`.
    pub docker_hub: bool,
    /// Bytes the cache may hold after a GC run; `None`: no limit.
    pub max_size: Option<u64>,
}

/// Hosts of Docker Hub's registry API.
const DOCKER_HUB_HOSTS: [&str; 4] = [
    "registry-1.docker.io",
    "docker.io",
    "index.docker.io",
    "registry.hub.docker.com",
];

impl ProxySection {
    /// Checks the table (`n` is its position, for messages) and reads the
    /// password file.
    pub fn validate(&self, n: usize) -> anyhow::Result<ProxySettings> {
        let at = format!("proxy[{n}] (prefix {:?})", self.prefix);
        let prefix = RepoName::new(&self.prefix)
            .map_err(|e| anyhow::anyhow!("{at}: prefix must be a repository name: {e}"))?;
        let upstream = self.upstream.trim();
        if upstream.is_empty() {
            bail!("{at}: upstream is required, like https://registry-1.docker.io");
        }
        let password = match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => bail!("{at}: set password or password_file, not both"),
            (Some(p), None) => Some(p.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("{at}: cannot read password_file {}", path.display())
                })?;
                Some(Secret::new(text.trim_end_matches(['\r', '\n'])))
            }
            (None, None) => None,
        };
        let credentials = match (&self.username, password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u.clone(), p)),
            (None, None) => None,
            _ => bail!("{at}: username and a password (password or password_file) go together"),
        };
        let max_size = match self.max_size.as_deref().map(parse_size).transpose() {
            Ok(Some(0)) => bail!("{at}: max_size must be above 0 (leave it out for no limit)"),
            Ok(size) => size,
            Err(e) => return Err(e.context(format!("{at}: max_size"))),
        };
        let host = upstream
            .split_once("://")
            .map_or(upstream, |(_, rest)| rest)
            .split(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        Ok(ProxySettings {
            prefix,
            upstream: upstream.to_string(),
            credentials,
            ca_cert: self.ca_cert.clone(),
            tag_ttl: duration(&format!("{at}: tag_ttl"), self.tag_ttl.as_deref(), "5m")?,
            offline: self.offline.unwrap_or(true),
            timeout: duration(&format!("{at}: timeout"), self.timeout.as_deref(), "30s")?,
            docker_hub: DOCKER_HUB_HOSTS.contains(&host.as_str()),
            max_size,
        })
    }
}

/// `50GiB`, `512MiB`, `10GB`, `1000` (bytes).
fn parse_size(s: &str) -> anyhow::Result<u64> {
    Ok(mcr_core::display::parse_size(s)?)
}

/// A secret from the config file, kept out of `Debug`.
fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: [(&str, &str); 1] = [("mcias", "tags")];
/// Keys whose environment value is a whole number.
const INTEGER_KEYS: [(&str, &str); 10] = [
    ("server", "max_requests_in_flight"),
    ("server", "login_failures_per_user"),
    ("server", "login_failures_per_address"),
    ("database", "max_connections"),
    ("storage", "max_uploads_per_principal"),
    ("storage", "max_uploads_per_repository"),
    ("server", "max_connections"),
    ("server", "min_body_rate"),
    ("server", "rate_limit"),
    ("server", "rate_burst"),
];

/// Tables inside sections that `MCR_<SECTION>_<TABLE>_<KEY>` reaches:
/// `MCR_STORAGE_S3_BUCKET` sets `[storage.s3] bucket`.
const SUBSECTIONS: [(&str, &str); 1] = [("storage", "s3")];

impl Config {
    /// Reads `path` and applies the environment's overrides.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        if meta.len() > MAX_CONFIG_SIZE {
            bail!(
                "config file {} is over {MAX_CONFIG_SIZE} bytes",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Config::parse(&text, std::env::vars())
            .with_context(|| format!("in config file {}", path.display()))
    }

    /// Parses the text of a config file and applies the `MCR_*` variables
    /// of `env` (see [`Config::from_table`]).
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let table: toml::Table = text
            .parse()
            .map_err(|e| anyhow::anyhow!("not valid TOML: {}", located(text, &e)))?;
        // The text alone is checked first because only an error found in
        // the text carries its line: an unknown or mistyped key is then
        // shown where it stands. The environment's overrides come after.
        if let Err(e) = toml::from_str::<Config>(text) {
            bail!("{}", located(text, &e));
        }
        Config::from_table(table, env)
    }

    /// Builds a config from a TOML table and `MCR_*` variables.
    pub fn from_table(
        mut table: toml::Table,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        apply_env(&mut table, env)?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message()))?;
        Ok(config)
    }

    /// Checks what `mcrsrv server` needs, naming any missing or bad field.
    pub fn validate_for_server(&self) -> anyhow::Result<()> {
        self.distinct_addrs()?;
        let database = self.database()?;
        match self.storage_backend()? {
            StorageBackend::Fs => {
                require(&self.storage.layers_path, "storage.layers_path")?;
            }
            StorageBackend::S3 => {
                self.s3()?;
            }
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => bail!("server.tls_key is required when server.tls_cert is set"),
            (None, Some(_)) => bail!("server.tls_cert is required when server.tls_key is set"),
            _ => {}
        }
        if self.mcias.server_url.is_none() {
            if self.local.users.is_empty() {
                bail!("no identity configured: set mcias.server_url, or add [[local.users]]");
            }
            if matches!(database, Database::Postgres(_)) && self.local.key_path.is_none() {
                bail!(
                    "local.key_path is required with database.url: every replica must sign \
                     tokens with the same key file, or a token from one is refused by the others"
                );
            }
        }
        self.gc_grace_period()?;
        self.gc_interval()?;
        self.retention_interval()?;
        self.upload_max_age()?;
        self.unused_upload_max_age()?;
        self.upload_caps()?;
        // A [web] section here is mcr-web's; a typo in it is still a typo.
        self.web_config()?;
        self.token_ttl()?;
        self.proxies()?;
        self.webhooks()?;
        self.event_settings()?;
        self.shutdown_timeout()?;
        self.conn_limits()?;
        self.rate_limit()?;
        self.login_limit()?;
        Ok(())
    }

    /// The metadata database: `database.path` (SQLite) or `database.url`
    /// (PostgreSQL), never both; the PostgreSQL-only keys are refused
    /// beside a path.
    pub fn database(&self) -> anyhow::Result<Database<'_>> {
        let db = &self.database;
        match (&db.path, &db.url) {
            (Some(_), Some(_)) => {
                bail!("database.path (SQLite) and database.url (PostgreSQL) are both set; keep one")
            }
            (Some(path), None) => {
                for (name, set) in [
                    ("database.password_file", db.password_file.is_some()),
                    ("database.max_connections", db.max_connections.is_some()),
                ] {
                    if set {
                        bail!("{name} is for PostgreSQL (database.url), not database.path");
                    }
                }
                Ok(Database::Sqlite(path))
            }
            (None, Some(_)) => Ok(Database::Postgres(db)),
            (None, None) => bail!(
                "database.path (a SQLite file) or database.url (PostgreSQL) is required but missing"
            ),
        }
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        let addr = require(&self.server.listen_addr, "server.listen_addr")?;
        addr.parse().with_context(|| {
            format!("server.listen_addr {addr:?} is not an address like 127.0.0.1:8443")
        })
    }

    /// Where gRPC is served, when it is.
    pub fn grpc_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        match self.server.grpc_addr.as_deref().filter(|a| !a.is_empty()) {
            None => Ok(None),
            Some(a) => a.parse().map(Some).with_context(|| {
                format!("server.grpc_addr {a:?} is not an address like 127.0.0.1:9443")
            }),
        }
    }

    /// The three listeners, refusing two that would take one port: the
    /// bind error would otherwise blame whichever happened to start second.
    /// Two addresses clash on the same fixed port when their IPs are equal
    /// or either is unspecified (`0.0.0.0` takes the port on every
    /// address, 127.0.0.1 included).
    fn distinct_addrs(&self) -> anyhow::Result<()> {
        let named = [
            ("server.listen_addr", Some(self.listen_addr()?)),
            ("server.grpc_addr", self.grpc_addr()?),
            ("server.metrics_addr", self.metrics_addr()?),
        ];
        for (i, (a_name, a)) in named.iter().enumerate() {
            for (b_name, b) in &named[i + 1..] {
                let (Some(a), Some(b)) = (a, b) else { continue };
                let overlap =
                    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
                if a.port() == b.port() && a.port() != 0 && overlap {
                    bail!(
                        "{b_name} ({b}) and {a_name} ({a}) take the same port {}; each needs its own",
                        a.port()
                    );
                }
            }
        }
        Ok(())
    }

    /// Where metrics are served, when they are.
    pub fn metrics_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        match self
            .server
            .metrics_addr
            .as_deref()
            .filter(|a| !a.is_empty())
        {
            None => Ok(None),
            Some(a) => a.parse().map(Some).with_context(|| {
                format!("server.metrics_addr {a:?} is not an address like 127.0.0.1:9100")
            }),
        }
    }

    /// How often GC runs on its own; `None` (the default) when unset or
    /// zero.
    pub fn gc_interval(&self) -> anyhow::Result<Option<Duration>> {
        schedule("gc.interval", self.gc.interval.as_deref())
    }

    /// How often retention runs on its own; `None` (the default) when
    /// unset or zero.
    pub fn retention_interval(&self) -> anyhow::Result<Option<Duration>> {
        schedule("retention.interval", self.retention.interval.as_deref())
    }

    pub fn gc_grace_period(&self) -> anyhow::Result<Duration> {
        duration("gc.grace_period", self.gc.grace_period.as_deref(), "1h")
    }

    pub fn upload_max_age(&self) -> anyhow::Result<Duration> {
        duration(
            "storage.upload_max_age",
            self.storage.upload_max_age.as_deref(),
            "24h",
        )
    }

    pub fn unused_upload_max_age(&self) -> anyhow::Result<Duration> {
        duration(
            "storage.unused_upload_max_age",
            self.storage.unused_upload_max_age.as_deref(),
            "15m",
        )
    }

    /// (per principal, per repository) caps on open upload sessions; 0 is
    /// refused, since no push could start.
    pub fn upload_caps(&self) -> anyhow::Result<(u64, u64)> {
        let defaults = RegistryConfig::default();
        let s = &self.storage;
        let cap = |name: &str, value: Option<usize>, default: u64| -> anyhow::Result<u64> {
            Ok(positive(name, value)?.map_or(default, |n| n as u64))
        };
        Ok((
            cap(
                "storage.max_uploads_per_principal",
                s.max_uploads_per_principal,
                defaults.max_uploads_per_principal,
            )?,
            cap(
                "storage.max_uploads_per_repository",
                s.max_uploads_per_repository,
                defaults.max_uploads_per_repository,
            )?,
        ))
    }

    pub fn token_ttl(&self) -> anyhow::Result<Duration> {
        duration("local.token_ttl", self.local.token_ttl.as_deref(), "1h")
    }

    /// What each connection may hold (`[server]` timeouts and
    /// `max_connections`); a timeout of 0s is refused, since it would cut
    /// every connection at once.
    pub fn conn_limits(&self) -> anyhow::Result<ConnLimits> {
        let defaults = ConnLimits::default();
        let timeout = |name: &str, value: &Option<String>, default: Duration| {
            let d = match value {
                Some(v) => duration(name, Some(v), "")?,
                None => default,
            };
            if d.is_zero() {
                bail!("{name} must be longer than 0s");
            }
            Ok::<_, anyhow::Error>(d)
        };
        let s = &self.server;
        Ok(ConnLimits {
            read_timeout: timeout(
                "server.read_timeout",
                &s.read_timeout,
                defaults.read_timeout,
            )?,
            write_timeout: timeout(
                "server.write_timeout",
                &s.write_timeout,
                defaults.write_timeout,
            )?,
            idle_timeout: timeout(
                "server.idle_timeout",
                &s.idle_timeout,
                defaults.idle_timeout,
            )?,
            max_connections: positive("server.max_connections", s.max_connections)?
                .unwrap_or(defaults.max_connections),
        })
    }

    /// Requests each principal may have in flight, or `None` when
    /// `max_requests_in_flight` is 0.
    pub fn max_requests_in_flight(&self) -> Option<NonZeroUsize> {
        NonZeroUsize::new(
            self.server
                .max_requests_in_flight
                .unwrap_or(DEFAULT_MAX_REQUESTS_IN_FLIGHT),
        )
    }

    /// Failed logins allowed per username and per address, or `None` when
    /// both are 0; a window of 0s is refused.
    pub fn login_limit(&self) -> anyhow::Result<Option<LoginLimit>> {
        let s = &self.server;
        let limit = LoginLimit {
            per_username: s
                .login_failures_per_user
                .unwrap_or(DEFAULT_LOGIN_FAILURES_PER_USER),
            per_address: s
                .login_failures_per_address
                .unwrap_or(DEFAULT_LOGIN_FAILURES_PER_ADDRESS),
            window: duration(
                "server.login_failure_window",
                s.login_failure_window.as_deref(),
                "5m",
            )?,
        };
        if limit.window.is_zero() {
            bail!("server.login_failure_window must be longer than 0s");
        }
        Ok((limit.per_username > 0 || limit.per_address > 0).then_some(limit))
    }

    /// The least average rate of a request body, in bytes per second
    /// (0: none).
    pub fn min_body_rate(&self) -> u64 {
        self.server
            .min_body_rate
            .unwrap_or(mcr_http::state::DEFAULT_MIN_BODY_RATE)
    }

    /// Each principal's request rate, or `None` when `rate_limit` is 0.
    pub fn rate_limit(&self) -> anyhow::Result<Option<RateLimit>> {
        let per_second = self.server.rate_limit.unwrap_or(DEFAULT_RATE_LIMIT);
        if per_second == 0 {
            return Ok(None);
        }
        let per_second = u32::try_from(per_second)
            .ok()
            .and_then(NonZeroU32::new)
            .context("server.rate_limit is too large")?;
        let burst =
            positive("server.rate_burst", self.server.rate_burst)?.unwrap_or(DEFAULT_RATE_BURST);
        let burst = u32::try_from(burst)
            .ok()
            .and_then(NonZeroU32::new)
            .context("server.rate_burst is too large")?;
        Ok(Some(RateLimit { per_second, burst }))
    }

    pub fn shutdown_timeout(&self) -> anyhow::Result<Duration> {
        duration(
            "server.shutdown_timeout",
            self.server.shutdown_timeout.as_deref(),
            "60s",
        )
    }

    /// Every `[[proxy]]`, checked (prefixes must also not overlap, which
    /// the engine checks when it is wired).
    /// The `[[webhook]]` tables, checked: at most [`MAX_WEBHOOKS`], each
    /// URL (without credentials) once, since it keys the delivery state.
    pub fn webhooks(&self) -> anyhow::Result<Vec<Webhook>> {
        if self.webhook.len() > MAX_WEBHOOKS {
            bail!(
                "{} [[webhook]] tables, over the limit of {MAX_WEBHOOKS}",
                self.webhook.len()
            );
        }
        let hooks = self
            .webhook
            .iter()
            .enumerate()
            .map(|(n, w)| w.validate(n))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (n, hook) in hooks.iter().enumerate() {
            if hooks[..n].iter().any(|h| h.key() == hook.key()) {
                bail!(
                    "webhook[{n}]: {:?} is configured twice; merge the two tables",
                    hook.key()
                );
            }
        }
        Ok(hooks)
    }

    /// `[events]`, checked.
    pub fn event_settings(&self) -> anyhow::Result<EventSettings> {
        let e = &self.events;
        let initial = duration("events.retry_initial", e.retry_initial.as_deref(), "1s")?;
        let max = duration("events.retry_max", e.retry_max.as_deref(), "5m")?;
        let poll_interval = duration("events.poll_interval", e.poll_interval.as_deref(), "1s")?;
        if initial.is_zero() || initial > max {
            bail!("events.retry_initial {initial:?} must be above 0 and at most events.retry_max {max:?}");
        }
        if max > Duration::from_secs(24 * 3600) {
            bail!("events.retry_max {max:?} is over a day");
        }
        if poll_interval < Duration::from_millis(100) || poll_interval > Duration::from_secs(3600) {
            bail!("events.poll_interval {poll_interval:?} must be from 100ms to 1h");
        }
        Ok(EventSettings {
            backoff: Backoff { initial, max },
            poll_interval,
        })
    }

    pub fn proxies(&self) -> anyhow::Result<Vec<ProxySettings>> {
        self.proxy
            .iter()
            .enumerate()
            .map(|(n, p)| p.validate(n))
            .collect()
    }

    /// `uploads_path`, defaulting to `uploads` beside `layers_path`.
    pub fn uploads_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.storage.uploads_path {
            return Ok(p.clone());
        }
        let layers = require(&self.storage.layers_path, "storage.layers_path")?;
        Ok(layers
            .parent()
            .map_or_else(|| PathBuf::from("uploads"), |p| p.join("uploads")))
    }

    pub fn storage_backend(&self) -> anyhow::Result<StorageBackend> {
        match self.storage.backend.as_deref() {
            None | Some("fs") => Ok(StorageBackend::Fs),
            Some("s3") => Ok(StorageBackend::S3),
            Some(other) => bail!("storage.backend {other:?} is not \"fs\" or \"s3\""),
        }
    }

    /// The bucket of `backend = "s3"`: endpoint and bucket are required.
    pub fn s3(&self) -> anyhow::Result<S3Config> {
        let s3 = &self.storage.s3;
        let endpoint = require(&s3.endpoint, "storage.s3.endpoint")?;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            bail!("storage.s3.endpoint {endpoint:?} is not a URL like http://127.0.0.1:3900");
        }
        Ok(S3Config {
            endpoint: endpoint.clone(),
            bucket: require(&s3.bucket, "storage.s3.bucket")?.clone(),
            region: s3.region.clone().unwrap_or_else(|| "us-east-1".to_string()),
            access_key_id: s3.access_key_id.clone(),
            secret_access_key: s3.secret_access_key.clone(),
        })
    }

    /// The `[web]` section, for `mcr-web`; unknown keys are refused by
    /// name.
    pub fn web_config(&self) -> anyhow::Result<mcr_web::config::WebConfig> {
        mcr_web::config::WebConfig::from_table(self.web.clone())
    }

    /// The CloudEvents `source` of the events sent: `server.external_url`,
    /// else `urn:mcr:<service name>`.
    pub fn event_source(&self) -> String {
        match &self.server.external_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("urn:mcr:{}", self.service_name()),
        }
    }

    pub fn service_name(&self) -> String {
        self.mcias
            .service_name
            .clone()
            .or_else(|| self.server.service_name.clone())
            .unwrap_or_else(|| "mcr".to_string())
    }
}

/// A TOML error as `line L, column C: message`, without the quoted line
/// that `toml`'s own display adds: that line may hold a password or a
/// webhook's token, and the error goes to a terminal or a log.
fn located(text: &str, e: &toml::de::Error) -> String {
    let Some(before) = e.span().and_then(|span| text.get(..span.start)) else {
        return e.message().to_string();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {column}: {}", e.message())
}

fn require<'a, T>(v: &'a Option<T>, name: &str) -> anyhow::Result<&'a T> {
    v.as_ref()
        .ok_or_else(|| anyhow::anyhow!("{name} is required but missing"))
}

/// A count that must be above 0 when set; `None` when unset.
fn positive(name: &str, value: Option<usize>) -> anyhow::Result<Option<usize>> {
    match value {
        Some(0) => bail!("{name} must be a whole number above 0"),
        v => Ok(v),
    }
}

/// A schedule's interval: off (`None`) when unset or `0s`, at least a
/// minute otherwise.
fn schedule(name: &str, value: Option<&str>) -> anyhow::Result<Option<Duration>> {
    let interval = duration(name, value, "0s")?;
    if !interval.is_zero() && interval < Duration::from_secs(60) {
        bail!(
            "{name} {interval:?} is under a minute; use 1m or more, or 0s to turn the schedule off"
        );
    }
    Ok((!interval.is_zero()).then_some(interval))
}

fn duration(name: &str, value: Option<&str>, default: &str) -> anyhow::Result<Duration> {
    let v = value.unwrap_or(default);
    humantime::parse_duration(v)
        .with_context(|| format!("{name} {v:?} is not a duration like 30s or 1h"))
}

/// Applies `MCR_<SECTION>_<KEY>=value` onto the table. The section is the
/// first word after `MCR_`; the rest, lowercased, is the key.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    const SECTIONS: [&str; 10] = [
        "server",
        "database",
        "storage",
        "gc",
        "retention",
        "events",
        "mcias",
        "local",
        "web",
        "log",
    ];
    // Refused whether or not a variable is set: which table a variable
    // reaches must not depend on the order of the file.
    proxy_env_prefixes(table)?;
    let overrides: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("MCR_"))
        .collect();
    for (var, value) in overrides {
        if let Some(rest) = var.strip_prefix("MCR_PROXY_") {
            apply_proxy_env(table, &var, rest, value)?;
            continue;
        }
        let rest = var["MCR_".len()..].to_ascii_lowercase();
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        if !SECTIONS.contains(&section) {
            continue;
        }
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(mut section_table) = entry.as_table_mut() else {
            bail!("[{section}] in the config file is not a section (while applying {var})");
        };
        let mut key = key;
        if let Some((sub, rest)) = SUBSECTIONS
            .iter()
            .filter(|(s, _)| *s == section)
            .find_map(|(_, sub)| Some((*sub, key.strip_prefix(sub)?.strip_prefix('_')?)))
        {
            let entry = section_table
                .entry(sub.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(sub_table) = entry.as_table_mut() else {
                bail!(
                    "[{section}.{sub}] in the config file is not a section (while applying {var})"
                );
            };
            section_table = sub_table;
            key = rest;
        }
        let v = if INTEGER_KEYS.contains(&(section, key)) {
            let n = value
                .trim()
                .parse()
                .with_context(|| format!("{var}={value:?} is not a whole number"))?;
            toml::Value::Integer(n)
        } else if LIST_KEYS.contains(&(section, key)) {
            toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_string()))
                    .collect(),
            )
        } else {
            toml::Value::String(value)
        };
        section_table.insert(key.to_string(), v);
    }
    Ok(())
}

/// The `[[proxy]]` tables' prefixes as `MCR_PROXY_<PREFIX>_` spells them
/// (uppercased, every other character as `_`: `hub/x-y` is `HUB_X_Y`),
/// with each table's index, longest first so that `HUB_X` is tried before
/// `HUB`. Two prefixes spelled the same (`a-b` and `a_b`) are refused: no
/// variable could tell them apart.
fn proxy_env_prefixes(table: &toml::Table) -> anyhow::Result<Vec<(usize, String)>> {
    let Some(proxies) = table.get("proxy").and_then(toml::Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<(usize, String, &str)> = proxies
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.get("prefix")?.as_str()?)))
        .map(|(i, prefix)| {
            let name = prefix
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            (i, name, prefix)
        })
        .collect();
    names.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.1.cmp(&b.1)));
    if let Some(pair) = names.windows(2).find(|w| w[0].1 == w[1].1) {
        bail!(
            "[[proxy]] prefixes {:?} and {:?} are both MCR_PROXY_{}_<KEY> in the environment; \
             rename one of them",
            pair[0].2,
            pair[1].2,
            pair[0].1
        );
    }
    Ok(names.into_iter().map(|(i, name, _)| (i, name)).collect())
}

/// Applies `MCR_PROXY_<PREFIX>_<KEY>=value` to the `[[proxy]]` table
/// whose prefix is `<PREFIX>` as [`proxy_env_prefixes`] spells it, the
/// longest that matches: how a password reaches a proxy without being in
/// the file.
fn apply_proxy_env(
    table: &mut toml::Table,
    var: &str,
    rest: &str,
    value: String,
) -> anyhow::Result<()> {
    let prefixes = proxy_env_prefixes(table)?;
    let Some(proxies) = table.get_mut("proxy").and_then(toml::Value::as_array_mut) else {
        bail!("{var} is set but the config has no [[proxy]] table");
    };
    for (i, name) in prefixes {
        let Some(proxy) = proxies.get_mut(i).and_then(toml::Value::as_table_mut) else {
            continue;
        };
        let Some(key) = rest.strip_prefix(&name).and_then(|k| k.strip_prefix('_')) else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        let v = match key.as_str() {
            "offline" => toml::Value::Boolean(
                value
                    .trim()
                    .parse()
                    .with_context(|| format!("{var}: {value:?} is not true or false"))?,
            ),
            _ => toml::Value::String(value),
        };
        proxy.insert(key, v);
        return Ok(());
    }
    bail!("{var} names no [[proxy]] prefix (MCR_PROXY_<PREFIX>_<KEY>, prefix uppercased, other characters as _)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_text: &str, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        Config::from_table(
            toml_text.parse().unwrap(),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = cfg(
            "[gc]\ngrace_period = \"1h\"\n[mcias]\ntags=[\"a\"]\n",
            &[
                ("MCR_GC_GRACE_PERIOD", "5s"),
                ("MCR_SERVER_LISTEN_ADDR", "127.0.0.1:1"),
                ("MCR_MCIAS_TAGS", "env:restricted, x"),
                ("PATH", "/bin"),
            ],
        )
        .unwrap();
        assert_eq!(c.gc_grace_period().unwrap(), Duration::from_secs(5));
        assert_eq!(c.listen_addr().unwrap().port(), 1);
        assert_eq!(c.mcias.tags, vec!["env:restricted", "x"]);
    }

    #[test]
    fn validation_names_the_missing_field() {
        let c = cfg("[server]\nlisten_addr=\"127.0.0.1:5000\"\n", &[]).unwrap();
        let err = c.validate_for_server().unwrap_err().to_string();
        assert!(err.contains("database.path"), "{err}");
        let c = cfg(
            "[server]\nlisten_addr=\"127.0.0.1:5000\"\ntls_cert=\"c\"\n[database]\npath=\"x\"\n[storage]\nlayers_path=\"l\"\n",
            &[],
        )
        .unwrap();
        let err = c.validate_for_server().unwrap_err().to_string();
        assert!(err.contains("server.tls_key"), "{err}");
        let err = cfg("[gc]\ngrace_period=\"soon\"\n[server]\nlisten_addr=\"127.0.0.1:1\"\n[database]\npath=\"x\"\n[storage]\nlayers_path=\"l\"\n[mcias]\nserver_url=\"https://m\"\n", &[])
            .unwrap()
            .validate_for_server()
            .unwrap_err()
            .to_string();
        assert!(err.contains("gc.grace_period"), "{err}");
    }

    #[test]
    fn two_listeners_on_one_port_are_refused_naming_both() {
        for (metrics, clash) in [
            ("127.0.0.1:5800", true),
            ("0.0.0.0:5800", true),
            ("127.0.0.2:5800", false),
            ("127.0.0.1:5801", false),
        ] {
            let c = cfg(
                &format!("{SERVER}[database]\npath=\"m.db\"\n"),
                &[
                    ("MCR_SERVER_LISTEN_ADDR", "127.0.0.1:5800"),
                    ("MCR_SERVER_METRICS_ADDR", metrics),
                ],
            )
            .unwrap();
            match c.validate_for_server() {
                Err(e) if clash => {
                    let e = e.to_string();
                    assert!(
                        e.contains("server.metrics_addr") && e.contains("server.listen_addr"),
                        "{e}"
                    );
                }
                Ok(()) if !clash => {}
                other => panic!("{metrics}: {other:?}"),
            }
        }
    }

    const SERVER: &str = "[server]\nlisten_addr=\"127.0.0.1:1\"\n[storage]\nlayers_path=\"l\"\n[[local.users]]\nusername=\"u\"\npassword_hash=\"h\"\naccount_type=\"human\"\nroles=[\"admin\"]\n";

    #[test]
    fn the_database_is_a_sqlite_path_or_a_postgres_url() {
        let c = cfg(&format!("{SERVER}[database]\npath=\"m.db\"\n"), &[]).unwrap();
        c.validate_for_server().unwrap();
        assert!(matches!(c.database().unwrap(), Database::Sqlite(p) if p == Path::new("m.db")));

        let c = cfg(
            &format!("{SERVER}[local]\nkey_path=\"/k\"\n"),
            &[
                ("MCR_DATABASE_URL", "postgres://mcr@127.0.0.1/mcr"),
                ("MCR_DATABASE_MAX_CONNECTIONS", "8"),
            ],
        )
        .unwrap();
        c.validate_for_server().unwrap();
        let Database::Postgres(db) = c.database().unwrap() else {
            panic!("not PostgreSQL");
        };
        assert_eq!(db.url.as_deref(), Some("postgres://mcr@127.0.0.1/mcr"));
        assert_eq!(db.max_connections, Some(8));

        let err = cfg(
            &format!("{SERVER}[database]\npath=\"m.db\"\nurl=\"postgres://h/d\"\n"),
            &[],
        )
        .unwrap()
        .validate_for_server()
        .unwrap_err()
        .to_string();
        assert!(err.contains("both set"), "{err}");
        let err = cfg(
            &format!("{SERVER}[database]\npath=\"m.db\"\nmax_connections=4\n"),
            &[],
        )
        .unwrap()
        .validate_for_server()
        .unwrap_err()
        .to_string();
        assert!(err.contains("database.max_connections"), "{err}");
        let err = cfg(SERVER, &[("MCR_DATABASE_MAX_CONNECTIONS", "many")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("MCR_DATABASE_MAX_CONNECTIONS"), "{err}");
    }

    #[test]
    fn replicas_must_share_a_signing_key_file() {
        let err = cfg(SERVER, &[("MCR_DATABASE_URL", "postgres://h/d")])
            .unwrap()
            .validate_for_server()
            .unwrap_err()
            .to_string();
        assert!(err.contains("local.key_path"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err = cfg("[server]\nlisten_adr=\"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_adr"), "{err}");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_shown_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcr.toml");
        std::fs::write(&path, "[server]\nlisten_addr=\"x\"\n\n[gc]\ngrace=\"1h\"\n").unwrap();
        let err = format!("{:#}", Config::load(&path).unwrap_err());
        assert!(err.contains("line 5") && err.contains("grace"), "{err}");
    }

    #[test]
    fn a_bad_line_is_named_by_number_never_quoted() {
        // The line may hold a secret: a syntax error and a type error.
        for text in [
            "[server]\nlisten_addr = \"x\"\n[mcias]\nserver_url = \"https://u:SEKRET@h\" x\n",
            "[server]\nlisten_addr = [\"SEKRET\"]\n",
        ] {
            let err = format!("{:#}", Config::parse(text, []).unwrap_err());
            assert!(!err.contains("SEKRET"), "{err}");
            assert!(err.contains("line "), "{err}");
        }
    }

    #[test]
    fn two_listeners_on_one_address_are_refused_by_name() {
        let toml = format!("{SERVER}[database]\npath=\"m.db\"\n");
        for (key, env) in [
            ("server.grpc_addr", "MCR_SERVER_GRPC_ADDR"),
            ("server.metrics_addr", "MCR_SERVER_METRICS_ADDR"),
        ] {
            let err = cfg(&toml, &[(env, "127.0.0.1:1")])
                .unwrap()
                .validate_for_server()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key) && err.contains("server.listen_addr"),
                "{err}"
            );
        }
        // Port 0 asks the kernel for a free port each time: never equal.
        let c = cfg(
            &toml.replace("127.0.0.1:1", "127.0.0.1:0"),
            &[("MCR_SERVER_METRICS_ADDR", "127.0.0.1:0")],
        )
        .unwrap();
        c.validate_for_server().unwrap();
    }

    #[test]
    fn s3_storage_comes_from_its_table_or_the_environment() {
        let c = cfg(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:3900\"\nregion = \"garage\"\n",
            &[
                ("MCR_STORAGE_S3_BUCKET", "mcr"),
                ("MCR_STORAGE_S3_SECRET_ACCESS_KEY", "s3cret"),
                ("MCR_STORAGE_UPLOAD_MAX_AGE", "2h"),
            ],
        )
        .unwrap();
        assert_eq!(c.storage_backend().unwrap(), StorageBackend::S3);
        let s3 = c.s3().unwrap();
        assert_eq!(
            (s3.endpoint.as_str(), s3.bucket.as_str(), s3.region.as_str()),
            ("http://127.0.0.1:3900", "mcr", "garage")
        );
        assert_eq!(s3.secret_access_key.as_deref(), Some("s3cret"));
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the secret is never printed"
        );
        assert_eq!(c.upload_max_age().unwrap(), Duration::from_secs(7200));

        let no_bucket = cfg(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"http://h\"\n",
            &[],
        )
        .unwrap();
        let err = no_bucket.s3().unwrap_err().to_string();
        assert!(err.contains("storage.s3.bucket"), "{err}");
        let err = cfg("[storage]\nbackend = \"nfs\"\n", &[])
            .unwrap()
            .storage_backend()
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.backend"), "{err}");
    }

    #[test]
    fn proxies_validate_and_take_passwords_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("hub.password");
        std::fs::write(&pw, "from-file\n").unwrap();
        let text = format!(
            "[[proxy]]\nprefix=\"hub\"\nupstream=\"https://registry-1.docker.io\"\nusername=\"u\"\npassword_file={pw:?}\nmax_size=\"50GiB\"\n\
             [[proxy]]\nprefix=\"ghcr-io\"\nupstream=\"https://ghcr.io\"\ntag_ttl=\"1m\"\noffline=false\n"
        );
        let c = cfg(&text, &[]).unwrap();
        let p = c.proxies().unwrap();
        assert_eq!(p[0].credentials.as_ref().unwrap().1.expose(), "from-file");
        assert!(p[0].docker_hub && !p[1].docker_hub);
        assert_eq!(p[0].tag_ttl, Duration::from_secs(300));
        assert_eq!(p[1].tag_ttl, Duration::from_secs(60));
        assert!(p[0].offline && !p[1].offline);
        assert_eq!((p[0].max_size, p[1].max_size), (Some(50 << 30), None));
        let shown = format!("{c:?} {p:?}");
        assert!(!shown.contains("from-file"), "a password in Debug: {shown}");

        let c = cfg(
            &text,
            &[
                ("MCR_PROXY_GHCR_IO_USERNAME", "bot"),
                ("MCR_PROXY_GHCR_IO_PASSWORD", "from-env"),
            ],
        )
        .unwrap();
        let p = c.proxies().unwrap();
        assert_eq!(p[1].credentials.as_ref().unwrap().1.expose(), "from-env");
        let e = cfg(&text, &[("MCR_PROXY_QUAY_PASSWORD", "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("MCR_PROXY_QUAY_PASSWORD"), "{e}");

        // Review r13, D5: the longest prefix wins whatever the file's
        // order, and two prefixes one variable cannot tell apart are
        // refused.
        let two = "[[proxy]]\nprefix=\"hub\"\nupstream=\"https://a\"\n\
                   [[proxy]]\nprefix=\"hub-x\"\nupstream=\"https://b\"\nusername=\"u\"\n";
        let c = cfg(two, &[("MCR_PROXY_HUB_X_PASSWORD", "pw")]).unwrap();
        let p = c.proxies().unwrap();
        assert_eq!(p[1].credentials.as_ref().unwrap().1.expose(), "pw");
        assert!(p[0].credentials.is_none());
        let same = "[[proxy]]\nprefix=\"a-b\"\nupstream=\"https://a\"\n\
                    [[proxy]]\nprefix=\"a_b\"\nupstream=\"https://b\"\n";
        let e = cfg(same, &[]).unwrap_err().to_string();
        assert!(e.contains("\"a-b\"") && e.contains("MCR_PROXY_A_B_"), "{e}");

        for (bad, says) in [
            ("prefix=\"Hub\"\nupstream=\"https://x\"", "prefix"),
            ("prefix=\"hub\"\nupstream=\"\"", "upstream is required"),
            ("prefix=\"hub\"\nupstream=\"https://x\"\nusername=\"u\"", "go together"),
            ("prefix=\"hub\"\nupstream=\"https://x\"\nusername=\"u\"\npassword=\"p\"\npassword_file=\"/f\"", "not both"),
            ("prefix=\"hub\"\nupstream=\"https://x\"\ntag_ttl=\"soon\"", "tag_ttl"),
            ("prefix=\"hub\"\nupstream=\"https://x\"\nmax_size=\"50 parsecs\"", "max_size"),
            ("prefix=\"hub\"\nupstream=\"https://x\"\nmax_size=\"0\"", "max_size must be above 0"),
            ("prefix=\"hub\"\nupstream=\"https://x\"\npassword_file=\"/nonexistent/pw\"\nusername=\"u\"", "/nonexistent/pw"),
        ] {
            let e = format!("{:#}", cfg(&format!("[[proxy]]\n{bad}\n"), &[]).unwrap().proxies().unwrap_err());
            assert!(e.contains(says) && e.contains("proxy[0]"), "{bad}: {e}");
        }
        assert_eq!(parse_size("50GiB").unwrap(), 50 << 30);
        assert_eq!(parse_size("10GB").unwrap(), 10_000_000_000);
    }

    #[test]
    fn connection_limits_and_rates_have_defaults_and_take_the_environment() {
        let c = cfg("", &[]).unwrap();
        assert_eq!(c.conn_limits().unwrap(), ConnLimits::default());
        let rate = c.rate_limit().unwrap().expect("on by default");
        assert_eq!((rate.per_second.get(), rate.burst.get()), (100, 500));
        assert_eq!(c.min_body_rate(), 1024);
        assert_eq!(c.max_requests_in_flight().map(NonZeroUsize::get), Some(64));
        assert_eq!(
            c.login_limit().unwrap(),
            Some(LoginLimit {
                per_username: 10,
                per_address: 100,
                window: Duration::from_secs(300),
            })
        );
        let c = cfg(
            "[server]\nmax_connections = 10\nread_timeout = \"5s\"\n",
            &[
                ("MCR_SERVER_MIN_BODY_RATE", "0"),
                ("MCR_SERVER_MAX_REQUESTS_IN_FLIGHT", "0"),
                ("MCR_SERVER_LOGIN_FAILURES_PER_USER", "0"),
                ("MCR_SERVER_LOGIN_FAILURES_PER_ADDRESS", "0"),
                ("MCR_SERVER_IDLE_TIMEOUT", "7s"),
                ("MCR_SERVER_RATE_LIMIT", "3"),
                ("MCR_SERVER_RATE_BURST", "4"),
            ],
        )
        .unwrap();
        let limits = c.conn_limits().unwrap();
        assert_eq!(limits.max_connections, 10);
        assert_eq!(limits.read_timeout, Duration::from_secs(5));
        assert_eq!(limits.idle_timeout, Duration::from_secs(7));
        assert_eq!(c.min_body_rate(), 0);
        assert_eq!(c.max_requests_in_flight(), None);
        assert_eq!(c.login_limit().unwrap(), None);
        let rate = c.rate_limit().unwrap().unwrap();
        assert_eq!((rate.per_second.get(), rate.burst.get()), (3, 4));
        let off = cfg("", &[("MCR_SERVER_RATE_LIMIT", "0")]).unwrap();
        assert_eq!(off.rate_limit().unwrap(), None);
        for (toml_text, field) in [
            ("[server]\nmax_connections = 0\n", "server.max_connections"),
            ("[server]\nwrite_timeout = \"0s\"\n", "server.write_timeout"),
            ("[server]\nrate_burst = 0\n", "server.rate_burst"),
            (
                "[server]\nlogin_failure_window = \"0s\"\n",
                "server.login_failure_window",
            ),
        ] {
            let c = cfg(toml_text, &[]).unwrap();
            let err = c
                .conn_limits()
                .and_then(|_| c.rate_limit())
                .and_then(|_| c.login_limit())
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{toml_text}: {err}");
        }
    }

    #[test]
    fn the_shipped_web_ui_config_is_valid() {
        let text = include_str!("../../../../deploy/examples/mcr-web.toml");
        let c = Config::from_table(
            text.parse().unwrap(),
            [("MCR_WEB_LISTEN_ADDR".to_string(), "127.0.0.1:9".to_string())],
        )
        .unwrap();
        let web = c.web_config().unwrap();
        web.validate().unwrap();
        assert_eq!(web.listen_addr().unwrap().port(), 9, "the environment wins");
        assert!(web.grpc_addr().unwrap().starts_with("https://"));
    }

    #[test]
    fn uploads_default_beside_layers() {
        let c = cfg("[storage]\nlayers_path=\"/srv/mcr/layers\"\n", &[]).unwrap();
        assert_eq!(c.uploads_path().unwrap(), PathBuf::from("/srv/mcr/uploads"));
    }

    const HOOK: &str =
        "[[webhook]]\nurl = \"https://u:p@ci.example/h\"\nsecret = \"0123456789abcdef\"\n";

    #[test]
    fn webhooks_are_read_checked_and_never_show_their_secrets() {
        let c = cfg(
            &format!("{HOOK}events = [\"tag.deleted\", \"dev.mcr.manifest.pushed\"]\nrepositories = [\"team-a/*\"]\n"),
            &[],
        )
        .unwrap();
        let hooks = c.webhooks().unwrap();
        assert_eq!(hooks.len(), 1);
        let key = hooks[0].key();
        assert!(key.starts_with("https://***@ci.example/h ("), "{key}");
        assert_eq!(
            hooks[0].events,
            [EventKind::TagDeleted, EventKind::ManifestPushed]
        );
        assert_eq!(hooks[0].timeout, Duration::from_secs(10));
        assert!(!format!("{hooks:?}").contains("0123456789abcdef"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-a-file-0123456789\n").unwrap();
        let c = cfg(
            &format!(
                "[[webhook]]\nurl = \"http://127.0.0.1:9/h\"\nsecret_file = {:?}\n",
                file.display().to_string()
            ),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.webhooks().unwrap()[0].secret.expose(),
            "from-a-file-0123456789"
        );

        for (extra, want) in [
            (
                "events = [\"blob.pulled\"]\n",
                "manifest.pushed, manifest.deleted, tag.moved",
            ),
            ("repositories = [\"a//b\"]\n", "repositories"),
            ("timeout = \"0s\"\n", "timeout"),
            ("secret_file = \"/x\"\n", "not both"),
        ] {
            let err = cfg(&format!("{HOOK}{extra}"), &[])
                .unwrap()
                .webhooks()
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{extra}: {err}");
            assert!(
                !err.contains("0123456789abcdef") && !err.contains("u:p@"),
                "{err}"
            );
        }
        for (table, want) in [
            (
                "[[webhook]]\nurl = \"ftp://x/\"\nsecret = \"0123456789abcdef\"\n",
                "http://",
            ),
            ("[[webhook]]\nurl = \"https://x/\"\n", "secret_file"),
            (
                "[[webhook]]\nurl = \"https://x/\"\nsecret = \"short\"\n",
                "16 to 1024",
            ),
        ] {
            let err = cfg(table, &[]).unwrap().webhooks().unwrap_err().to_string();
            assert!(err.contains(want), "{table}: {err}");
        }
        let twice = cfg(&format!("{HOOK}{HOOK}"), &[]).unwrap();
        let err = twice.webhooks().unwrap_err().to_string();
        assert!(err.contains("configured twice"), "{err}");
        assert!(!err.contains("u:p@"), "{err}");
        // Differing only in a token: two webhooks, neither shown with it.
        let token = |t: &str| {
            format!("[[webhook]]\nurl = \"https://ci.example/h?token={t}\"\nsecret = \"0123456789abcdef\"\n")
        };
        let two = cfg(
            &format!("{}{}", token("t0ken-one"), token("t0ken-two")),
            &[],
        )
        .unwrap();
        let keys: Vec<String> = two.webhooks().unwrap().iter().map(|h| h.key()).collect();
        assert_ne!(keys[0], keys[1]);
        assert!(keys.iter().all(|k| !k.contains("t0ken")), "{keys:?}");
        let many = HOOK.repeat(MAX_WEBHOOKS + 1);
        assert!(cfg(&many, &[]).unwrap().webhooks().is_err());
    }

    #[test]
    fn event_retries_default_and_are_checked() {
        let d = cfg("", &[]).unwrap().event_settings().unwrap();
        assert_eq!(d.backoff, Backoff::default());
        assert_eq!(d.poll_interval, Duration::from_secs(1));
        let c = cfg("", &[("MCR_EVENTS_RETRY_MAX", "10s")]).unwrap();
        assert_eq!(
            c.event_settings().unwrap().backoff.max,
            Duration::from_secs(10)
        );
        for bad in [
            "[events]\nretry_initial = \"10m\"\n",
            "[events]\nretry_max = \"2d\"\n",
            "[events]\npoll_interval = \"1ms\"\n",
        ] {
            assert!(cfg(bad, &[]).unwrap().event_settings().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_retention_schedule_is_off_unless_set() {
        assert_eq!(cfg("", &[]).unwrap().retention_interval().unwrap(), None);
        let c = cfg("[retention]\ninterval = \"24h\"\n", &[]).unwrap();
        assert_eq!(
            c.retention_interval().unwrap(),
            Some(Duration::from_secs(86_400))
        );
        let c = cfg("", &[("MCR_RETENTION_INTERVAL", "12h")]).unwrap();
        assert_eq!(
            c.retention_interval().unwrap(),
            Some(Duration::from_secs(43_200))
        );
        let c = cfg(
            "[retention]\ninterval = \"24h\"\n",
            &[("MCR_RETENTION_INTERVAL", "0s")],
        )
        .unwrap();
        assert_eq!(c.retention_interval().unwrap(), None);
        for bad in ["daily", "5s"] {
            let c = cfg(&format!("[retention]\ninterval = \"{bad}\"\n"), &[]).unwrap();
            let err = c.retention_interval().unwrap_err().to_string();
            assert!(err.contains("retention.interval"), "{bad}: {err}");
        }
        assert!(
            cfg("[retention]\nevery = \"1h\"\n", &[]).is_err(),
            "an unknown key"
        );
    }

    #[test]
    fn the_gc_schedule_and_the_metrics_listener_are_off_unless_set() {
        let c = cfg("", &[]).unwrap();
        assert_eq!(c.gc_interval().unwrap(), None);
        assert_eq!(c.metrics_addr().unwrap(), None);
        let c = cfg(
            "[gc]\ninterval = \"24h\"\n[server]\nmetrics_addr = \"127.0.0.1:9100\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.gc_interval().unwrap(), Some(Duration::from_secs(86_400)));
        assert_eq!(c.metrics_addr().unwrap().unwrap().port(), 9100);
        let c = cfg("[gc]\ninterval = \"24h\"\n", &[("MCR_GC_INTERVAL", "0s")]).unwrap();
        assert_eq!(c.gc_interval().unwrap(), None);
        for (toml, field) in [
            ("[gc]\ninterval = \"daily\"\n", "gc.interval"),
            ("[gc]\ninterval = \"5s\"\n", "gc.interval"),
            (
                "[server]\nmetrics_addr = \"localhost\"\n",
                "server.metrics_addr",
            ),
        ] {
            let c = cfg(toml, &[]).unwrap();
            let err = c
                .gc_interval()
                .and_then(|_| c.metrics_addr().map(drop))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{toml}: {err}");
        }
    }
}
