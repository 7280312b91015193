//! `PostgresCoordination`: the `Coordination` port over PostgreSQL
//! advisory locks, so the per-digest locks and the one-GC-at-a-time rule
//! hold across every replica that shares the database.
//!
//! A lock is taken in two layers:
//! - in this process, a [`LocalCoordination`] lock on the key, so the
//!   tasks of one replica queue among themselves and at most one of them
//!   asks PostgreSQL;
//! - in the database, a session-level advisory lock on [`LockKey::id64`]
//!   (`pg_try_advisory_lock`), held by one connection this replica keeps
//!   for its locks, whatever their number: a held lock pins no pooled
//!   connection, so the pool need not grow with concurrent uploads.
//!
//! One task owns that connection and runs the lock statements in the
//! order they were asked for; a guard's `Drop` queues its
//! `pg_advisory_unlock` there (it cannot await), before its local lock is
//! released, so the next holder in this process asks after the unlock.
//! A waiter polls `pg_try_advisory_lock`, backing off from 2 ms to 100 ms,
//! rather than blocking in `pg_advisory_lock`: a blocked statement cannot
//! be abandoned, and a request that gives up (a client that hung up) must
//! leave nothing behind. A lock granted to a waiter that has gone is
//! released at once.
//!
//! Locks live as long as the session: when a replica dies its connection
//! closes and PostgreSQL releases them; the session asks for TCP
//! keepalives every 10 s after 30 s of silence, so a replica whose machine
//! or network vanished loses them within about a minute. Should the
//! connection break while the replica lives, its locks are gone with it
//! (logged as an error) and the next request connects again.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use mcr_core::coordination::LocalCoordination;
use mcr_core::ports::{Coordination, LockGuard, LockKey};
use mcr_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::{PostgresConfig, StepResult};

/// The first pause between two tries of a held lock, and the longest.
const FIRST_PAUSE: Duration = Duration::from_millis(2);
const LONGEST_PAUSE: Duration = Duration::from_millis(100);

/// The lock session's settings: keepalives, so the server notices a
/// vanished replica, and a name an operator can find in
/// `pg_stat_activity`.
const SESSION_SETUP: &str = "SET tcp_keepalives_idle = 30;
    SET tcp_keepalives_interval = 10;
    SET tcp_keepalives_count = 3;
    SET application_name = 'mcrsrv locks'";
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1)";
const UNLOCK: &str = "SELECT pg_advisory_unlock($1)";
/// Whether any session of this database holds the advisory lock with
/// this number: a bigint key is (classid, objid) = (high, low 32 bits),
/// objsubid 1.
const IS_LOCKED: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid::bigint = $1 AND objid::bigint = $2)";

/// What the lock task is asked to do.
enum Request {
    TryLock {
        id: i64,
        reply: oneshot::Sender<StepResult<bool>>,
    },
    Unlock {
        id: i64,
    },
    IsLocked {
        id: i64,
        reply: oneshot::Sender<StepResult<bool>>,
    },
}

/// Locks shared by every replica over one PostgreSQL database.
///
/// Cheap to clone (the clones share the local locks and the lock
/// session). Needs a Tokio runtime.
#[derive(Clone)]
pub struct PostgresCoordination {
    local: LocalCoordination,
    requests: mpsc::UnboundedSender<Request>,
    target: String,
}

impl fmt::Debug for PostgresCoordination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresCoordination")
            .field("target", &self.target)
            .finish()
    }
}

impl PostgresCoordination {
    /// Opens the session that holds this replica's locks. Fails as
    /// [`PostgresMetaStore::connect`](super::PostgresMetaStore::connect)
    /// does when the server cannot be reached or refuses us.
    pub async fn connect(config: &PostgresConfig) -> Result<PostgresCoordination> {
        let target = config.target();
        let session = Session::open(&config.config).await.map_err(|e| {
            e.into_error()
                .context(format!("connecting to {target} for locks"))
        })?;
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(serve(config.config.clone(), session, queue));
        Ok(PostgresCoordination {
            local: LocalCoordination::new(),
            requests,
            target,
        })
    }

    /// Asks the lock task, naming `op` in any error.
    async fn ask(
        &self,
        op: &str,
        make: impl FnOnce(oneshot::Sender<StepResult<bool>>) -> Request,
    ) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        let gone = || Error::storage(op.to_string(), "the lock session's task has ended");
        self.requests.send(make(reply)).map_err(|_| gone())?;
        answer
            .await
            .map_err(|_| gone())?
            .map_err(|e| e.into_error().context(op))
    }

    /// Takes the database's lock on `key` if it is free now. The caller
    /// holds the key's local lock.
    async fn try_remote(&self, key: &LockKey, local: LockGuard) -> Result<Option<LockGuard>> {
        let id = key.id64();
        let got = self
            .ask(&format!("taking the lock {key}"), |reply| {
                Request::TryLock { id, reply }
            })
            .await?;
        Ok(got.then(|| {
            LockGuard::new(Held {
                id,
                requests: self.requests.clone(),
                _local: local,
            })
        }))
    }
}

#[async_trait]
impl Coordination for PostgresCoordination {
    async fn lock(&self, key: &LockKey) -> Result<LockGuard> {
        let mut pause = FIRST_PAUSE;
        loop {
            // The local lock is taken again each time round: between
            // tries, another task of this replica may have its turn.
            let local = self.local.lock(key).await?;
            if let Some(guard) = self.try_remote(key, local).await? {
                return Ok(guard);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }

    async fn try_lock(&self, key: &LockKey) -> Result<Option<LockGuard>> {
        match self.local.try_lock(key).await? {
            Some(local) => self.try_remote(key, local).await,
            None => Ok(None),
        }
    }

    async fn is_locked(&self, key: &LockKey) -> Result<bool> {
        if self.local.is_locked(key).await? {
            return Ok(true);
        }
        let id = key.id64();
        self.ask(&format!("looking up the lock {key}"), |reply| {
            Request::IsLocked { id, reply }
        })
        .await
    }
}

/// A lock held in the database and in this process: dropping it queues
/// the unlock, then releases the local lock (the field, dropped after).
struct Held {
    id: i64,
    requests: mpsc::UnboundedSender<Request>,
    _local: LockGuard,
}

impl Drop for Held {
    fn drop(&mut self) {
        // The task ends only when every sender is gone, and we hold one.
        let _ = self.requests.send(Request::Unlock { id: self.id });
    }
}

/// The lock session: its connection and its statements, prepared once.
struct Session {
    client: Client,
    try_lock: Statement,
    unlock: Statement,
    is_locked: Statement,
}

impl Session {
    async fn open(config: &Config) -> StepResult<Session> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %super::describe(&e), "the PostgreSQL lock session broke");
            }
        });
        client.batch_execute(SESSION_SETUP).await?;
        Ok(Session {
            try_lock: client.prepare(TRY_LOCK).await?,
            unlock: client.prepare(UNLOCK).await?,
            is_locked: client.prepare(IS_LOCKED).await?,
            client,
        })
    }

    async fn ask(&self, stmt: &Statement, params: &[&(dyn ToSql + Sync)]) -> StepResult<bool> {
        Ok(self.client.query_one(stmt, params).await?.try_get(0)?)
    }

    /// Releases one hold of `id`, if this session has one (a session
    /// opened since the guard was made holds nothing of it).
    async fn unlock(&self, held: &mut HashMap<i64, usize>, id: i64) {
        let Some(count) = held.get_mut(&id) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            held.remove(&id);
        }
        if let Err(e) = self.ask(&self.unlock, &[&id]).await {
            tracing::warn!(error = %e, "releasing an advisory lock failed");
        }
    }
}

/// The lock task: runs the requests one by one on the lock session,
/// counting the locks it holds, and opens a new session when the old one
/// has broken.
async fn serve(config: Config, session: Session, mut queue: mpsc::UnboundedReceiver<Request>) {
    let mut session = Some(session);
    // How many guards hold each lock through this session (advisory locks
    // nest per session, and each guard unlocks once).
    let mut held: HashMap<i64, usize> = HashMap::new();
    while let Some(request) = queue.recv().await {
        if session.as_ref().is_none_or(|s| s.client.is_closed()) {
            if !held.is_empty() {
                tracing::error!(
                    locks = held.values().sum::<usize>(),
                    "the PostgreSQL lock session closed: the locks it held are released"
                );
                held.clear();
            }
            match Session::open(&config).await {
                Ok(s) => session = Some(s),
                Err(e) => {
                    session = None;
                    answer(request, Err(e));
                    continue;
                }
            }
        }
        let Some(s) = &session else { continue };
        match request {
            Request::TryLock { id, reply } => {
                let got = s.ask(&s.try_lock, &[&id]).await;
                if matches!(got, Ok(true)) {
                    *held.entry(id).or_default() += 1;
                }
                if let Err(Ok(true)) = reply.send(got) {
                    // The waiter has gone: the lock is no one's.
                    s.unlock(&mut held, id).await;
                }
            }
            Request::Unlock { id } => s.unlock(&mut held, id).await,
            Request::IsLocked { id, reply } => {
                let bits = id as u64;
                let (high, low) = ((bits >> 32) as i64, (bits & 0xffff_ffff) as i64);
                let _ = reply.send(s.ask(&s.is_locked, &[&high, &low]).await);
            }
        }
    }
}

/// Answers a request that could not run.
fn answer(request: Request, result: StepResult<bool>) {
    match request {
        Request::TryLock { reply, .. } | Request::IsLocked { reply, .. } => {
            let _ = reply.send(result);
        }
        // Nothing was held in a session that is gone.
        Request::Unlock { .. } => {}
    }
}
