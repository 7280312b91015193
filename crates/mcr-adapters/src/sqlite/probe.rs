//! The readiness probe's checks of the database file.
//!
//! An open SQLite connection keeps working on a file that was deleted,
//! replaced or whose directory vanished: reads succeed and writes land in
//! an unlinked inode, lost at the next restart. So the probe checks the
//! path, not the connection: it still names the file this store opened,
//! and the file and its directory are writable. It never opens the file:
//! closing a second descriptor of a database would drop the POSIX locks
//! SQLite holds on it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use mcr_core::error::StorageError;
use mcr_core::{Error, Result};

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of the file at `path` now.
    pub(super) fn of(path: &Path) -> io::Result<FileId> {
        let meta = std::fs::metadata(path)?;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// Whether `path` still names the file `opened`, and it and its directory
/// are writable. Blocking (a `stat` and two `access` calls).
pub(super) fn check_file(path: &Path, opened: FileId) -> Result<()> {
    let shown = path.display();
    match FileId::of(path) {
        Ok(id) if id == opened => {}
        Ok(_) => {
            return Err(Error::storage(
                format!("database file {shown}"),
                "it was replaced since mcrsrv opened it; restart mcrsrv to use the new file",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::storage(
                format!("database file {shown}"),
                "it is gone (was it or its directory removed?); what is written now is \
                 lost at the next restart: restore the file and restart mcrsrv",
            ))
        }
        Err(e) => {
            return Err(StorageError::io(format!("inspecting database file {shown}"), e).into())
        }
    }
    writable(path)
        .map_err(|e| StorageError::io(format!("database file {shown} is not writable"), e))?;
    // SQLite creates its `-wal` and `-shm` files beside the database.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        writable(dir).map_err(|e| {
            StorageError::io(
                format!("database directory {} is not writable", dir.display()),
                e,
            )
        })?;
    }
    Ok(())
}

/// `access(2)` for reading and writing: the permission bits and a
/// read-only mount (`EROFS`) both count, without opening anything.
fn writable(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // access(2) only reads it.
    let rc = unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_gone_or_replaced_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcr.db");
        std::fs::write(&path, b"x").unwrap();
        let opened = FileId::of(&path).unwrap();
        check_file(&path, opened).unwrap();

        std::fs::rename(&path, dir.path().join("moved.db")).unwrap();
        let err = check_file(&path, opened).unwrap_err().to_string();
        assert!(err.contains("is gone") && err.contains("mcr.db"), "{err}");

        std::fs::write(&path, b"another").unwrap();
        let err = check_file(&path, opened).unwrap_err().to_string();
        assert!(err.contains("was replaced"), "{err}");
    }
}
