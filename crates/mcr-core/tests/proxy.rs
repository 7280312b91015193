//! The pull-through cache's engine logic on the fakes: what is answered
//! locally, what goes upstream (counted on `FakeUpstream`'s request log),
//! what is stored. The HTTP client adapter is tested against a real
//! registry in `scripts/proxy-e2e.sh`.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::TryStreamExt;
use mcr_core::audit::EventType;
use mcr_core::digest::Digest;
use mcr_core::names::{Reference, Tag};
use mcr_core::ports::prelude::*;
use mcr_core::ports::BlobInfo;
use mcr_core::proxy::ProxyConfig;
use mcr_core::registry::{Registry, RegistryConfig};
use mcr_core::testing::{admin, user, FakeUpstream, TestRegistry};
use mcr_core::time::Clock;
use mcr_core::Error;
use support::*;

const TTL: Duration = Duration::from_secs(300);
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

struct Mirror {
    t: TestRegistry,
    up: Arc<FakeUpstream>,
}

fn mirror(offline: bool) -> Mirror {
    mirror_with(RegistryConfig::default(), offline, None)
}

fn mirror_with(config: RegistryConfig, offline: bool, max_size: Option<u64>) -> Mirror {
    let up = Arc::new(FakeUpstream::new("https://upstream.example"));
    let t = TestRegistry::with_proxies(
        config,
        vec![ProxyConfig {
            prefix: repo("hub"),
            upstream: up.clone(),
            tag_ttl: TTL,
            offline,
            docker_hub: true,
            max_size,
        }],
    );
    Mirror { t, up }
}

fn tag(s: &str) -> Tag {
    Tag::new(s).unwrap()
}

fn info(data: &[u8]) -> BlobInfo {
    BlobInfo {
        digest: Digest::sha256_of(data),
        size: data.len() as u64,
    }
}

/// An image upstream at `name:tag` with a config and one layer of `layer`;
/// returns the manifest's digest.
fn upstream_image(up: &FakeUpstream, name: &str, t: &str, layer: &[u8]) -> Digest {
    let config = format!("{{\"layer\":{}}}", layer.len());
    up.put_blob(config.as_bytes());
    up.put_blob(layer);
    let raw = image_manifest(&info(config.as_bytes()), &[&info(layer)], "");
    up.put_manifest(&repo(name), Some(&tag(t)), MANIFEST, raw.as_bytes())
}

async fn pull(r: &Registry, name: &str, reference: &str) -> Result<Digest, Error> {
    r.get_manifest(&user(), &repo(name), &Reference::parse(reference).unwrap())
        .await
        .map(|m| m.digest)
}

async fn read_blob(r: &Registry, name: &str, digest: &Digest) -> Result<Vec<u8>, Error> {
    let body = r.get_blob(&user(), &repo(name), digest, None).await?;
    let chunks: Vec<Bytes> = body
        .stream
        .try_collect()
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    Ok(chunks.concat())
}

#[test]
fn a_tag_is_fetched_once_trusted_for_its_ttl_then_revalidated_by_one_head() {
    let Mirror { t, up } = mirror(true);
    let digest = upstream_image(&up, "library/alpine", "3", b"alpine layer");
    run(async {
        let r = &t.registry;
        assert_eq!(pull(r, "hub/alpine", "3").await.unwrap(), digest);
        assert_eq!(up.requests(), ["GET manifest library/alpine:3"]);

        up.clear_requests();
        t.clock.advance(TTL - Duration::from_secs(1));
        assert_eq!(pull(r, "hub/alpine", "3").await.unwrap(), digest);
        assert!(
            up.requests().is_empty(),
            "within tag_ttl: {:?}",
            up.requests()
        );

        t.clock.advance(Duration::from_secs(1));
        assert_eq!(pull(r, "hub/alpine", "3").await.unwrap(), digest);
        assert_eq!(up.requests(), ["HEAD manifest library/alpine:3"]);

        // The tag moves upstream: after the ttl the new digest is served.
        up.clear_requests();
        let moved = upstream_image(&up, "library/alpine", "3", b"alpine layer, rebuilt");
        assert_eq!(
            pull(r, "hub/alpine", "3").await.unwrap(),
            digest,
            "still fresh"
        );
        t.clock.advance(TTL);
        assert_eq!(pull(r, "hub/alpine", "3").await.unwrap(), moved);
        assert_eq!(
            up.requests(),
            [
                "HEAD manifest library/alpine:3",
                "GET manifest library/alpine:3"
            ]
        );

        // By digest: cached forever, even long after.
        up.clear_requests();
        t.clock.advance(TTL * 100);
        let by_digest = format!("{digest}");
        assert_eq!(pull(r, "hub/alpine", &by_digest).await.unwrap(), digest);
        assert!(up.requests().is_empty(), "{:?}", up.requests());

        let fetched = t
            .meta
            .audit_log()
            .into_iter()
            .filter(|e| e.event.event_type == EventType::ProxyFetched)
            .count();
        assert_eq!(fetched, 2, "each fetch is audited");
        let status = r.proxies(&admin()).await.unwrap();
        assert_eq!((status[0].hits, status[0].misses), (4, 2));
        assert_eq!(status[0].repositories, 1);
        assert!(status[0].cache_size > 0, "{status:?}");
        assert!(
            r.proxies(&user()).await.is_err(),
            "the listing is for admins"
        );
    });
}

#[test]
fn blobs_stream_into_the_store_and_are_served_locally_after() {
    let Mirror { t, up } = mirror(true);
    let layer: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    upstream_image(&up, "library/alpine", "3", &layer);
    let digest = Digest::sha256_of(&layer);
    run(async {
        let r = &t.registry;
        let head = r
            .stat_blob(&user(), &repo("hub/alpine"), &digest)
            .await
            .unwrap();
        assert_eq!(head.size, layer.len() as u64);
        assert_eq!(read_blob(r, "hub/alpine", &digest).await.unwrap(), layer);
        assert!(t.blobs.stat(&digest).await.unwrap().is_some(), "stored");
        up.clear_requests();
        assert_eq!(read_blob(r, "hub/alpine", &digest).await.unwrap(), layer);
        assert!(up.requests().is_empty(), "{:?}", up.requests());
        let ranged = r
            .get_blob(
                &user(),
                &repo("hub/alpine"),
                &digest,
                Some(mcr_core::ports::ByteRange {
                    start: 10,
                    end: Some(19),
                }),
            )
            .await
            .unwrap();
        assert_eq!(ranged.len, 10);
    });
}

/// A layer the store holds through another repository is linked after
/// one `HEAD`, not fetched again (review of issue 13, D2: every image
/// sharing a base layer downloaded it once per repository); one the
/// upstream does not answer for is not linked.
#[test]
fn a_blob_stored_through_another_repository_is_linked_not_fetched() {
    let Mirror { t, up } = mirror(true);
    let layer: Vec<u8> = (0..30_000u32).map(|i| (i % 241) as u8).collect();
    let digest = up.put_blob(&layer);
    run(async {
        let r = &t.registry;
        assert_eq!(read_blob(r, "hub/library/a", &digest).await.unwrap(), layer);
        up.clear_requests();
        assert_eq!(read_blob(r, "hub/library/b", &digest).await.unwrap(), layer);
        assert_eq!(up.requests(), [format!("HEAD blob {digest}")]);
        let linked = t
            .meta
            .audit_log()
            .into_iter()
            .filter(|e| e.event.event_type == EventType::ProxyFetched)
            .filter_map(|e| e.event.details.get("linked_from").cloned())
            .collect::<Vec<_>>();
        assert_eq!(linked, ["hub/library/a"]);
        up.clear_requests();
        assert_eq!(read_blob(r, "hub/library/b", &digest).await.unwrap(), layer);
        assert!(up.requests().is_empty(), "{:?}", up.requests());

        // Pushed beside the mirror but gone upstream: not linked.
        let other = push_blob(r, &user(), &repo("mine/app"), b"only here").await;
        up.clear_requests();
        let e = read_blob(r, "hub/library/c", &other.digest)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::BlobUnknown(_)), "{e:?}");
        assert_eq!(
            up.requests(),
            [
                format!("HEAD blob {}", other.digest),
                format!("GET blob {}", other.digest)
            ]
        );
    });
}

#[test]
fn concurrent_pulls_of_one_missing_blob_fetch_it_once() {
    let Mirror { t, up } = mirror(true);
    let layer: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let digest = up.put_blob(&layer);
    run(async {
        let r = &t.registry;
        let pulls = (0..10).map(|_| read_blob(r, "hub/library/busybox", &digest));
        for got in join_all(pulls).await {
            assert_eq!(got.unwrap(), layer);
        }
        let gets = up
            .requests()
            .into_iter()
            .filter(|q| q.starts_with("GET blob"))
            .count();
        assert_eq!(gets, 1, "{:?}", up.requests());
    });
}

#[test]
fn a_corrupt_blob_fails_the_pull_and_leaves_nothing() {
    let Mirror { t, up } = mirror(true);
    let layer = vec![7u8; 10_000];
    let digest = up.put_blob(&layer);
    up.corrupt_blobs(true);
    run(async {
        let r = &t.registry;
        let e = read_blob(r, "hub/x/y", &digest)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("upstream.example"), "{e}");
        let body = r
            .get_blob(&user(), &repo("hub/x/y"), &digest, None)
            .await
            .unwrap();
        let received: Vec<Result<Bytes, _>> = futures_util::StreamExt::collect(body.stream).await;
        let ok: usize = received.iter().flatten().map(Bytes::len).sum();
        assert!(ok < layer.len(), "the client never gets the whole bad blob");
        assert!(
            received.last().unwrap().is_err(),
            "the stream ends in an error"
        );
        assert!(
            t.blobs.stat(&digest).await.unwrap().is_none(),
            "nothing stored"
        );
        assert!(t
            .meta
            .blob_in_repository(&repo("hub/x/y"), &digest)
            .await
            .unwrap()
            .is_none());
        let sessions: Vec<_> = t
            .meta
            .uploads_idle_since(t.clock.now().saturating_add(Duration::from_secs(1)))
            .try_collect()
            .await
            .unwrap();
        assert!(
            sessions.is_empty(),
            "the fill's session is gone: {sessions:?}"
        );

        up.corrupt_blobs(false);
        up.clear_requests();
        assert_eq!(read_blob(r, "hub/x/y", &digest).await.unwrap(), layer);
        assert_eq!(up.requests(), [format!("GET blob {digest}")]);
    });
}

#[test]
fn when_the_upstream_is_down_cached_images_still_pull() {
    let Mirror { t, up } = mirror(true);
    let layer = b"cached layer".to_vec();
    let digest = upstream_image(&up, "library/alpine", "3", &layer);
    upstream_image(&up, "library/debian", "12", b"never pulled");
    run(async {
        let r = &t.registry;
        pull(r, "hub/alpine", "3").await.unwrap();
        read_blob(r, "hub/alpine", &Digest::sha256_of(&layer))
            .await
            .unwrap();
        up.set_down(true);
        t.clock.advance(TTL * 2);
        assert_eq!(pull(r, "hub/alpine", "3").await.unwrap(), digest);
        assert_eq!(
            read_blob(r, "hub/alpine", &Digest::sha256_of(&layer))
                .await
                .unwrap(),
            layer
        );
        let e = pull(r, "hub/debian", "12").await.unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        assert!(e.to_string().contains("https://upstream.example"), "{e}");
    });

    let Mirror { t, up } = mirror(false);
    upstream_image(&up, "library/alpine", "3", b"layer");
    run(async {
        let r = &t.registry;
        pull(r, "hub/alpine", "3").await.unwrap();
        up.set_down(true);
        t.clock.advance(TTL);
        let e = pull(r, "hub/alpine", "3").await.unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "offline = false: {e:?}");
    });
}

/// Review r13, D2: a tag served offline is not revalidated on every pull
/// (a black-holed upstream would cost a timeout each time): it is trusted
/// for `OFFLINE_RETRY` (or its `tag_ttl`, if shorter), then asked again.
#[test]
fn a_tag_served_offline_is_asked_again_only_after_the_offline_retry_period() {
    let Mirror { t, up } = mirror(true);
    let digest = upstream_image(&up, "library/alpine", "3", b"layer");
    let retry = mcr_core::proxy::OFFLINE_RETRY;
    assert!(retry < TTL);
    run(async {
        let r = &t.registry;
        pull(r, "hub/alpine", "3").await.unwrap();
        up.set_down(true);
        t.clock.advance(TTL);
        up.clear_requests();
        assert_eq!(pull(r, "hub/alpine", "3").await.unwrap(), digest);
        assert_eq!(up.requests(), ["HEAD manifest library/alpine:3"]);
        t.clock.advance(retry - Duration::from_secs(1));
        assert_eq!(pull(r, "hub/alpine", "3").await.unwrap(), digest);
        assert_eq!(up.requests().len(), 1, "{:?}", up.requests());
        t.clock.advance(Duration::from_secs(1));
        up.set_down(false);
        assert_eq!(pull(r, "hub/alpine", "3").await.unwrap(), digest);
        assert_eq!(up.requests().len(), 2, "{:?}", up.requests());
        // Confirmed again: trusted for the whole tag_ttl.
        t.clock.advance(TTL - Duration::from_secs(1));
        assert_eq!(pull(r, "hub/alpine", "3").await.unwrap(), digest);
        assert_eq!(up.requests().len(), 2, "{:?}", up.requests());
    });
}

#[test]
fn an_index_caches_only_the_children_pulled() {
    let Mirror { t, up } = mirror(true);
    let name = repo("library/multi");
    let amd = image_manifest(&info(b"{}"), &[&info(b"amd64")], "");
    let arm = image_manifest(&info(b"{}"), &[&info(b"arm64")], "");
    let amd = up.put_manifest(&name, None, MANIFEST, amd.as_bytes());
    let arm_digest = up.put_manifest(&name, None, MANIFEST, arm.as_bytes());
    let index = index_manifest(&[(&amd, 10), (&arm_digest, 10)]);
    up.put_manifest(&name, Some(&tag("latest")), INDEX, index.as_bytes());
    run(async {
        let r = &t.registry;
        pull(r, "hub/multi", "latest").await.unwrap();
        pull(r, "hub/multi", &amd.to_string()).await.unwrap();
        assert_eq!(
            up.requests(),
            [
                "GET manifest library/multi:latest".to_string(),
                format!("GET manifest library/multi:{amd}"),
            ]
        );
    });
}

#[test]
fn a_mirror_is_read_only_and_a_tag_gone_upstream_is_gone() {
    let Mirror { t, up } = mirror(true);
    upstream_image(&up, "library/alpine", "3", b"layer");
    run(async {
        let r = &t.registry;
        for name in ["hub/alpine", "hub"] {
            let e = r.start_upload(&admin(), &repo(name)).await.unwrap_err();
            assert!(matches!(e, Error::ReadOnlyMirror { .. }), "{e:?}");
            assert!(
                e.to_string()
                    .contains("read-only mirror of https://upstream.example"),
                "{e}"
            );
        }
        pull(r, "hub/alpine", "3").await.unwrap();
        let e = r
            .delete_manifest(&admin(), &repo("hub/alpine"), &reference("3"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::ReadOnlyMirror { .. }), "{e:?}");
        // Beside the mirror, pushes work.
        push_image(r, &user(), &repo("hubble/app"), "v1", "a").await;

        // An admin deletes the repository: in a mirror that is dropping
        // its cache (the same operation as `proxy drop`, which lets a fill
        // in progress finish); the next pull fetches.
        r.delete_repository(&admin(), &repo("hub/alpine"))
            .await
            .unwrap();
        let events: Vec<EventType> = t
            .meta
            .audit_log()
            .iter()
            .map(|e| e.event.event_type)
            .collect();
        assert!(events.contains(&EventType::ProxyCacheDropped), "{events:?}");
        assert!(!events.contains(&EventType::RepoDeleted), "{events:?}");
        up.clear_requests();
        pull(r, "hub/alpine", "3").await.unwrap();
        assert_eq!(up.requests(), ["GET manifest library/alpine:3"]);

        up.remove_tag(&repo("library/alpine"), &tag("3"));
        t.clock.advance(TTL);
        let e = pull(r, "hub/alpine", "3").await.unwrap_err();
        assert!(matches!(e, Error::ManifestUnknown(_)), "{e:?}");
    });
}

/// A prefix laid over repositories holding pushed images is refused at
/// start, naming them (review of issue 13, D1: the mirror deleted a pushed
/// tag the upstream lacked and evicted pushed images); mirrored content
/// and repositories beside the prefix are not in the way.
#[test]
fn a_prefix_over_pushed_images_is_refused_at_start() {
    let before = TestRegistry::new();
    let Mirror { t, up } = mirror(true);
    upstream_image(&up, "library/alpine", "3", b"layer");
    run(async {
        let r = &before.registry;
        push_image(r, &user(), &repo("hub/mine"), "v1", "a").await;
        push_image(r, &user(), &repo("hub"), "v1", "b").await;
        push_image(r, &user(), &repo("hubble/app"), "v1", "c").await;
        let config = |up: Arc<FakeUpstream>| ProxyConfig {
            prefix: repo("hub"),
            upstream: up,
            tag_ttl: TTL,
            offline: true,
            docker_hub: true,
            max_size: None,
        };
        let over = Registry::new(
            before.meta.clone(),
            before.blobs.clone(),
            before.identity.clone(),
            before.policy.clone(),
        )
        .with_proxies(vec![config(up.clone())])
        .unwrap();
        let e = over.check_proxy_prefixes().await.unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
        let message = e.to_string();
        assert!(
            message.contains("prefix hub holds pushed images or blobs (hub, hub/mine)"),
            "{message}"
        );
        assert!(message.contains("prefix of its own"), "{message}");
        assert!(!message.contains("hubble"), "{message}");

        // A running mirror's own cache is no pushed content.
        pull(&t.registry, "hub/alpine", "3").await.unwrap();
        t.registry.check_proxy_prefixes().await.unwrap();
    });
}

/// A prefix over repositories holding only pushed blobs (an upload or a
/// mount, no manifest yet) is refused too (review of issue 13, D3: the
/// mirror would take them over as its cache); blobs the mirror linked
/// itself, fetched or linked from another repository, are not in the way.
#[test]
fn a_prefix_over_pushed_blobs_alone_is_refused_at_start() {
    let before = TestRegistry::new();
    let Mirror { t, up } = mirror(true);
    let layer: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let digest = up.put_blob(&layer);
    run(async {
        let r = &before.registry;
        let blob = push_blob(r, &user(), &repo("mine/app"), b"pushed layer").await;
        push_blob(r, &user(), &repo("hub/uploaded"), b"another layer").await;
        r.mount_blob(
            &user(),
            &repo("hub/mounted"),
            &blob.digest,
            Some(&repo("mine/app")),
        )
        .await
        .unwrap();
        let over = Registry::new(
            before.meta.clone(),
            before.blobs.clone(),
            before.identity.clone(),
            before.policy.clone(),
        )
        .with_proxies(vec![ProxyConfig {
            prefix: repo("hub"),
            upstream: up.clone(),
            tag_ttl: TTL,
            offline: true,
            docker_hub: true,
            max_size: None,
        }])
        .unwrap();
        let e = over.check_proxy_prefixes().await.unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
        let message = e.to_string();
        assert!(message.contains("hub/mounted, hub/uploaded"), "{message}");
        assert!(!message.contains("mine/app"), "{message}");

        // Blobs a running mirror fetched, or linked from another of its
        // repositories, are its cache.
        let r = &t.registry;
        read_blob(r, "hub/library/a", &digest).await.unwrap();
        read_blob(r, "hub/library/b", &digest).await.unwrap();
        t.registry.check_proxy_prefixes().await.unwrap();
    });
}

/// Pulls `name:tag` whole (the manifest, then its config and layer).
async fn pull_image(r: &Registry, name: &str, t: &str, layer: &[u8]) {
    pull(r, name, t).await.unwrap();
    let config = format!("{{\"layer\":{}}}", layer.len());
    for blob in [config.as_bytes(), layer] {
        read_blob(r, name, &Digest::sha256_of(blob)).await.unwrap();
    }
}

async fn stored(t: &TestRegistry, layer: &[u8]) -> bool {
    t.blobs
        .stat(&Digest::sha256_of(layer))
        .await
        .unwrap()
        .is_some()
}

fn dropped_events(t: &TestRegistry) -> Vec<(String, String)> {
    t.meta
        .audit_log()
        .into_iter()
        .filter(|e| e.event.event_type == EventType::ProxyCacheDropped)
        .map(|e| {
            let repo = e
                .event
                .repository
                .map(|r| r.to_string())
                .unwrap_or_default();
            (repo, e.event.details["reason"].clone())
        })
        .collect()
}

fn no_grace() -> RegistryConfig {
    RegistryConfig {
        gc_grace_period: Duration::ZERO,
        ..RegistryConfig::default()
    }
}

#[test]
fn an_admin_drops_one_repositorys_cache_and_gc_frees_it() {
    let Mirror { t, up } = mirror_with(no_grace(), true, None);
    upstream_image(&up, "library/alpine", "3", b"alpine layer");
    upstream_image(&up, "library/debian", "12", b"debian layer");
    run(async {
        let r = &t.registry;
        pull_image(r, "hub/alpine", "3", b"alpine layer").await;
        pull_image(r, "hub/debian", "12", b"debian layer").await;

        for (name, says) in [
            ("app", "mirrored repository app not found"),
            ("hub", "mirrored repository hub not found"),
            (
                "hub/never/pulled",
                "cached repository hub/never/pulled not found",
            ),
        ] {
            let e = r.drop_proxy_cache(&admin(), &repo(name)).await.unwrap_err();
            assert!(matches!(e, Error::NotFound { .. }), "{name}: {e:?}");
            assert_eq!(e.to_string(), says);
        }
        let e = r
            .drop_proxy_cache(&user(), &repo("hub/alpine"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Denied { .. }), "admins only: {e:?}");

        r.drop_proxy_cache(&admin(), &repo("hub/alpine"))
            .await
            .unwrap();
        assert_eq!(dropped_events(&t), [("hub/alpine".into(), "admin".into())]);
        let status = r.proxies(&admin()).await.unwrap();
        assert_eq!(status[0].repositories, 1, "{status:?}");
        let e = r
            .drop_proxy_cache(&admin(), &repo("hub/alpine"))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "cached repository hub/alpine not found");

        t.clock.advance(Duration::from_secs(1));
        let report = r.collect_garbage(&admin()).await.unwrap();
        // Its config is the same bytes as debian's, which keeps it.
        assert_eq!(report.blobs_removed, 1, "alpine's layer");
        assert!(!stored(&t, b"alpine layer").await);
        assert!(stored(&t, b"debian layer").await, "another repository's");

        // The next pull fetches again, the tag too (its confirmation went
        // with the cache).
        up.clear_requests();
        pull_image(r, "hub/alpine", "3", b"alpine layer").await;
        assert_eq!(up.requests().len(), 3, "{:?}", up.requests());
        assert!(stored(&t, b"alpine layer").await);
    });
}

#[test]
fn gc_evicts_the_least_recently_pulled_repositories_past_max_size() {
    let layer = |c: u8| vec![c; 10_000];
    // Each repository holds a layer, a config and a manifest: a little
    // over 10,000 bytes, so two fit in 25,000 and three do not.
    let Mirror { t, up } = mirror_with(no_grace(), true, Some(25_000));
    for (name, c) in [("a", b'a'), ("b", b'b'), ("c", b'c')] {
        upstream_image(&up, &format!("library/{name}"), "1", &layer(c));
    }
    run(async {
        let r = &t.registry;
        for (name, c) in [("hub/a", b'a'), ("hub/b", b'b'), ("hub/c", b'c')] {
            pull_image(r, name, "1", &layer(c)).await;
            t.clock.advance(Duration::from_secs(60));
        }
        // a was cached first but is pulled again: b is now the least
        // recently pulled.
        pull(r, "hub/a", "1").await.unwrap();
        t.clock
            .advance(mcr_core::proxy::EVICTION_PULL_GUARD + Duration::from_secs(1));

        let report = r.collect_garbage(&admin()).await.unwrap();
        assert_eq!(dropped_events(&t), [("hub/b".into(), "max_size".into())]);
        // Its config is the same bytes as a's and c's, which keep it.
        assert_eq!(report.blobs_removed, 1, "b's layer");
        assert!(!stored(&t, &layer(b'b')).await);
        assert!(stored(&t, &layer(b'a')).await && stored(&t, &layer(b'c')).await);
        let status = r.proxies(&admin()).await.unwrap();
        assert!(status[0].cache_size <= 25_000, "{status:?}");
        assert_eq!(status[0].repositories, 2);

        // Under max_size now: the next run evicts nothing.
        r.collect_garbage(&admin()).await.unwrap();
        assert_eq!(dropped_events(&t).len(), 1);

        // b pulled again comes from the upstream.
        up.clear_requests();
        pull_image(r, "hub/b", "1", &layer(b'b')).await;
        assert_eq!(up.requests().len(), 3, "{:?}", up.requests());
    });
}

#[test]
fn eviction_spares_a_repository_pulled_within_the_guard() {
    let layer = |c: u8| vec![c; 10_000];
    let Mirror { t, up } = mirror_with(no_grace(), true, Some(1));
    for (name, c) in [("a", b'a'), ("b", b'b')] {
        upstream_image(&up, &format!("library/{name}"), "1", &layer(c));
    }
    run(async {
        let r = &t.registry;
        pull_image(r, "hub/a", "1", &layer(b'a')).await;
        pull_image(r, "hub/b", "1", &layer(b'b')).await;
        t.clock.advance(mcr_core::proxy::EVICTION_PULL_GUARD);
        // A pull of b's layer starts just before GC: b stays, however far
        // over max_size the mirror is.
        let reading = r
            .get_blob(
                &user(),
                &repo("hub/b"),
                &Digest::sha256_of(&layer(b'b')),
                None,
            )
            .await
            .unwrap();
        r.collect_garbage(&admin()).await.unwrap();
        assert_eq!(dropped_events(&t), [("hub/a".into(), "max_size".into())]);
        assert!(!stored(&t, &layer(b'a')).await);
        assert!(stored(&t, &layer(b'b')).await, "b was being pulled");
        let got: Vec<Bytes> = reading.stream.try_collect().await.unwrap();
        assert_eq!(got.concat(), layer(b'b'));
    });
}

/// A `MakeWriter` appending what is logged to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// When eviction cannot bring a mirror under `max_size`, its warning
/// names each repository kept with its size and why (a pull started
/// within the guard), and what the operator can do (review of issue 13,
/// D4: it said only that "the rest" was pulled too recently).
#[test]
fn the_warning_of_a_cache_kept_over_max_size_names_what_was_kept_and_why() {
    let layer = |c: u8| vec![c; 10_000];
    let Mirror { t, up } = mirror_with(no_grace(), true, Some(1));
    for (name, c) in [("a", b'a'), ("b", b'b')] {
        upstream_image(&up, &format!("library/{name}"), "1", &layer(c));
    }
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    // `run` polls on this thread, where everything logs.
    let _logging = tracing::subscriber::set_default(subscriber);
    run(async {
        let r = &t.registry;
        pull_image(r, "hub/a", "1", &layer(b'a')).await;
        pull_image(r, "hub/b", "1", &layer(b'b')).await;
        t.clock.advance(mcr_core::proxy::EVICTION_PULL_GUARD);
        pull(r, "hub/b", "1").await.unwrap();
        r.collect_garbage(&admin()).await.unwrap();
        assert_eq!(dropped_events(&t), [("hub/a".into(), "max_size".into())]);
        // What is left is b's: its size, as the warning gives it.
        let kept = r.proxies(&admin()).await.unwrap()[0].cache_size.to_string();

        let logs = captured.text();
        let warning = logs
            .lines()
            .find(|l| l.contains("WARN") && l.contains("max_size"))
            .unwrap_or_else(|| panic!("no warning in {logs}"));
        for expected in [
            "proxy=hub",
            "upstream=https://upstream.example",
            "hub/b",
            &kept,
            "started within the last 15 minutes",
            "raise max_size",
        ] {
            assert!(warning.contains(expected), "{expected:?} in {warning}");
        }
        assert!(!warning.contains("hub/a"), "{warning}");
    });
}

/// A repository passed over within the guard that holds blobs alone is
/// not "kept": the same GC run's sweep frees its blobs, and the log says
/// so instead of a warning (review of issue 13, D4).
#[test]
fn a_repository_holding_blobs_alone_is_not_called_kept() {
    let layer = |c: u8| vec![c; 10_000];
    let Mirror { t, up } = mirror_with(no_grace(), true, Some(1));
    upstream_image(&up, "library/a", "1", &layer(b'a'));
    let loose = up.put_blob(&layer(b'z'));
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    run(async {
        let r = &t.registry;
        pull_image(r, "hub/a", "1", &layer(b'a')).await;
        read_blob(r, "hub/loose", &loose).await.unwrap();
        t.clock.advance(mcr_core::proxy::EVICTION_PULL_GUARD);
        // A pull of the loose blob starts just before GC: its repository
        // is passed over, but holds no manifest.
        read_blob(r, "hub/loose", &loose).await.unwrap();
        r.collect_garbage(&admin()).await.unwrap();
        assert_eq!(dropped_events(&t), [("hub/a".into(), "max_size".into())]);
        assert!(!stored(&t, &layer(b'z')).await, "the sweep freed it");

        let logs = captured.text();
        assert!(
            !logs
                .lines()
                .any(|l| l.contains("WARN") && l.contains("max_size")),
            "{logs}"
        );
        let note = logs
            .lines()
            .find(|l| l.contains("over max_size only by blobs"))
            .unwrap_or_else(|| panic!("no note in {logs}"));
        assert!(note.contains("hub/loose (10000 bytes"), "{note}");
        assert!(note.contains("they are not kept"), "{note}");
    });
}
