//! Per-digest mutual exclusion between committing a blob file and deleting
//! it.
//!
//! GC deletes a blob file only after checking, under the digest's lock,
//! that no row exists; an upload moves its file into place and records the
//! row under the same lock. So a file is never deleted between an upload's
//! rename and its row, and a row never outlives its file.
//!
//! The locks are striped (a fixed number of async mutexes chosen by the
//! digest's first byte) and runtime-agnostic. They guard one process; a
//! deployment of several replicas moves this to a lease in the shared
//! metadata store (see docs/ARCHITECTURE.md).

use futures_util::lock::{Mutex, MutexGuard};

use crate::digest::Digest;

const STRIPES: usize = 64;

pub(crate) struct DigestLocks {
    stripes: Vec<Mutex<()>>,
}

impl Default for DigestLocks {
    fn default() -> Self {
        DigestLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl DigestLocks {
    pub(crate) async fn lock(&self, digest: &Digest) -> MutexGuard<'_, ()> {
        let hex = digest.hex().as_bytes();
        let key = usize::from(hex[0]) * 31 + usize::from(hex[1]);
        self.stripes[key % STRIPES].lock().await
    }
}
