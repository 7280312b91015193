//! The token signing key: 32 random bytes in a file only the server reads.
//!
//! The file is created once, on first start, and reused after, so tokens
//! survive a restart. A new key is written to a private temporary file and
//! then hard-linked into place: the link either appears with all 32 bytes
//! or fails because another process won the race, in which case that
//! process's key is the one read. No reader ever sees a half-written key.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mcr_core::{Error, Result};

/// Length of the key in bytes: HMAC-SHA256's block-size-friendly 256 bits.
pub const KEY_LEN: usize = 32;

/// A token signing key. Its `Debug` never shows the bytes.
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// A fresh random key, held only in memory (tests, throwaway servers).
    pub fn generate() -> Result<Key> {
        let mut key = [0u8; KEY_LEN];
        getrandom::getrandom(&mut key)
            .map_err(|e| Error::Unavailable(format!("no randomness for a key: {e}")))?;
        Ok(Key(key))
    }

    /// A key held somewhere else: a secret manager, another replica's
    /// file, a fixed key in a test or a fuzz target. The bytes must be as
    /// random as [`Key::generate`]'s: whoever knows them can sign tokens.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(***)")
    }
}

/// Loads the key at `path`, or creates it (mode 0600) on first start.
///
/// A key file that others may read or write (mode looser than 0600), that
/// is not a regular file, or that is not exactly 32 bytes long is refused
/// with an error naming the file: the server never silently replaces a key,
/// which would log everybody out, nor uses one that may have leaked.
pub fn load_or_create_key(path: &Path) -> Result<Key> {
    match File::open(path) {
        Ok(f) => read_key(path, f),
        Err(e) if e.kind() == ErrorKind::NotFound => create_key(path),
        Err(e) => Err(key_error(path, format!("cannot open: {e}"))),
    }
}

fn key_error(path: &Path, what: impl fmt::Display) -> Error {
    Error::invalid("local.key_path", format!("{}: {what}", path.display()))
}

/// Checks an opened key file. The checks use the open descriptor, so the
/// file cannot be swapped between the check and the read.
fn read_key(path: &Path, mut f: File) -> Result<Key> {
    let meta = f
        .metadata()
        .map_err(|e| key_error(path, format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(key_error(path, "is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_error(
            path,
            format!("mode {mode:03o} lets other users at the signing key; chmod 600 it"),
        ));
    }
    if meta.len() != KEY_LEN as u64 {
        return Err(key_error(
            path,
            format!(
                "holds {} bytes, not {KEY_LEN}; restore the original key or remove the file \
                 to make a new one (which logs everybody out)",
                meta.len()
            ),
        ));
    }
    let mut key = [0u8; KEY_LEN];
    f.read_exact(&mut key)
        .map_err(|e| key_error(path, format!("cannot read: {e}")))?;
    Ok(Key(key))
}

fn create_key(path: &Path) -> Result<Key> {
    let key = Key::generate()?;
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix)
        .map_err(|e| Error::Unavailable(format!("no randomness for a file name: {e}")))?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", hex::encode(suffix)));
    let tmp = PathBuf::from(tmp_name);

    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(key.bytes())?;
            f.sync_all()
        });
    if let Err(e) = written {
        // Best effort: the temporary file holds nothing anyone relies on.
        let _ = std::fs::remove_file(&tmp);
        return Err(key_error(path, format!("cannot write a new key: {e}")));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_parent(path);
            tracing::info!(path = %path.display(), "created a new token signing key");
            Ok(key)
        }
        // Another process started at the same moment and linked its key
        // first: use that one, so both sign with the same key.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let f = File::open(path).map_err(|e| key_error(path, format!("cannot open: {e}")))?;
            read_key(path, f)
        }
        Err(e) => Err(key_error(path, format!("cannot create: {e}"))),
    }
}

/// Makes the new directory entry durable, so a crash right after the first
/// start does not lose the key that signed the tokens already handed out.
fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Err(e) = File::open(parent).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %parent.display(), error = %e, "cannot sync the key's directory");
    }
}
