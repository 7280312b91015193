//! GC property: whatever the interleaving of uploads, manifest pushes, tag
//! moves, deletes, clock advances and GC runs, every blob a surviving
//! manifest references stays readable with the right digest, no blob row
//! lacks its file, and a final GC past the grace period leaves no
//! unreferenced blob.

mod support;

use futures_util::TryStreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;
use mcr_core::digest::Digest;
use mcr_core::names::Reference;
use mcr_core::ports::prelude::*;
use mcr_core::registry::RegistryConfig;
use mcr_core::testing::{admin, user, TestRegistry};
use proptest::prelude::*;
use support::*;

const REPOS: [&str; 3] = ["a", "b/c", "d"];
const TAGS: [&str; 3] = ["v1", "v2", "latest"];
const GRACE: Duration = Duration::from_secs(100);
/// Blob rows per sweep step: a handful of blobs already takes several.
const SWEEP_WINDOW: NonZeroUsize = match NonZeroUsize::new(2) {
    Some(n) => n,
    None => unreachable!(),
};

#[derive(Debug, Clone)]
enum Op {
    Upload {
        repo: usize,
        content: u8,
    },
    PushImage {
        repo: usize,
        tag: usize,
        layers: Vec<u8>,
    },
    DeleteManifest {
        repo: usize,
        tag: usize,
    },
    DeleteTag {
        repo: usize,
        tag: usize,
    },
    DeleteBlob {
        repo: usize,
        content: u8,
    },
    Advance {
        secs: u64,
    },
    Gc,
}

fn op() -> impl Strategy<Value = Op> {
    let repo = 0..REPOS.len();
    let tag = 0..TAGS.len();
    prop_oneof![
        (repo.clone(), 0u8..12).prop_map(|(repo, content)| Op::Upload { repo, content }),
        (
            repo.clone(),
            tag.clone(),
            prop::collection::vec(0u8..12, 0..4)
        )
            .prop_map(|(repo, tag, layers)| Op::PushImage { repo, tag, layers }),
        (repo.clone(), tag.clone()).prop_map(|(repo, tag)| Op::DeleteManifest { repo, tag }),
        (repo.clone(), tag).prop_map(|(repo, tag)| Op::DeleteTag { repo, tag }),
        (repo, 0u8..12).prop_map(|(repo, content)| Op::DeleteBlob { repo, content }),
        (1u64..150).prop_map(|secs| Op::Advance { secs }),
        Just(Op::Gc),
    ]
}

fn content(c: u8) -> Vec<u8> {
    format!("blob content number {c}").into_bytes()
}

/// The registry's manifests, as a client would know them: (repo, digest)
/// → the blobs the manifest references.
type Model = BTreeMap<(usize, Digest), Vec<Digest>>;

async fn apply(t: &TestRegistry, model: &mut Model, op: &Op) {
    let r = &t.registry;
    match op {
        Op::Upload {
            repo: i,
            content: c,
        } => {
            push_blob(r, &user(), &repo(REPOS[*i]), &content(*c)).await;
        }
        Op::PushImage {
            repo: i,
            tag,
            layers,
        } => {
            let name = repo(REPOS[*i]);
            let config =
                push_blob(r, &user(), &name, format!("config {layers:?}").as_bytes()).await;
            let mut infos = Vec::new();
            for c in layers {
                infos.push(push_blob(r, &user(), &name, &content(*c)).await);
            }
            let raw = image_manifest(&config, &infos.iter().collect::<Vec<_>>(), "");
            let pushed = r
                .put_manifest(
                    &user(),
                    &name,
                    &reference(TAGS[*tag]),
                    None,
                    Bytes::from(raw),
                )
                .await
                .expect("a push right after its uploads succeeds");
            let mut refs: Vec<Digest> = infos.into_iter().map(|b| b.digest).collect();
            refs.push(config.digest);
            model.insert((*i, pushed.digest), refs);
        }
        Op::DeleteManifest { repo: i, tag } => {
            let name = repo(REPOS[*i]);
            if let Ok(m) = r.get_manifest(&user(), &name, &reference(TAGS[*tag])).await {
                r.delete_manifest(&user(), &name, &Reference::Digest(m.digest.clone()))
                    .await
                    .expect("delete an existing manifest");
                model.remove(&(*i, m.digest));
            }
        }
        Op::DeleteTag { repo: i, tag } => {
            let _ = r
                .delete_manifest(&user(), &repo(REPOS[*i]), &reference(TAGS[*tag]))
                .await;
        }
        Op::DeleteBlob {
            repo: i,
            content: c,
        } => {
            let _ = r
                .delete_blob(&user(), &repo(REPOS[*i]), &Digest::sha256_of(&content(*c)))
                .await;
        }
        Op::Advance { secs } => {
            t.clock.advance(Duration::from_secs(*secs));
        }
        Op::Gc => {
            r.collect_garbage(&admin()).await.expect("gc runs");
        }
    }
}

async fn check_invariants(t: &TestRegistry, model: &Model) -> Result<(), TestCaseError> {
    for ((i, manifest), blobs) in model {
        let m = t
            .registry
            .get_manifest(
                &user(),
                &repo(REPOS[*i]),
                &Reference::Digest(manifest.clone()),
            )
            .await;
        prop_assert!(m.is_ok(), "manifest {manifest} of {} vanished", REPOS[*i]);
        for d in blobs {
            let data = t.blobs.contents(d);
            prop_assert!(
                data.is_some(),
                "blob {d} of live manifest {manifest} is gone"
            );
            prop_assert_eq!(&Digest::sha256_of(&data.unwrap_or_default()), d);
        }
    }
    for row in t
        .meta
        .list_blobs()
        .try_collect::<Vec<_>>()
        .await
        .expect("list rows")
    {
        prop_assert!(
            t.blobs.contents(&row.digest).is_some(),
            "row {} has no file",
            row.digest
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn gc_never_loses_a_referenced_blob(ops in prop::collection::vec(op(), 1..40)) {
        let t = TestRegistry::with_config(RegistryConfig { gc_grace_period: GRACE, gc_sweep_window: SWEEP_WINDOW, ..RegistryConfig::default() });
        run(async {
            let mut model = Model::new();
            for op in &ops {
                apply(&t, &mut model, op).await;
                check_invariants(&t, &model).await?;
            }
            t.clock.advance(GRACE * 2);
            t.registry.collect_garbage(&admin()).await.expect("final gc");
            check_invariants(&t, &model).await?;
            let referenced: BTreeSet<Digest> = model.values().flatten().cloned().collect();
            let stored: BTreeSet<Digest> = t.blobs.list().try_collect::<Vec<_>>().await.expect("list files").into_iter().collect();
            prop_assert_eq!(stored, referenced, "after the final GC only referenced blobs remain");
            Ok(())
        })?;
    }
}
