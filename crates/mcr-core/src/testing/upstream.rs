//! `FakeUpstream`: the [`Upstream`] port in memory, for the engine's own
//! tests of the pull-through cache (the HTTP client adapter is tested
//! against a real registry).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream;

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::media::MediaType;
use crate::names::{Reference, RepoName, Tag};
use crate::ports::{Upstream, UpstreamBlob, UpstreamManifest};

/// Size of the chunks a blob body comes in.
const CHUNK: usize = 1024;

/// An upstream registry in memory that records every request it gets.
///
/// [`FakeUpstream::set_down`] makes every request fail as an unreachable
/// upstream would; [`FakeUpstream::corrupt_blobs`] makes blob bodies come
/// truncated by one byte.
#[derive(Debug, Default)]
pub struct FakeUpstream {
    location: String,
    state: Mutex<State>,
    down: AtomicBool,
    corrupt: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// (name, digest) → manifest; tags point into it.
    manifests: HashMap<(RepoName, Digest), UpstreamManifest>,
    tags: HashMap<(RepoName, Tag), Digest>,
    blobs: HashMap<Digest, Bytes>,
    requests: Vec<String>,
}

impl FakeUpstream {
    pub fn new(location: &str) -> FakeUpstream {
        FakeUpstream {
            location: location.to_string(),
            ..FakeUpstream::default()
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a manifest under `name`, tagged `tag` if given; returns its
    /// digest.
    pub fn put_manifest(
        &self,
        name: &RepoName,
        tag: Option<&Tag>,
        media_type: &str,
        raw: &[u8],
    ) -> Digest {
        let digest = Digest::of(Algorithm::Sha256, raw);
        let mut state = self.state();
        state.manifests.insert(
            (name.clone(), digest.clone()),
            UpstreamManifest {
                media_type: MediaType::new(media_type).expect("a valid media type"),
                raw: Bytes::copy_from_slice(raw),
            },
        );
        if let Some(tag) = tag {
            state
                .tags
                .insert((name.clone(), tag.clone()), digest.clone());
        }
        digest
    }

    /// Stores a blob (any name may read it); returns its digest.
    pub fn put_blob(&self, data: &[u8]) -> Digest {
        let digest = Digest::of(Algorithm::Sha256, data);
        self.state()
            .blobs
            .insert(digest.clone(), Bytes::copy_from_slice(data));
        digest
    }

    /// Deletes a tag (its manifest stays).
    pub fn remove_tag(&self, name: &RepoName, tag: &Tag) {
        self.state().tags.remove(&(name.clone(), tag.clone()));
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn corrupt_blobs(&self, corrupt: bool) {
        self.corrupt.store(corrupt, Ordering::SeqCst);
    }

    /// Every request so far, as `GET manifest <name>:<reference>`, `HEAD
    /// manifest …`, `HEAD blob <digest>` or `GET blob <digest>`.
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Records the request; fails if the upstream is down.
    fn ask(&self, request: String) -> Result<MutexGuard<'_, State>> {
        let mut state = self.state();
        state.requests.push(request);
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Unavailable(format!(
                "upstream {} unreachable: connection refused",
                self.location
            )));
        }
        Ok(state)
    }
}

fn resolve(state: &State, name: &RepoName, reference: &Reference) -> Option<Digest> {
    match reference {
        Reference::Digest(d) => Some(d.clone()),
        Reference::Tag(t) => state.tags.get(&(name.clone(), t.clone())).cloned(),
    }
}

#[async_trait]
impl Upstream for FakeUpstream {
    fn location(&self) -> &str {
        &self.location
    }

    async fn manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        limit: u64,
    ) -> Result<Option<UpstreamManifest>> {
        let state = self.ask(format!("GET manifest {name}:{reference}"))?;
        let found = resolve(&state, name, reference)
            .and_then(|d| state.manifests.get(&(name.clone(), d)).cloned());
        if found.as_ref().is_some_and(|m| m.raw.len() as u64 > limit) {
            return Err(Error::Unavailable("manifest over the limit".into()));
        }
        Ok(found)
    }

    async fn manifest_digest(&self, name: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        let state = self.ask(format!("HEAD manifest {name}:{tag}"))?;
        Ok(state.tags.get(&(name.clone(), tag.clone())).cloned())
    }

    async fn blob_size(&self, _name: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let state = self.ask(format!("HEAD blob {digest}"))?;
        Ok(state.blobs.get(digest).map(|b| b.len() as u64))
    }

    async fn blob(&self, _name: &RepoName, digest: &Digest) -> Result<Option<UpstreamBlob>> {
        let state = self.ask(format!("GET blob {digest}"))?;
        let Some(data) = state.blobs.get(digest).cloned() else {
            return Ok(None);
        };
        let size = data.len() as u64;
        let body = if self.corrupt.load(Ordering::SeqCst) {
            data.slice(..data.len().saturating_sub(1))
        } else {
            data
        };
        let chunks: Vec<std::io::Result<Bytes>> = (0..body.len())
            .step_by(CHUNK)
            .map(|at| Ok(body.slice(at..body.len().min(at + CHUNK))))
            .collect();
        Ok(Some(UpstreamBlob {
            size,
            stream: Box::pin(stream::iter(chunks)),
        }))
    }
}
