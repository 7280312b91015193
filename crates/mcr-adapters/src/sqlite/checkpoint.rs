//! WAL checkpoints off the writers' path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses
//! `wal_autocheckpoint` pages: that commit, and with it the writer's turn
//! every other writer queues behind, waits while the checkpoint copies
//! the log into the database file and syncs it. Measured on a database of
//! 100,000 blob rows, a GC sweep window of 250 rows held the turn 6 ms at
//! the median and 50–70 ms when its commit checkpointed; a small push
//! queued behind it waited as long. So every connection of the store runs
//! with `wal_autocheckpoint = 0`, and one thread of the store checkpoints
//! on its own connection instead: `PASSIVE` (it never waits for, nor
//! blocks, a reader or a writer), at most once per
//! [`CHECKPOINT_INTERVAL`], and only after a commit since the last one.
//! The log between two checkpoints is what one interval of writes adds;
//! the last connection to close checkpoints what remains, as SQLite
//! always does. GC's last sweep step checkpoints too, before the run
//! reports done (`gc`), so a run's time includes copying the log it
//! wrote, however short the run.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use mcr_core::Result;
use rusqlite::Connection;

use super::{db, storage};

/// The shortest time between two checkpoints. Each one syncs the
/// database file, and those syncs queue with the pushes' own: at 500 ms a
/// GC of 10,000 blobs under pushes took a quarter longer than at 2 s.
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

/// Tells the checkpoint thread that a commit happened; dropping the last
/// clone ends the thread.
#[derive(Clone, Debug)]
pub(super) struct Checkpointer {
    nudge: SyncSender<()>,
}

impl Checkpointer {
    /// Starts the thread on its own connection to `path`.
    pub(super) fn start(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open(path).map_err(db)?;
        let (nudge, commits) = sync_channel(1);
        let name = path.display().to_string();
        std::thread::Builder::new()
            .name("mcr-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &commits, &name))
            .map_err(|e| storage("starting the WAL checkpoint thread", e))?;
        Ok(Checkpointer { nudge })
    }

    /// Records a commit; never blocks (a nudge already pending covers it).
    pub(super) fn committed(&self) {
        // Full: a pending nudge covers this commit too. Disconnected: the
        // thread is gone, and a commit has nothing to wait for either way.
        let _ = self.nudge.try_send(());
    }
}

fn run(conn: &Connection, commits: &Receiver<()>, name: &str) {
    let mut last = Instant::now();
    while commits.recv().is_ok() {
        // Let the interval pass, still noticing the store closing.
        if let Some(wait) = CHECKPOINT_INTERVAL.checked_sub(last.elapsed()) {
            if let Err(RecvTimeoutError::Disconnected) = commits.recv_timeout(wait) {
                return;
            }
        }
        last = Instant::now();
        if let Err(e) = passive(conn) {
            // The next commit tries again; a log that keeps growing shows
            // in its size, and readiness probes the file itself.
            tracing::warn!(database = name, error = %e, "WAL checkpoint failed");
        }
    }
}

/// Copies what it can of the log into the database file without waiting
/// for, or blocking, a reader or a writer (`PRAGMA wal_checkpoint(PASSIVE)`).
pub(super) fn passive(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
        .map(|_| ())
}
