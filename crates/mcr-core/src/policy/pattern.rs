//! Patterns: the validated globs a rule's `repositories` ([`RepoPattern`])
//! and `tags` ([`TagPattern`]) hold.
//!
//! Matching is the `glob` crate's, with two options fixed so that a pattern
//! reads like a path: `*`, `?` and `[...]` never match `/`, and case counts.
//! `**`, as a whole path segment, matches any number of segments (zero or
//! more), so `production/**` covers everything under `production/` and
//! `**/app` covers `app` at any depth.
//!
//! Validation refuses what `glob` refuses (`a**`, `***`, an unclosed `[`)
//! and also patterns that could never match a repository name: upper case,
//! characters outside the OCI name alphabet, and empty path segments. A
//! rule with such a pattern would silently never match, and for a deny rule
//! that is a hole an operator would not see.
//!
//! Tag patterns are the same globs over the tag alphabet
//! (`[a-zA-Z0-9._-]`, case-sensitive: `v*` does not match `V1`). A tag has
//! no `/`, so there is no segment rule to state.

use std::fmt;
use std::str::FromStr;

use glob::{MatchOptions, Pattern};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::names::{Tag, MAX_REPO_NAME_LEN, MAX_TAG_LEN};

/// How every pattern matches: segment by segment, case-sensitively.
const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// Characters a pattern may hold: the OCI name alphabet and glob syntax.
fn allowed(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-' | '/' | '*' | '?' | '[' | ']' | '!')
}

/// A glob over repository names, validated at construction; see the module
/// docs for its syntax.
#[derive(Clone)]
pub struct RepoPattern {
    pattern: Pattern,
}

impl RepoPattern {
    /// Parses a pattern. Errors are `Error::Invalid` on `repositories` and
    /// quote the pattern.
    pub fn new(s: &str) -> Result<RepoPattern> {
        let bad = |why: String| Error::invalid("repositories", format!("pattern {s:?} {why}"));
        // A pattern longer than the longest name could still match it
        // through a character class, but not by much; twice is generous.
        let max = 2 * MAX_REPO_NAME_LEN;
        if s.is_empty() || s.len() > max {
            return Err(bad(format!("must have 1 to {max} characters")));
        }
        if let Some(c) = s.chars().find(|&c| !allowed(c)) {
            return Err(bad(format!(
                "contains {c:?}; repository names hold only lowercase letters, digits, \
                 '.', '_', '-' and '/', and patterns add '*', '?', '[', ']' and '!'"
            )));
        }
        if s.split('/').any(str::is_empty) {
            return Err(bad(
                "has an empty path segment (a leading, trailing or doubled '/')".into(),
            ));
        }
        let pattern = Pattern::new(s).map_err(|e| bad(format!("is not a valid glob: {e}")))?;
        Ok(RepoPattern { pattern })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.pattern.as_str()
    }

    /// Whether `repo` (a repository name) matches.
    pub fn matches(&self, repo: &str) -> bool {
        self.pattern.matches_with(repo, MATCH)
    }
}

impl PartialEq for RepoPattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RepoPattern {}

impl fmt::Debug for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoPattern({:?})", self.as_str())
    }
}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RepoPattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RepoPattern::new(s)
    }
}

impl Serialize for RepoPattern {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Through [`RepoPattern::new`], so a stored or posted rule cannot carry a
/// pattern the constructor would refuse.
impl<'de> Deserialize<'de> for RepoPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RepoPattern::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Characters a tag pattern may hold: the tag alphabet and glob syntax.
fn allowed_in_tag(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | '?' | '[' | ']' | '!')
}

/// A glob over tag names (`v*`, `release-*`, `v[0-9]*`), validated at
/// construction; see the module docs for its syntax.
#[derive(Clone)]
pub struct TagPattern {
    pattern: Pattern,
}

impl TagPattern {
    /// Parses a pattern. Errors are `Error::Invalid` on `tags` and quote
    /// the pattern: characters no tag holds (a pattern with them could
    /// never match, a silent hole in a deny rule), and what `glob`
    /// refuses.
    pub fn new(s: &str) -> Result<TagPattern> {
        let bad = |why: String| Error::invalid("tags", format!("pattern {s:?} {why}"));
        // As for repositories: a class may stand for one character, so a
        // pattern may be longer than the longest tag, but not by much.
        let max = 2 * MAX_TAG_LEN;
        if s.is_empty() || s.len() > max {
            return Err(bad(format!("must have 1 to {max} characters")));
        }
        if let Some(c) = s.chars().find(|&c| !allowed_in_tag(c)) {
            return Err(bad(format!(
                "contains {c:?}; tags hold only letters, digits, '.', '_' and '-', \
                 and patterns add '*', '?', '[', ']' and '!'"
            )));
        }
        let pattern = Pattern::new(s).map_err(|e| bad(format!("is not a valid glob: {e}")))?;
        Ok(TagPattern { pattern })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.pattern.as_str()
    }

    /// Whether `tag` matches.
    pub fn matches(&self, tag: &Tag) -> bool {
        self.pattern.matches_with(tag.as_str(), MATCH)
    }
}

impl PartialEq for TagPattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TagPattern {}

impl fmt::Debug for TagPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TagPattern({:?})", self.as_str())
    }
}

impl fmt::Display for TagPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TagPattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TagPattern::new(s)
    }
}

impl Serialize for TagPattern {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Through [`TagPattern::new`], as for [`RepoPattern`].
impl<'de> Deserialize<'de> for TagPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TagPattern::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> RepoPattern {
        RepoPattern::new(s).unwrap()
    }

    #[test]
    fn star_stays_within_a_segment() {
        let p = pat("production/*");
        assert!(p.matches("production/app"));
        assert!(!p.matches("production/team/app"));
        assert!(!p.matches("production"));
        assert!(!p.matches("staging/app"));
        assert!(pat("*").matches("app"));
        assert!(!pat("*").matches("team/app"));
        assert!(pat("*/app").matches("team/app"));
        assert!(pat("team-*").matches("team-a"));
        assert!(!pat("team-*").matches("team-a/x"));
    }

    #[test]
    fn question_mark_and_classes_never_match_a_slash() {
        assert!(pat("app?").matches("app1"));
        assert!(!pat("a?b").matches("a/b"));
        assert!(pat("v[0-9]").matches("v7"));
        assert!(!pat("a[!x]b").matches("a/b"));
        assert!(pat("a[!x]b").matches("a-b"));
    }

    #[test]
    fn double_star_crosses_segments_as_a_whole_segment() {
        let p = pat("production/**");
        assert!(p.matches("production/app"));
        assert!(p.matches("production/team/app"));
        // `**` needs the `/` before it literally.
        assert!(!p.matches("production"));
        assert!(!p.matches("productionx/app"));
        let p = pat("**/app");
        assert!(p.matches("app"));
        assert!(p.matches("a/b/app"));
        assert!(!p.matches("webapp"));
        assert!(pat("a/**/b").matches("a/b"));
        assert!(pat("a/**/b").matches("a/x/y/b"));
        assert!(pat("**").matches("any/thing/at/all"));
    }

    #[test]
    fn matching_is_case_sensitive_and_literal() {
        assert!(pat("ci/app").matches("ci/app"));
        assert!(!pat("ci/app").matches("ci/app2"));
        assert!(!pat("ci/app").matches("ci"));
        assert!(pat("a.b").matches("a.b"));
        assert!(!pat("a.b").matches("axb"));
    }

    #[test]
    fn malformed_patterns_are_refused_naming_the_pattern() {
        for bad in [
            "",
            "a/[",
            "a**",
            "a/**b",
            "***",
            "Production/*",
            "prod app",
            "/prod",
            "prod/",
            "a//b",
            "prod\\*",
        ] {
            match RepoPattern::new(bad) {
                Err(Error::Invalid { field, reason }) => {
                    assert_eq!(field, "repositories", "{bad:?}");
                    assert!(reason.contains(&format!("{bad:?}")), "{bad:?}: {reason}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(RepoPattern::new(&"a".repeat(2 * MAX_REPO_NAME_LEN + 1)).is_err());
    }

    fn tag(s: &str) -> Tag {
        Tag::new(s).unwrap()
    }

    #[test]
    fn tag_patterns_match_case_sensitively() {
        let p = TagPattern::new("v*").unwrap();
        assert!(p.matches(&tag("v1.0.0")));
        assert!(p.matches(&tag("v")));
        assert!(!p.matches(&tag("V1")));
        assert!(!p.matches(&tag("latest")));
        let p = TagPattern::new("release-[0-9]*").unwrap();
        assert!(p.matches(&tag("release-2024.1")));
        assert!(!p.matches(&tag("release-x")));
        assert!(TagPattern::new("latest").unwrap().matches(&tag("latest")));
        assert!(!TagPattern::new("latest").unwrap().matches(&tag("latest2")));
    }

    #[test]
    fn malformed_tag_patterns_are_refused_naming_the_pattern() {
        for bad in ["", "v/*", "v[", "a b", "***x", "v\\*"] {
            match TagPattern::new(bad) {
                Err(Error::Invalid { field, reason }) => {
                    assert_eq!(field, "tags", "{bad:?}");
                    assert!(reason.contains(&format!("{bad:?}")), "{bad:?}: {reason}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(TagPattern::new(&"a".repeat(2 * MAX_TAG_LEN + 1)).is_err());
        let p: TagPattern = serde_json::from_str(r#""v*""#).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), r#""v*""#);
        let err = serde_json::from_str::<TagPattern>(r#""v/1""#).unwrap_err();
        assert!(err.to_string().contains("invalid tags"), "{err}");
    }

    #[test]
    fn serde_goes_through_validation() {
        let p: RepoPattern = serde_json::from_str(r#""ci/*""#).unwrap();
        assert_eq!(p, pat("ci/*"));
        assert_eq!(serde_json::to_string(&p).unwrap(), r#""ci/*""#);
        let err = serde_json::from_str::<RepoPattern>(r#""ci/[""#).unwrap_err();
        assert!(err.to_string().contains("invalid repositories"), "{err}");
        assert_eq!("ci/*".parse::<RepoPattern>().unwrap().to_string(), "ci/*");
    }
}
