//! Quotas over gRPC: `SetQuota`, `ListQuotas` (each with its use) and
//! `DeleteQuota` for admins, `PERMISSION_DENIED` for others and for a push
//! past a quota, `INVALID_ARGUMENT` naming the field of a bad quota.

mod support;

use mcr_grpc::pb;
use support::Server;
use tonic::Code;

#[tokio::test]
async fn quotas_are_managed_by_admins_and_refuse_pushes_past_them() {
    let s = Server::start().await;
    let mut c = s.as_admin().await;
    let set = c
        .registry
        .set_quota(pb::SetQuotaRequest {
            scope: "team-a/".into(),
            limit_bytes: 1 << 20,
        })
        .await
        .expect("an admin sets a quota")
        .into_inner();
    assert_eq!((set.scope.as_str(), set.limit_bytes), ("team-a/", 1 << 20));

    s.push_image("team-a/app", "v1", "one").await;
    let listed = c
        .registry
        .list_quotas(pb::ListQuotasRequest {})
        .await
        .unwrap()
        .into_inner()
        .quotas;
    assert_eq!(listed.len(), 1);
    let size = c
        .registry
        .list_repositories(pb::ListRepositoriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .repositories[0]
        .total_size;
    assert!(size > 0);
    assert_eq!(
        listed[0].used_bytes, size,
        "the namespace's use is its one repository's size"
    );

    // Lowered under what is used: the next push that adds bytes is refused.
    c.registry
        .set_quota(pb::SetQuotaRequest {
            scope: "team-a/".into(),
            limit_bytes: size,
        })
        .await
        .unwrap();
    let refused = s
        .t
        .registry
        .put_manifest(
            &mcr_core::testing::admin(),
            &mcr_core::names::RepoName::new("team-a/app").unwrap(),
            &mcr_core::names::Reference::parse("v2").unwrap(),
            None,
            bytes::Bytes::from_static(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#),
        )
        .await
        .unwrap_err();
    let status = mcr_grpc::error::status(refused);
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .message()
            .starts_with("quota exceeded for \"team-a/\": "),
        "{}",
        status.message()
    );

    for (scope, limit_bytes, field) in [("Team/", 1, "scope"), ("a/", 0, "limit_bytes")] {
        let e = c
            .registry
            .set_quota(pb::SetQuotaRequest {
                scope: scope.into(),
                limit_bytes,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().contains(&format!("invalid {field}")),
            "{}",
            e.message()
        );
    }

    let mut user = s.as_user().await;
    let e = user
        .registry
        .list_quotas(pb::ListQuotasRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = user
        .registry
        .delete_quota(pb::DeleteQuotaRequest { id: set.id })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    c.registry
        .delete_quota(pb::DeleteQuotaRequest { id: set.id })
        .await
        .expect("an admin deletes it");
    let e = c
        .registry
        .delete_quota(pb::DeleteQuotaRequest { id: set.id })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}
