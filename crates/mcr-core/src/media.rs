//! Media types: a validated `type/subtype` and the constants MCR knows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

pub const OCI_IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Layer types whose content may live outside the registry (given by
/// `urls`), so a manifest may name them without the blob being pushed.
pub const NON_DISTRIBUTABLE_LAYERS: [&str; 4] = [
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

const MAX_MEDIA_TYPE_LEN: usize = 255;

/// A media type of the form `type/subtype` (RFC 6838 restricted names,
/// no parameters).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaType(Box<str>);

impl MediaType {
    pub fn new(s: &str) -> Result<MediaType, Error> {
        let restricted = |part: &str| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b.iter().all(|&c| {
                    c.is_ascii_alphanumeric()
                        || matches!(
                            c,
                            b'!' | b'#' | b'$' | b'&' | b'^' | b'_' | b'.' | b'+' | b'-'
                        )
                })
        };
        match s.split_once('/') {
            Some((t, sub)) if s.len() <= MAX_MEDIA_TYPE_LEN && restricted(t) && restricted(sub) => {
                Ok(MediaType(s.into()))
            }
            _ => Err(Error::invalid(
                "mediaType",
                format!("{s:?} is not a media type of the form type/subtype"),
            )),
        }
    }

    /// Parses a `Content-Type` header value, dropping any parameters.
    pub fn from_content_type(header: &str) -> Result<MediaType, Error> {
        let essence = header.split(';').next().unwrap_or_default().trim();
        MediaType::new(essence)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_manifest(&self) -> bool {
        [
            OCI_IMAGE_MANIFEST,
            OCI_IMAGE_INDEX,
            DOCKER_MANIFEST_V2,
            DOCKER_MANIFEST_LIST,
        ]
        .contains(&self.as_str())
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaType({:?})", &*self.0)
    }
}

impl FromStr for MediaType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        MediaType::new(s)
    }
}

impl Serialize for MediaType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MediaType::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_media_types() {
        assert!(MediaType::new(OCI_IMAGE_MANIFEST).unwrap().is_manifest());
        assert!(!MediaType::new(OCTET_STREAM).unwrap().is_manifest());
        for bad in ["", "json", "/x", "a/", "a/b c", "a/b;charset=utf-8"] {
            assert!(MediaType::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            MediaType::from_content_type("application/json; charset=utf-8")
                .unwrap()
                .as_str(),
            "application/json"
        );
    }
}
