//! The port contract suite: generic async checks that every adapter of a
//! port runs, so the fakes and the real adapters answer alike.
//!
//! An adapter's tests call [`run_blob_store_contract`],
//! [`run_meta_store_contract`], [`run_coordination_contract`] or (for a
//! metadata store that offers snapshots) [`run_snapshot_store_contract`]
//! with a function that builds a fresh, empty store; every check gets its
//! own store. The checks need no particular
//! runtime: drive them with `futures_executor::block_on` or
//! `#[tokio::test]`, whichever the adapter needs. A failing check panics
//! with the suite, the check's name and what differed.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use mcr_core::ports::BlobStore;
//! # use mcr_core::testing::{contract, FakeBlobStore};
//! futures_executor::block_on(contract::run_blob_store_contract(|| async {
//!     Arc::new(FakeBlobStore::new()) as Arc<dyn BlobStore>
//! }));
//! ```

mod blob_store;
mod coordination;
mod meta_store;
mod snapshots;
mod support;

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

pub use blob_store::{run_blob_store_contract, BLOB_STORE_CHECKS, MAX_STATE_DATA};
pub use coordination::{run_coordination_contract, Replicas};
pub use meta_store::{run_meta_store_contract, META_STORE_CHECKS};
pub use snapshots::run_snapshot_store_contract;

/// One named check of a suite, run against a fresh store.
pub struct Check<S: ?Sized> {
    /// The check's name, as a failure reports it.
    pub name: &'static str,
    /// Runs the check on a fresh store; panics on a difference.
    pub run: fn(Arc<S>) -> BoxFuture<'static, ()>,
}

/// Builds a `&[Check<_>]` from async fns taking the store.
macro_rules! checks {
    ($port:ty => $($check:ident),* $(,)?) => {
        &[$($crate::testing::contract::Check::<$port> {
            name: stringify!($check),
            run: |store| -> futures_util::future::BoxFuture<'static, ()> { Box::pin($check(store)) },
        }),*]
    };
}
pub(crate) use checks;

/// Runs every check on a store from `make`, naming the check that fails.
async fn run_suite<S, F, Fut>(suite: &str, checks: &[Check<S>], mut make: F)
where
    S: ?Sized,
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<S>>,
{
    for check in checks {
        let store = make().await;
        if let Err(panic) = AssertUnwindSafe((check.run)(store)).catch_unwind().await {
            panic!(
                "{suite} contract check `{}` failed: {}",
                check.name,
                message(&*panic)
            );
        }
    }
}

fn message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(panic without a message)")
}
