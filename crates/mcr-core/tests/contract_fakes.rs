//! The port contract suites run against the in-memory fakes, plus the
//! behaviour of the fakes that no port contract covers (the identity fake,
//! the manual clock, and `TestRegistry`'s wiring).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_executor::block_on;
use futures_util::StreamExt;

use mcr_core::digest::Digest;
use mcr_core::names::RepoName;
use mcr_core::ports::{BlobStore, ByteStream, MetaStore, Secret, TokenValidator};
use mcr_core::principal::{AccountType, Principal, Role};
use mcr_core::testing::{
    admin, contract, guest, system, user, FakeBlobStore, FakeIdentity, FakeMetaStore, ManualClock,
    TestRegistry, TEST_PASSWORD,
};
use mcr_core::time::Clock;
use mcr_core::Error;

#[test]
fn fake_blob_store_meets_the_blob_store_contract() {
    block_on(contract::run_blob_store_contract(|| async {
        Arc::new(FakeBlobStore::new()) as Arc<dyn BlobStore>
    }));
}

#[test]
fn fake_meta_store_meets_the_meta_store_contract() {
    block_on(contract::run_meta_store_contract(|| async {
        Arc::new(FakeMetaStore::new()) as Arc<dyn MetaStore>
    }));
}

#[test]
fn fake_meta_store_meets_the_snapshot_store_contract() {
    block_on(contract::run_snapshot_store_contract(|| async {
        Arc::new(FakeMetaStore::new())
    }));
}

#[test]
fn local_coordination_meets_the_coordination_contract() {
    block_on(contract::run_coordination_contract(|| async {
        let local = mcr_core::coordination::LocalCoordination::new();
        contract::Replicas {
            a: Arc::new(local.clone()),
            b: Arc::new(local),
        }
    }));
}

#[test]
fn a_failing_check_is_named() {
    // A store that forgets every blob fails the suite, and the panic names
    // the check.
    struct Amnesiac(FakeBlobStore);
    #[async_trait::async_trait]
    impl BlobStore for Amnesiac {
        async fn begin_upload(&self, id: &mcr_core::ids::UploadId) -> mcr_core::Result<()> {
            self.0.begin_upload(id).await
        }
        async fn resume_upload(
            &self,
            id: &mcr_core::ids::UploadId,
            state: &mcr_core::ports::UploadState,
        ) -> mcr_core::Result<Box<dyn mcr_core::ports::UploadWriter>> {
            self.0.resume_upload(id, state).await
        }
        async fn cancel_upload(&self, id: &mcr_core::ids::UploadId) -> mcr_core::Result<()> {
            self.0.cancel_upload(id).await
        }
        fn list_uploads(&self) -> mcr_core::ports::ListStream<mcr_core::ids::UploadId> {
            self.0.list_uploads()
        }
        async fn read(
            &self,
            digest: &Digest,
            range: Option<mcr_core::ports::ByteRange>,
        ) -> mcr_core::Result<mcr_core::ports::BlobBody> {
            self.0.read(digest, range).await
        }
        async fn stat(&self, _digest: &Digest) -> mcr_core::Result<Option<u64>> {
            Ok(None)
        }
        async fn delete(&self, digest: &Digest) -> mcr_core::Result<bool> {
            self.0.delete(digest).await
        }
        fn list(&self) -> mcr_core::ports::ListStream<Digest> {
            self.0.list()
        }
        async fn probe(&self) -> mcr_core::Result<()> {
            self.0.probe().await
        }
    }
    let outcome = std::panic::catch_unwind(|| {
        block_on(contract::run_blob_store_contract(|| async {
            Arc::new(Amnesiac(FakeBlobStore::new())) as Arc<dyn BlobStore>
        }))
    });
    let panic = outcome.expect_err("a store whose stat forgets blobs must fail the suite");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains(
            "BlobStore contract check `chunked_upload_reads_back_whole_and_by_ranges` failed"
        ),
        "{message}"
    );
}

#[test]
fn every_check_has_a_unique_name() {
    let mut names: Vec<&str> = contract::BLOB_STORE_CHECKS
        .iter()
        .map(|c| c.name)
        .chain(contract::META_STORE_CHECKS.iter().map(|c| c.name))
        .collect();
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total);
}

#[test]
fn manual_clock_moves_only_when_told() {
    let clock = ManualClock::default();
    let start = clock.now();
    assert_eq!(clock.now(), start);
    let later = clock.advance(Duration::from_secs(5));
    assert_eq!(later.as_millis() - start.as_millis(), 5000);
    assert_eq!(clock.now(), later);
}

fn alice() -> Principal {
    Principal::new("alice-id", AccountType::Human, vec![Role::User])
}

#[test]
fn fake_identity_logs_in_validates_and_expires() {
    block_on(async {
        let clock = Arc::new(ManualClock::default());
        let id = FakeIdentity::new(clock.clone()).with_ttl(Duration::from_secs(60));
        id.add_user("alice", "s3cret", alice());

        let bad = id.login("alice", &Secret::new("wrong")).await;
        assert!(matches!(bad, Err(Error::Unauthenticated(_))), "{bad:?}");
        let nobody = id.login("bob", &Secret::new("s3cret")).await;
        assert!(
            matches!(nobody, Err(Error::Unauthenticated(_))),
            "{nobody:?}"
        );

        let issued = id
            .login("alice", &Secret::new("s3cret"))
            .await
            .expect("login");
        assert_eq!(
            issued.expires_at,
            clock.now().saturating_add(Duration::from_secs(60))
        );
        assert_eq!(id.validate(&issued.token).await.expect("validate"), alice());
        let other = id
            .login("alice", &Secret::new("s3cret"))
            .await
            .expect("login");
        assert_ne!(other.token, issued.token, "tokens are random");

        clock.advance(Duration::from_secs(60));
        let expired = id.validate(&issued.token).await;
        assert!(
            matches!(expired, Err(Error::Unauthenticated(_))),
            "{expired:?}"
        );
        let forged = id.validate(&Secret::new("forged")).await;
        assert!(
            matches!(forged, Err(Error::Unauthenticated(_))),
            "{forged:?}"
        );
    });
}

#[test]
fn fake_identity_revokes_and_goes_unavailable() {
    block_on(async {
        let id = FakeIdentity::new(Arc::new(ManualClock::default()));
        id.add_user("alice", "s3cret", alice());
        let a = id
            .login("alice", &Secret::new("s3cret"))
            .await
            .expect("login");
        let b = id.issue(alice()).expect("issue");
        assert!(id.revoke(&a.token));
        assert!(!id.revoke(&a.token));
        assert!(matches!(
            id.validate(&a.token).await,
            Err(Error::Unauthenticated(_))
        ));
        id.logout(&b.token).await.expect("logout");
        assert!(matches!(
            id.validate(&b.token).await,
            Err(Error::Unauthenticated(_))
        ));

        let c = id.issue(alice()).expect("issue");
        id.set_unavailable(true);
        assert!(matches!(
            id.validate(&c.token).await,
            Err(Error::Unavailable(_))
        ));
        let login = id.login("alice", &Secret::new("s3cret")).await;
        assert!(matches!(login, Err(Error::Unavailable(_))), "{login:?}");
        assert!(matches!(
            id.logout(&c.token).await,
            Err(Error::Unavailable(_))
        ));
        id.set_unavailable(false);
        assert_eq!(id.validate(&c.token).await.expect("validate"), alice());
    });
}

fn body(data: &'static [u8]) -> ByteStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(data))]))
}

#[test]
fn test_registry_wires_the_fakes() {
    block_on(async {
        let t = TestRegistry::new();
        let repo = RepoName::new("team/app").expect("valid name");
        let digest = Digest::sha256_of(b"layer");

        let blob = t
            .registry
            .upload_blob(&user(), &repo, &digest, body(b"layer"))
            .await
            .expect("a user may push");
        assert_eq!(blob.size, 5);
        assert_eq!(
            t.blobs.contents(&digest),
            Some(Bytes::from_static(b"layer"))
        );
        assert!(t.meta.link_time(&repo, &digest) == Some(t.clock.now()));

        let mut got = t
            .registry
            .get_blob(&admin(), &repo, &digest, None)
            .await
            .expect("an admin may pull");
        let mut bytes = Vec::new();
        while let Some(chunk) = got.stream.next().await {
            bytes.extend_from_slice(&chunk.expect("chunk"));
        }
        assert_eq!(bytes, b"layer");

        for caller in [guest(), system()] {
            let denied = t.registry.stat_blob(&caller, &repo, &digest).await;
            assert!(matches!(denied, Err(Error::Denied { .. })), "{denied:?}");
            t.registry
                .version_check(&caller)
                .await
                .expect("everyone may check the version");
        }
        let denials = t
            .meta
            .audit_log()
            .into_iter()
            .filter(|e| e.event.event_type == mcr_core::audit::EventType::PolicyDeny)
            .count();
        assert_eq!(denials, 2, "denials are audited");

        let (issued, principal) = t
            .registry
            .login("admin", &Secret::new(TEST_PASSWORD), None)
            .await
            .expect("the admin user logs in");
        assert_eq!(principal, admin().principal);
        assert_eq!(
            t.registry.authenticate(&issued.token).await.expect("valid"),
            admin().principal
        );
    });
}
