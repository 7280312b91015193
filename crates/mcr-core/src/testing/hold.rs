//! Pause points in the fakes, for tests that must interleave two calls
//! deterministically (no sleeps): a test arms a [`Hold`] on a fake, the
//! next call that reaches the fake's pause point stops there, and the test
//! decides when it goes on.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// A flag set once, that tasks can wait for.
#[derive(Debug, Default, Clone)]
struct Signal {
    inner: Arc<Mutex<(bool, Vec<Waker>)>>,
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, (bool, Vec<Waker>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self) {
        let wakers = {
            let mut s = self.lock();
            s.0 = true;
            std::mem::take(&mut s.1)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            let mut s = self.lock();
            if s.0 {
                Poll::Ready(())
            } else {
                s.1.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// The test's end of an armed pause point.
#[derive(Debug)]
pub struct Hold {
    reached: Signal,
    release: Signal,
}

impl Hold {
    /// Waits until a call has stopped at the pause point.
    pub async fn reached(&self) {
        self.reached.wait().await
    }

    /// Lets the stopped call (or the next one to arrive) go on.
    pub fn release(&self) {
        self.release.set()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // A test that forgot to release must not hang the call forever.
        self.release.set()
    }
}

/// The fake's end: armed by at most one [`Hold`] at a time, consumed by
/// the first call that passes.
#[derive(Debug, Default)]
pub(crate) struct PausePoint {
    armed: Mutex<Option<(Signal, Signal)>>,
}

impl PausePoint {
    pub(crate) fn arm(&self) -> Hold {
        let (reached, release) = (Signal::default(), Signal::default());
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((reached.clone(), release.clone()));
        Hold { reached, release }
    }

    /// Stops here if armed, until the test releases.
    pub(crate) async fn pass(&self) {
        let armed = self.armed.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((reached, release)) = armed {
            reached.set();
            release.wait().await;
        }
    }
}
