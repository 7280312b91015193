//! Parsing `/v2/<name>/...` paths. Repository names contain `/`, so the
//! route is recognised from the end of the path.
//!
//! The path's structure is read from its raw `/`-separated segments and
//! only then is each segment percent-decoded, so an encoded slash (`%2F`)
//! is data inside one segment, never a separator: it cannot turn a digest
//! into a path of several parts, and no name may hold one.

use std::borrow::Cow;

use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::names::{Reference, RepoName};
use mcr_core::Error;
use percent_encoding::percent_decode_str;

/// An OCI endpoint under `/v2/`, with its parsed parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum OciRoute {
    Manifest(RepoName, Reference),
    Blob(RepoName, Digest),
    UploadStart(RepoName),
    Upload(RepoName, UploadId),
    Tags(RepoName),
    Referrers(RepoName, Digest),
}

/// The endpoint a path names, before its parts are validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Endpoint {
    Manifest,
    Blob,
    UploadStart,
    Upload,
    Tags,
    Referrers,
}

impl Endpoint {
    /// How many endpoints there are: a table indexed by `endpoint as usize`
    /// (the metrics' handles) has this many slots.
    pub const COUNT: usize = Endpoint::Referrers as usize + 1;

    /// Recognises the endpoint from the end of the raw (still
    /// percent-encoded) `path` after `/v2/`, so only a real `/` separates;
    /// with the repository part and the last segment (reference, digest or
    /// id).
    fn split(path: &str) -> Option<(Endpoint, &str, &str)> {
        if let Some(repo) = path.strip_suffix("/tags/list") {
            return Some((Endpoint::Tags, repo, ""));
        }
        if let Some(repo) = path
            .strip_suffix("/blobs/uploads/")
            .or_else(|| path.strip_suffix("/blobs/uploads"))
        {
            return Some((Endpoint::UploadStart, repo, ""));
        }
        let (head, last) = path.rsplit_once('/')?;
        [
            ("/blobs/uploads", Endpoint::Upload),
            ("/manifests", Endpoint::Manifest),
            ("/blobs", Endpoint::Blob),
            ("/referrers", Endpoint::Referrers),
        ]
        .into_iter()
        .find_map(|(suffix, e)| head.strip_suffix(suffix).map(|repo| (e, repo, last)))
    }

    /// The route template, as the distribution-spec writes it
    /// (`/v2/<name>/blobs/<digest>`). For metrics: it never holds anything
    /// from the path.
    pub fn template(self) -> &'static str {
        match self {
            Endpoint::Manifest => "/v2/<name>/manifests/<reference>",
            Endpoint::Blob => "/v2/<name>/blobs/<digest>",
            Endpoint::UploadStart => "/v2/<name>/blobs/uploads/",
            Endpoint::Upload => "/v2/<name>/blobs/uploads/<reference>",
            Endpoint::Tags => "/v2/<name>/tags/list",
            Endpoint::Referrers => "/v2/<name>/referrers/<digest>",
        }
    }
}

impl OciRoute {
    /// Parses the part of the path after `/v2/`. `Ok(None)` for a path that
    /// is no OCI endpoint; a part that is not valid (including one that is
    /// not UTF-8 once decoded) is refused with that part's error.
    pub fn parse(path: &str) -> Result<Option<OciRoute>, Error> {
        let Some((endpoint, repo, last)) = Endpoint::split(path) else {
            return Ok(None);
        };
        let repo = repo_of(repo)?;
        Ok(Some(match endpoint {
            Endpoint::Manifest => {
                let reference = decoded(last)
                    .map_err(|_| Error::TagInvalid("the reference is not UTF-8".into()))?;
                OciRoute::Manifest(repo, Reference::parse(&reference)?)
            }
            Endpoint::Blob => OciRoute::Blob(repo, digest_of(last)?),
            Endpoint::UploadStart => OciRoute::UploadStart(repo),
            Endpoint::Upload => {
                let id = decoded(last).map_err(|_| Error::upload_id_malformed(last))?;
                OciRoute::Upload(repo, UploadId::parse(&id)?)
            }
            Endpoint::Tags => OciRoute::Tags(repo),
            Endpoint::Referrers => OciRoute::Referrers(repo, digest_of(last)?),
        }))
    }

    /// The endpoint the part of the path after `/v2/` names, whether or
    /// not its parts are valid; `None` for no OCI endpoint. For metrics,
    /// which label a request with its endpoint's template.
    pub fn endpoint(path: &str) -> Option<Endpoint> {
        Endpoint::split(path).map(|(e, _, _)| e)
    }

    pub fn repository(&self) -> &RepoName {
        match self {
            OciRoute::Manifest(r, _)
            | OciRoute::Blob(r, _)
            | OciRoute::UploadStart(r)
            | OciRoute::Upload(r, _)
            | OciRoute::Tags(r)
            | OciRoute::Referrers(r, _) => r,
        }
    }
}

/// One segment, percent-decoded; `Err` if the bytes are not UTF-8. A
/// segment without `%` (nearly all) is found by one `memchr` instead of
/// the decoder's byte-by-byte walk.
fn decoded(segment: &str) -> Result<Cow<'_, str>, std::str::Utf8Error> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    percent_decode_str(segment).decode_utf8()
}

/// The repository the raw (still percent-encoded) name part of a path
/// names: each `/`-separated segment decoded, none holding
/// an encoded `/`.
fn repo_of(raw: &str) -> Result<RepoName, Error> {
    let mut parts = Vec::new();
    for s in raw.split('/') {
        let part = decoded(s)
            .map_err(|_| Error::NameInvalid("the repository name is not UTF-8".into()))?;
        if part.contains('/') {
            return Err(Error::NameInvalid(format!(
                "{s:?}: a name component may not hold an encoded '/'"
            )));
        }
        parts.push(part);
    }
    RepoName::new(&parts.join("/"))
}

fn digest_of(segment: &str) -> Result<Digest, Error> {
    let digest =
        decoded(segment).map_err(|_| Error::DigestInvalid("the digest is not UTF-8".into()))?;
    Digest::parse(&digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> String {
        format!("sha256:{}", "a".repeat(64))
    }

    #[test]
    fn recognises_every_endpoint_from_the_end() {
        let repo = |s: &str| RepoName::new(s).unwrap();
        assert_eq!(
            OciRoute::parse("a/manifests/b/manifests/latest").unwrap(),
            Some(OciRoute::Manifest(
                repo("a/manifests/b"),
                Reference::parse("latest").unwrap()
            ))
        );
        assert_eq!(
            OciRoute::parse(&format!("x/y/blobs/{}", d())).unwrap(),
            Some(OciRoute::Blob(repo("x/y"), Digest::parse(&d()).unwrap()))
        );
        assert_eq!(
            OciRoute::parse("x/blobs/uploads/").unwrap(),
            Some(OciRoute::UploadStart(repo("x")))
        );
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            OciRoute::parse(&format!("x/blobs/uploads/{id}")).unwrap(),
            Some(OciRoute::Upload(repo("x"), UploadId::parse(id).unwrap()))
        );
        assert_eq!(
            OciRoute::parse("x/tags/list").unwrap(),
            Some(OciRoute::Tags(repo("x")))
        );
        assert_eq!(
            OciRoute::parse(&format!("x/referrers/{}", d().replace(':', "%3A"))).unwrap(),
            Some(OciRoute::Referrers(repo("x"), Digest::parse(&d()).unwrap()))
        );
        assert_eq!(OciRoute::parse("x/other").unwrap(), None);
    }

    #[test]
    fn templates_keep_nothing_of_the_path() {
        let id = "0123456789abcdef0123456789abcdef";
        let template = |path: &str| OciRoute::endpoint(path).map(Endpoint::template);
        for (path, template_of) in [
            (
                "a/manifests/b/manifests/latest",
                "/v2/<name>/manifests/<reference>",
            ),
            (&format!("x/y/blobs/{}", d()), "/v2/<name>/blobs/<digest>"),
            ("x/blobs/uploads/", "/v2/<name>/blobs/uploads/"),
            (
                &format!("x/blobs/uploads/{id}"),
                "/v2/<name>/blobs/uploads/<reference>",
            ),
            ("x/tags/list", "/v2/<name>/tags/list"),
            ("x/referrers/sha256%3Aaa", "/v2/<name>/referrers/<digest>"),
            // Invalid parts still name the endpoint they were sent to.
            ("UP/manifests/bad:tag!", "/v2/<name>/manifests/<reference>"),
        ] {
            assert_eq!(template(path), Some(template_of), "{path}");
        }
        assert_eq!(template("x/other"), None);
        // The structure is read before decoding: bytes that are not UTF-8
        // still name the endpoint, and an encoded slash never forms one.
        assert_eq!(template("x%ff/tags/list"), Some("/v2/<name>/tags/list"));
        assert_eq!(template("x/tags%2Flist"), None);
    }

    #[test]
    fn bad_parts_are_named() {
        assert!(matches!(
            OciRoute::parse("UP/manifests/latest"),
            Err(Error::NameInvalid(_))
        ));
        assert!(matches!(
            OciRoute::parse("x/blobs/sha256:zz"),
            Err(Error::DigestInvalid(_))
        ));
        assert!(matches!(
            OciRoute::parse("x/blobs/uploads/../../etc"),
            Err(Error::NameInvalid(_)) | Err(Error::UploadUnknown(_)) | Ok(None)
        ));
        assert!(matches!(
            OciRoute::parse("x/blobs/uploads/not-an-id"),
            Err(Error::UploadUnknown(_))
        ));
    }

    #[test]
    fn an_encoded_slash_is_data_never_a_separator() {
        let d = d();
        assert!(matches!(
            OciRoute::parse("a%2Fb/tags/list"),
            Err(Error::NameInvalid(_))
        ));
        assert!(matches!(
            OciRoute::parse("a/blobs/sha256:..%2F..%2Fetc%2Fpasswd"),
            Err(Error::DigestInvalid(_))
        ));
        assert!(matches!(
            OciRoute::parse("a/manifests/..%2Flatest"),
            Err(Error::TagInvalid(_))
        ));
        assert!(matches!(
            OciRoute::parse("a/blobs/uploads/..%2F..%2Fetc"),
            Err(Error::UploadUnknown(_))
        ));
        // Other escapes decode where they stand.
        assert_eq!(
            OciRoute::parse(&format!("a%2db/blobs/{}", d.replace(':', "%3a"))).unwrap(),
            Some(OciRoute::Blob(
                RepoName::new("a-b").unwrap(),
                Digest::parse(&d).unwrap()
            ))
        );
        // Bytes that are not UTF-8 are refused by the part they are in.
        assert!(matches!(
            OciRoute::parse("a%ff/tags/list"),
            Err(Error::NameInvalid(_))
        ));
        assert!(matches!(
            OciRoute::parse("a/blobs/sha256%3A%ff"),
            Err(Error::DigestInvalid(_))
        ));
        assert!(matches!(
            OciRoute::parse("a/manifests/%ff"),
            Err(Error::TagInvalid(_))
        ));
    }
}
