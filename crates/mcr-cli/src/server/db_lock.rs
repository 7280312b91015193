//! One `mcrsrv` per SQLite database. The SQLite adapter and the engine
//! keep state that is only true while one process writes the file (the
//! writer's turn, per-digest locks, the manifest and blob-link caches, the
//! open-files cache), so a second server on the same file would serve
//! links the first one deleted. `mcrsrv server`, `dev` and `init` hold an
//! exclusive `flock(2)` on `<database>.lock` for their lifetime; the
//! kernel drops it when the process ends, however it ends.
//! `mcrsrv snapshot` does not take it: it is made to run beside a server.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::config::{Config, Database};

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DbLock {
    _file: File,
}

/// Takes the lock when `config` keeps its metadata in SQLite; PostgreSQL
/// is shared by replicas by design and needs none.
pub fn for_config(config: &Config) -> anyhow::Result<Option<DbLock>> {
    match config.database()? {
        Database::Sqlite(db) => acquire(db).map(Some),
        Database::Postgres(_) => Ok(None),
    }
}

/// The lock file of the SQLite database at `db`: `<db>.lock` beside it.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive lock on the database at `db` without waiting,
/// creating its directory and the lock file (mode 0600) when missing, and
/// writes this process's id into the file for the next one's message.
///
/// Fails, naming the database and the holder's process id, when another
/// process holds it; or when the lock file cannot be created.
pub fn acquire(db: &Path) -> anyhow::Result<DbLock> {
    let path = lock_path(db);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the database directory {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::WouldBlock {
            return Err(err).with_context(|| format!("cannot lock {}", path.display()));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = match holder.trim() {
            pid if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => {
                format!("process {pid}")
            }
            _ => "another process".to_owned(),
        };
        bail!(
            "the database {} is in use by {holder} (it holds {}): stop that mcrsrv first, \
             or give this one another database (database.path, or another --data for dev)",
            db.display(),
            path.display()
        );
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(DbLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_naming_the_first_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data/mcr.db");
        let first = acquire(&db).unwrap();
        // flock locks belong to the open file description: a second open
        // in this process conflicts exactly as another process would.
        let err = format!("{:#}", acquire(&db).unwrap_err());
        assert!(err.contains("mcr.db is in use by process"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        assert!(err.contains("mcr.db.lock"), "{err}");
        drop(first);
        acquire(&db).unwrap();
    }
}
