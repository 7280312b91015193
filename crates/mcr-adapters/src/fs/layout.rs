//! Where things live on disk, and the directory operations around them.
//!
//! ```text
//! <layers>/sha256/<2 hex>/<64 hex>     a blob, named by its digest
//! <layers>/sha512/<2 hex>/<128 hex>
//! <uploads>/<32 hex>                   an upload session's bytes so far
//! ```
//!
//! Every path is built from a validated [`Digest`] or [`UploadId`], whose
//! characters are lowercase hex only, so no name can climb out of its
//! directory. Listing goes the other way and trusts nothing it finds: an
//! entry counts only if it parses back into a digest or id and sits where
//! that digest or id would put it. Blobs are listed one prefix directory
//! at a time, in digest order.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use mcr_core::digest::{Algorithm, Digest};
use mcr_core::ids::UploadId;

/// Mode of the directories under `<layers>`: blobs are public content, so
/// the group (a backup job, a second reader) may read them.
pub(super) const LAYERS_DIR_MODE: u32 = 0o750;
/// Mode of `<uploads>`: unfinished uploads are nobody else's business.
pub(super) const UPLOADS_DIR_MODE: u32 = 0o700;

pub(super) const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

/// The two roots of the store.
#[derive(Debug)]
pub(super) struct Layout {
    pub(super) layers: PathBuf,
    pub(super) uploads: PathBuf,
}

impl Layout {
    /// `<layers>/<algorithm>`.
    pub(super) fn algorithm_dir(&self, algorithm: Algorithm) -> PathBuf {
        self.layers.join(algorithm.as_str())
    }

    /// `<layers>/<algorithm>/<first 2 hex>`.
    pub(super) fn prefix_dir(&self, digest: &Digest) -> PathBuf {
        self.algorithm_dir(digest.algorithm())
            .join(&digest.hex()[..2])
    }

    /// `<layers>/<algorithm>/<first 2 hex>/<hex>`.
    pub(super) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.prefix_dir(digest).join(digest.hex())
    }

    /// `<uploads>/<id>`.
    pub(super) fn upload_path(&self, id: &UploadId) -> PathBuf {
        self.uploads.join(id.as_str())
    }

    /// The prefix directories under `<layers>/<algorithm>`, sorted (so
    /// their blobs come in digest order). Anything that is not a directory
    /// named by two hex digits is skipped: stray files an operator left, a
    /// hand-made `sha256/zz/`.
    pub(super) fn prefixes(&self, algorithm: Algorithm) -> io::Result<Vec<String>> {
        let Some(entries) = read_dir_if_exists(&self.algorithm_dir(algorithm))? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let hex2 =
                name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if hex2 && entry.file_type()?.is_dir() {
                found.push(name);
            }
        }
        found.sort();
        Ok(found)
    }

    /// The blob files in one prefix directory, sorted. Anything that is
    /// not a regular file at the place its name says is skipped (a crashed
    /// tool's temporaries, say).
    pub(super) fn blobs_under(
        &self,
        algorithm: Algorithm,
        prefix: &str,
    ) -> io::Result<Vec<Digest>> {
        let dir = self.algorithm_dir(algorithm).join(prefix);
        let Some(entries) = read_dir_if_exists(&dir)? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for entry in entries {
            if let Some(digest) = self.blob_entry(algorithm, prefix, &entry?)? {
                found.push(digest);
            }
        }
        found.sort();
        Ok(found)
    }

    fn blob_entry(
        &self,
        algorithm: Algorithm,
        prefix: &str,
        entry: &fs::DirEntry,
    ) -> io::Result<Option<Digest>> {
        let name = entry.file_name();
        let Some(hex) = name.to_str() else {
            return Ok(None);
        };
        let Ok(digest) = Digest::parse(&format!("{algorithm}:{hex}")) else {
            return Ok(None);
        };
        if digest.hex()[..2] != *prefix || !entry.file_type()?.is_file() {
            return Ok(None);
        }
        Ok(Some(digest))
    }

    /// Every upload session's file, sorted.
    pub(super) fn list_uploads(&self) -> io::Result<Vec<UploadId>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.uploads)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Ok(id) = UploadId::parse(&name) {
                if entry.file_type()?.is_file() {
                    found.push(id);
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Makes sure `<layers>/<algorithm>/<prefix>` exists for `digest`, and
    /// says which of the two directories this call created, because a
    /// created directory's entry must be made durable in its parent.
    pub(super) fn ensure_prefix_dir(&self, digest: &Digest) -> io::Result<Created> {
        let algorithm_dir = self.algorithm_dir(digest.algorithm());
        let algorithm = create_dir(&algorithm_dir, LAYERS_DIR_MODE)?;
        let prefix = create_dir(&self.prefix_dir(digest), LAYERS_DIR_MODE)?;
        Ok(Created { algorithm, prefix })
    }
}

/// Which directories [`Layout::ensure_prefix_dir`] created.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Created {
    pub(super) algorithm: bool,
    pub(super) prefix: bool,
}

/// Creates one directory; `Ok(false)` if it was already there.
fn create_dir(path: &Path, mode: u32) -> io::Result<bool> {
    match DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates a root directory and its missing parents with `mode`.
pub(super) fn create_root(path: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().mode(mode).recursive(true).create(path)
}

/// Flushes a directory's entries (a rename into it, a new subdirectory) to
/// stable storage.
pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

fn read_dir_if_exists(path: &Path) -> io::Result<Option<fs::ReadDir>> {
    match fs::read_dir(path) {
        Ok(entries) => Ok(Some(entries)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            layers: PathBuf::from("/l"),
            uploads: PathBuf::from("/u"),
        }
    }

    #[test]
    fn paths_follow_the_documented_layout() {
        let d = Digest::sha256_of(b"");
        assert_eq!(
            layout().blob_path(&d),
            PathBuf::from(
                "/l/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
        );
        let d512 = Digest::of(Algorithm::Sha512, b"");
        let path = layout().blob_path(&d512);
        assert_eq!(
            path,
            PathBuf::from(format!("/l/sha512/{}/{}", &d512.hex()[..2], d512.hex()))
        );
        let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            layout().upload_path(&id),
            PathBuf::from("/u/0123456789abcdef0123456789abcdef")
        );
    }
}
