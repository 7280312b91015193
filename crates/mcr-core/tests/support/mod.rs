//! Helpers shared by the use-case tests.
#![allow(dead_code)]

use bytes::Bytes;
use futures_util::stream;
use mcr_core::digest::Digest;
use mcr_core::names::{Reference, RepoName};
use mcr_core::ports::{BlobInfo, ByteStream};
use mcr_core::registry::{Caller, PushedManifest, Registry};

pub fn repo(s: &str) -> RepoName {
    RepoName::new(s).expect("valid repository name")
}

pub fn reference(s: &str) -> Reference {
    Reference::parse(s).expect("valid reference")
}

pub fn body(data: impl Into<Bytes>) -> ByteStream {
    let data: Bytes = data.into();
    Box::pin(stream::iter([Ok(data)]))
}

pub fn chunks(parts: Vec<Vec<u8>>) -> ByteStream {
    Box::pin(stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p)))))
}

pub fn run<F: std::future::Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

pub async fn push_blob(r: &Registry, who: &Caller, repo: &RepoName, data: &[u8]) -> BlobInfo {
    r.upload_blob(who, repo, &Digest::sha256_of(data), body(data.to_vec()))
        .await
        .expect("blob upload")
}

pub fn image_manifest(config: &BlobInfo, layers: &[&BlobInfo], extra: &str) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#,
                l.digest, l.size
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]{extra}}}"#,
        config.digest,
        config.size,
        layers.join(",")
    )
}

pub fn index_manifest(children: &[(&Digest, usize)]) -> String {
    let m: Vec<String> = children
        .iter()
        .map(|(d, size)| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":{size}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        m.join(",")
    )
}

/// Pushes a config and one layer made from `seed`, then the manifest under
/// `tag`. Returns the manifest and its raw bytes.
pub async fn push_image(
    r: &Registry,
    who: &Caller,
    repo: &RepoName,
    tag: &str,
    seed: &str,
) -> (PushedManifest, String, BlobInfo) {
    let config = push_blob(r, who, repo, format!("{{\"seed\":\"{seed}\"}}").as_bytes()).await;
    let layer = push_blob(r, who, repo, format!("layer of {seed}").as_bytes()).await;
    let raw = image_manifest(&config, &[&layer], "");
    let pushed = r
        .put_manifest(who, repo, &reference(tag), None, Bytes::from(raw.clone()))
        .await
        .expect("manifest push");
    (pushed, raw, layer)
}
