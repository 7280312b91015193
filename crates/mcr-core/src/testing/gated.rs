//! `GatedUpstream`: an upstream whose blob bodies the test sends a chunk
//! at a time, to watch a pull-through fill while it runs.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::error::Result;
use crate::names::{Reference, RepoName, Tag};
use crate::ports::{Upstream, UpstreamBlob, UpstreamManifest};

/// An upstream holding one blob and no manifest. Every `GET` of the blob
/// announces its size and answers with a body that yields what the test
/// sends through [`GatedUpstream::send`] and ends at
/// [`GatedUpstream::end`]; a body may be sent other bytes than the blob's
/// (a corrupt or overlong answer).
pub struct GatedUpstream {
    digest: Digest,
    size: u64,
    gets: AtomicUsize,
    /// One sender per `GET` so far; `None` once its body ended.
    bodies: Mutex<Vec<Option<mpsc::UnboundedSender<io::Result<Bytes>>>>>,
}

impl GatedUpstream {
    /// An upstream serving `data`'s digest and size.
    pub fn new(data: &[u8]) -> GatedUpstream {
        GatedUpstream {
            digest: Digest::sha256_of(data),
            size: data.len() as u64,
            gets: AtomicUsize::new(0),
            bodies: Mutex::new(Vec::new()),
        }
    }

    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// `GET`s of the blob so far.
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    fn bodies(&self) -> MutexGuard<'_, Vec<Option<mpsc::UnboundedSender<io::Result<Bytes>>>>> {
        self.bodies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `chunk` on the body of the `get`th `GET` (from 0).
    ///
    /// # Panics
    /// If there was no such `GET`, or its body ended.
    pub fn send(&self, get: usize, chunk: &[u8]) {
        let bodies = self.bodies();
        let body = bodies[get].as_ref().expect("a body not ended yet");
        // A reader that went away is the fill's business, not the test's.
        let _ = body.send(Ok(Bytes::copy_from_slice(chunk)));
    }

    /// Ends the body of the `get`th `GET`.
    pub fn end(&self, get: usize) {
        self.bodies()[get] = None;
    }
}

#[async_trait]
impl Upstream for GatedUpstream {
    fn location(&self) -> &str {
        "https://gated.example"
    }

    async fn manifest(
        &self,
        _name: &RepoName,
        _reference: &Reference,
        _limit: u64,
    ) -> Result<Option<UpstreamManifest>> {
        Ok(None)
    }

    async fn manifest_digest(&self, _name: &RepoName, _tag: &Tag) -> Result<Option<Digest>> {
        Ok(None)
    }

    async fn blob_size(&self, _name: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        Ok((digest == &self.digest).then_some(self.size))
    }

    async fn blob(&self, _name: &RepoName, digest: &Digest) -> Result<Option<UpstreamBlob>> {
        if digest != &self.digest {
            return Ok(None);
        }
        self.gets.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::unbounded_channel();
        self.bodies().push(Some(tx));
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        Ok(Some(UpstreamBlob {
            size: self.size,
            stream: Box::pin(stream),
        }))
    }
}
