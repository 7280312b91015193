//! Where things live in the bucket.
//!
//! - `blobs/<algorithm>/<hex>`: a blob, under the digest its bytes hash
//!   to. Listing `blobs/` gives digests in ascending order, as
//!   `BlobStore::list` promises.
//! - `uploads/<id>/session`: an upload session exists while this object
//!   does; it holds the id of the session's S3 multipart upload once one
//!   was created (empty before), so cancelling and purging can abort it.
//! - `uploads/<id>/assembled`: the key the multipart upload completes to.
//! - `uploads/<id>/parts/<n>`: the ETags of parts 1..=n, one per line.
//! - `uploads/<id>/piece/<offset>-<len>`: a tail piece, the `len` bytes at
//!   `offset` of the upload.
//!
//! - `probe/<random>`: written and deleted at once by a readiness probe.
//!
//! Objects under `uploads/<id>/` that no recorded state names (left by an
//! append whose state was never recorded) are harmless and go with the
//! session.

use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use object_store::path::Path;

const BLOBS: &str = "blobs";
const UPLOADS: &str = "uploads";
const SESSION: &str = "session";

pub(super) fn blobs() -> Path {
    Path::from(BLOBS)
}

pub(super) fn blob(digest: &Digest) -> Path {
    Path::from_iter([BLOBS, digest.algorithm().as_str(), digest.hex()])
}

/// The digest a `blobs/` key names, if it is one.
pub(super) fn digest_of(key: &Path) -> Option<Digest> {
    let mut parts = key.parts();
    let (top, algorithm, hex) = (parts.next()?, parts.next()?, parts.next()?);
    if top.as_ref() != BLOBS || parts.next().is_some() {
        return None;
    }
    Digest::parse(&format!("{}:{}", algorithm.as_ref(), hex.as_ref())).ok()
}

pub(super) fn uploads() -> Path {
    Path::from(UPLOADS)
}

/// Everything of one upload.
pub(super) fn upload_dir(id: &UploadId) -> Path {
    Path::from_iter([UPLOADS, id.as_str()])
}

pub(super) fn session(id: &UploadId) -> Path {
    upload_dir(id).join(SESSION)
}

/// The upload id a `session` key names, if it is one.
pub(super) fn session_of(key: &Path) -> Option<UploadId> {
    let mut parts = key.parts();
    let (top, id, name) = (parts.next()?, parts.next()?, parts.next()?);
    if top.as_ref() != UPLOADS || name.as_ref() != SESSION || parts.next().is_some() {
        return None;
    }
    UploadId::parse(id.as_ref()).ok()
}

pub(super) fn assembled(id: &UploadId) -> Path {
    upload_dir(id).join("assembled")
}

pub(super) fn etags(id: &UploadId, parts: u32) -> Path {
    upload_dir(id).join("parts").join(parts.to_string())
}

pub(super) fn piece(id: &UploadId, offset: u64, len: u32) -> Path {
    upload_dir(id).join("piece").join(format!("{offset}-{len}"))
}

/// A readiness probe's object, `id` making it unique.
pub(super) fn probe(id: &UploadId) -> Path {
    Path::from_iter(["probe", id.as_str()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(blob(&d).as_ref(), format!("blobs/sha256/{}", d.hex()));
        assert_eq!(digest_of(&blob(&d)), Some(d));
        let id = UploadId::generate().unwrap();
        assert_eq!(session_of(&session(&id)), Some(id.clone()));
        assert_eq!(session_of(&piece(&id, 0, 5)), None);
        assert_eq!(digest_of(&session(&id)), None);
    }
}
