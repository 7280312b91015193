//! Upload sessions: appending while hashing, and finishing into place.
//!
//! The bytes of a session live in `<uploads>/<id>` and nowhere else, so a
//! session outlives the process. What lives in memory is only a shortcut:
//! the running sha256 state of the file and how many bytes it covers, so
//! that `finish_upload` normally only finalizes the hash. The shortcut is
//! used only when it covers exactly the file's current length; otherwise
//! (after a restart, after another process appended, for a sha512 digest)
//! the file is hashed again from disk.
//!
//! Two locks keep appends and finishes to one session in order: an async
//! mutex per session inside the process, and an exclusive `flock` on the
//! upload file across processes (replicas sharing the directory). After
//! taking the `flock` the path is checked to still name the locked file,
//! because a finish in another process may have renamed it into the blob
//! store while we waited — writing to it then would corrupt a stored blob.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use mcr_core::digest::{Algorithm, Digest, Hasher};
use mcr_core::error::{Error, Result};
use mcr_core::ids::UploadId;
use mcr_core::ports::ByteStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::layout::{sync_dir, Layout};
use super::{blocking, io_error, join_error, retry_interrupted};

/// Bytes gathered from the body before one write (and one hashing pass)
/// runs off the async workers. Large enough that syscalls and task hops
/// are noise next to hashing; small enough that an upload in flight holds
/// a few MiB at most.
const BATCH: usize = 256 << 10;

/// Read size when hashing an upload again from disk.
const REHASH_CHUNK: usize = 1 << 20;

/// How often finishing retries a rename that lost its prefix directory to
/// a concurrent `delete` of another blob sharing the prefix.
const PLACE_ATTEMPTS: usize = 8;

/// Mode of upload files, and so of blob files (a rename keeps it).
const FILE_MODE: u32 = 0o640;

/// What the process remembers about a session between calls.
#[derive(Default)]
pub(super) struct Session {
    hashed: Option<Hashed>,
}

/// A sha256 state over the first `len` bytes of the upload file.
#[derive(Clone)]
struct Hashed {
    hasher: Hasher,
    len: u64,
}

/// Creates the empty file of a new session.
pub(super) fn begin(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map(drop)
}

/// Opens the upload file and takes its exclusive `flock`, checking that
/// the path still names the file we locked. `NotFound` if it does not.
fn open_locked(path: &Path, write: bool) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(write).open(path)?;
    flock_exclusive(&file)?;
    let locked = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(now) if now.dev() == locked.dev() && now.ino() == locked.ino() => Ok(file),
        Ok(_) => Err(io::ErrorKind::NotFound.into()),
        Err(e) => Err(e),
    }
}

fn flock_exclusive(file: &File) -> io::Result<()> {
    // SAFETY: flock only reads the descriptor number, which `file` keeps
    // open for the duration of the call.
    retry_interrupted(|| unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } as isize).map(drop)
}

fn unknown(id: &UploadId) -> Error {
    Error::UploadUnknown(id.to_string())
}

/// Maps an error opening the upload file: a missing file is an unknown
/// session, anything else a storage failure.
fn open_error(id: &UploadId, path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        unknown(id)
    } else {
        io_error("opening upload", path, e)
    }
}

/// Appends `body` to the session's file; the caller holds the session's
/// lock and passes its state. `abandoned` resolves when whoever asked for
/// the append stops waiting for it; the append then fails like a broken
/// body would (see `FsBlobStore::append_upload`).
pub(super) async fn append(
    layout: Arc<Layout>,
    id: UploadId,
    session: &mut Session,
    offset: Option<u64>,
    body: ByteStream,
    abandoned: oneshot::Receiver<()>,
) -> Result<u64> {
    let path = layout.upload_path(&id);
    let opened = {
        let path = path.clone();
        blocking(move || {
            let file = open_locked(&path, true)?;
            let len = file.metadata()?.len();
            Ok::<_, io::Error>((file, len))
        })
        .await?
    };
    let (file, start) = opened.map_err(|e| open_error(&id, &path, e))?;
    if let Some(got) = offset {
        if got != start {
            return Err(Error::RangeInvalid {
                expected: start,
                got,
            });
        }
    }
    // Hash as the bytes go by only if the remembered state covers exactly
    // what is on disk; a fresh file needs no memory to start from.
    let hasher = match &session.hashed {
        Some(h) if h.len == start => Some(h.hasher.clone()),
        _ if start == 0 => Some(Algorithm::Sha256.hasher()),
        _ => None,
    };
    let file = Arc::new(file);
    let sink = Box::new(Sink {
        writer: Writer {
            file: Arc::clone(&file),
            path: path.clone(),
            pos: start,
        },
        hasher,
    });
    match pump(sink, body, abandoned).await {
        Ok(sink) => {
            let len = sink.writer.pos;
            session.hashed = sink.hasher.map(|hasher| Hashed { hasher, len });
            Ok(len)
        }
        Err(err) => {
            // Nothing is writing any more (`pump` settles its last write
            // before returning), so cutting the file back restores the
            // session exactly; the remembered state was never touched.
            match blocking(move || file.set_len(start)).await? {
                Ok(()) => Err(err),
                Err(e) => Err(io_error(
                    &format!("{err}; and then restoring to {start} bytes"),
                    &path,
                    e,
                )),
            }
        }
    }
}

/// The writing end of an append: where the next byte goes and the hash of
/// everything before it.
struct Sink {
    writer: Writer,
    hasher: Option<Hasher>,
}

struct Writer {
    file: Arc<File>,
    path: PathBuf,
    pos: u64,
}

impl Writer {
    /// Writes one batch at the end of the upload; runs on the blocking pool.
    fn write(&mut self, chunks: &[Bytes]) -> io::Result<()> {
        write_all_vectored_at(&self.file, chunks, self.pos)?;
        self.pos += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
        Ok(())
    }
}

/// Most buffers one `pwritev` takes (`IOV_MAX` on Linux).
const MAX_IOV: usize = 1024;

/// Writes all of `chunks`, in order, at `pos`: one `pwritev` per call
/// where the kernel takes it all, so a batch of body chunks reaches the
/// file without first being copied into one buffer.
fn write_all_vectored_at(file: &File, chunks: &[Bytes], mut pos: u64) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = chunks.iter().map(|c| io::IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let count = rest.len().min(MAX_IOV);
        let offset = libc::off_t::try_from(pos).map_err(io::Error::other)?;
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, the
        // slices borrow live buffers, and `count` is within `rest`.
        let n = retry_interrupted(|| unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                rest.as_ptr().cast::<libc::iovec>(),
                count as libc::c_int,
                offset,
            )
        })?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        pos += n as u64;
        io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// The sink, either ready or busy with a batch on the blocking pool: the
/// write and the hash of a batch run as two tasks side by side, since both
/// only read the same immutable chunks. (Boxed: a hasher state is large.)
enum Slot {
    Idle(Box<Sink>),
    Busy {
        write: JoinHandle<(Writer, io::Result<()>)>,
        hash: Option<JoinHandle<Hasher>>,
    },
}

impl Slot {
    /// Starts hashing and writing `chunks`.
    fn start(sink: Box<Sink>, chunks: Vec<Bytes>) -> Slot {
        let Sink { mut writer, hasher } = *sink;
        let hash = hasher.map(|mut hasher| {
            let chunks = chunks.clone();
            tokio::task::spawn_blocking(move || {
                for chunk in &chunks {
                    hasher.update(chunk);
                }
                hasher
            })
        });
        let write = tokio::task::spawn_blocking(move || {
            let written = writer.write(&chunks);
            (writer, written)
        });
        Slot::Busy { write, hash }
    }

    /// Waits for the batch in flight, if any, and hands the sink back.
    async fn settle(self) -> Result<Box<Sink>> {
        match self {
            Slot::Idle(sink) => Ok(sink),
            Slot::Busy { write, hash } => {
                let (writer, written) = write.await.map_err(join_error)?;
                let hasher = match hash {
                    Some(task) => Some(task.await.map_err(join_error)?),
                    None => None,
                };
                written.map_err(|e| io_error("writing upload", &writer.path, e))?;
                Ok(Box::new(Sink { writer, hasher }))
            }
        }
    }
}

/// Moves the body into the sink in batches. While one batch is hashed and
/// written on the blocking pool, the next is gathered from the body, so
/// network, hashing and disk all overlap. Never returns with a write in
/// flight.
async fn pump(
    sink: Box<Sink>,
    mut body: ByteStream,
    mut abandoned: oneshot::Receiver<()>,
) -> Result<Box<Sink>> {
    let mut slot = Slot::Idle(sink);
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len = 0;
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut abandoned => {
                let _ = slot.settle().await;
                return Err(Error::UploadInvalid("the append was abandoned".into()));
            }
            next = body.next() => next,
        };
        let end = match next {
            Some(Ok(chunk)) => {
                if !chunk.is_empty() {
                    batch_len += chunk.len();
                    batch.push(chunk);
                }
                false
            }
            Some(Err(e)) => {
                // The write in flight must end before the caller truncates;
                // its own outcome no longer matters.
                let _ = slot.settle().await;
                return Err(Error::UploadInvalid(format!(
                    "reading the upload body: {e}"
                )));
            }
            None => true,
        };
        if batch_len >= BATCH || (end && batch_len > 0) {
            let sink = slot.settle().await?;
            batch_len = 0;
            slot = Slot::start(sink, std::mem::take(&mut batch));
        }
        if end {
            return slot.settle().await;
        }
    }
}

/// Verifies the session against `expected` and moves it into place;
/// returns the blob's size. The caller holds the session's lock.
pub(super) async fn finish(
    layout: Arc<Layout>,
    id: UploadId,
    session: &Session,
    expected: Digest,
) -> Result<u64> {
    let remembered = match expected.algorithm() {
        Algorithm::Sha256 => session.hashed.clone(),
        Algorithm::Sha512 => None,
    };
    blocking(move || finish_blocking(&layout, &id, &expected, remembered)).await?
}

fn finish_blocking(
    layout: &Layout,
    id: &UploadId,
    expected: &Digest,
    remembered: Option<Hashed>,
) -> Result<u64> {
    let upload = layout.upload_path(id);
    let file = open_locked(&upload, false).map_err(|e| open_error(id, &upload, e))?;
    let size = file
        .metadata()
        .map_err(|e| io_error("inspecting upload", &upload, e))?
        .len();
    let actual = match remembered {
        Some(h) if h.len == size => h.hasher.finish(),
        _ => rehash(&file, expected.algorithm(), size)
            .map_err(|e| io_error("hashing upload", &upload, e))?,
    };
    if &actual != expected {
        return Err(Error::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    file.sync_all()
        .map_err(|e| io_error("syncing upload", &upload, e))?;
    place(layout, id, &upload, expected)?;
    // The flock goes with the file, after the rename: an append waiting on
    // it in another process then finds the path gone and gives up.
    drop(file);
    Ok(size)
}

/// Hashes the first `size` bytes of `file` from disk.
fn rehash(file: &File, algorithm: Algorithm, size: u64) -> io::Result<Digest> {
    let mut hasher = algorithm.hasher();
    let mut buf = vec![0u8; REHASH_CHUNK];
    let mut pos = 0;
    while pos < size {
        let want = usize::try_from(size - pos).map_or(REHASH_CHUNK, |n| n.min(REHASH_CHUNK));
        file.read_exact_at(&mut buf[..want], pos)?;
        hasher.update(&buf[..want]);
        pos += want as u64;
    }
    Ok(hasher.finish())
}

/// Renames the verified upload to its blob path and makes that durable.
fn place(layout: &Layout, id: &UploadId, upload: &Path, digest: &Digest) -> Result<()> {
    let target = layout.blob_path(digest);
    let prefix = layout.prefix_dir(digest);
    for _ in 0..PLACE_ATTEMPTS {
        if target.is_file() {
            // Content-addressed: the blob there has these very bytes. Its
            // directory entry is synced again in case the finish that put
            // it there is still between its rename and its own sync.
            match std::fs::remove_file(upload) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("removing finished upload", upload, e)),
            }
            return sync_dir(&prefix).map_err(|e| io_error("syncing", &prefix, e));
        }
        let created = layout
            .ensure_prefix_dir(digest)
            .map_err(|e| io_error("creating", &prefix, e))?;
        match std::fs::rename(upload, &target) {
            Ok(()) => {
                sync_dir(&prefix).map_err(|e| io_error("syncing", &prefix, e))?;
                if created.prefix {
                    let dir = layout.algorithm_dir(digest.algorithm());
                    sync_dir(&dir).map_err(|e| io_error("syncing", &dir, e))?;
                }
                if created.algorithm {
                    sync_dir(&layout.layers).map_err(|e| io_error("syncing", &layout.layers, e))?;
                }
                return Ok(());
            }
            // Either the upload was cancelled under us, or a `delete` of
            // another blob removed the (then empty) prefix directory
            // between creating it and renaming into it: try again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !upload.exists() {
                    return Err(unknown(id));
                }
            }
            Err(e) => return Err(io_error("moving upload into place at", &target, e)),
        }
    }
    Err(Error::storage(
        format!("moving upload {id} to {}", target.display()),
        "its directory kept disappearing",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectored_write_keeps_order_across_the_iov_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        file.write_all_at(b"head", 0).unwrap();
        // More chunks than one pwritev takes, of uneven sizes.
        let chunks: Vec<Bytes> = (0..MAX_IOV * 2 + 7)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 1 + i % 5]))
            .collect();
        write_all_vectored_at(&file, &chunks, 4).unwrap();
        let expected: Vec<u8> = b"head"
            .iter()
            .copied()
            .chain(chunks.iter().flat_map(|c| c.iter().copied()))
            .collect();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
