//! The `BlobStore` on an S3-protocol object store (AWS S3, Garage, MinIO,
//! Ceph RGW, R2), through `object_store`'s S3 client, with path-style
//! addressing so any endpoint works (issue 14, "S3 blobs").
//!
//! [`S3BlobStore`] keeps blobs under `blobs/<algorithm>/<hex>` and upload
//! sessions under `uploads/<id>/` (see `keys`). It owns:
//!
//! - **integrity**: an object appears under `blobs/` only after the bytes
//!   hashed to its digest;
//! - **resumability**: an upload's bytes live in the bucket (multipart
//!   parts and tail pieces) and its recorded [`UploadState`] names them and
//!   carries the running sha256, so any replica continues it, also after
//!   the one that began it died (see `upload`);
//! - **streaming**: reads are one ranged GET streamed through; listings
//!   are paged (1000 keys a page), never held whole;
//! - **bounded memory**: an upload in flight holds at most one part
//!   (8 MiB) and a body chunk.
//!
//! Finishing a sha256 upload reads only its tail again (to send it as the
//! last part), and the bytes move into place by a server-side copy.

mod keys;
mod state;
mod upload;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use mcr_core::digest::Digest;
use mcr_core::error::{Error, Result, StorageError, StorageErrorKind};
use mcr_core::ids::UploadId;
use mcr_core::ports::{BlobBody, BlobStore, ByteRange, ListStream, UploadState, UploadWriter};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

/// Where the bucket is and how to sign in (`[storage.s3]` of `mcrsrv`'s
/// config). Credentials left `None` come from the standard environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
#[derive(Clone, Default)]
pub struct S3Config {
    /// Base URL of the S3 API, like `http://127.0.0.1:3900`.
    pub endpoint: String,
    pub bucket: String,
    /// The region the endpoint signs for (`garage` for Garage's default).
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Content-addressed blobs and resumable uploads in one S3 bucket. Cheap
/// to clone: clones share the HTTP client and its connection pool.
#[derive(Clone)]
pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    /// `<endpoint>/<bucket>`, for messages.
    name: Arc<str>,
}

impl fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket", &self.name)
            .finish_non_exhaustive()
    }
}

/// How long connecting may take before a request counts as failed (and
/// is retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Retries of a request that failed in a way that may pass (a refused
/// connection, a 5xx, a `SlowDown`), with backoff, within this long.
const RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

impl S3BlobStore {
    /// A store on `config`'s bucket, checked to answer: `Error::Invalid`
    /// (field `storage.s3`) for a config the client refuses, and the
    /// storage error of [`S3BlobStore::check`] (unreachable endpoint,
    /// unknown bucket, refused or read-only credentials) otherwise.
    pub async fn connect(config: &S3Config) -> Result<S3BlobStore> {
        let store = S3BlobStore::new(config)?;
        store.check().await?;
        Ok(store)
    }

    /// A store on `config`'s bucket, without touching the network.
    pub fn new(config: &S3Config) -> Result<S3BlobStore> {
        let https = config.endpoint.starts_with("https://");
        let client = ClientOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            // A blob GET streams for as long as the client pulling it
            // takes; stalls show as connection errors, which are retried.
            .with_timeout_disabled()
            .with_allow_http(!https);
        let retry = RetryConfig {
            max_retries: RETRIES,
            retry_timeout: RETRY_TIMEOUT,
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_endpoint(&config.endpoint)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(false)
            .with_client_options(client)
            .with_retry(retry)
            // Over TLS the channel protects the body and uploads skip a
            // sha256 pass for the signature; over plain HTTP it is signed.
            .with_unsigned_payload(https);
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| Error::invalid("storage.s3", e.to_string()))?;
        Ok(S3BlobStore {
            store: Arc::new(store),
            name: format!(
                "{}/{}",
                config.endpoint.trim_end_matches('/'),
                config.bucket
            )
            .into(),
        })
    }

    /// Lists the bucket once and writes and deletes a probe object, which
    /// fails when the endpoint is unreachable, the bucket does not exist,
    /// the credentials are refused or they may only read (a store that
    /// serves pulls but fails every push must not start).
    pub async fn check(&self) -> Result<()> {
        self.store
            .list_with_delimiter(Some(&keys::blobs()))
            .await
            .map(drop)
            .map_err(|e| failed(format!("listing bucket {}", self.name), e))?;
        BlobStore::probe(self).await
    }
}

/// A storage error for `op`, its kind read from the client's error: a
/// connection that failed or timed out may pass, anything else will not.
fn failed(op: impl Into<String>, e: object_store::Error) -> Error {
    Error::Storage(StorageError::new(kind_of(&e), op, e))
}

fn kind_of(e: &object_store::Error) -> StorageErrorKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted => StorageErrorKind::Unavailable,
                _ => StorageErrorKind::Permanent,
            };
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return StorageErrorKind::of_io(io);
        }
        source = err.source();
    }
    StorageErrorKind::Permanent
}

fn blob_error(digest: &Digest, op: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::BlobUnknown(digest.clone()),
        e => failed(format!("{op} blob {digest}"), e),
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn begin_upload(&self, id: &UploadId) -> Result<()> {
        let session = keys::session(id);
        // Ids are 128 random bits; the check only catches a caller's
        // mistake, so it need not be atomic with the write.
        if upload::exists(&self.store, &session).await? {
            return Err(Error::Conflict(format!("upload {id} exists")));
        }
        self.store
            .put(&session, PutPayload::new())
            .await
            .map(drop)
            .map_err(|e| failed(format!("creating upload session {id}"), e))
    }

    async fn resume_upload(
        &self,
        id: &UploadId,
        state: &UploadState,
    ) -> Result<Box<dyn UploadWriter>> {
        let writer = upload::resume(Arc::clone(&self.store), id.clone(), state).await?;
        Ok(Box::new(writer))
    }

    async fn cancel_upload(&self, id: &UploadId) -> Result<()> {
        let multipart = match upload::session(&self.store, id).await {
            Ok(multipart) => multipart,
            // Gone already; objects a crashed cancel left still go.
            Err(Error::UploadUnknown(_)) => None,
            Err(e) => return Err(e),
        };
        upload::discard(&self.store, id, multipart.as_ref()).await
    }

    fn list_uploads(&self) -> ListStream<UploadId> {
        self.store
            .list(Some(&keys::uploads()))
            .map_err(|e| failed("listing upload sessions", e))
            .try_filter_map(|meta| std::future::ready(Ok(keys::session_of(&meta.location))))
            .boxed()
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobBody> {
        let key = keys::blob(digest);
        let options = match range {
            None => GetOptions::default(),
            Some(range) => {
                // The size first: an unsatisfiable range names it.
                let size = self
                    .store
                    .head(&key)
                    .await
                    .map_err(|e| blob_error(digest, "looking up", e))?
                    .size;
                let (offset, len) = range
                    .resolve(size)
                    .ok_or(Error::RangeNotSatisfiable { size })?;
                GetOptions {
                    range: Some(GetRange::Bounded(offset..offset + len)),
                    ..GetOptions::default()
                }
            }
        };
        let got = self
            .store
            .get_opts(&key, options)
            .await
            .map_err(|e| blob_error(digest, "reading", e))?;
        let (size, offset, len) = (
            got.meta.size,
            got.range.start,
            got.range.end - got.range.start,
        );
        let stream = got.into_stream().map_err(io::Error::other).boxed();
        Ok(BlobBody {
            size,
            offset,
            len,
            stream,
            file: None,
        })
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.store.head(&keys::blob(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed(format!("looking up blob {digest}"), e)),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        // S3 deletes absent keys without a word, so ask first.
        if self.stat(digest).await?.is_none() {
            return Ok(false);
        }
        self.store
            .delete(&keys::blob(digest))
            .await
            .map_err(|e| failed(format!("deleting blob {digest}"), e))?;
        Ok(true)
    }

    fn list(&self) -> ListStream<Digest> {
        self.store
            .list(Some(&keys::blobs()))
            .map_err(|e| failed("listing blobs", e))
            .try_filter_map(|meta| {
                let digest = keys::digest_of(&meta.location);
                if digest.is_none() {
                    tracing::warn!(key = %meta.location, "an object under blobs/ that names no digest; ignored");
                }
                std::future::ready(Ok(digest))
            })
            .boxed()
    }

    async fn probe(&self) -> Result<()> {
        // A write and its delete: a reachable bucket whose key may only
        // read fails here, not on the next push.
        let id = UploadId::generate()?;
        let key = keys::probe(&id);
        self.store
            .put(&key, PutPayload::new())
            .await
            .map_err(|e| failed(format!("writing a probe to bucket {}", self.name), e))?;
        self.store.delete(&key).await.map_err(|e| {
            failed(
                format!("deleting the probe {key} from bucket {}", self.name),
                e,
            )
        })
    }
}
