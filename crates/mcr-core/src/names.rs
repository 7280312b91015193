//! Repository names, tags and references, validated at construction.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::error::Error;

/// Longest repository name accepted (as CNCF Distribution does).
pub const MAX_REPO_NAME_LEN: usize = 255;

/// A repository name in the OCI grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(Box<str>);

impl RepoName {
    pub fn new(s: &str) -> Result<RepoName, Error> {
        if s.is_empty() {
            return Err(Error::NameInvalid("repository name is empty".into()));
        }
        if s.len() > MAX_REPO_NAME_LEN {
            return Err(Error::NameInvalid(format!(
                "repository name is {} characters, over the limit of {MAX_REPO_NAME_LEN}",
                s.len()
            )));
        }
        for component in s.split('/') {
            if !valid_component(component) {
                return Err(Error::NameInvalid(format!(
                    "{s:?}: path component {component:?} must be lowercase letters and digits, \
                     separated by '.', '_', '__' or dashes"
                )));
            }
        }
        Ok(RepoName(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Longest tag accepted by the OCI grammar.
pub const MAX_TAG_LEN: usize = 128;

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(Box<str>);

impl Tag {
    pub fn new(s: &str) -> Result<Tag, Error> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&x| x.is_ascii_alphanumeric() || x == b'_');
        let rest_ok = b
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'));
        if !first_ok || !rest_ok || b.len() > MAX_TAG_LEN {
            return Err(Error::TagInvalid(format!(
                "{s:?} must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}"
            )));
        }
        Ok(Tag(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a manifest URL names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// A reference containing `:` is a digest, anything else a tag.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        if s.contains(':') {
            Digest::parse(s).map(Reference::Digest)
        } else {
            Tag::new(s).map(Reference::Tag)
        }
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

macro_rules! string_newtype_impls {
    ($t:ident, $ctor:path) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($t), &*self.0)
            }
        }
        impl FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                $ctor(s)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $ctor(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype_impls!(RepoName, RepoName::new);
string_newtype_impls!(Tag, Tag::new);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_of_the_oci_grammar() {
        for ok in [
            "a",
            "library/ubuntu",
            "my-org/my--app",
            "a.b/c_d/e__f",
            "0/1/2",
            "ci/app",
        ] {
            assert_eq!(RepoName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_names_outside_the_grammar() {
        for bad in [
            "",
            "Upper",
            "/lead",
            "trail/",
            "a//b",
            "a..b",
            "a___b",
            "a._b",
            "-a",
            "a-",
            "../etc",
            "a b",
            "v2/_catalog",
        ] {
            assert!(
                matches!(RepoName::new(bad), Err(Error::NameInvalid(_))),
                "{bad}"
            );
        }
        assert!(RepoName::new(&"a".repeat(256)).is_err());
        assert!(RepoName::new(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn tags_follow_their_grammar() {
        for ok in ["latest", "v1.0.0", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(Tag::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129)] {
            assert!(matches!(Tag::new(bad), Err(Error::TagInvalid(_))), "{bad}");
        }
    }

    #[test]
    fn references_distinguish_tags_from_digests() {
        assert!(matches!(
            Reference::parse("latest").unwrap(),
            Reference::Tag(_)
        ));
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(
            Reference::parse(&d).unwrap(),
            Reference::Digest(_)
        ));
        assert!(Reference::parse("sha256:zz").is_err());
    }
}
