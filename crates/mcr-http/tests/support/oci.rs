//! OCI content for the tests to push: media types, digests, descriptors,
//! image manifests and indexes (and the JSON helpers they are built and
//! read with), and what [`super::Harness::push_image`] reports back.

use serde_json::{json, Value};
use sha2::Digest as _;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// What [`super::Harness::push_image`] pushed.
#[derive(Debug, Clone)]
pub struct Image {
    pub digest: String,
    /// The manifest's bytes.
    pub raw: Vec<u8>,
    /// Config then layers: (digest, size).
    pub blobs: Vec<(String, u64)>,
}

impl Image {
    /// The digest of the first layer.
    pub fn layer(&self) -> &str {
        &self.blobs[1].0
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// A descriptor of `data` with `media_type`.
pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

/// An OCI image manifest; the fields of `extra` are added at the top level.
pub fn image_manifest(config: Value, layers: &[Value], extra: Value) -> Value {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    merge(&mut m, extra);
    m
}

/// The bytes of a plain OCI image manifest over `config` and `layers`.
pub fn raw_image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<Value> = layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect();
    to_bytes(&image_manifest(
        descriptor(OCI_CONFIG, config),
        &layers,
        json!({}),
    ))
}

/// An OCI image index; the fields of `extra` are added at the top level.
pub fn image_index(manifests: &[Value], extra: Value) -> Value {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    merge(&mut m, extra);
    m
}

fn merge(target: &mut Value, extra: Value) {
    if let (Some(t), Value::Object(e)) = (target.as_object_mut(), extra) {
        t.extend(e);
    }
}

pub fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON serialises")
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}
