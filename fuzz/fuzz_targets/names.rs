//! Digests, repository names, tags, references, upload ids, media types
//! and timestamps: every parser of a name or time a client sends. Whatever
//! one accepts is in its canonical form (it prints back as given, so it is
//! safe as a path part or a key) and parses again to the same value; every
//! timestamp prints as RFC 3339.

#![no_main]

use std::fmt::Display;
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::media::MediaType;
use mcr_core::names::{Reference, RepoName, Tag, MAX_REPO_NAME_LEN, MAX_TAG_LEN};
use mcr_core::time::Timestamp;
use serde::{de::DeserializeOwned, Serialize};

/// `s` parsed as `T`: it prints back as `s`, and parses again, from text
/// and from JSON, to the same value.
fn canonical<T>(s: &str) -> Option<T>
where
    T: FromStr + Display + PartialEq + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let v = s.parse::<T>().ok()?;
    assert_eq!(v.to_string(), s, "accepted in a form it does not print");
    let json = serde_json::to_string(&v).expect("serializes");
    assert_eq!(
        serde_json::from_str::<T>(&json).expect("its own JSON parses"),
        v
    );
    Some(v)
}

fuzz_target!(|s: &str| {
    if let Some(d) = canonical::<Digest>(s) {
        assert_eq!(d.hex().len(), d.algorithm().hex_len());
        assert!(d
            .hex()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
    if let Some(name) = canonical::<RepoName>(s) {
        // Safe to join to a path: no empty, `.` or `..` component.
        assert!(name.as_str().len() <= MAX_REPO_NAME_LEN);
        assert!(name
            .as_str()
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".."));
    }
    if let Some(tag) = canonical::<Tag>(s) {
        assert!(tag.as_str().len() <= MAX_TAG_LEN);
        assert!(!tag.as_str().contains(['/', ':']));
    }
    if let Ok(r) = s.parse::<Reference>() {
        assert_eq!(r.to_string(), s);
        assert_eq!(s.parse::<Reference>().ok(), Some(r.clone()));
        match r {
            Reference::Digest(d) => assert_eq!(s.parse::<Digest>().ok(), Some(d)),
            Reference::Tag(t) => assert_eq!(s.parse::<Tag>().ok(), Some(t)),
        }
    }
    if let Ok(id) = UploadId::parse(s) {
        assert_eq!(id.to_string(), s);
        assert_eq!(UploadId::parse(id.as_str()).ok(), Some(id));
    }
    canonical::<MediaType>(s);
    if let Ok(mt) = MediaType::from_content_type(s) {
        // The essence of a Content-Type is a media type by itself.
        assert_eq!(canonical::<MediaType>(mt.as_str()), Some(mt));
    }
    // A time filter as the audit API takes it, and any time the engine
    // may have to print (an expiry far off, a clock before 1970).
    if let Ok(t) = Timestamp::parse_rfc3339(s) {
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).ok(), Some(t));
    }
    if let Ok(ms) = s.parse::<i64>() {
        let printed = Timestamp::from_millis(ms).to_rfc3339();
        assert!(Timestamp::parse_rfc3339(&printed).is_ok(), "{printed}");
    }
});
