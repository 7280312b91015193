//! Quotas in the use cases. The properties: whatever sequence of pushes
//! (uploads and manifests), mounts and deletes runs, every quota's use
//! equals a recomputation from scratch; and a push that would pass a
//! quota is refused (`QuotaExceeded`, audited) leaving no link and no
//! manifest, so no scope ever goes past a limit set before the pushes.

mod support;

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::TryStreamExt;
use mcr_core::audit::{AuditQuery, EventType};
use mcr_core::digest::Digest;
use mcr_core::names::{Reference, RepoName};
use mcr_core::ports::{BlobStore, MetaStore, Page};
use mcr_core::quota::{QuotaDraft, QuotaScope};
use mcr_core::registry::{MountOutcome, Registry};
use mcr_core::testing::{admin, user, TestRegistry};
use mcr_core::Error;
use proptest::prelude::*;
use support::*;

const REPOS: [&str; 4] = ["team/a", "team/b", "team/x/c", "solo"];
const SCOPES: [&str; 4] = ["team/", "team/x/", "team/a", "solo"];

#[derive(Debug, Clone)]
enum Op {
    /// Uploads blob `blob` (of `BLOB_SIZES`) into a repository.
    Upload {
        repo: usize,
        blob: usize,
    },
    /// Mounts `blob` from one repository into another, if the first holds it.
    Mount {
        from: usize,
        to: usize,
        blob: usize,
    },
    /// Pushes manifest `n` (an empty index, its bytes set by `n`).
    Manifest {
        repo: usize,
        n: usize,
    },
    DeleteManifest {
        repo: usize,
        n: usize,
    },
    DeleteRepository {
        repo: usize,
    },
}

const BLOB_SIZES: [usize; 5] = [1, 10, 100, 1000, 5000];

fn blob(i: usize) -> Vec<u8> {
    vec![b'a' + i as u8; BLOB_SIZES[i]]
}

fn manifest(n: usize) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{{"n":"{}"}}}}"#,
        "x".repeat(n * 40)
    )
}

fn op() -> impl Strategy<Value = Op> {
    let r = 0..REPOS.len();
    prop_oneof![
        3 => (r.clone(), 0..BLOB_SIZES.len()).prop_map(|(repo, blob)| Op::Upload { repo, blob }),
        2 => (r.clone(), r.clone(), 0..BLOB_SIZES.len())
            .prop_map(|(from, to, blob)| Op::Mount { from, to, blob }),
        2 => (r.clone(), 0..4usize).prop_map(|(repo, n)| Op::Manifest { repo, n }),
        1 => (r.clone(), 0..4usize).prop_map(|(repo, n)| Op::DeleteManifest { repo, n }),
        1 => r.prop_map(|repo| Op::DeleteRepository { repo }),
    ]
}

/// What a scope uses, from scratch: the distinct layers and manifests of
/// every repository it covers.
async fn recomputed(meta: &dyn MetaStore, scope: &QuotaScope) -> u64 {
    let all = Page {
        last: None,
        limit: 100,
    };
    let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut manifests: BTreeMap<Digest, u64> = BTreeMap::new();
    for name in meta.list_repositories(&all).await.unwrap() {
        if !scope.covers(&name) {
            continue;
        }
        let detail = meta.repository_detail(&name).await.unwrap().unwrap();
        blobs.extend(detail.layers.into_iter().map(|b| (b.digest, b.size)));
        manifests.extend(detail.manifests.into_iter().map(|m| (m.digest, m.size)));
    }
    blobs.values().sum::<u64>() + manifests.values().sum::<u64>()
}

/// What an operation did, for the refusal property.
enum Outcome {
    Done,
    /// Refused for a quota; the content it would have added.
    Refused(RepoName, Content),
    /// Nothing to do (a mount whose source lacks the blob).
    Skipped,
}

enum Content {
    Blob(Digest),
    Manifest(Digest),
}

fn quota_refused<T>(result: Result<T, Error>, what: &Op) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(Error::QuotaExceeded(_)) => None,
        Err(e) => panic!("{what:?} failed otherwise: {e}"),
    }
}

async fn apply(r: &Registry, meta: &dyn MetaStore, op: &Op) -> Outcome {
    let name = |i: usize| repo(REPOS[i]);
    match *op {
        Op::Upload { repo: i, blob: b } => {
            let data = blob(b);
            let d = Digest::sha256_of(&data);
            let done = r.upload_blob(&user(), &name(i), &d, body(data)).await;
            match quota_refused(done, op) {
                Some(_) => Outcome::Done,
                None => Outcome::Refused(name(i), Content::Blob(d)),
            }
        }
        Op::Mount { from, to, blob: b } => {
            let d = Digest::sha256_of(&blob(b));
            if from == to
                || meta
                    .blob_in_repository(&name(from), &d)
                    .await
                    .unwrap()
                    .is_none()
            {
                return Outcome::Skipped;
            }
            match quota_refused(
                r.mount_blob(&user(), &name(to), &d, Some(&name(from)))
                    .await,
                op,
            ) {
                Some(MountOutcome::Mounted(_)) => Outcome::Done,
                Some(MountOutcome::Started(s)) => panic!("{op:?} started an upload: {s:?}"),
                None => Outcome::Refused(name(to), Content::Blob(d)),
            }
        }
        Op::Manifest { repo: i, n } => {
            let raw = manifest(n);
            let d = Digest::sha256_of(raw.as_bytes());
            let done = r
                .put_manifest(
                    &user(),
                    &name(i),
                    &reference("latest"),
                    None,
                    Bytes::from(raw),
                )
                .await;
            match quota_refused(done, op) {
                Some(_) => Outcome::Done,
                None => Outcome::Refused(name(i), Content::Manifest(d)),
            }
        }
        Op::DeleteManifest { repo: i, n } => {
            let d = Digest::sha256_of(manifest(n).as_bytes());
            let _ = r
                .delete_manifest(&admin(), &name(i), &Reference::Digest(d))
                .await;
            Outcome::Done
        }
        Op::DeleteRepository { repo: i } => {
            let _ = r.delete_repository(&admin(), &name(i)).await;
            Outcome::Done
        }
    }
}

async fn set_quotas(r: &Registry, limits: &[u64]) {
    for (scope, &limit_bytes) in SCOPES.iter().zip(limits) {
        r.set_quota(
            &admin(),
            &QuotaDraft {
                scope: scope.to_string(),
                limit_bytes,
            },
        )
        .await
        .expect("an admin sets a quota");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Each quota's use equals a recomputation from scratch after every
    /// step, whether the step went through or was refused.
    #[test]
    fn quota_use_equals_a_recomputation(
        limits in prop::collection::vec(1u64..20_000, SCOPES.len()),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let t = TestRegistry::new();
        let (r, meta) = (&t.registry, t.meta.as_ref() as &dyn MetaStore);
        run(async {
            set_quotas(r, &limits).await;
            for op in &ops {
                apply(r, meta, op).await;
                for q in r.quotas(&admin()).await.unwrap() {
                    let want = recomputed(meta, &q.quota.scope).await;
                    prop_assert_eq!(q.used_bytes, want, "{} after {:?}", q.quota.scope, op);
                }
            }
            Ok(())
        })?;
    }

    /// A push over a quota is refused leaving no link or manifest, is
    /// audited, and no scope ever passes its limit.
    #[test]
    fn a_push_over_a_quota_is_refused_and_leaves_nothing(
        limits in prop::collection::vec(1u64..8_000, SCOPES.len()),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let t = TestRegistry::new();
        let (r, meta) = (&t.registry, t.meta.as_ref() as &dyn MetaStore);
        run(async {
            set_quotas(r, &limits).await;
            let mut refusals = 0;
            for op in &ops {
                if let Outcome::Refused(repo, content) = apply(r, meta, op).await {
                    refusals += 1;
                    match content {
                        Content::Blob(d) => prop_assert!(
                            meta.blob_in_repository(&repo, &d).await.unwrap().is_none(),
                            "{:?} left a link", op
                        ),
                        Content::Manifest(d) => prop_assert!(
                            meta.get_manifest(&repo, &Reference::Digest(d)).await.unwrap().is_none(),
                            "{:?} left a manifest", op
                        ),
                    }
                }
                for q in r.quotas(&admin()).await.unwrap() {
                    prop_assert!(
                        q.used_bytes <= q.quota.limit_bytes.bytes(),
                        "{} uses {} of {} after {:?}", q.quota.scope, q.used_bytes,
                        q.quota.limit_bytes.bytes(), op
                    );
                }
            }
            let audited = r
                .audit_events(&admin(), AuditQuery {
                    event_type: Some(EventType::QuotaExceeded),
                    limit: 1000,
                    ..AuditQuery::default()
                })
                .await
                .unwrap();
            prop_assert_eq!(audited.len(), refusals);
            // A refused upload leaves no blob file behind unless the
            // content is stored for another repository.
            let files: Vec<Digest> = t.blobs.list().try_collect().await.unwrap();
            for d in files {
                prop_assert!(meta.blob_exists(&d).await.unwrap(), "file {} without a row", d);
            }
            Ok(())
        })?;
    }
}
