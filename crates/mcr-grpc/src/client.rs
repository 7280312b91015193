//! Connecting to `mcrsrv`'s gRPC listener, for `mcrctl` and `mcr-web`.
//!
//! TLS is TLS 1.3 only, over `tokio-rustls` with ring, like the server;
//! the caller chooses the roots ([`tls_config`]). Every call carries the
//! bearer token, when there is one ([`BearerToken`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::pb::admin_service_client::AdminServiceClient;
use crate::pb::audit_service_client::AuditServiceClient;
use crate::pb::policy_service_client::PolicyServiceClient;
use crate::pb::registry_service_client::RegistryServiceClient;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call may take before the client gives up on a server that
/// stopped answering (as mcrctl's REST client does).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A channel whose calls carry the bearer token.
pub type AuthChannel = InterceptedService<Channel, BearerToken>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// `None` sends no token (Health and Login need none).
    pub fn new(token: Option<&str>) -> Result<BearerToken, ConnectError> {
        token
            .map(|t| {
                format!("Bearer {t}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| ConnectError::Token)
            })
            .transpose()
            .map(BearerToken)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(***)"
        } else {
            "BearerToken(None)"
        })
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A client of each service, over one connection.
#[derive(Clone)]
pub struct Clients {
    pub registry: RegistryServiceClient<AuthChannel>,
    pub policy: PolicyServiceClient<AuthChannel>,
    pub audit: AuditServiceClient<AuthChannel>,
    pub admin: AdminServiceClient<AuthChannel>,
}

impl Clients {
    /// Clients over `channel`, sending `token`.
    pub fn new(channel: Channel, token: BearerToken) -> Clients {
        let ch = || InterceptedService::new(channel.clone(), token.clone());
        Clients {
            registry: RegistryServiceClient::new(ch()),
            policy: PolicyServiceClient::new(ch()),
            audit: AuditServiceClient::new(ch()),
            admin: AdminServiceClient::new(ch()),
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug)]
pub enum ConnectError {
    /// The address is not `host:port` or `http(s)://host:port`.
    Address(String),
    /// The token holds characters metadata cannot carry.
    Token,
    /// `https://` without a TLS configuration.
    NoTls,
    Transport(tonic::transport::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Address(a) => write!(
                f,
                "{a:?} is not a gRPC address like 127.0.0.1:9443 or https://registry.example:9443"
            ),
            ConnectError::Token => f.write_str("the token holds characters that cannot be sent"),
            ConnectError::NoTls => f.write_str("an https:// address needs a TLS configuration"),
            ConnectError::Transport(e) => {
                write!(f, "{e}")?;
                // tonic's top-level message is terse; the cause says why.
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConnectError {}

/// A TLS 1.3-only client configuration trusting `roots`, offering h2.
pub fn tls_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Connects to `addr` (`host:port`, `http://host:port` or
/// `https://host:port`). With `tls`, a bare `host:port` is TLS too.
pub async fn connect(addr: &str, tls: Option<Arc<ClientConfig>>) -> Result<Channel, ConnectError> {
    match target(addr, tls)? {
        Target::Plain(endpoint) => endpoint.connect().await,
        Target::Tls(endpoint, connector) => endpoint.connect_with_connector(connector).await,
    }
    .map_err(ConnectError::Transport)
}

/// Like [`connect`], but connects at the first call and again after the
/// connection is lost, so a long-running client (`mcr-web`) starts while
/// the registry is down and recovers when it comes back; each call made
/// meanwhile fails with `UNAVAILABLE`.
pub fn connect_lazy(addr: &str, tls: Option<Arc<ClientConfig>>) -> Result<Channel, ConnectError> {
    Ok(match target(addr, tls)? {
        Target::Plain(endpoint) => endpoint.connect_lazy(),
        Target::Tls(endpoint, connector) => endpoint.connect_with_connector_lazy(connector),
    })
}

/// Makes TCP connections and runs the TLS handshake for one endpoint.
#[derive(Clone)]
struct TlsConnect {
    tls: TlsConnector,
}

impl tower::Service<Uri> for TlsConnect {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, std::io::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::io::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

enum Target {
    Plain(Endpoint),
    Tls(Endpoint, TlsConnect),
}

/// The endpoint `addr` names, and how to reach it.
fn target(addr: &str, tls: Option<Arc<ClientConfig>>) -> Result<Target, ConnectError> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else if tls.is_some() {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    };
    let uri: Uri = url
        .parse()
        .map_err(|_| ConnectError::Address(addr.to_string()))?;
    if uri.host().is_none() || uri.port_u16().is_none() {
        return Err(ConnectError::Address(addr.to_string()));
    }
    let endpoint = Endpoint::from(uri.clone())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    match uri.scheme_str() {
        Some("http") => Ok(Target::Plain(endpoint)),
        Some("https") => {
            let tls = TlsConnector::from(tls.ok_or(ConnectError::NoTls)?);
            Ok(Target::Tls(endpoint, TlsConnect { tls }))
        }
        _ => Err(ConnectError::Address(addr.to_string())),
    }
}
