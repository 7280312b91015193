//! The readiness probe: can uploads be written and blobs stored now?
//!
//! Each of the two roots must still be a directory, and a small file must
//! be creatable and writable in it: that catches a directory removed or
//! unmounted, a read-only remount, a full filesystem and missing
//! permissions alike. The probe's file is named so that no listing takes
//! it for an upload or a blob (`.probe-<pid>-<n>`), and is removed at once.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use mcr_core::error::StorageError;
use mcr_core::{Error, Result};

use super::layout::Layout;

/// Tells concurrent probes' files apart.
static PROBES: AtomicU64 = AtomicU64::new(0);

/// Checks both roots. Blocking.
pub(super) fn check(layout: &Layout) -> Result<()> {
    check_dir("upload directory", &layout.uploads)?;
    check_dir("blob directory", &layout.layers)
}

fn check_dir(what: &str, dir: &Path) -> Result<()> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(Error::storage(format!("{what} {shown}"), "not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::storage(
                format!("{what} {shown}"),
                "it is gone (removed, or its filesystem not mounted)",
            ))
        }
        Err(e) => return Err(StorageError::io(format!("inspecting the {what} {shown}"), e).into()),
    }
    let name = format!(
        ".probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    let file = dir.join(name);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
        .and_then(|mut f| f.write_all(b"probe"));
    // Removed whether or not the write went through; a file that was
    // never created is not an error here.
    let removed = match std::fs::remove_file(&file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    written
        .and(removed)
        .map_err(|e| StorageError::io(format!("cannot write in the {what} {shown}"), e).into())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn layout(root: &Path) -> Layout {
        Layout {
            layers: root.join("layers"),
            uploads: root.join("uploads"),
        }
    }

    #[test]
    fn names_the_directory_that_is_gone_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(dir.path());
        for d in [&l.layers, &l.uploads] {
            std::fs::create_dir(d).unwrap();
        }
        check(&l).unwrap();
        for d in [&l.layers, &l.uploads] {
            assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "{}", d.display());
        }

        std::fs::remove_dir(&l.layers).unwrap();
        let err = check(&l).unwrap_err().to_string();
        assert!(
            err.contains("blob directory") && err.contains("is gone"),
            "{err}"
        );

        std::fs::write(&l.layers, b"a file").unwrap();
        let err = check(&l).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");

        let l = Layout {
            layers: PathBuf::from("/proc/self"),
            uploads: PathBuf::from("/proc/self"),
        };
        let err = check(&l).unwrap_err().to_string();
        assert!(
            err.contains("cannot write in the upload directory"),
            "{err}"
        );
    }
}
