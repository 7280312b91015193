//! The engine embedded in a service: wire ports into a `Registry`, then
//! push, pull and garbage-collect an image in-process.
//!
//! Run with `cargo run -p mcr-core --features testing --example embedded`.
//! Here the ports are the in-memory fakes; a real service passes its own
//! adapters (for instance `mcr_adapters::sqlite::SqliteMetaStore` and
//! `mcr_adapters::fs::FsBlobStore`) to `Registry::new` in the same way.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use mcr_core::digest::Digest;
use mcr_core::names::{Reference, RepoName};
use mcr_core::policy::Engine;
use mcr_core::ports::ByteStream;
use mcr_core::principal::{AccountType, Principal, Role};
use mcr_core::registry::{Caller, Registry, RegistryConfig};
use mcr_core::testing::{FakeBlobStore, FakeIdentity, FakeMetaStore, ManualClock};

fn body(data: &'static [u8]) -> ByteStream {
    Box::pin(stream::iter([Ok(Bytes::from_static(data))]))
}

pub fn main() -> mcr_core::Result<()> {
    futures_executor::block_on(async {
        let clock = Arc::new(ManualClock::default());
        let meta = Arc::new(FakeMetaStore::new());
        let registry = Arc::new(
            Registry::new(
                meta.clone(),
                Arc::new(FakeBlobStore::new()),
                Arc::new(FakeIdentity::new(clock.clone())),
                Arc::new(Engine::new()),
            )
            .with_clock(clock.clone())
            .with_config(RegistryConfig::default()),
        );
        registry.reload_policy().await?;
        let me = Caller::new(Principal::new("svc", AccountType::Human, vec![Role::Admin]));
        let repo = RepoName::new("demo/app")?;

        // Push: two blobs, then a manifest naming them, tagged `v1`.
        let config = registry
            .upload_blob(&me, &repo, &Digest::sha256_of(b"{}"), body(b"{}"))
            .await?;
        let layer = registry
            .upload_blob(&me, &repo, &Digest::sha256_of(b"layer"), body(b"layer"))
            .await?;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
            config.digest, config.size, layer.digest, layer.size
        );
        let v1 = Reference::parse("v1")?;
        let pushed = registry
            .put_manifest(&me, &repo, &v1, None, Bytes::from(manifest))
            .await?;
        println!("pushed demo/app:v1 as {}", pushed.digest);

        // Pull it back.
        let pulled = registry.get_manifest(&me, &repo, &v1).await?;
        assert_eq!(pulled.digest, pushed.digest);
        let blob = registry.get_blob(&me, &repo, &layer.digest, None).await?;
        println!("pulled {} ({} bytes of layer)", pulled.digest, blob.len);

        // Delete the image; once the grace period has passed, GC frees both blobs.
        registry
            .delete_manifest(&me, &repo, &Reference::Digest(pushed.digest))
            .await?;
        clock.advance(registry.config().gc_grace_period * 2);
        let report = registry.collect_garbage(&me).await?;
        println!(
            "gc removed {} blobs, {} bytes",
            report.blobs_removed, report.bytes_freed
        );
        assert_eq!(report.blobs_removed, 2);
        Ok(())
    })
}
