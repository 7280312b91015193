//! Snapshots of the database: consistent online copies in
//! `<db dir>/backups/mcr-YYYYMMDD-HHMMSS.db`, named by the UTC second they
//! were taken. `mcrsrv snapshot` and the admin API both take them through
//! `SnapshotStore::snapshot`, so both name and protect them alike.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use mcr_core::ports::SnapshotStore;
use mcr_core::time::Timestamp;
use mcr_core::{Error, Result};
use rusqlite::Connection;

use super::{db, during, storage, SqliteMetaStore};

/// Where a snapshot taken at `at` of the database at `db_path` goes:
/// `<db dir>/backups/mcr-YYYYMMDD-HHMMSS.db`, in UTC.
pub fn backup_path(db_path: &Path, at: Timestamp) -> PathBuf {
    // "2024-01-02T03:04:05.678Z" → "20240102030405".
    let digits: String = at
        .to_rfc3339()
        .chars()
        .take(19)
        .filter(char::is_ascii_digit)
        .collect();
    backups_dir(db_path).join(format!("mcr-{}-{}.db", &digits[..8], &digits[8..]))
}

fn backups_dir(db_path: &Path) -> PathBuf {
    db_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("backups")
}

/// Copies the database at `db_path`, read through `conn`, to
/// [`backup_path`]`(db_path, at)`; returns that path.
///
/// Creates the backup directory with mode 0700 if it is missing: a copy
/// holds everything the database does. An existing directory keeps its
/// mode, which is the operator's to choose.
pub(super) fn back_up(conn: &Connection, db_path: &Path, at: Timestamp) -> Result<PathBuf> {
    let dir = backups_dir(db_path);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| {
            storage(
                &format!("creating the backup directory {}", dir.display()),
                e,
            )
        })?;
    let dest = backup_path(db_path, at);
    copy_to(conn, &dest)?;
    Ok(dest)
}

/// Writes a consistent copy of the database to `dest`, with mode 0600,
/// without blocking writers.
///
/// Refuses (`Error::Conflict`) if `dest` exists: a backup never overwrites
/// anything. On failure the partial copy is removed.
fn copy_to(conn: &Connection, dest: &Path) -> Result<()> {
    let dest_str = dest.to_str().ok_or_else(|| {
        Error::invalid(
            "snapshot",
            format!("the destination {} is not UTF-8", dest.display()),
        )
    })?;
    // Create the file ourselves, empty and private, so the copy is never
    // readable by others, not even while it is being written, and so that
    // an existing file is refused atomically. VACUUM INTO accepts an empty
    // existing file.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Conflict(format!(
                "snapshot {} already exists; refusing to overwrite it \
                 (snapshots are named by the second: try again in a moment)",
                dest.display()
            )));
        }
        Err(e) => return Err(storage(&format!("creating {}", dest.display()), e)),
    }
    let copied = (|| {
        // VACUUM INTO reads from one read transaction: a consistent copy,
        // compacted, that never blocks writers under WAL.
        conn.execute("VACUUM INTO ?1", [dest_str]).map_err(db)?;
        // The umask cannot have widened it, but a backup's mode is worth
        // checking twice.
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| storage("restricting the snapshot's mode", e))
    })();
    if let Err(e) = copied {
        // Best effort: the copy is unusable, and leaving it would make the
        // retry refuse to run.
        let _ = std::fs::remove_file(dest);
        return Err(during(format!("writing {}", dest.display()))(e));
    }
    Ok(())
}

#[async_trait]
impl SnapshotStore for SqliteMetaStore {
    async fn snapshot(&self, at: Timestamp) -> Result<String> {
        let db_path = self.path.clone();
        let dest = self
            .run("taking a snapshot", move |c| back_up(c, &db_path, at))
            .await?;
        // Checked to be UTF-8 before anything was written.
        Ok(dest.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_snapshot_by_its_utc_second_next_to_the_database() {
        let at = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(
            backup_path(Path::new("/srv/mcr/mcr.db"), at),
            Path::new("/srv/mcr/backups/mcr-20231114-221320.db")
        );
        assert_eq!(
            backup_path(Path::new("mcr.db"), at),
            Path::new("backups/mcr-20231114-221320.db")
        );
    }
}
