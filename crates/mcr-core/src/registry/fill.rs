//! What the readers of a pull-through fill share with it (see
//! `registry::proxy` for the use case).
//!
//! A fill runs as one task ([`crate::ports::Spawn`]) that reads the
//! upstream body into the store; every pull of the blob meanwhile is a
//! [`FillReader`] following it through a [`Window`] of the last
//! [`WINDOW`] bytes received. Memory is bounded by the window, whoever
//! reads: the fill never waits for a reader, a reader that falls behind
//! the window (or joins after it moved on) reads the rest from the store
//! once the blob is committed. A reader never hands out the blob's last
//! byte before the fill's verified commit, so a corrupt or truncated
//! upstream answer is never served whole.
//!
//! [`Fills`] lists the fills running in this process by repository and
//! digest, so a concurrent pull joins one instead of waiting for it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::future::{self, Either};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::digest::Digest;
use crate::error::Result;
use crate::names::RepoName;
use crate::ports::{BlobStore, ByteRange, ByteStream};

/// Bytes of a fill kept for its readers: a reader further behind reads
/// from the store after the commit. Per running fill, so a burst of cold
/// pulls holds a few MiB each, not their blobs.
pub(super) const WINDOW: u64 = 2 << 20;

/// How often a pull may find the fill it joined ending before it started
/// (its leader found the blob stored, or failed) and look again: each
/// look is a new leader's progress, this only bounds a pathological run.
pub(super) const JOIN_ATTEMPTS: usize = 4;

/// The fill future itself, when no spawner runs it: then its first reader
/// drives it.
pub(super) type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a fill is.
#[derive(Debug, Clone)]
enum Phase {
    /// Its leader is asking the upstream and opening the upload.
    Starting,
    /// Bytes are arriving; `size` is what the upstream announced.
    Running { size: u64 },
    /// Ended before any byte (the blob was there after all, or the
    /// upstream refused): joiners look again from the start.
    NotStarted,
    /// Committed and verified: the store holds the blob.
    Committed { size: u64 },
    /// Failed after it started: readers end in this error.
    Failed(String),
}

/// The bytes received, as chunks with their offsets, and the phase.
struct Window {
    phase: Phase,
    /// `(offset, chunk)`, oldest first, covering `start..end`.
    chunks: VecDeque<(u64, Bytes)>,
    start: u64,
    end: u64,
}

/// One fill as its readers see it.
pub(super) struct FillShared {
    window: Mutex<Window>,
    /// Bumped on every change of `window`.
    changed: watch::Sender<()>,
}

impl FillShared {
    fn new() -> FillShared {
        FillShared {
            window: Mutex::new(Window {
                phase: Phase::Starting,
                chunks: VecDeque::new(),
                start: 0,
                end: 0,
            }),
            changed: watch::Sender::new(()),
        }
    }

    fn window(&self) -> MutexGuard<'_, Window> {
        // Every change is made whole under the lock.
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, phase: Phase) {
        self.window().phase = phase;
        self.changed.send_replace(());
    }

    /// The upstream answered with `size` bytes: readers may start.
    pub(super) fn running(&self, size: u64) {
        self.set(Phase::Running { size });
    }

    /// Records a chunk the fill received, dropping the oldest beyond the
    /// window (always keeping the newest).
    pub(super) fn push(&self, chunk: &Bytes) {
        if chunk.is_empty() {
            return;
        }
        {
            let mut w = self.window();
            let at = w.end;
            w.end += chunk.len() as u64;
            w.chunks.push_back((at, chunk.clone()));
            while w.end - w.start > WINDOW && w.chunks.len() > 1 {
                w.chunks.pop_front();
                w.start = w.chunks.front().map_or(w.end, |(at, _)| *at);
            }
        }
        self.changed.send_replace(());
    }

    /// The fill's end: committed, or failed with `error`.
    pub(super) fn ended(&self, outcome: &Result<u64>) {
        self.set(match outcome {
            Ok(size) => Phase::Committed { size: *size },
            Err(e) => Phase::Failed(e.to_string()),
        });
    }

    /// Waits until the fill is past starting: its size once it runs or
    /// ran, `None` if it never started (look again).
    pub(super) async fn started(&self) -> Option<u64> {
        let mut changes = self.changed.subscribe();
        loop {
            changes.borrow_and_update();
            match &self.window().phase {
                Phase::Starting => {}
                Phase::Running { size } | Phase::Committed { size } => return Some(*size),
                Phase::NotStarted | Phase::Failed(_) => return None,
            }
            // The sender lives in `self`: `changed` cannot fail.
            let _ = changes.changed().await;
        }
    }
}

/// One read of a blob being filled, from its first byte.
pub(super) struct FillReader {
    fill: Arc<FillShared>,
    changes: watch::Receiver<()>,
    size: u64,
    pos: u64,
    /// The rest, from the store, once this reader fell behind the window.
    rest: Option<ByteStream>,
    blobs: Arc<dyn BlobStore>,
    digest: Digest,
    /// The fill itself when no spawner runs it (the leader's reader).
    driver: Option<Driver>,
    done: bool,
}

/// What a reader does next, decided under the window's lock.
enum Step {
    Chunk(Bytes),
    End,
    Fail(String),
    FromStore,
    Wait,
}

impl FillReader {
    pub(super) fn new(
        fill: Arc<FillShared>,
        size: u64,
        blobs: Arc<dyn BlobStore>,
        digest: Digest,
        driver: Option<Driver>,
    ) -> FillReader {
        let changes = fill.changed.subscribe();
        FillReader {
            fill,
            changes,
            size,
            pos: 0,
            rest: None,
            blobs,
            digest,
            driver,
            done: false,
        }
    }

    /// The reader as a stream of the blob's bytes, ending in an error if
    /// the fill fails.
    pub(super) fn into_stream(self) -> ByteStream {
        Box::pin(futures_util::stream::unfold(
            self,
            |mut reader| async move {
                let item = reader.next().await?;
                Some((item, reader))
            },
        ))
    }

    fn step(&mut self) -> Step {
        let w = self.fill.window();
        let committed = match &w.phase {
            Phase::Failed(e) => return Step::Fail(e.clone()),
            Phase::NotStarted => return Step::Fail("the fill was abandoned".into()),
            Phase::Committed { .. } => true,
            Phase::Starting | Phase::Running { .. } => false,
        };
        if committed && self.pos >= self.size {
            return Step::End;
        }
        if self.pos < w.start {
            return if committed {
                Step::FromStore
            } else {
                Step::Wait
            };
        }
        // The last byte waits for the verified commit.
        let limit = if committed {
            self.size
        } else {
            w.end.min(self.size.saturating_sub(1))
        };
        if self.pos >= limit {
            return Step::Wait;
        }
        let i = w.chunks.partition_point(|(at, _)| *at <= self.pos) - 1;
        let (at, chunk) = &w.chunks[i];
        let from = usize::try_from(self.pos - at).expect("within a chunk in memory");
        let to = usize::try_from((limit - at).min(chunk.len() as u64)).expect("likewise");
        Step::Chunk(chunk.slice(from..to))
    }

    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if let Some(rest) = &mut self.rest {
                return rest.next().await;
            }
            if self.done {
                return None;
            }
            self.changes.borrow_and_update();
            match self.step() {
                Step::Chunk(chunk) => {
                    self.pos += chunk.len() as u64;
                    return Some(Ok(chunk));
                }
                Step::End => return None,
                Step::Fail(e) => {
                    self.done = true;
                    return Some(Err(io::Error::other(e)));
                }
                Step::FromStore => {
                    let range = ByteRange {
                        start: self.pos,
                        end: None,
                    };
                    match self.blobs.read(&self.digest, Some(range)).await {
                        Ok(body) => self.rest = Some(body.stream),
                        Err(e) => {
                            self.done = true;
                            return Some(Err(io::Error::other(e.to_string())));
                        }
                    }
                }
                Step::Wait => self.wait().await,
            }
        }
    }

    /// Waits for the window to change, driving the fill meanwhile if this
    /// reader carries it.
    async fn wait(&mut self) {
        let changed = self.changes.changed();
        match self.driver.as_mut() {
            None => {
                // The sender lives in the shared fill: `changed` cannot fail.
                let _ = changed.await;
            }
            Some(driver) => {
                if let Either::Left(((), _)) =
                    future::select(driver.as_mut(), Box::pin(changed)).await
                {
                    self.driver = None;
                }
            }
        }
    }
}

/// The fills running in this process, by repository and digest.
#[derive(Default)]
pub(super) struct Fills {
    running: Mutex<HashMap<(RepoName, Digest), Arc<FillShared>>>,
}

/// What a pull finds: a fill to join, or the lead of a new one.
pub(super) enum Found {
    Join(Arc<FillShared>),
    Lead(Lead),
}

impl Fills {
    fn running(&self) -> MutexGuard<'_, HashMap<(RepoName, Digest), Arc<FillShared>>> {
        // Each change is one insert or remove.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fill of `digest` into `repo` running here, or the lead of a
    /// new one, listed at once so concurrent pulls join it.
    pub(super) fn join_or_lead(self: &Arc<Self>, repo: &RepoName, digest: &Digest) -> Found {
        let key = (repo.clone(), digest.clone());
        let mut running = self.running();
        if let Some(fill) = running.get(&key) {
            return Found::Join(Arc::clone(fill));
        }
        let fill = Arc::new(FillShared::new());
        running.insert(key.clone(), Arc::clone(&fill));
        Found::Lead(Lead {
            fills: Arc::clone(self),
            key,
            fill,
        })
    }
}

/// A listed fill, owned by its leader and then by the fill task. Dropped
/// at the fill's end (or when the leader gives up before it), it leaves
/// the list; one dropped before an end was recorded tells its readers it
/// was abandoned.
pub(super) struct Lead {
    fills: Arc<Fills>,
    key: (RepoName, Digest),
    fill: Arc<FillShared>,
}

impl Lead {
    pub(super) fn fill(&self) -> &Arc<FillShared> {
        &self.fill
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        {
            let mut running = self.fills.running();
            if running
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.fill))
            {
                running.remove(&self.key);
            }
        }
        let abandoned = {
            let w = self.fill.window();
            match w.phase {
                Phase::Starting => Some(Phase::NotStarted),
                Phase::Running { .. } => Some(Phase::Failed(
                    "the fill was abandoned before its end; nothing was stored".into(),
                )),
                _ => None,
            }
        };
        if let Some(phase) = abandoned {
            self.fill.set(phase);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review of issue 13, D1: chunks nobody read queued without bound.
    #[test]
    fn the_window_holds_at_most_its_size_and_one_chunk() {
        let fill = FillShared::new();
        fill.running(10 * WINDOW);
        let chunk = Bytes::from(vec![1u8; 100_000]);
        for _ in 0..(10 * WINDOW as usize / chunk.len()) {
            fill.push(&chunk);
            let w = fill.window();
            let held: u64 = w.chunks.iter().map(|(_, c)| c.len() as u64).sum();
            assert_eq!(held, w.end - w.start);
            assert!(held <= WINDOW + chunk.len() as u64, "{held} bytes held");
        }
        let w = fill.window();
        assert!(w.start > 8 * WINDOW, "the oldest bytes were let go");
    }
}
