//! Opaque identifiers minted by the engine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// An upload session id: 32 lowercase hex characters (128 random bits), so
/// it is unguessable and safe to use as a file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(Box<str>);

impl UploadId {
    /// A fresh random id from the operating system's generator.
    pub fn generate() -> Result<UploadId, Error> {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| Error::storage("drawing randomness for an upload id", e.to_string()))?;
        Ok(UploadId(hex::encode(bytes).into()))
    }

    pub fn parse(s: &str) -> Result<UploadId, Error> {
        if s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(UploadId(s.into()))
        } else {
            Err(Error::upload_id_malformed(s))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.0)
    }
}

impl FromStr for UploadId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        UploadId::parse(s)
    }
}

impl Serialize for UploadId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UploadId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UploadId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = UploadId::generate().unwrap();
        let b = UploadId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(UploadId::parse(a.as_str()).unwrap(), a);
        assert!(UploadId::parse("../../etc/passwd").is_err());
        assert!(UploadId::parse(&"A".repeat(32)).is_err());
    }
}
