//! Reading the registry as a person does: the repository listing
//! filtered and sorted, one manifest with everything it names, and the
//! dashboard's totals. The admin REST API, gRPC, `mcrctl` and `mcr-web`
//! all show these same shapes.
//!
//! These reads are not audited one by one (the repository detail is not
//! either): a person paging through the UI is not pulling content. Every
//! listing holds only repositories the caller may pull.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Caller, GcStatus, Registry, RepoPage};
use crate::audit::{AuditQuery, EventType};
use crate::digest::Digest;
use crate::error::{Error, Result, StorageError};
use crate::manifest::{Descriptor, Manifest};
use crate::media::MediaType;
use crate::names::{Reference, RepoName};
use crate::ports::{Page, RepoCursor, RepoQuery, RepoSort, RepoSummary, SortOrder, MAX_FILTER_LEN};
use crate::principal::Action;
use crate::time::Timestamp;

/// What a repository listing asks for: a name filter, an order, and the
/// page (`last` is the `next` of the previous page).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepoListing {
    /// Only names containing this; case does not matter (names are
    /// lowercase). Empty means no filter.
    pub filter: Option<String>,
    pub sort: RepoSort,
    pub order: SortOrder,
    pub last: Option<String>,
    /// Page size; the server's maximum when absent or larger.
    pub n: Option<usize>,
}

impl RepoListing {
    /// The listing a request's parameters ask for, parsed the one way
    /// REST and gRPC share: `sort` and `order` by name (`size`, `desc`),
    /// absent meaning the name order, ascending.
    pub fn from_params(
        filter: Option<String>,
        sort: Option<&str>,
        order: Option<&str>,
        last: Option<String>,
        n: Option<usize>,
    ) -> Result<RepoListing> {
        Ok(RepoListing {
            filter,
            sort: sort.map(str::parse).transpose()?.unwrap_or_default(),
            order: order.map(str::parse).transpose()?.unwrap_or_default(),
            last,
            n,
        })
    }
}

/// One manifest with what it names, for a person to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestDetail {
    pub repository: RepoName,
    pub digest: Digest,
    pub media_type: MediaType,
    /// Bytes of the manifest.
    pub size: u64,
    pub created: Timestamp,
    /// The manifest exactly as pushed (JSON text).
    pub raw: String,
    pub artifact_type: Option<MediaType>,
    /// The manifest this one refers to (a signature's image, say).
    pub subject: Option<Digest>,
    pub annotations: BTreeMap<String, String>,
    /// An image's config descriptor.
    pub config: Option<Descriptor>,
    /// The config blob's JSON, when it is JSON, stored in this
    /// repository and at most [`MAX_CONFIG_SHOWN`] bytes.
    pub config_content: Option<String>,
    /// An image's layers, in order.
    pub layers: Vec<Descriptor>,
    /// An index's manifests, each with its platform when it has one.
    pub manifests: Vec<Descriptor>,
    /// Manifests whose subject is this one (signatures, SBOMs, other
    /// artifacts), with their `artifactType`, as the referrers API lists
    /// them.
    pub referrers: Vec<Descriptor>,
}

/// Largest config blob shown with a manifest, in bytes.
pub const MAX_CONFIG_SHOWN: u64 = 256 * 1024;

/// A manifest push, as the audit log recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub time: Timestamp,
    pub repository: RepoName,
    pub digest: Digest,
    /// The tags the push set (none for a push by digest).
    pub tags: Vec<String>,
    /// Who pushed.
    pub actor: Option<String>,
}

/// The registry at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dashboard {
    /// Repositories the caller may pull.
    pub repositories: u64,
    /// Bytes the registry holds: every blob and manifest, registry-wide.
    pub stored_bytes: u64,
    /// The newest pushes to repositories the caller may pull, newest
    /// first, at most [`Dashboard::RECENT_PUSHES`].
    pub recent_pushes: Vec<Push>,
    /// Garbage collection's state; only for admins, absent otherwise.
    pub gc: Option<GcStatus>,
}

impl Dashboard {
    pub const RECENT_PUSHES: usize = 10;
    /// How many push events the dashboard reads at most to find its ten,
    /// so a caller who may pull little does not walk the whole log.
    const PUSHES_SCANNED: usize = 1000;
}

impl Registry {
    /// Repositories with their counts, filtered, sorted and paged in the
    /// store (needs `registry:catalog`). Only repositories the caller may
    /// pull are listed (`pullable_page`); the cursor moves past the others,
    /// so pages stay full and contiguous.
    pub async fn repository_summaries(
        &self,
        caller: &Caller,
        listing: RepoListing,
    ) -> Result<RepoPage> {
        self.authorize(caller, Action::Catalog, None).await?;
        let filter = listing
            .filter
            .map(|f| f.trim().to_ascii_lowercase())
            .filter(|f| !f.is_empty());
        if filter.as_ref().is_some_and(|f| f.len() > MAX_FILTER_LEN) {
            return Err(Error::invalid(
                "filter",
                format!("longer than {MAX_FILTER_LEN} bytes; no repository name is"),
            ));
        }
        let (sort, order) = (listing.sort, listing.order);
        let filter = &filter;
        let page = self
            .pullable_page(
                caller,
                listing.last,
                listing.n,
                |r: &RepoSummary| &r.name,
                |r| RepoCursor::after(sort, r).to_string(),
                |page| async move {
                    let query = RepoQuery {
                        filter: filter.clone(),
                        sort,
                        order,
                        after: page
                            .last
                            .as_deref()
                            .map(|l| RepoCursor::parse(sort, l))
                            .transpose()?,
                        limit: page.limit,
                    };
                    self.meta.repository_summaries(&query).await
                },
            )
            .await?;
        Ok(RepoPage {
            repositories: page.items,
            next: page.next,
        })
    }

    /// One manifest by tag or digest, with its config, layers, the
    /// platforms of an index and its referrers (needs pull on the
    /// repository).
    pub async fn manifest_detail(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestDetail> {
        self.authorize(caller, Action::Pull, Some(repo)).await?;
        let Some(record) = self.meta.get_manifest(repo, reference).await? else {
            return Err(self.manifest_missing(repo, reference).await?);
        };
        let manifest = Manifest::parse(Some(&record.media_type), &record.raw)?;
        let config_content = match &manifest.config {
            Some(c) => self.config_content(repo, c).await?,
            None => None,
        };
        let referrers = self
            .meta
            .referrers(repo, &record.digest)
            .await?
            .into_iter()
            .map(super::pull::referrer_descriptor)
            .collect();
        Ok(ManifestDetail {
            repository: repo.clone(),
            size: record.raw.len() as u64,
            raw: String::from_utf8_lossy(&record.raw).into_owned(),
            digest: record.digest,
            media_type: record.media_type,
            created: record.created,
            artifact_type: manifest.artifact_type,
            subject: record.subject,
            annotations: manifest.annotations,
            config: manifest.config,
            config_content,
            layers: manifest.layers,
            manifests: manifest.manifests,
            referrers,
        })
    }

    /// The config blob as text, if it is small JSON linked to `repo`.
    async fn config_content(&self, repo: &RepoName, config: &Descriptor) -> Result<Option<String>> {
        let json = config.media_type.as_str().ends_with("json");
        if !json || config.size > MAX_CONFIG_SHOWN {
            return Ok(None);
        }
        let Some(info) = self.meta.blob_in_repository(repo, &config.digest).await? else {
            return Ok(None);
        };
        if info.size > MAX_CONFIG_SHOWN {
            return Ok(None);
        }
        let mut body = self.blobs.read(&config.digest, None).await?.stream;
        let mut bytes = Vec::with_capacity(info.size as usize);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StorageError::io("reading a config blob", e))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_CONFIG_SHOWN {
                return Ok(None);
            }
        }
        Ok(String::from_utf8(bytes).ok())
    }

    /// Totals, the newest pushes and GC's state (needs
    /// `registry:catalog`; the GC state only for admins).
    pub async fn dashboard(&self, caller: &Caller) -> Result<Dashboard> {
        self.authorize(caller, Action::Catalog, None).await?;
        let all = Page {
            last: None,
            limit: usize::MAX,
        };
        let repositories = self
            .meta
            .list_repositories(&all)
            .await?
            .iter()
            .filter(|r| self.may_pull(caller, r))
            .count() as u64;
        let stored_bytes = self.meta.stored_bytes().await?;
        let recent_pushes = self.recent_pushes(caller).await?;
        let gc = if caller.principal.is_admin() {
            Some(self.gc_state().await?)
        } else {
            None
        };
        Ok(Dashboard {
            repositories,
            stored_bytes,
            recent_pushes,
            gc,
        })
    }

    async fn recent_pushes(&self, caller: &Caller) -> Result<Vec<Push>> {
        let mut pushes = Vec::new();
        let mut query = AuditQuery {
            event_type: Some(EventType::ManifestPushed),
            limit: 100,
            ..AuditQuery::default()
        };
        while pushes.len() < Dashboard::RECENT_PUSHES && query.offset < Dashboard::PUSHES_SCANNED {
            let events = self.meta.query_audit(&query).await?;
            let done = events.len() < query.limit;
            query.offset += events.len();
            pushes.extend(
                events
                    .into_iter()
                    .filter_map(|e| {
                        let e = e.event;
                        Some(Push {
                            tags: e
                                .details
                                .get("tag")
                                .map(|t| t.split(',').map(str::to_string).collect())
                                .unwrap_or_default(),
                            time: e.time,
                            repository: e.repository?,
                            digest: e.digest?,
                            actor: e.actor_id,
                        })
                    })
                    .filter(|p| self.may_pull(caller, &p.repository)),
            );
            if done {
                break;
            }
        }
        pushes.truncate(Dashboard::RECENT_PUSHES);
        Ok(pushes)
    }
}
