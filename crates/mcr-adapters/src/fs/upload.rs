//! Upload sessions: the writer that appends while hashing, and finishing
//! into place.
//!
//! The bytes of a session live in `<uploads>/<id>` and nowhere else; the
//! engine records the [`UploadState`] a writer hands out (the size, and a
//! token naming the append that made it) and resumes from it, so a session
//! outlives the process. Resuming cuts off bytes past the recorded size
//! (an append whose state was never recorded), so the file always holds
//! exactly what the state says.
//!
//! What lives in memory is only a shortcut: the running sha256 of an
//! upload this process appended to, keyed by the token of the state it
//! covers, so that finishing normally only finalizes the hash. The
//! shortcut is used only when the state resumed from carries its token;
//! otherwise (after a restart, after another process appended, for a
//! sha512 digest) finishing hashes the file again from disk.
//!
//! A writer holds the upload file open under an exclusive `flock` from
//! resume to drop, so two writers (of this process or of another one
//! sharing the directory) never interleave. After taking the `flock` the
//! path is checked to still name the locked file, because a finish in
//! another process may have renamed it into the blob store while we
//! waited — writing to it then would corrupt a stored blob.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use mcr_core::digest::{Algorithm, Digest, Hasher};
use mcr_core::error::{Error, Result};
use mcr_core::ids::UploadId;
use mcr_core::ports::{ByteStream, UploadState, UploadWriter};
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

/// Shortcuts kept before they are dropped wholesale: a bound on memory
/// for uploads abandoned here and finished or purged elsewhere. Losing a
/// shortcut costs one re-read of an upload, never correctness.
const MAX_SHORTCUTS: usize = 1 << 16;

/// What this process remembers between requests: per upload, the running
/// sha256 of what it appended, valid for one state (by its token).
#[derive(Default)]
pub(super) struct Shortcuts {
    by_upload: Mutex<HashMap<UploadId, Shortcut>>,
    /// Makes state tokens: a random prefix for this process (two processes
    /// sharing a directory never make the same token), then a counter.
    prefix: [u8; 8],
    next: AtomicU64,
}

/// A sha256 over the first `len` bytes of an upload, valid while the
/// upload's recorded state carries `token`.
#[derive(Clone)]
struct Shortcut {
    token: Bytes,
    hasher: Hasher,
    len: u64,
}

impl Shortcuts {
    pub(super) fn new() -> Result<Shortcuts> {
        let mut prefix = [0u8; 8];
        getrandom::getrandom(&mut prefix)
            .map_err(|e| Error::storage("drawing randomness for upload tokens", e.to_string()))?;
        Ok(Shortcuts {
            prefix,
            ..Shortcuts::default()
        })
    }

    fn table(&self) -> MutexGuard<'_, HashMap<UploadId, Shortcut>> {
        // Each change is one insert or remove.
        self.by_upload.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A token no other state of any upload carries.
    fn token(&self) -> Bytes {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut token = Vec::with_capacity(16);
        token.extend_from_slice(&self.prefix);
        token.extend_from_slice(&n.to_be_bytes());
        Bytes::from(token)
    }

    /// The hash of `state`'s bytes, if this process made that state.
    fn get(&self, id: &UploadId, state: &UploadState) -> Option<Hasher> {
        let table = self.table();
        let s = table.get(id)?;
        (s.token == state.data && s.len == state.size).then(|| s.hasher.clone())
    }

    fn put(&self, id: &UploadId, shortcut: Shortcut) {
        let mut table = self.table();
        if table.len() >= MAX_SHORTCUTS {
            table.clear();
        }
        table.insert(id.clone(), shortcut);
    }

    pub(super) fn forget(&self, id: &UploadId) {
        self.table().remove(id);
    }
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
fn open_locked(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
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
    Error::upload_unknown(id)
}

/// Maps an error opening the upload file: a missing file is an unknown
/// session, anything else a storage failure.
fn open_error(id: &UploadId, path: &Path, e: io::Error) -> Error {
    // A directory named like an upload is not one.
    if matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::IsADirectory
    ) {
        unknown(id)
    } else {
        io_error("opening upload", path, e)
    }
}

/// Opens the upload under its `flock` for a writer resuming from `state`:
/// bytes past the state's size are cut off; a file shorter than the state
/// (a tail lost in a power cut) gives a writer of the shorter size.
pub(super) async fn resume(
    layout: Arc<Layout>,
    shortcuts: Arc<Shortcuts>,
    id: UploadId,
    state: UploadState,
) -> Result<FsWriter> {
    let path = layout.upload_path(&id);
    let opened = {
        let (path, size) = (path.clone(), state.size);
        blocking(move || {
            let file = open_locked(&path)?;
            let len = file.metadata()?.len();
            if len > size {
                file.set_len(size)?;
            }
            Ok::<_, io::Error>((file, len.min(size)))
        })
        .await?
    };
    let (file, size) = opened.map_err(|e| open_error(&id, &path, e))?;
    let state = if size == state.size {
        state
    } else {
        UploadState {
            size,
            data: Bytes::new(),
        }
    };
    // Hash as the bytes go by only if this process made this very state;
    // a fresh upload needs no memory to start from.
    let hasher = match shortcuts.get(&id, &state) {
        Some(h) => Some(h),
        None if size == 0 => Some(Algorithm::Sha256.hasher()),
        None => None,
    };
    Ok(FsWriter {
        layout,
        shortcuts,
        id,
        path,
        file: Arc::new(file),
        state,
        hasher,
    })
}

/// An upload being written: the file, held under its `flock`, and the
/// sha256 of its bytes when known.
pub(super) struct FsWriter {
    layout: Arc<Layout>,
    shortcuts: Arc<Shortcuts>,
    id: UploadId,
    path: PathBuf,
    file: Arc<File>,
    state: UploadState,
    hasher: Option<Hasher>,
}

#[async_trait]
impl UploadWriter for FsWriter {
    fn state(&self) -> &UploadState {
        &self.state
    }

    async fn append(&mut self, body: ByteStream) -> Result<()> {
        let start = self.state.size;
        let sink = Box::new(Sink {
            writer: Writer {
                file: Arc::clone(&self.file),
                path: self.path.clone(),
                pos: start,
            },
            hasher: self.hasher.clone(),
        });
        let (file, path) = (Arc::clone(&self.file), self.path.clone());
        // A task of its own, so that a caller giving up (a dropped HTTP
        // request) cannot stop the append half way: dropping `_asking`
        // tells the task, which then cuts the file back to where it
        // started; its handle on the file keeps the `flock` until then.
        let (_asking, abandoned) = oneshot::channel();
        let task = tokio::spawn(async move {
            match pump(sink, body, abandoned).await {
                Ok(sink) => Ok(sink),
                Err(err) => {
                    // Nothing is writing any more (`pump` settles its last
                    // write before returning), so cutting the file back
                    // restores the upload exactly.
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
        });
        let sink = task.await.map_err(join_error)??;
        let len = sink.writer.pos;
        let token = self.shortcuts.token();
        self.hasher = sink.hasher;
        match &self.hasher {
            Some(hasher) => self.shortcuts.put(
                &self.id,
                Shortcut {
                    token: token.clone(),
                    hasher: hasher.clone(),
                    len,
                },
            ),
            None => self.shortcuts.forget(&self.id),
        }
        self.state = UploadState {
            size: len,
            data: token,
        };
        Ok(())
    }

    async fn finish(self: Box<Self>, expected: &Digest) -> Result<u64> {
        let expected = expected.clone();
        // A task of its own for the same reason as appends: the rename is
        // done or not, never abandoned half way.
        let task = tokio::spawn(async move {
            let writer = *self;
            let hasher = match expected.algorithm() {
                Algorithm::Sha256 => writer.hasher.clone(),
                Algorithm::Sha512 => None,
            };
            let (layout, id, file, size) = (
                Arc::clone(&writer.layout),
                writer.id.clone(),
                Arc::clone(&writer.file),
                writer.state.size,
            );
            let outcome =
                blocking(move || finish_blocking(&layout, &id, &file, size, &expected, hasher))
                    .await?;
            // A mismatch keeps the shortcut for the client's next try;
            // success or a vanished upload ends it.
            if matches!(outcome, Ok(_) | Err(Error::UploadUnknown(_))) {
                writer.shortcuts.forget(&writer.id);
            }
            outcome
        });
        task.await.map_err(join_error)?
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

/// Verifies the upload's `size` bytes against `expected` (with `hasher`
/// when it covers them, else by reading the file again) and moves the
/// file into place; returns the blob's size. The caller holds the file's
/// `flock`.
fn finish_blocking(
    layout: &Layout,
    id: &UploadId,
    file: &File,
    size: u64,
    expected: &Digest,
    hasher: Option<Hasher>,
) -> Result<u64> {
    let upload = layout.upload_path(id);
    let actual = match hasher {
        Some(h) => h.finish(),
        None => rehash(file, expected.algorithm(), size)
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
    // The `flock` goes with the file, after the rename: a writer waiting
    // on it in another process then finds the path gone and gives up.
    place(layout, id, &upload, expected)?;
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
