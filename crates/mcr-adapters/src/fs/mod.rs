//! The `BlobStore` on a local (or shared) filesystem.
//!
//! [`FsBlobStore`] keeps blobs content-addressed under a layers directory
//! and upload sessions as plain files under an uploads directory (see
//! `layout` for the exact paths). It owns:
//!
//! - **integrity**: an upload becomes a blob only by a rename after its
//!   bytes were hashed and matched the expected digest, so a blob file
//!   always holds what its name says;
//! - **durability**: the file is fsynced before the rename and its
//!   directory after it, so a finished upload survives a crash;
//! - **streaming**: bodies are written and read in chunks of about a MiB
//!   or less, never held whole, and hashed as they are written;
//! - **resumability**: a session is its file and the state the engine
//!   records (its size and a token); the process keeps only a hashing
//!   shortcut, so another process, or this one after a restart, can
//!   continue it.
//!
//! It does not decide what may be deleted or when an upload is stale: the
//! engine does that through the port.
//!
//! Finishing an upload is a `rename(2)`, which is atomic only within one
//! filesystem, so [`FsBlobStore::open`] refuses directories on two.

mod layout;
mod open_files;
mod probe;
mod read;
mod upload;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use mcr_core::digest::Digest;
use mcr_core::error::{Error, Result, StorageError};
use mcr_core::ids::UploadId;
use mcr_core::ports::{BlobBody, BlobStore, ByteRange, ListStream, UploadState, UploadWriter};

use layout::Layout;
use open_files::{OpenFiles, Opened};
use upload::Shortcuts;

/// Forgets a digest's open file when dropped: after its `delete`'s
/// unlink returned, or was abandoned (then the unlink may still run, so
/// the entry goes all the same).
struct Forget<'a>(&'a OpenFiles, &'a Digest);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

/// Content-addressed blobs and resumable uploads in two directories of one
/// filesystem. Cheap to clone: clones share the directories and the
/// in-memory session state.
#[derive(Clone)]
pub struct FsBlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Arc<Layout>,
    shortcuts: Arc<Shortcuts>,
    /// Small blobs' files kept open for the next read.
    open_files: OpenFiles,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store with blobs under `layers_path`
    /// and upload sessions under `uploads_path`.
    ///
    /// Created directories get mode 0750 (layers) and 0700 (uploads);
    /// existing ones are left as they are. Fails with `Error::Invalid` if
    /// the two are on different filesystems, and `Error::Storage` if they
    /// cannot be created or inspected.
    pub fn open(layers_path: impl AsRef<Path>, uploads_path: impl AsRef<Path>) -> Result<Self> {
        let layers = layers_path.as_ref().to_path_buf();
        let uploads = uploads_path.as_ref().to_path_buf();
        layout::create_root(&layers, layout::LAYERS_DIR_MODE)
            .map_err(|e| io_error("creating layers directory", &layers, e))?;
        layout::create_root(&uploads, layout::UPLOADS_DIR_MODE)
            .map_err(|e| io_error("creating uploads directory", &uploads, e))?;
        let device = |path: &Path| {
            std::fs::metadata(path)
                .map(|m| m.dev())
                .map_err(|e| io_error("inspecting", path, e))
        };
        let (layers_dev, uploads_dev) = (device(&layers)?, device(&uploads)?);
        if layers_dev != uploads_dev {
            return Err(Error::invalid(
                "storage paths",
                format!(
                    "layers path {} (device {layers_dev}) and uploads path {} (device \
                     {uploads_dev}) are on different filesystems; they must share one, because \
                     finishing an upload renames it into the layers directory",
                    layers.display(),
                    uploads.display()
                ),
            ));
        }
        Ok(FsBlobStore {
            inner: Arc::new(Inner {
                layout: Arc::new(Layout { layers, uploads }),
                shortcuts: Arc::new(Shortcuts::new()?),
                open_files: OpenFiles::default(),
            }),
        })
    }

    /// The directory holding the blobs.
    pub fn layers_path(&self) -> &Path {
        &self.inner.layout.layers
    }

    /// The directory holding the upload sessions.
    pub fn uploads_path(&self) -> &Path {
        &self.inner.layout.uploads
    }

    /// Opens the digest's file on the blocking pool; `BlobUnknown` if
    /// there is none.
    async fn open_blob(&self, digest: &Digest) -> Result<Opened> {
        let path = self.inner.layout.blob_path(digest);
        let opened = blocking(move || {
            let file = std::fs::File::open(&path)?;
            let size = file.metadata()?.len();
            Ok::<_, io::Error>((file, size))
        })
        .await?;
        let (file, size) = opened.map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::BlobUnknown(digest.clone())
            } else {
                io_error("opening blob", &self.inner.layout.blob_path(digest), e)
            }
        })?;
        Ok(Opened {
            file: Arc::new(file),
            size,
        })
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn begin_upload(&self, id: &UploadId) -> Result<()> {
        let path = self.inner.layout.upload_path(id);
        let id = id.clone();
        blocking(move || match upload::begin(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(Error::Conflict(format!("upload {id} already exists")))
            }
            Err(e) => Err(io_error("creating upload", &path, e)),
        })
        .await?
    }

    async fn resume_upload(
        &self,
        id: &UploadId,
        state: &UploadState,
    ) -> Result<Box<dyn UploadWriter>> {
        let writer = upload::resume(
            Arc::clone(&self.inner.layout),
            Arc::clone(&self.inner.shortcuts),
            id.clone(),
            state.clone(),
        )
        .await?;
        Ok(Box::new(writer))
    }

    async fn cancel_upload(&self, id: &UploadId) -> Result<()> {
        // No `flock`: cancelling must not wait for an append whose client
        // stalls. A writer in flight keeps writing to the unlinked file and
        // then finds nothing to finish.
        self.inner.shortcuts.forget(id);
        let path = self.inner.layout.upload_path(id);
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing upload", &path, e)),
        })
        .await?
    }

    fn list_uploads(&self) -> ListStream<UploadId> {
        // Sessions are few (the purge keeps them so), so one read of the
        // directory is one page.
        let layout = Arc::clone(&self.inner.layout);
        let ids = async move {
            blocking(move || {
                layout
                    .list_uploads()
                    .map_err(|e| io_error("listing uploads in", &layout.uploads, e))
            })
            .await?
        };
        stream::once(ids)
            .map_ok(|ids| stream::iter(ids.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    async fn read(&self, digest: &Digest, range: Option<ByteRange>) -> Result<BlobBody> {
        let Opened { file, size } = match self.inner.open_files.get(digest) {
            Ok(opened) => opened,
            Err(miss) => {
                let opened = self.open_blob(digest).await?;
                self.inner.open_files.insert(miss, digest, &opened);
                opened
            }
        };
        let (offset, len) = match range {
            None => (0, size),
            Some(range) => range
                .resolve(size)
                .ok_or(Error::RangeNotSatisfiable { size })?,
        };
        Ok(BlobBody {
            size,
            offset,
            len,
            stream: read::stream(Arc::clone(&file), offset, len),
            file: Some(file),
        })
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.inner.layout.blob_path(digest);
        blocking(move || match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("inspecting blob", &path, e)),
        })
        .await?
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let path = self.inner.layout.blob_path(digest);
        let prefix = self.inner.layout.prefix_dir(digest);
        // Closes the cached file after the unlink, even if this future is
        // dropped once the unlink was handed to the pool (see `open_files`).
        let _forget = Forget(&self.inner.open_files, digest);
        let removed = blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io_error("removing blob", &path, e)),
            }
            // Tidy the prefix directory if this was its last blob. Failing
            // is fine: another blob may have landed there meanwhile (then it
            // is not empty), and a finish that loses its directory to us
            // creates it again.
            let _ = std::fs::remove_dir(&prefix);
            Ok(true)
        })
        .await?;
        removed
    }

    fn list(&self) -> ListStream<Digest> {
        // One prefix directory a read: a 256th of the blobs in memory at a
        // time, in digest order (algorithms and prefixes sorted).
        let layout = Arc::clone(&self.inner.layout);
        let dirs = stream::iter(layout::ALGORITHMS)
            .then({
                let layout = Arc::clone(&layout);
                move |algorithm| {
                    let layout = Arc::clone(&layout);
                    async move {
                        let prefixes = blocking(move || {
                            layout.prefixes(algorithm).map_err(|e| {
                                io_error("listing", &layout.algorithm_dir(algorithm), e)
                            })
                        })
                        .await??;
                        Ok::<_, Error>(stream::iter(
                            prefixes
                                .into_iter()
                                .map(move |p| Ok::<_, Error>((algorithm, p))),
                        ))
                    }
                }
            })
            .try_flatten();
        dirs.and_then(move |(algorithm, prefix)| {
            let layout = Arc::clone(&layout);
            async move {
                let blobs = blocking(move || {
                    layout.blobs_under(algorithm, &prefix).map_err(|e| {
                        io_error("listing", &layout.algorithm_dir(algorithm).join(&prefix), e)
                    })
                })
                .await??;
                Ok(stream::iter(blobs.into_iter().map(Ok)))
            }
        })
        .try_flatten()
        .boxed()
    }

    async fn probe(&self) -> Result<()> {
        let layout = Arc::clone(&self.inner.layout);
        blocking(move || probe::check(&layout)).await?
    }
}

/// Runs blocking filesystem work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(join_error)
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::storage("running a blob store task", e)
}

/// A storage error naming what was being done and to which path, of the
/// kind the OS error says (a full disk, a read-only filesystem, ...).
fn io_error(doing: &str, path: &Path, e: io::Error) -> Error {
    Error::Storage(StorageError::io(format!("{doing} {}", path.display()), e))
}

/// Makes a raw system call, again while a signal interrupts it: its
/// non-negative result, or the error it set. `pread`, `pwritev` and
/// `flock` are called directly where std has no safe form that fits
/// (reading into uninitialised memory, vectored positional writes, locks).
fn retry_interrupted(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
