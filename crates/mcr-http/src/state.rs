//! What every handler shares: the engine and the edge's settings.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use mcr_core::registry::Registry;
use tokio_util::task::TaskTracker;

/// [`HttpConfig::min_body_rate`] by default: 1 KiB/s, twice Apache's
/// `mod_reqtimeout` default; a 1 GiB layer may take 12 days at it, so
/// only a client that means to hold the request is cut off.
pub const DEFAULT_MIN_BODY_RATE: u64 = 1024;

/// Settings of the HTTP edge.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The `service` of token challenges.
    pub service_name: String,
    /// Base URL clients reach the registry at (scheme and host), used for
    /// the challenge realm; taken from the request when unset.
    pub external_url: Option<String>,
    /// Whether this listener serves TLS (for realms built from requests).
    pub tls: bool,
    /// Largest JSON body of the admin API.
    pub max_json_body: usize,
    /// Whether requests are recorded as metrics ([`crate::metrics`]).
    pub metrics: bool,
    /// Longest a request body may go without sending a byte, and the
    /// grace before `min_body_rate` counts; the request then fails with
    /// 408 and a half-sent chunk is discarded.
    pub body_timeout: Duration,
    /// Least average rate a request body must keep after `body_timeout`,
    /// in bytes per second (0: none); slower fails as `body_timeout` does.
    pub min_body_rate: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            service_name: "mcr".to_string(),
            external_url: None,
            tls: false,
            max_json_body: 64 * 1024,
            metrics: false,
            body_timeout: Duration::from_secs(60),
            min_body_rate: DEFAULT_MIN_BODY_RATE,
        }
    }
}

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub config: Arc<HttpConfig>,
    /// Where work that outlives its request runs (a GC run): the tracker
    /// of the program's background tasks, which waits for them on
    /// shutdown. A handler never spawns a task nobody joins.
    pub tasks: TaskTracker,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, config: HttpConfig, tasks: TaskTracker) -> AppState {
        AppState {
            registry,
            config: Arc::new(config),
            tasks,
        }
    }

    /// `scheme://host[:port]` the client used, for absolute URLs.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.config.external_url {
            return url.trim_end_matches('/').to_string();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| h.len() <= 255 && !h.contains(['/', '"', ' ']))
            .unwrap_or("localhost");
        let scheme = if self.config.tls { "https" } else { "http" };
        format!("{scheme}://{host}")
    }
}
