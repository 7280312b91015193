//! Parsed manifests: OCI image manifest and index, Docker schema2 manifest
//! and manifest list.
//!
//! Parsing validates the structure and extracts what the registry needs
//! (the blobs and child manifests referenced, `subject`, `artifactType`);
//! the raw bytes are what is stored and served, so annotations and fields
//! MCR does not know survive byte for byte.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Error;
use crate::media::{self, MediaType};

/// Largest manifest accepted by a push.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// A content descriptor as it appears in manifests and referrers lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: MediaType,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<MediaType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

/// Where an image of an index runs: the `platform` of a descriptor (OCI
/// image-index specification, "platform"). Fields a manifest leaves out
/// are empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

impl std::fmt::Display for Platform {
    /// `linux/arm64/v8`, as `docker` and `skopeo` name platforms.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Descriptor {
    /// The descriptor's platform, when it has one of the spec's shape.
    /// Pushes keep `platform` as they found it, so one that is not an
    /// object of strings reads as none here rather than refusing a push.
    pub fn platform(&self) -> Option<Platform> {
        self.platform
            .as_ref()
            .and_then(|p| serde_json::from_value(p.clone()).ok())
    }

    /// A layer whose content may legitimately live elsewhere: a
    /// non-distributable layer type that carries `urls`.
    pub fn is_external(&self) -> bool {
        !self.urls.is_empty() && media::NON_DISTRIBUTABLE_LAYERS.contains(&self.media_type.as_str())
    }
}

/// Which of the four manifest formats a manifest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    OciImage,
    OciIndex,
    DockerImage,
    DockerList,
}

impl ManifestKind {
    pub fn from_media_type(mt: &str) -> Option<ManifestKind> {
        match mt {
            media::OCI_IMAGE_MANIFEST => Some(ManifestKind::OciImage),
            media::OCI_IMAGE_INDEX => Some(ManifestKind::OciIndex),
            media::DOCKER_MANIFEST_V2 => Some(ManifestKind::DockerImage),
            media::DOCKER_MANIFEST_LIST => Some(ManifestKind::DockerList),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciImage => media::OCI_IMAGE_MANIFEST,
            ManifestKind::OciIndex => media::OCI_IMAGE_INDEX,
            ManifestKind::DockerImage => media::DOCKER_MANIFEST_V2,
            ManifestKind::DockerList => media::DOCKER_MANIFEST_LIST,
        }
    }

    pub fn is_index(self) -> bool {
        matches!(self, ManifestKind::OciIndex | ManifestKind::DockerList)
    }
}

/// The fields of any of the four formats; which must be present depends on
/// the kind and is checked in [`Manifest::parse`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<MediaType>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub kind: ManifestKind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<MediaType>,
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses `raw`, pushed with `content_type` (the request's
    /// `Content-Type`, if any). The body's `mediaType`, when present, must
    /// agree with it.
    pub fn parse(content_type: Option<&MediaType>, raw: &[u8]) -> Result<Manifest, Error> {
        let wire: Wire = serde_json::from_slice(raw)
            .map_err(|e| Error::ManifestInvalid(format!("not a valid manifest: {e}")))?;
        let kind = Self::kind_of(content_type, &wire)?;
        if wire.schema_version != Some(2) {
            return Err(Error::ManifestInvalid(format!(
                "schemaVersion must be 2, got {}",
                wire.schema_version
                    .map_or("nothing".to_string(), |v| v.to_string())
            )));
        }
        let (config, layers, manifests) = if kind.is_index() {
            if wire.config.is_some() || wire.layers.is_some() {
                return Err(Error::ManifestInvalid(
                    "an index has manifests, not config or layers".into(),
                ));
            }
            let manifests = wire.manifests.ok_or_else(|| {
                Error::ManifestInvalid("an index must have a manifests array".into())
            })?;
            (None, Vec::new(), manifests)
        } else {
            if wire.manifests.is_some() {
                return Err(Error::ManifestInvalid(
                    "an image manifest has config and layers, not manifests".into(),
                ));
            }
            let config = wire.config.ok_or_else(|| {
                Error::ManifestInvalid("an image manifest must have a config descriptor".into())
            })?;
            let layers = wire.layers.ok_or_else(|| {
                Error::ManifestInvalid("an image manifest must have a layers array".into())
            })?;
            (Some(config), layers, Vec::new())
        };
        Ok(Manifest {
            kind,
            config,
            layers,
            manifests,
            subject: wire.subject,
            artifact_type: wire.artifact_type,
            annotations: wire.annotations,
        })
    }

    fn kind_of(content_type: Option<&MediaType>, wire: &Wire) -> Result<ManifestKind, Error> {
        let known = |mt: &str| {
            ManifestKind::from_media_type(mt).ok_or_else(|| {
                Error::ManifestInvalid(format!("unsupported manifest media type {mt:?}"))
            })
        };
        match (wire.media_type.as_deref(), content_type) {
            (Some(body), Some(header)) if body != header.as_str() => {
                Err(Error::ManifestInvalid(format!(
                    "mediaType {body:?} does not match Content-Type {header:?}",
                    header = header.as_str()
                )))
            }
            (Some(body), _) => known(body),
            (None, Some(header)) => known(header.as_str()),
            // Without either, the shape tells: OCI allows omitting mediaType.
            (None, None) if wire.manifests.is_some() => Ok(ManifestKind::OciIndex),
            (None, None) => Ok(ManifestKind::OciImage),
        }
    }

    pub fn media_type(&self) -> MediaType {
        MediaType::new(self.kind.media_type()).expect("manifest media types are valid")
    }

    /// Blobs that must be in the repository before this manifest may be
    /// pushed: the config and every layer not hosted elsewhere.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter().filter(|l| !l.is_external()))
    }

    /// The artifact type a referrers list reports: `artifactType`, else the
    /// config's media type for an image manifest.
    pub fn referrer_artifact_type(&self) -> Option<MediaType> {
        self.artifact_type
            .clone()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ch: char) -> String {
        format!("sha256:{}", ch.to_string().repeat(64))
    }

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}",
              "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},
              "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":3}}]{extra}}}"#,
            media::OCI_IMAGE_MANIFEST,
            d('a'),
            d('b')
        )
    }

    #[test]
    fn parses_an_image_with_subject_and_artifact_type() {
        let raw = image(&format!(
            r#","artifactType":"application/x.sig","subject":{{"mediaType":"{}","digest":"{}","size":9}},"annotations":{{"k":"v"}},"unknown":[1]"#,
            media::OCI_IMAGE_MANIFEST,
            d('c')
        ));
        let m = Manifest::parse(None, raw.as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::OciImage);
        assert_eq!(m.required_blobs().count(), 2);
        assert_eq!(m.subject.unwrap().digest.to_string(), d('c'));
        assert_eq!(m.artifact_type.unwrap().as_str(), "application/x.sig");
        assert_eq!(m.annotations["k"], "v");
    }

    #[test]
    fn config_media_type_is_the_fallback_artifact_type() {
        let m = Manifest::parse(None, image("").as_bytes()).unwrap();
        assert_eq!(
            m.referrer_artifact_type().unwrap().as_str(),
            "application/vnd.oci.image.config.v1+json"
        );
    }

    #[test]
    fn parses_an_index() {
        let raw = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            media::OCI_IMAGE_INDEX,
            media::OCI_IMAGE_MANIFEST,
            d('d')
        );
        let m = Manifest::parse(None, raw.as_bytes()).unwrap();
        assert!(m.kind.is_index());
        assert_eq!(m.manifests.len(), 1);
        assert_eq!(m.required_blobs().count(), 0);
    }

    #[test]
    fn external_layers_are_not_required() {
        let raw = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},
              "layers":[{{"mediaType":"{}","digest":"{}","size":3,"urls":["https://example.com/layer"]}}]}}"#,
            d('a'),
            media::NON_DISTRIBUTABLE_LAYERS[1],
            d('b')
        );
        let m = Manifest::parse(None, raw.as_bytes()).unwrap();
        assert_eq!(m.required_blobs().count(), 1);
    }

    #[test]
    fn rejects_malformed_manifests_with_a_reason() {
        let ct = MediaType::new(media::OCI_IMAGE_INDEX).unwrap();
        let cases: Vec<(Option<&MediaType>, String, &str)> = vec![
            (None, "not json".into(), "not a valid manifest"),
            (None, r#"{"schemaVersion":2}"#.into(), "config"),
            (Some(&ct), image(""), "does not match Content-Type"),
            (
                None,
                image("").replace("\"schemaVersion\":2", "\"schemaVersion\":3"),
                "schemaVersion",
            ),
            (
                None,
                r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}"#
                    .into(),
                "unsupported manifest media type",
            ),
            (
                None,
                image("").replace(&d('b'), "sha256:nothex"),
                "not a valid manifest",
            ),
        ];
        for (ct, raw, want) in cases {
            let err = Manifest::parse(ct, raw.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, Error::ManifestInvalid(m) if m.contains(want)),
                "{raw}: {err}"
            );
        }
    }
}
