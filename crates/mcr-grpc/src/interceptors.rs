//! The interceptor chain every RPC passes, outermost first:
//!
//! 1. **request log and metrics** ([`log_request`]): method, peer,
//!    status code and duration, logged and recorded
//!    ([`crate::metrics`]); never a metadata value, so never the token;
//! 2. **authentication** ([`authenticate`]): the `authorization: Bearer`
//!    metadata through [`Registry::authenticate`]; the [`Caller`] it
//!    establishes travels to the service as a request extension.
//!    [`PUBLIC_METHODS`] (Health, Ready and Login) bypass it;
//! 3. **admin role check** for [`is_admin_method`]s, through
//!    [`Registry::authorize_admin`] (the admin role and the policy's
//!    `policy:manage`), so a refusal here is audited like one in a use
//!    case. The use cases check again; this keeps the whole admin surface
//!    closed whatever a service method forgets.
//!
//! They are async (authentication may ask the identity service), so they
//! are one tower layer around the routes rather than tonic's synchronous
//! interceptors.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use mcr_core::ports::Secret;
use mcr_core::registry::{Caller, Registry};
use mcr_core::Error;
use tonic::transport::server::TcpConnectInfo;
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::error::status;
use crate::metrics::GrpcMetrics;

/// Methods that need no token.
pub const PUBLIC_METHODS: [&str; 3] = [
    "/mcr.v1.AdminService/Health",
    "/mcr.v1.AdminService/Ready",
    "/mcr.v1.AdminService/Login",
];

/// Longest `authorization` value accepted; anything longer is refused
/// before it is looked at.
const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;

/// Whether `path` (`/mcr.v1.Service/Method`) is an admin RPC: everything
/// in PolicyService and AuditService, the repository delete, GC (its
/// status and runs too) and reconcile of RegistryService, and AdminService's Snapshot.
pub fn is_admin_method(path: &str) -> bool {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return false;
    };
    match service {
        "mcr.v1.PolicyService" | "mcr.v1.AuditService" => true,
        "mcr.v1.RegistryService" => matches!(
            method,
            "DeleteRepository" | "GarbageCollect" | "GetGCStatus" | "ListGCRuns" | "Reconcile"
        ),
        "mcr.v1.AdminService" => method == "Snapshot",
        _ => false,
    }
}

/// Puts the interceptor chain around a service.
#[derive(Clone)]
pub struct InterceptorLayer {
    registry: Arc<Registry>,
    metrics: Arc<GrpcMetrics>,
}

impl InterceptorLayer {
    /// The chain for `registry`. Makes the metrics' handles: build it
    /// after the program installed its recorder.
    pub fn new(registry: Arc<Registry>) -> InterceptorLayer {
        InterceptorLayer {
            registry,
            metrics: Arc::new(GrpcMetrics::new()),
        }
    }
}

impl<S> Layer<S> for InterceptorLayer {
    type Service = Interceptors<S>;

    fn layer(&self, inner: S) -> Interceptors<S> {
        Interceptors {
            inner,
            registry: Arc::clone(&self.registry),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// A service behind the interceptor chain.
#[derive(Clone)]
pub struct Interceptors<S> {
    inner: S,
    registry: Arc<Registry>,
    metrics: Arc<GrpcMetrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<Request<B>> for Interceptors<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let registry = Arc::clone(&self.registry);
        let metrics = Arc::clone(&self.metrics);
        Box::pin(log_request(req, metrics, move |req| {
            authenticate_and_call(registry, inner, req)
        }))
    }
}

/// Stage 1: one log line and one recording per call. The code is the
/// `grpc-status` of a trailers-only answer (every error of a unary call),
/// else OK.
async fn log_request<B, RB, E, F, Fut>(
    req: Request<B>,
    metrics: Arc<GrpcMetrics>,
    next: F,
) -> Result<Response<RB>, E>
where
    F: FnOnce(Request<B>) -> Fut,
    Fut: Future<Output = Result<Response<RB>, E>>,
{
    let method = req.uri().path().to_string();
    let peer = peer(&req);
    let start = Instant::now();
    let result = next(req).await;
    let code = match &result {
        Ok(resp) => resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map_or(Code::Ok, Code::from_i32),
        Err(_) => Code::Unknown,
    };
    let elapsed = start.elapsed();
    metrics.record(&method, code, elapsed);
    tracing::info!(
        %method,
        peer = %peer.map_or_else(|| "-".to_string(), |p| p.to_string()),
        code = ?code,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "grpc request done"
    );
    result
}

/// Stages 2 and 3, then the service; a refusal is answered as a status
/// without reaching it.
async fn authenticate_and_call<S, B, RB>(
    registry: Arc<Registry>,
    mut inner: S,
    mut req: Request<B>,
) -> Result<Response<RB>, S::Error>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    let path = req.uri().path().to_string();
    if !PUBLIC_METHODS.contains(&path.as_str()) {
        let ip = peer(&req).map(|p| p.ip().to_string());
        let checked = match authenticate(&registry, req.headers(), ip).await {
            Ok(caller) if is_admin_method(&path) => {
                registry.authorize_admin(&caller).await.map(|()| caller)
            }
            other => other,
        };
        match checked {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
            }
            Err(e) => return Ok(status(e).into_http()),
        }
    }
    inner.call(req).await
}

/// Stage 2: the caller behind the bearer token.
pub async fn authenticate(
    registry: &Registry,
    headers: &HeaderMap,
    ip: Option<String>,
) -> Result<Caller, Error> {
    let token = bearer_token(headers)?;
    let principal = registry.authenticate(&token).await?;
    Ok(Caller { principal, ip })
}

/// The token of `authorization: Bearer <token>`.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Secret, Error> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(Error::Unauthenticated(
            "no bearer token in the authorization metadata".into(),
        ));
    };
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(Error::Unauthenticated(
            "authorization metadata too long".into(),
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| Error::Unauthenticated("authorization metadata is not text".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Secret::new(token.trim()))
        }
        _ => Err(Error::Unauthenticated(
            "authorization metadata must be `Bearer <token>`".into(),
        )),
    }
}

/// The peer's address, as tonic's server records it.
fn peer<B>(req: &Request<B>) -> Option<SocketAddr> {
    req.extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
}

/// The caller the interceptors established, for a service method.
pub fn caller<T>(req: &tonic::Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| status(Error::Unauthenticated("no authenticated caller".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_methods() {
        assert!(is_admin_method("/mcr.v1.PolicyService/ListRules"));
        assert!(is_admin_method("/mcr.v1.AuditService/ListAuditEvents"));
        assert!(is_admin_method("/mcr.v1.RegistryService/GetGCStatus"));
        assert!(!is_admin_method("/mcr.v1.RegistryService/ListRepositories"));
        assert!(!is_admin_method("/mcr.v1.RegistryService/GetRepository"));
        assert!(!is_admin_method("/mcr.v1.RegistryService/GetManifest"));
        assert!(!is_admin_method("/mcr.v1.RegistryService/GetDashboard"));
        assert!(is_admin_method("/mcr.v1.RegistryService/ListGCRuns"));
        assert!(!is_admin_method("/mcr.v1.AdminService/Logout"));
        assert!(!is_admin_method("/mcr.v1.AdminService/Health"));
        assert!(!is_admin_method("/mcr.v1.AdminService/Login"));
        assert!(!is_admin_method("/mcr.v1.AdminService/Ready"));
        assert!(is_admin_method("/mcr.v1.AdminService/Snapshot"));
        assert!(!is_admin_method("garbage"));
    }

    #[test]
    fn reads_only_bearer_tokens() {
        let mut h = HeaderMap::new();
        assert!(bearer_token(&h).is_err());
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&h).unwrap().expose(), "abc");
        h.insert("authorization", "Basic YTpi".parse().unwrap());
        assert!(bearer_token(&h).is_err());
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert!(bearer_token(&h).is_err());
    }
}
