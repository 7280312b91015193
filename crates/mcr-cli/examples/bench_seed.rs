//! Seeds a metadata database for `bench/web.sh`: REPOS repositories with
//! TAGS tags in all, each tag on its own manifest with its own config
//! blob and two layers shared within the repository, each push with its
//! audit event, written through the
//! `MetaStore` port as pushes would write them (blob files are not
//! needed by the pages measured).
//!
//! `bench_seed DB REPOS TAGS`

use std::collections::BTreeMap;

use bytes::Bytes;
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::audit::{EventType, NewAuditEvent};
use mcr_core::digest::Digest;
use mcr_core::ids::UploadId;
use mcr_core::media::MediaType;
use mcr_core::names::{RepoName, Tag};
use mcr_core::policy::TagGuard;
use mcr_core::ports::prelude::*;
use mcr_core::ports::{BlobInfo, NewManifest, Provenance, UploadCaps, UploadSession, UploadState};
use mcr_core::time::Timestamp;

fn usage() -> ! {
    eprintln!("usage: bench_seed DB REPOS TAGS");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, repos, tags] = args.as_slice() else {
        usage()
    };
    let repos: usize = repos.parse().unwrap_or_else(|_| usage());
    let tags: usize = tags.parse().unwrap_or_else(|_| usage());
    let store = SqliteMetaStore::open(std::path::Path::new(db))?;
    let per_repo = tags.div_ceil(repos.max(1));
    let start = Timestamp::from_millis(1_735_689_600_000);
    let mut n = 0usize;
    let link = |store: &SqliteMetaStore, repo: &RepoName, data: Vec<u8>, at: Timestamp| {
        let blob = BlobInfo {
            digest: Digest::sha256_of(&data),
            size: data.len() as u64 * 1000,
        };
        let session = UploadSession {
            id: UploadId::generate().expect("randomness"),
            repository: repo.clone(),
            state: UploadState::default(),
            active: at,
        };
        let (store, repo) = (store.clone(), repo.clone());
        async move {
            store
                .create_upload(&session, "admin", &UploadCaps::NONE)
                .await?;
            let event = NewAuditEvent {
                time: at,
                event_type: EventType::BlobUploaded,
                actor_id: Some("admin".into()),
                repository: Some(repo.clone()),
                digest: Some(blob.digest.clone()),
                ip: Some("127.0.0.1".into()),
                details: BTreeMap::new(),
            };
            store
                .complete_upload(&session.id, &blob, at, Provenance::Pushed, &event)
                .await?;
            anyhow::Ok(blob)
        }
    };
    for r in 0..repos {
        let repo = RepoName::new(&format!("team-{:02}/repo-{r:04}", r % 50))?;
        let base = start.saturating_add(std::time::Duration::from_secs(r as u64));
        let layers = [
            link(&store, &repo, format!("{repo} layer a").into_bytes(), base).await?,
            link(&store, &repo, format!("{repo} layer b").into_bytes(), base).await?,
        ];
        for t in 0..per_repo.min(tags - n) {
            let at = base.saturating_add(std::time::Duration::from_millis(t as u64));
            let config = link(&store, &repo, format!("{repo} config {t}").into_bytes(), at).await?;
            let raw = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config.digest.to_string(), "size": config.size},
                "layers": layers.iter().map(|l| serde_json::json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": l.digest.to_string(), "size": l.size})).collect::<Vec<_>>(),
            })
            .to_string();
            let digest = Digest::sha256_of(raw.as_bytes());
            let tag = Tag::new(&format!("v{t}"))?;
            let event = NewAuditEvent {
                time: at,
                event_type: EventType::ManifestPushed,
                actor_id: Some("admin".into()),
                repository: Some(repo.clone()),
                digest: Some(digest.clone()),
                ip: Some("127.0.0.1".into()),
                details: BTreeMap::from([("tag".to_string(), tag.to_string())]),
            };
            store
                .put_manifest(
                    NewManifest {
                        repository: repo.clone(),
                        digest: digest.clone(),
                        media_type: MediaType::new("application/vnd.oci.image.manifest.v1+json")?,
                        raw: Bytes::from(raw),
                        subject: None,
                        artifact_type: None,
                        blobs: std::iter::once(&config)
                            .chain(&layers)
                            .map(|b| b.digest.clone())
                            .collect(),
                        children: Vec::new(),
                        tags: vec![tag.clone()],
                        tag_guard: TagGuard::open(),
                        created: at,
                        provenance: Provenance::Pushed,
                    },
                    &event,
                )
                .await?;
            n += 1;
        }
        if r % 200 == 199 {
            eprintln!("seeded {} repositories, {n} tags", r + 1);
        }
    }
    println!("seeded {repos} repositories and {n} tags into {db}");
    Ok(())
}
