//! Patterns: the validated globs a rule's `repositories` ([`RepoPattern`])
//! and `tags` ([`TagPattern`]) hold.
//!
//! The syntax and meaning are the `glob` crate's, with two options fixed
//! so that a pattern reads like a path: `*`, `?` and `[...]` never match
//! `/`, and case counts. `glob` parses and validates; matching goes
//! through a regular expression compiled from the pattern ([`compile`]),
//! because `glob`'s backtracking matcher takes exponential time on
//! patterns with many `*` in one segment against a long name (a rule
//! with `???*??*?*?*?*?7777p0pp` stalled every request it was asked
//! about; found by the `policy_rule` fuzz target). The `regex` crate
//! matches in time linear in the name.
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

use glob::Pattern;
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::names::{Tag, MAX_REPO_NAME_LEN, MAX_TAG_LEN};

/// The regular expression that matches what `glob` matches for `pattern`
/// (a pattern `glob` accepted) with `case_sensitive` and
/// `require_literal_separator` set: `*` is any run of characters but `/`,
/// `?` and `[...]` one character but `/`, and a `**` segment any number of
/// whole segments (`a/**/b` matches `a/b`, `**/app` matches `app`, `a/**`
/// everything under `a/`).
fn compile(pattern: &str) -> std::result::Result<Regex, regex::Error> {
    let mut re = String::from("^");
    let segments: Vec<&str> = pattern.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if *segment == "**" {
            re.push_str(if last { ".*" } else { "(?:[^/]*/)*" });
            continue;
        }
        let mut chars = segment.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                '[' => {
                    let negated = chars.next_if_eq(&'!').is_some();
                    let mut members = Vec::new();
                    // A `]` first is a member, as in `glob`.
                    if let Some(c) = chars.next_if_eq(&']') {
                        members.push(c);
                    }
                    for c in chars.by_ref() {
                        if c == ']' {
                            break;
                        }
                        members.push(c);
                    }
                    re.push_str(if negated { "[^/" } else { "[" });
                    let mut k = 0;
                    while k < members.len() {
                        if k + 2 < members.len() && members[k + 1] == '-' {
                            re.push_str(&format!(
                                "{}-{}",
                                regex::escape(&members[k].to_string()),
                                regex::escape(&members[k + 2].to_string())
                            ));
                            k += 3;
                        } else {
                            re.push_str(&regex::escape(&members[k].to_string()));
                            k += 1;
                        }
                    }
                    re.push(']');
                }
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        if !last {
            re.push('/');
        }
    }
    re.push('$');
    Regex::new(&re)
}

/// Whether a `[...]` class of `pattern` holds a `/`, which no name's
/// character could match there and which would split the class across
/// segments.
fn slash_in_class(pattern: &str) -> bool {
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '[' {
            continue;
        }
        // As `compile` reads a class: `!` negates, a `]` first is a member.
        chars.next_if_eq(&'!');
        if chars.next_if_eq(&'/').is_some() {
            return true;
        }
        chars.next_if_eq(&']');
        for c in chars.by_ref() {
            match c {
                ']' => break,
                '/' => return true,
                _ => {}
            }
        }
    }
    false
}

/// Characters a pattern may hold: the OCI name alphabet and glob syntax.
fn allowed(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-' | '/' | '*' | '?' | '[' | ']' | '!')
}

/// A glob over repository names, validated at construction; see the module
/// docs for its syntax.
#[derive(Clone)]
pub struct RepoPattern {
    text: String,
    regex: Regex,
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
        if slash_in_class(s) {
            return Err(bad(
                "has a '/' inside a [...] class, which never matches".into()
            ));
        }
        if s.split('/').any(str::is_empty) {
            return Err(bad(
                "has an empty path segment (a leading, trailing or doubled '/')".into(),
            ));
        }
        Pattern::new(s).map_err(|e| bad(format!("is not a valid glob: {e}")))?;
        let regex = compile(s).map_err(|e| bad(format!("is not a valid glob: {e}")))?;
        Ok(RepoPattern {
            text: s.to_string(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `repo` (a repository name) matches, in time linear in its
    /// length.
    pub fn matches(&self, repo: &str) -> bool {
        self.regex.is_match(repo)
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
    text: String,
    regex: Regex,
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
        Pattern::new(s).map_err(|e| bad(format!("is not a valid glob: {e}")))?;
        let regex = compile(s).map_err(|e| bad(format!("is not a valid glob: {e}")))?;
        Ok(TagPattern {
            text: s.to_string(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `tag` matches, in time linear in its length.
    pub fn matches(&self, tag: &Tag) -> bool {
        self.regex.is_match(tag.as_str())
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

    /// The fuzz target's find: many `*` in one segment against the
    /// longest name took `glob` more than 10 s; the regex answers at once.
    #[test]
    fn many_stars_against_a_long_name_answer_at_once() {
        let p = pat("???*??*?*?*?*?7777p0pp");
        let name = format!("{}/{}", "x".repeat(127), "y".repeat(127));
        let started = std::time::Instant::now();
        assert!(!p.matches(&name));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(RepoPattern::new("a[x/y]b").is_err());
        assert!(RepoPattern::new("a/[!/]").is_err());
    }

    proptest::proptest! {
        /// The compiled expression agrees with `glob` itself (with the
        /// options the module states) on short patterns and names, where
        /// `glob`'s backtracking is quick.
        #[test]
        fn matching_agrees_with_glob(
            pattern in "(\\*\\*|[ab/*?.-]|\\[!?[ab/-]{1,3}\\]){1,7}",
            name in "[ab/.-]{0,8}",
        ) {
            if let Ok(p) = RepoPattern::new(&pattern) {
                let options = glob::MatchOptions {
                    case_sensitive: true,
                    require_literal_separator: true,
                    require_literal_leading_dot: false,
                };
                let oracle = glob::Pattern::new(&pattern).unwrap().matches_with(&name, options);
                proptest::prop_assert_eq!(p.matches(&name), oracle, "{} on {:?}", pattern, name);
            }
        }
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
