//! The harness of the gRPC tests: the real services and interceptors,
//! served by `mcr_grpc::serve` on a free loopback port, over a
//! `TestRegistry` (in-memory fakes, the real policy engine, a manual
//! clock), and clients connected with `mcr_grpc::client`.
#![allow(dead_code)] // each test binary uses a different part of it

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use mcr_core::digest::Digest;
use mcr_core::names::{Reference, RepoName};
use mcr_core::ports::{BlobInfo, ByteStream};
use mcr_core::proxy::ProxyConfig;
use mcr_core::registry::{Caller, RegistryConfig};
use mcr_core::testing::{admin, guest, user, TestRegistry};
use mcr_grpc::client::{self, BearerToken, Clients};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

/// A gRPC server over a test registry; stops when dropped.
pub struct Server {
    pub t: TestRegistry,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(RegistryConfig::default(), None).await
    }

    pub async fn start_with(config: RegistryConfig, tls: Option<TlsAcceptor>) -> Server {
        Server::serve(TestRegistry::with_config(config), tls).await
    }

    /// A server over a registry mirroring `proxies` (pull-through cache).
    pub async fn mirroring(proxies: Vec<ProxyConfig>) -> Server {
        Server::serve(
            TestRegistry::with_proxies(RegistryConfig::default(), proxies),
            None,
        )
        .await
    }

    async fn serve(t: TestRegistry, tls: Option<TlsAcceptor>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let registry = Arc::clone(&t.registry);
        tokio::spawn(async move {
            let limits = mcr_grpc::ServeLimits::default();
            mcr_grpc::serve(listener, tls, registry, limits, TaskTracker::new(), async {
                let _ = stopped.await;
            })
            .await
            .expect("grpc server");
        });
        Server {
            t,
            addr,
            stop: Some(stop),
        }
    }

    /// A token for `caller`, minted by the fake identity service.
    pub fn token(&self, caller: Caller) -> String {
        self.t
            .identity
            .issue(caller.principal)
            .expect("token")
            .token
            .expose()
            .to_string()
    }

    /// Clients sending `token` (none if `None`).
    pub async fn clients(&self, token: Option<&str>) -> Clients {
        let channel = client::connect(&self.addr.to_string(), None)
            .await
            .expect("connect");
        Clients::new(channel, BearerToken::new(token).expect("token"))
    }

    pub async fn as_admin(&self) -> Clients {
        self.clients(Some(&self.token(admin()))).await
    }

    pub async fn as_user(&self) -> Clients {
        self.clients(Some(&self.token(user()))).await
    }

    pub async fn as_guest(&self) -> Clients {
        self.clients(Some(&self.token(guest()))).await
    }

    pub async fn anonymous(&self) -> Clients {
        self.clients(None).await
    }

    /// Pushes an image (config + one layer from `seed`) tagged `tag`.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> Digest {
        push_image(&self.t, repo, tag, seed).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn body(data: Vec<u8>) -> ByteStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from(data))]))
}

async fn push_blob(t: &TestRegistry, repo: &RepoName, data: &[u8]) -> BlobInfo {
    t.registry
        .upload_blob(
            &admin(),
            repo,
            &Digest::sha256_of(data),
            body(data.to_vec()),
        )
        .await
        .expect("blob upload")
}

/// Pushes an image through the use cases, as admin.
pub async fn push_image(t: &TestRegistry, repo: &str, tag: &str, seed: &str) -> Digest {
    let repo = RepoName::new(repo).expect("repository name");
    let config = push_blob(t, &repo, format!("{{\"seed\":\"{seed}\"}}").as_bytes()).await;
    let layer = push_blob(t, &repo, format!("layer of {seed}").as_bytes()).await;
    let raw = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        config.digest, config.size, layer.digest, layer.size
    );
    t.registry
        .put_manifest(
            &admin(),
            &repo,
            &Reference::parse(tag).expect("tag"),
            None,
            Bytes::from(raw),
        )
        .await
        .expect("manifest push")
        .digest
}
