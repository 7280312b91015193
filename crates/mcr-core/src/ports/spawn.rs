//! The `Spawn` port: running a task apart from the request that started
//! it, on the embedder's runtime (the engine has none of its own).
//!
//! The engine needs it for one thing: a pull-through cache's blob fill,
//! which must go on to its verified commit whether or not the client that
//! caused it keeps reading (`registry::proxy`). `mcrsrv` spawns onto the
//! tracker its shutdown waits for; without a spawner the first reader
//! drives the fill itself and dropping it abandons the fill
//! ([`crate::registry::Registry::with_spawner`]).

use std::future::Future;
use std::pin::Pin;

/// A task handed to a [`Spawn`]: it owns everything it needs and reports
/// its outcome itself.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs tasks to their end on the embedder's runtime.
pub trait Spawn: Send + Sync {
    /// Starts `task`; it runs to its end, not bounded by any caller. An
    /// embedder that stops must let started tasks finish (or accept that
    /// a dropped fill leaves an upload session for the purge).
    fn spawn(&self, task: Task);
}
