//! Parsing `/v2/<name>/...` paths. Repository names contain `/`, so the
//! route is recognised from the end of the path.

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

/// The endpoint a path names, before its parts are validated: which one,
/// the repository part, and the last segment (reference, digest or id).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Endpoint {
    Manifest,
    Blob,
    UploadStart,
    Upload,
    Tags,
    Referrers,
}

impl Endpoint {
    /// Recognises the endpoint from the end of `path` (after `/v2/`).
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

    /// The route template, as the distribution-spec writes it.
    fn template(self) -> &'static str {
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
    /// is no OCI endpoint.
    pub fn parse(path: &str) -> Result<Option<OciRoute>, Error> {
        let path = decode(path)?;
        let Some((endpoint, repo, last)) = Endpoint::split(&path) else {
            return Ok(None);
        };
        let repo = RepoName::new(repo)?;
        Ok(Some(match endpoint {
            Endpoint::Manifest => OciRoute::Manifest(repo, Reference::parse(last)?),
            Endpoint::Blob => OciRoute::Blob(repo, Digest::parse(last)?),
            Endpoint::UploadStart => OciRoute::UploadStart(repo),
            Endpoint::Upload => OciRoute::Upload(repo, UploadId::parse(last)?),
            Endpoint::Tags => OciRoute::Tags(repo),
            Endpoint::Referrers => OciRoute::Referrers(repo, Digest::parse(last)?),
        }))
    }

    /// The route template of the endpoint the part of the path after
    /// `/v2/` names (`/v2/<name>/blobs/<digest>`), whether or not its parts
    /// are valid; `None` for no OCI endpoint. For metrics: it never holds
    /// anything from the path.
    pub fn template(path: &str) -> Option<&'static str> {
        let path = decode(path).ok()?;
        Endpoint::split(&path).map(|(e, _, _)| e.template())
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

/// Percent-decodes a path; borrowed unless it held an escape. A path
/// without `%` (nearly all) is found by one `memchr` instead of the
/// decoder's byte-by-byte walk: this runs twice per request (routing and
/// the metrics' route template).
fn decode(path: &str) -> Result<std::borrow::Cow<'_, str>, Error> {
    if !path.contains('%') {
        return Ok(std::borrow::Cow::Borrowed(path));
    }
    percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| Error::NameInvalid("path is not UTF-8".into()))
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
        for (path, template) in [
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
            assert_eq!(OciRoute::template(path), Some(template), "{path}");
        }
        assert_eq!(OciRoute::template("x/other"), None);
        assert_eq!(OciRoute::template("x%ff/tags/list"), None);
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
}
