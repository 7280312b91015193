//! The token signing key: 32 random bytes in a file only the server reads.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use mcr_core::{Error, Result};

const KEY_LEN: usize = 32;

/// A signing key. Its `Debug` never shows the bytes.
pub struct Key([u8; KEY_LEN]);

impl Key {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(***)")
    }
}

/// Loads the key at `path`, or creates it (mode 0600) on first start. A
/// key file readable by others, or of the wrong length, is refused.
pub fn load_or_create_key(path: &Path) -> Result<Key> {
    let bad =
        |what: String| Error::invalid("local.key_path", format!("{}: {what}", path.display()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            let mut key = [0u8; KEY_LEN];
            getrandom::getrandom(&mut key).map_err(|e| bad(format!("no randomness: {e}")))?;
            f.write_all(&key)
                .and_then(|()| f.sync_all())
                .map_err(|e| bad(e.to_string()))?;
            Ok(Key(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
            let mode = f
                .metadata()
                .map_err(|e| bad(e.to_string()))?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(bad(format!(
                    "mode {mode:o} lets others read the key; chmod 600 it"
                )));
            }
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
            // A racing first start may not have written it yet.
            if bytes.is_empty() {
                std::thread::sleep(std::time::Duration::from_millis(50));
                bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            }
            let key: [u8; KEY_LEN] = bytes
                .try_into()
                .map_err(|b: Vec<u8>| bad(format!("holds {} bytes, not {KEY_LEN}", b.len())))?;
            Ok(Key(key))
        }
        Err(e) => Err(bad(e.to_string())),
    }
}
