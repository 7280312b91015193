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

impl OciRoute {
    /// Parses the part of the path after `/v2/`. `Ok(None)` for a path that
    /// is no OCI endpoint.
    pub fn parse(path: &str) -> Result<Option<OciRoute>, Error> {
        let path = percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| Error::NameInvalid("path is not UTF-8".into()))?;
        let path = path.as_ref();
        if let Some(repo) = path.strip_suffix("/tags/list") {
            return Ok(Some(OciRoute::Tags(RepoName::new(repo)?)));
        }
        if let Some(repo) = path
            .strip_suffix("/blobs/uploads/")
            .or_else(|| path.strip_suffix("/blobs/uploads"))
        {
            return Ok(Some(OciRoute::UploadStart(RepoName::new(repo)?)));
        }
        let Some((head, last)) = path.rsplit_once('/') else {
            return Ok(None);
        };
        if let Some(repo) = head.strip_suffix("/blobs/uploads") {
            return Ok(Some(OciRoute::Upload(
                RepoName::new(repo)?,
                UploadId::parse(last)?,
            )));
        }
        if let Some(repo) = head.strip_suffix("/manifests") {
            return Ok(Some(OciRoute::Manifest(
                RepoName::new(repo)?,
                Reference::parse(last)?,
            )));
        }
        if let Some(repo) = head.strip_suffix("/blobs") {
            return Ok(Some(OciRoute::Blob(
                RepoName::new(repo)?,
                Digest::parse(last)?,
            )));
        }
        if let Some(repo) = head.strip_suffix("/referrers") {
            return Ok(Some(OciRoute::Referrers(
                RepoName::new(repo)?,
                Digest::parse(last)?,
            )));
        }
        Ok(None)
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
