//! Storage quotas: a byte limit on one repository or on every repository
//! under a namespace prefix, and the decision whether a push fits.
//!
//! What a scope uses is the sum of the sizes of the distinct content it
//! holds: each blob linked into it once (a layer shared by two
//! repositories of a namespace counts once for the namespace), plus each
//! manifest's bytes once (manifests live in the metadata store, not as
//! blobs). For one repository that is exactly the size the repository
//! listing shows (`RepoSummary::total_size`).
//!
//! The check runs inside the store step that makes the link or stores the
//! manifest (`UploadSessionStore::complete_upload`, `BlobIndex::mount_blob`,
//! `ManifestStore::put_manifest`, for pushed content only): the adapter
//! measures each covering quota's use and what the push adds in that
//! transaction and asks [`QuotaCharge::check`]; a refusal writes nothing.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::display;
use crate::error::{Error, Result};
use crate::names::RepoName;

/// The largest limit a quota may have: 1 EiB, far above any disk, and
/// well inside the signed 64-bit integers the SQL stores hold.
pub const MAX_LIMIT_BYTES: u64 = 1 << 60;

/// How many quotas may be stored: each push checks those covering its
/// repository and the listing measures every one.
pub const MAX_QUOTAS: u64 = 1000;

/// The refusal of one more quota when `max` are stored, for every store.
pub fn quota_cap_reached(max: u64) -> Error {
    Error::Conflict(format!(
        "{max} quotas are stored, the most allowed; delete one or change an existing one"
    ))
}

/// What a quota limits: one repository (`team-a/app`) or every repository
/// whose name starts with a namespace prefix (`team-a/`, ending in `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaScope {
    Repository(RepoName),
    Namespace(Namespace),
}

/// A namespace prefix: a valid repository name followed by `/`, so
/// `team-a/` covers `team-a/app` and `team-a/x/y` but not `team-a` or
/// `team-ab/app`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(RepoName);

impl Namespace {
    /// Whether `repo` lies under the prefix.
    pub fn covers(&self, repo: &RepoName) -> bool {
        repo.as_str()
            .strip_prefix(self.0.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The prefix with its `/`, as stored and shown: `team-a/`.
    pub fn prefix(&self) -> String {
        format!("{}/", self.0)
    }

    /// The half-open range of names under the prefix, `[team-a/, team-a0)`
    /// (`0` is the byte after `/`), so a SQL store finds them through its
    /// index on names rather than a `LIKE` it cannot use.
    pub fn name_range(&self) -> (String, String) {
        (self.prefix(), format!("{}0", self.0))
    }
}

impl QuotaScope {
    /// Parses `team-a/` (a namespace) or `team-a/app` (a repository),
    /// naming what is wrong with anything else.
    pub fn parse(s: &str) -> Result<QuotaScope> {
        let invalid = |reason: String| Error::invalid("scope", reason);
        match s.strip_suffix('/') {
            Some(prefix) => RepoName::new(prefix)
                .map(|name| QuotaScope::Namespace(Namespace(name)))
                .map_err(|e| {
                    invalid(format!(
                        "{s:?} is not a namespace: before the final '/' must be a valid \
                         repository name ({e})"
                    ))
                }),
            None => RepoName::new(s).map(QuotaScope::Repository).map_err(|e| {
                invalid(format!(
                    "{s:?} is not a repository name ({e}); a namespace ends in '/'"
                ))
            }),
        }
    }

    /// Whether the quota limits pushes into `repo`.
    pub fn covers(&self, repo: &RepoName) -> bool {
        match self {
            QuotaScope::Repository(name) => name == repo,
            QuotaScope::Namespace(ns) => ns.covers(repo),
        }
    }

    /// Every scope a quota on which limits pushes into `repo`, as stored:
    /// the repository itself and each namespace above it (`a/b/c` →
    /// `a/b/c`, `a/`, `a/b/`). A store looks these up by key.
    pub fn covering(repo: &RepoName) -> Vec<String> {
        let name = repo.as_str();
        let mut keys = vec![name.to_string()];
        keys.extend(name.match_indices('/').map(|(i, _)| name[..=i].to_string()));
        keys
    }
}

impl fmt::Display for QuotaScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaScope::Repository(name) => write!(f, "{name}"),
            QuotaScope::Namespace(ns) => write!(f, "{}/", ns.0),
        }
    }
}

impl FromStr for QuotaScope {
    type Err = Error;
    fn from_str(s: &str) -> Result<QuotaScope> {
        QuotaScope::parse(s)
    }
}

impl Serialize for QuotaScope {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for QuotaScope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        QuotaScope::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A quota's limit in bytes: at least 1, at most [`MAX_LIMIT_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QuotaLimit(NonZeroU64);

impl QuotaLimit {
    /// Validates a limit in bytes (`Invalid`, field `limit_bytes`, naming
    /// the bounds).
    pub fn new(bytes: u64) -> Result<QuotaLimit> {
        match NonZeroU64::new(bytes) {
            Some(n) if bytes <= MAX_LIMIT_BYTES => Ok(QuotaLimit(n)),
            _ => Err(Error::invalid(
                "limit_bytes",
                format!("{bytes} is out of range: give a byte count from 1 to {MAX_LIMIT_BYTES}"),
            )),
        }
    }

    pub fn bytes(self) -> u64 {
        self.0.get()
    }
}

impl Serialize for QuotaLimit {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u64(self.bytes())
    }
}

impl<'de> Deserialize<'de> for QuotaLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        QuotaLimit::new(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A stored quota: the REST JSON `{"id": 3, "scope": "team-a/",
/// "limit_bytes": 10737418240}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Assigned by the store; never reused for another quota.
    pub id: i64,
    pub scope: QuotaScope,
    pub limit_bytes: QuotaLimit,
}

/// A quota with what its scope uses now, in bytes: the listing's rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUsage {
    #[serde(flatten)]
    pub quota: Quota,
    pub used_bytes: u64,
}

/// What a push adds to a repository, as a store step charges it: a blob
/// linked into it or a manifest stored in it, by digest and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaContent<'a> {
    Blob(&'a Digest, u64),
    Manifest(&'a Digest, u64),
}

impl QuotaContent<'_> {
    pub fn digest(&self) -> &Digest {
        match self {
            QuotaContent::Blob(d, _) | QuotaContent::Manifest(d, _) => d,
        }
    }

    /// Its bytes.
    pub fn size(&self) -> u64 {
        match self {
            QuotaContent::Blob(_, size) | QuotaContent::Manifest(_, size) => *size,
        }
    }
}

/// One covering quota, measured inside a push's store step: what its
/// scope uses before the push and what the push adds to it (0 when the
/// content is already counted in the scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCharge {
    pub scope: QuotaScope,
    pub limit: QuotaLimit,
    pub used: u64,
    pub needs: u64,
}

impl QuotaCharge {
    /// The charge of `content` against the quota on `scope`, whose scope
    /// uses `used` bytes and holds the content already if `counted` (then
    /// it needs nothing).
    pub fn new(
        scope: QuotaScope,
        limit: QuotaLimit,
        used: u64,
        counted: bool,
        content: QuotaContent<'_>,
    ) -> QuotaCharge {
        QuotaCharge {
            scope,
            limit,
            used,
            needs: if counted { 0 } else { content.size() },
        }
    }

    /// Refuses (`Error::QuotaExceeded`) a push that adds bytes and would
    /// take the scope past its limit. A push that adds nothing (content
    /// already in the scope, a tag moved) always passes, even over a
    /// lowered limit: refusing it would free nothing.
    pub fn check(self) -> Result<()> {
        if self.needs == 0 || self.used.saturating_add(self.needs) <= self.limit.bytes() {
            return Ok(());
        }
        Err(Error::QuotaExceeded(Box::new(QuotaRefusal {
            scope: self.scope,
            limit: self.limit,
            used: self.used,
            needs: self.needs,
        })))
    }
}

/// A push refused for a quota: the message names the scope, its use, its
/// limit, what the push needed and what helps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRefusal {
    pub scope: QuotaScope,
    pub limit: QuotaLimit,
    pub used: u64,
    pub needs: u64,
}

impl fmt::Display for QuotaRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "quota exceeded for \"{}\": {} of {} used, this push needs {} \
             (delete images and run GC, or ask an admin to raise the quota)",
            self.scope,
            display::size(self.used),
            display::size(self.limit.bytes()),
            display::size(self.needs)
        )
    }
}

/// A quota to set, as a client sends it: `{"scope": "team-a/",
/// "limit_bytes": N}`. Validated by [`QuotaDraft::validate`], once, for
/// every transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaDraft {
    pub scope: String,
    pub limit_bytes: u64,
}

impl QuotaDraft {
    pub fn validate(&self) -> Result<(QuotaScope, QuotaLimit)> {
        Ok((
            QuotaScope::parse(&self.scope)?,
            QuotaLimit::new(self.limit_bytes)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoName {
        RepoName::new(s).unwrap()
    }

    #[test]
    fn scopes_parse_round_trip_and_cover_what_they_say() {
        let ns = QuotaScope::parse("team-a/").unwrap();
        assert!(matches!(ns, QuotaScope::Namespace(_)));
        assert_eq!(ns.to_string(), "team-a/");
        assert!(ns.covers(&repo("team-a/app")));
        assert!(ns.covers(&repo("team-a/x/y")));
        assert!(!ns.covers(&repo("team-a")));
        assert!(!ns.covers(&repo("team-ab/app")));
        let one = QuotaScope::parse("team-a/app").unwrap();
        assert_eq!(one, QuotaScope::Repository(repo("team-a/app")));
        assert!(one.covers(&repo("team-a/app")));
        assert!(!one.covers(&repo("team-a/app/x")));
    }

    #[test]
    fn bad_scopes_and_limits_say_what_is_wrong() {
        for bad in ["", "/", "Team/", "a//", "a/b//", "UPPER"] {
            let e = QuotaScope::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid scope: "), "{bad:?}: {e}");
        }
        assert!(QuotaLimit::new(0).is_err());
        assert!(QuotaLimit::new(MAX_LIMIT_BYTES + 1).is_err());
        assert_eq!(
            QuotaLimit::new(MAX_LIMIT_BYTES).unwrap().bytes(),
            MAX_LIMIT_BYTES
        );
        let e = serde_json::from_str::<Quota>(r#"{"id":1,"scope":"a/","limit_bytes":0}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("from 1 to"), "{e}");
    }

    #[test]
    fn covering_scopes_are_the_repository_and_each_namespace_above_it() {
        assert_eq!(QuotaScope::covering(&repo("a")), vec!["a"]);
        assert_eq!(
            QuotaScope::covering(&repo("a/b/c")),
            vec!["a/b/c", "a/", "a/b/"]
        );
        for key in QuotaScope::covering(&repo("a/b/c")) {
            assert!(QuotaScope::parse(&key).unwrap().covers(&repo("a/b/c")));
        }
    }

    #[test]
    fn a_charge_is_refused_only_when_it_adds_bytes_past_the_limit() {
        let charge = |used, needs| QuotaCharge {
            scope: QuotaScope::parse("team-a/").unwrap(),
            limit: QuotaLimit::new(10 << 30).unwrap(),
            used,
            needs,
        };
        assert!(charge(10 << 30, 0).check().is_ok());
        assert!(charge(11 << 30, 0).check().is_ok());
        assert!(charge(9 << 30, 1 << 30).check().is_ok());
        let e = charge(10_522_669_875, 300 << 20).check().unwrap_err();
        assert_eq!(
            e.to_string(),
            "quota exceeded for \"team-a/\": 9.8 GiB of 10.0 GiB used, this push needs \
             300.0 MiB (delete images and run GC, or ask an admin to raise the quota)"
        );
    }
}
