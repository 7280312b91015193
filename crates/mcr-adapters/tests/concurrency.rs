//! Contention through the engine on the real adapters: identical uploads
//! racing, and manifest pushes racing for one tag.

use futures_util::TryStreamExt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use mcr_adapters::fs::FsBlobStore;
use mcr_adapters::sqlite::SqliteMetaStore;
use mcr_core::digest::Digest;
use mcr_core::names::{Reference, RepoName};
use mcr_core::policy::Engine;
use mcr_core::registry::Registry;
use mcr_core::testing::{admin, FakeIdentity, ManualClock};

fn registry(dir: &std::path::Path) -> Arc<Registry> {
    let clock = Arc::new(ManualClock::default());
    Arc::new(Registry::new(
        Arc::new(SqliteMetaStore::open(&dir.join("mcr.db")).unwrap()),
        Arc::new(FsBlobStore::open(dir.join("layers"), dir.join("uploads")).unwrap()),
        Arc::new(FakeIdentity::new(clock)),
        Arc::new(Engine::new()),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_identical_uploads_leave_one_file_and_one_row() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path());
    let data = Bytes::from(vec![42u8; 300_000]);
    let digest = Digest::sha256_of(&data);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (r, data, digest) = (Arc::clone(&r), data.clone(), digest.clone());
            tokio::spawn(async move {
                let repo = RepoName::new(&format!("r{}", i % 4)).unwrap();
                let chunks: Vec<_> = data
                    .chunks(64 * 1024)
                    .map(|c| Ok(Bytes::copy_from_slice(c)))
                    .collect();
                r.upload_blob(&admin(), &repo, &digest, Box::pin(stream::iter(chunks)))
                    .await
            })
        })
        .collect();
    for t in tasks {
        let info = t.await.unwrap().expect("every upload succeeds");
        assert_eq!(info.digest, digest);
    }
    assert_eq!(
        r.blobs().list().try_collect::<Vec<_>>().await.unwrap(),
        vec![digest.clone()]
    );
    assert_eq!(
        r.meta()
            .list_blobs()
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        r.blobs()
            .list_uploads()
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .is_empty(),
        "no upload left behind"
    );
    for i in 0..4 {
        let repo = RepoName::new(&format!("r{i}")).unwrap();
        assert!(r.stat_blob(&admin(), &repo, &digest).await.is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_manifest_pushes_leave_the_tag_on_one_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path());
    let repo = RepoName::new("app").unwrap();
    let config = r
        .upload_blob(
            &admin(),
            &repo,
            &Digest::sha256_of(b"{}"),
            Box::pin(stream::iter([Ok(Bytes::from_static(b"{}"))])),
        )
        .await
        .unwrap();
    let raws: Vec<String> = (0..16)
        .map(|i| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[],"annotations":{{"n":"{i}"}}}}"#,
                config.digest
            )
        })
        .collect();
    let tasks: Vec<_> = raws
        .iter()
        .map(|raw| {
            let (r, repo, raw) = (Arc::clone(&r), repo.clone(), raw.clone());
            tokio::spawn(async move {
                r.put_manifest(
                    &admin(),
                    &repo,
                    &Reference::parse("latest").unwrap(),
                    None,
                    Bytes::from(raw),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("every push succeeds");
    }
    let tagged = r
        .get_manifest(&admin(), &repo, &Reference::parse("latest").unwrap())
        .await
        .unwrap();
    assert!(raws
        .iter()
        .any(|raw| Digest::sha256_of(raw.as_bytes()) == tagged.digest));
    for raw in &raws {
        let m = r
            .get_manifest(
                &admin(),
                &repo,
                &Reference::Digest(Digest::sha256_of(raw.as_bytes())),
            )
            .await
            .unwrap();
        assert_eq!(m.raw, Bytes::from(raw.clone()), "each manifest whole");
    }
}
