//! Open blob files kept for the next read of the same small blob (issue
//! 17: a 1 MiB blob GET spent a hop through the blocking pool on
//! `open(2)` + `fstat(2)`, about 3% of its CPU time; nginx has the same
//! cache, `open_file_cache`).
//!
//! Sharing one descriptor between reads is safe because every read is
//! positional (`pread`, `sendfile` with an offset) and a blob file never
//! changes: its name is its digest, so an open file holds exactly the
//! bytes any later file of that name will hold. Whether a repository may
//! serve the blob is decided by the engine before it reads, never here.
//!
//! What a cached descriptor costs is the disk space of a file deleted
//! while it is open, so:
//! - [`OpenFiles::forget`], called by this store's `delete` after the
//!   unlink, drops the digest's entry and advances an epoch; a read that
//!   opened the file before the unlink inserts only if the epoch did not
//!   move since it looked (the manifest cache's argument), so no entry of
//!   a file this process deleted outlives the deletion;
//! - a file deleted by another process sharing the directory (replicas on
//!   one filesystem, an operator's `rm`) is let go at the next read of it,
//!   which finds no name left on the open file (`st_nlink` 0), and at most
//!   [`MAX_AGE`] after it was opened in any case: every lookup first drops
//!   the entries past that age (at most once per [`SWEEP_EVERY`]);
//! - only blobs of at most [`MAX_FILE_BYTES`] are kept, at most
//!   [`MAX_ENTRIES`] of them: the hot small blobs (configs, small layers),
//!   for which the open is a noticeable part of a read. A large blob's
//!   read is dominated by its bytes.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mcr_core::digest::Digest;

/// Most descriptors kept.
pub(super) const MAX_ENTRIES: usize = 256;
/// Largest blob kept open, in bytes.
pub(super) const MAX_FILE_BYTES: u64 = 4 << 20;
/// How long an entry is used before the file is opened again.
pub(super) const MAX_AGE: Duration = Duration::from_secs(30);
/// How often a lookup drops the entries past [`MAX_AGE`].
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// An open blob file and its size in bytes.
#[derive(Clone)]
pub(super) struct Opened {
    pub file: Arc<File>,
    pub size: u64,
}

struct Entry {
    opened: Opened,
    at: Instant,
}

struct State {
    epoch: u64,
    entries: HashMap<Digest, Entry>,
    swept: Instant,
}

impl Default for State {
    fn default() -> State {
        State {
            epoch: 0,
            entries: HashMap::new(),
            swept: Instant::now(),
        }
    }
}

impl State {
    /// Closes the entries past [`MAX_AGE`], at most once per
    /// [`SWEEP_EVERY`], so a file no one reads again is not held.
    fn sweep(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.swept) < SWEEP_EVERY {
            return;
        }
        self.swept = now;
        self.entries
            .retain(|_, e| now.duration_since(e.at) < MAX_AGE);
    }
}

/// The cache of one store.
#[derive(Default)]
pub(super) struct OpenFiles {
    state: Mutex<State>,
}

/// A miss: the epoch seen before the caller opens the file.
#[must_use = "a miss inserts nothing unless asked"]
pub(super) struct Miss {
    epoch: u64,
}

impl OpenFiles {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under the lock panics halfway through a change.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The digest's open file, or a [`Miss`] to hand to [`Self::insert`]
    /// once the caller opened it. An entry whose file has lost its name
    /// (deleted by another process) is closed and is a miss.
    pub(super) fn get(&self, digest: &Digest) -> Result<Opened, Miss> {
        let hit = {
            let mut state = self.lock();
            state.sweep();
            match state.entries.get(digest) {
                Some(e) => e.opened.clone(),
                None => return Err(Miss { epoch: state.epoch }),
            }
        };
        // One fstat, outside the lock: far less than the open it saves.
        if hit.file.metadata().is_ok_and(|m| m.nlink() > 0) {
            return Ok(hit);
        }
        let mut state = self.lock();
        if state
            .entries
            .get(digest)
            .is_some_and(|e| Arc::ptr_eq(&e.opened.file, &hit.file))
        {
            state.entries.remove(digest);
        }
        Err(Miss { epoch: state.epoch })
    }

    /// Keeps `opened` for the next read, unless a deletion happened since
    /// `miss` was seen or the file is too large to keep.
    pub(super) fn insert(&self, miss: Miss, digest: &Digest, opened: &Opened) {
        if opened.size > MAX_FILE_BYTES {
            return;
        }
        let mut state = self.lock();
        if state.epoch != miss.epoch {
            return;
        }
        if state.entries.len() >= MAX_ENTRIES {
            let now = Instant::now();
            state
                .entries
                .retain(|_, e| now.duration_since(e.at) < MAX_AGE);
            if state.entries.len() >= MAX_ENTRIES {
                state.entries.clear();
            }
        }
        state.entries.insert(
            digest.clone(),
            Entry {
                opened: opened.clone(),
                at: Instant::now(),
            },
        );
    }

    /// The digest's file was unlinked: closes its entry (once no read
    /// uses it) and turns away inserts by reads that opened it before.
    pub(super) fn forget(&self, digest: &Digest) {
        let mut state = self.lock();
        state.epoch += 1;
        state.entries.remove(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named file (an unnamed one has no link, as if deleted).
    fn opened(dir: &tempfile::TempDir, size: u64) -> Opened {
        let file = tempfile::NamedTempFile::new_in(dir.path()).expect("a file");
        let (file, path) = file.into_parts();
        // The name stays until the directory goes with the test.
        path.keep().expect("kept");
        Opened {
            file: Arc::new(file),
            size,
        }
    }

    #[test]
    fn a_read_that_opened_before_a_deletion_keeps_nothing() {
        let dir = tempfile::tempdir().expect("a directory");
        let cache = OpenFiles::default();
        let d = Digest::sha256_of(b"a");
        let miss = cache.get(&d).err().expect("empty");
        cache.forget(&Digest::sha256_of(b"another"));
        cache.insert(miss, &d, &opened(&dir, 1));
        assert!(cache.get(&d).is_err(), "inserted across a deletion");
        let miss = cache.get(&d).err().expect("still empty");
        cache.insert(miss, &d, &opened(&dir, 1));
        assert!(cache.get(&d).is_ok());
        cache.forget(&d);
        assert!(cache.get(&d).is_err(), "kept after its deletion");
    }

    #[test]
    fn a_file_deleted_by_another_process_is_closed_at_its_next_lookup() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("blob");
        std::fs::write(&path, b"x").expect("written");
        let cache = OpenFiles::default();
        let d = Digest::sha256_of(b"x");
        let miss = cache.get(&d).err().expect("empty");
        let file = Arc::new(File::open(&path).expect("opened"));
        cache.insert(
            miss,
            &d,
            &Opened {
                file: Arc::clone(&file),
                size: 1,
            },
        );
        assert!(cache.get(&d).is_ok());
        std::fs::remove_file(&path).expect("removed");
        assert!(cache.get(&d).is_err(), "served a deleted file");
        assert!(cache.lock().entries.is_empty(), "kept it open");
    }

    #[test]
    fn large_files_and_entries_past_the_cap_are_not_kept() {
        let dir = tempfile::tempdir().expect("a directory");
        let cache = OpenFiles::default();
        let big = Digest::sha256_of(b"big");
        let miss = cache.get(&big).err().expect("empty");
        cache.insert(miss, &big, &opened(&dir, MAX_FILE_BYTES + 1));
        assert!(cache.get(&big).is_err());
        for i in 0..=MAX_ENTRIES {
            let d = Digest::sha256_of(i.to_string().as_bytes());
            let miss = cache.get(&d).err().expect("new");
            cache.insert(miss, &d, &opened(&dir, 1));
        }
        assert!(cache.lock().entries.len() <= MAX_ENTRIES);
    }
}
