//! The `Upstream` port: the registry a pull-through cache mirrors, spoken
//! to over the OCI distribution API (spec § "Pull-through cache").
//!
//! The engine asks for manifests by tag or digest, for the digest a tag
//! names now (a `HEAD`, the cheap revalidation of a cached tag) and for a
//! blob's bytes as a stream. Names are the upstream's own (the engine has
//! already stripped the mirror's prefix and applied Docker Hub's
//! `library/` rule). Authentication, TLS, timeouts and retries are the
//! adapter's business.

use async_trait::async_trait;
use bytes::Bytes;

use super::blob_store::ByteStream;
use crate::digest::Digest;
use crate::error::Result;
use crate::media::MediaType;
use crate::names::{Reference, RepoName, Tag};

/// A manifest as the upstream served it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamManifest {
    /// The `Content-Type` it came with.
    pub media_type: MediaType,
    /// The bytes exactly as served; the engine hashes them itself.
    pub raw: Bytes,
}

/// A blob body coming from the upstream.
pub struct UpstreamBlob {
    /// The size the upstream announced (`Content-Length`), in bytes. The
    /// body is not trusted to match it: the engine counts and hashes.
    pub size: u64,
    pub stream: ByteStream,
}

/// A registry the engine mirrors.
///
/// Every method answers `Ok(None)` when the upstream says the thing does
/// not exist (`404`), and `Error::Unavailable` with a message naming the
/// upstream when it cannot be asked (unreachable, timed out, `5xx`,
/// refused credentials, an answer that is not what the API promises).
#[async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// Where the upstream is, for messages and the admin listing (a URL
    /// without credentials).
    fn location(&self) -> &str;

    /// `GET /v2/<name>/manifests/<reference>`, at most `limit` bytes (a
    /// larger answer is an error, not a truncation).
    async fn manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        limit: u64,
    ) -> Result<Option<UpstreamManifest>>;

    /// `HEAD /v2/<name>/manifests/<tag>`: the digest the tag names now
    /// (`Docker-Content-Digest`). The revalidation of a cached tag, which
    /// the engine may answer from its cache when this fails: an adapter
    /// gives up after one timeout rather than retrying it.
    async fn manifest_digest(&self, name: &RepoName, tag: &Tag) -> Result<Option<Digest>>;

    /// `HEAD /v2/<name>/blobs/<digest>`: the blob's size in bytes.
    async fn blob_size(&self, name: &RepoName, digest: &Digest) -> Result<Option<u64>>;

    /// `GET /v2/<name>/blobs/<digest>`: the body, streamed as it arrives.
    async fn blob(&self, name: &RepoName, digest: &Digest) -> Result<Option<UpstreamBlob>>;
}
