//! The use cases on the in-memory fakes: push, pull, delete, mount,
//! referrers, GC and policy, with their side effects and audit events.

mod support;

use futures_util::TryStreamExt;
use std::time::Duration;

use bytes::Bytes;
use mcr_core::audit::{AuditQuery, EventType};
use mcr_core::digest::{Algorithm, Digest};
use mcr_core::manifest::MAX_MANIFEST_SIZE;
use mcr_core::media::MediaType;
use mcr_core::names::Reference;
use mcr_core::policy::{Effect, RepoPattern, RuleDraft};
use mcr_core::ports::{RepoSort, SortOrder};
use mcr_core::principal::{AccountType, Action};
use mcr_core::registry::{
    MountOutcome, Registry, RegistryConfig, RepoListing, MAX_QUEUED_AUDIT_EVENTS,
    POLICY_MAX_STALENESS, SCHEDULE_SUBJECT,
};
use mcr_core::testing::{admin, guest, system, user, TestRegistry};
use mcr_core::time::Clock;
use mcr_core::Error;
use support::*;

#[test]
fn push_by_tag_and_pull_by_tag_and_digest() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("team/app");
        let (pushed, raw, layer) = push_image(r, &user(), &app, "v1", "a").await;
        assert_eq!(pushed.digest, Digest::sha256_of(raw.as_bytes()));
        for reference in [reference("v1"), Reference::Digest(pushed.digest.clone())] {
            let m = r.get_manifest(&user(), &app, &reference).await.unwrap();
            assert_eq!(m.raw, Bytes::from(raw.clone()));
            assert_eq!(
                m.media_type.as_str(),
                "application/vnd.oci.image.manifest.v1+json"
            );
            assert_eq!(m.digest, pushed.digest);
        }
        let blob = r
            .get_blob(&user(), &app, &layer.digest, None)
            .await
            .unwrap();
        assert_eq!(blob.len, layer.size);
        let events = t.meta.audit_log();
        assert!(events
            .iter()
            .any(|e| e.event.event_type == EventType::ManifestPushed
                && e.event.digest.as_ref() == Some(&pushed.digest)
                && e.event.actor_id.as_deref() == Some("user")));
        assert!(events
            .iter()
            .any(|e| e.event.event_type == EventType::ManifestPulled));
    });
}

#[test]
fn push_by_digest_checks_the_digest() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let config = push_blob(r, &user(), &app, b"{}").await;
        let raw = image_manifest(&config, &[], "");
        let digest = Digest::sha256_of(raw.as_bytes());
        let pushed = r
            .put_manifest(
                &user(),
                &app,
                &Reference::Digest(digest.clone()),
                None,
                Bytes::from(raw.clone()),
            )
            .await
            .unwrap();
        assert_eq!(pushed.digest, digest);
        let sha512 = Digest::of(Algorithm::Sha512, raw.as_bytes());
        let pushed = r
            .put_manifest(
                &user(),
                &app,
                &Reference::Digest(sha512.clone()),
                None,
                Bytes::from(raw.clone()),
            )
            .await
            .unwrap();
        assert_eq!(pushed.digest, sha512);
        let wrong = Digest::sha256_of(b"something else");
        let err = r
            .put_manifest(
                &user(),
                &app,
                &Reference::Digest(wrong),
                None,
                Bytes::from(raw),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(r
            .list_tags(&user(), &app, None, None)
            .await
            .unwrap()
            .items
            .is_empty());
    });
}

#[test]
fn chunked_upload_in_several_chunks_and_resumed() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let session = r.start_upload(&user(), &app).await.unwrap();
        let mut offset = 0u64;
        for part in data[..2000].chunks(700) {
            offset = r
                .upload_chunk(
                    &user(),
                    &app,
                    &session.id,
                    Some(offset),
                    body(part.to_vec()),
                )
                .await
                .unwrap();
        }
        assert_eq!(offset, 2000);
        // A client that lost track asks where the upload stands, and resumes.
        let at = r.upload_status(&user(), &app, &session.id).await.unwrap();
        assert_eq!(at, 2000);
        let err = r
            .upload_chunk(&user(), &app, &session.id, Some(1000), body(vec![1]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::RangeInvalid {
                    expected: 2000,
                    got: 1000
                }
            ),
            "{err}"
        );
        assert_eq!(
            r.upload_status(&user(), &app, &session.id).await.unwrap(),
            2000
        );
        let rest = chunks(data[2000..].chunks(300).map(<[u8]>::to_vec).collect());
        let digest = Digest::sha256_of(&data);
        let info = r
            .finish_upload(&user(), &app, &session.id, &digest, Some((Some(at), rest)))
            .await
            .unwrap();
        assert_eq!(info.size, 3000);
        assert_eq!(t.blobs.contents(&digest).unwrap(), Bytes::from(data));
        let err = r
            .upload_status(&user(), &app, &session.id)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UploadUnknown(_)), "{err}");
    });
}

#[test]
fn digest_mismatch_keeps_nothing_and_the_session_stays() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let session = r.start_upload(&user(), &app).await.unwrap();
        r.upload_chunk(&user(), &app, &session.id, None, body(&b"hello"[..]))
            .await
            .unwrap();
        let wrong = Digest::sha256_of(b"bye");
        let err = r
            .finish_upload(&user(), &app, &session.id, &wrong, None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(r.stat_blob(&user(), &app, &wrong).await.is_err());
        let right = Digest::sha256_of(b"hello");
        r.finish_upload(&user(), &app, &session.id, &right, None)
            .await
            .unwrap();
        assert_eq!(r.stat_blob(&user(), &app, &right).await.unwrap().size, 5);
        let err = r
            .upload_blob(&user(), &app, &wrong, body(&b"not bye"[..]))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    });
}

#[test]
fn manifests_naming_missing_content_are_refused() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let config = push_blob(r, &user(), &app, b"{}").await;
        let ghost = mcr_core::ports::BlobInfo {
            digest: Digest::sha256_of(b"never pushed"),
            size: 12,
        };
        let raw = image_manifest(&config, &[&ghost], "");
        let err = r
            .put_manifest(&user(), &app, &reference("v1"), None, Bytes::from(raw))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::ManifestBlobUnknown(d) if *d == ghost.digest),
            "{err}"
        );
        let index = index_manifest(&[(&Digest::sha256_of(b"no such manifest"), 10)]);
        let err = r
            .put_manifest(&user(), &app, &reference("v1"), None, Bytes::from(index))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ManifestChildUnknown(_)), "{err}");
        assert!(r
            .list_tags(&user(), &app, None, None)
            .await
            .unwrap()
            .items
            .is_empty());
    });
}

#[test]
fn an_index_over_present_children_is_stored() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let (a, raw_a, _) = push_image(r, &user(), &app, "amd64", "a").await;
        let (b, raw_b, _) = push_image(r, &user(), &app, "arm64", "b").await;
        let index = index_manifest(&[(&a.digest, raw_a.len()), (&b.digest, raw_b.len())]);
        let pushed = r
            .put_manifest(&user(), &app, &reference("multi"), None, Bytes::from(index))
            .await
            .unwrap();
        let m = r
            .get_manifest(&user(), &app, &reference("multi"))
            .await
            .unwrap();
        assert_eq!(m.digest, pushed.digest);
        assert_eq!(
            m.media_type.as_str(),
            "application/vnd.oci.image.index.v1+json"
        );
    });
}

#[test]
fn manifest_over_the_size_cap_is_refused() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let config = push_blob(r, &user(), &app, b"{}").await;
        let pad = "x".repeat(MAX_MANIFEST_SIZE as usize);
        let raw = image_manifest(
            &config,
            &[],
            &format!(r#","annotations":{{"pad":"{pad}"}}"#),
        );
        let err = r
            .put_manifest(&user(), &app, &reference("big"), None, Bytes::from(raw))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::ManifestTooLarge {
                    limit: MAX_MANIFEST_SIZE,
                    ..
                }
            ),
            "{err}"
        );
    });
}

#[test]
fn tags_move_and_deletes_do_what_they_say() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let (one, _, _) = push_image(r, &user(), &app, "latest", "1").await;
        let (two, _, _) = push_image(r, &user(), &app, "latest", "2").await;
        assert_eq!(
            r.get_manifest(&user(), &app, &reference("latest"))
                .await
                .unwrap()
                .digest,
            two.digest
        );
        // The first manifest is still there by digest after the tag moved.
        r.get_manifest(&user(), &app, &Reference::Digest(one.digest.clone()))
            .await
            .unwrap();

        r.put_manifest(
            &user(),
            &app,
            &reference("stable"),
            None,
            r.get_manifest(&user(), &app, &reference("latest"))
                .await
                .unwrap()
                .raw,
        )
        .await
        .unwrap();
        // Delete by tag keeps the manifest and its other tags.
        r.delete_manifest(&user(), &app, &reference("latest"))
            .await
            .unwrap();
        let err = r
            .get_manifest(&user(), &app, &reference("latest"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ManifestUnknown(_)), "{err}");
        r.get_manifest(&user(), &app, &Reference::Digest(two.digest.clone()))
            .await
            .unwrap();
        r.get_manifest(&user(), &app, &reference("stable"))
            .await
            .unwrap();
        // Delete by digest removes the manifest and every tag on it.
        r.delete_manifest(&user(), &app, &Reference::Digest(two.digest.clone()))
            .await
            .unwrap();
        let err = r
            .get_manifest(&user(), &app, &reference("stable"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ManifestUnknown(_)), "{err}");
        assert!(r
            .list_tags(&user(), &app, None, None)
            .await
            .unwrap()
            .items
            .is_empty());
        let err = r
            .delete_manifest(&user(), &app, &reference("stable"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ManifestUnknown(_)), "{err}");
        let err = r
            .get_manifest(&user(), &repo("nowhere"), &reference("x"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NameUnknown(_)), "{err}");
    });
}

#[test]
fn a_blob_is_visible_in_its_repository_right_after_upload_and_nowhere_else() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let (a, b) = (repo("a"), repo("b"));
        let blob = push_blob(r, &user(), &a, b"fresh layer").await;
        assert_eq!(r.stat_blob(&user(), &a, &blob.digest).await.unwrap(), blob);
        let err = r.stat_blob(&user(), &b, &blob.digest).await.unwrap_err();
        assert!(matches!(err, Error::BlobUnknown(_)), "{err}");
        let err = r
            .get_blob(&user(), &b, &blob.digest, None)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Error::BlobUnknown(_)), "{err}");
        r.delete_blob(&user(), &a, &blob.digest).await.unwrap();
        assert!(r.stat_blob(&user(), &a, &blob.digest).await.is_err());
    });
}

#[test]
fn mount_needs_pull_on_the_source() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let (src, dst, other) = (repo("src/app"), repo("dst/app"), repo("other/app"));
        let blob = push_blob(r, &admin(), &src, b"shared layer").await;
        // `user` may pull from src: mounted.
        let out = r
            .mount_blob(&user(), &dst, &blob.digest, Some(&src))
            .await
            .unwrap();
        assert_eq!(out, MountOutcome::Mounted(blob.clone()));
        assert!(r.stat_blob(&user(), &dst, &blob.digest).await.is_ok());
        // A rule denies `user` pulls from src: an ordinary session instead.
        r.create_rule(
            &admin(),
            RuleDraft {
                priority: 5,
                description: "no pulls from src".into(),
                effect: Effect::Deny,
                actions: vec![Action::Pull],
                roles: vec![],
                account_types: vec![],
                subject: Some("user".into()),
                repositories: vec![RepoPattern::new("src/*").unwrap()],
                tags: vec![],
                enabled: true,
            },
        )
        .await
        .unwrap();
        let out = r
            .mount_blob(&user(), &other, &blob.digest, Some(&src))
            .await
            .unwrap();
        assert!(matches!(out, MountOutcome::Started(_)), "{out:?}");
        assert!(r.stat_blob(&user(), &other, &blob.digest).await.is_err());
        // A source without the blob, and no source at all: a session too.
        let missing = Digest::sha256_of(b"nowhere");
        assert!(matches!(
            r.mount_blob(&user(), &other, &missing, Some(&dst))
                .await
                .unwrap(),
            MountOutcome::Started(_)
        ));
        assert!(matches!(
            r.mount_blob(&user(), &other, &missing, None).await.unwrap(),
            MountOutcome::Started(_)
        ));
    });
}

#[test]
fn referrers_with_and_without_the_artifact_type_filter() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let (subject, subject_raw, _) = push_image(r, &user(), &app, "v1", "s").await;
        let empty = push_blob(r, &user(), &app, b"{}").await;
        let subj = format!(
            r#","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}"#,
            subject.digest,
            subject_raw.len()
        );
        let sig = image_manifest(
            &empty,
            &[],
            &format!(r#","artifactType":"application/x.sig","annotations":{{"k":"v"}}{subj}"#),
        );
        let sbom = image_manifest(
            &empty,
            &[],
            &format!(r#","artifactType":"application/x.sbom"{subj}"#),
        );
        let pushed_sig = r
            .put_manifest(
                &user(),
                &app,
                &reference("sig"),
                None,
                Bytes::from(sig.clone()),
            )
            .await
            .unwrap();
        assert_eq!(pushed_sig.subject.as_ref(), Some(&subject.digest));
        r.put_manifest(&user(), &app, &reference("sbom"), None, Bytes::from(sbom))
            .await
            .unwrap();
        let all = r
            .referrers(&user(), &app, &subject.digest, None)
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
        let sig_type = MediaType::new("application/x.sig").unwrap();
        let only = r
            .referrers(&user(), &app, &subject.digest, Some(&sig_type))
            .await
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].digest, pushed_sig.digest);
        assert_eq!(only[0].size, sig.len() as u64);
        assert_eq!(only[0].annotations.get("k").map(String::as_str), Some("v"));
        assert_eq!(only[0].artifact_type.as_ref(), Some(&sig_type));
        // A subject nobody pushed has referrers once something names it.
        let none = r
            .referrers(&user(), &app, &Digest::sha256_of(b"?"), None)
            .await
            .unwrap();
        assert!(none.is_empty());
    });
}

#[test]
fn gc_removes_only_unreferenced_blobs_past_the_grace_period() {
    let t = TestRegistry::with_config(RegistryConfig {
        gc_grace_period: Duration::from_secs(60),
        ..RegistryConfig::default()
    });
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let (kept, _, kept_layer) = push_image(r, &user(), &app, "keep", "k").await;
        let (gone, _, gone_layer) = push_image(r, &user(), &app, "gone", "g").await;
        r.delete_manifest(&user(), &app, &Reference::Digest(gone.digest))
            .await
            .unwrap();
        let young = push_blob(r, &user(), &app, b"uploaded just now").await;
        // Inside the grace period nothing goes.
        let report = r.collect_garbage(&admin()).await.unwrap();
        assert_eq!(report.blobs_removed, 0);
        t.clock.advance(Duration::from_secs(61));
        let fresh = push_blob(r, &user(), &app, b"uploaded after the wait").await;
        let report = r.collect_garbage(&admin()).await.unwrap();
        // The deleted image's layer and config, and the old loose blob.
        assert_eq!(report.blobs_removed, 3, "{report:?}");
        assert!(t.blobs.contents(&gone_layer.digest).is_none());
        assert!(t.blobs.contents(&young.digest).is_none());
        assert!(t.blobs.contents(&kept_layer.digest).is_some());
        assert!(t.blobs.contents(&fresh.digest).is_some());
        r.get_manifest(&user(), &app, &Reference::Digest(kept.digest))
            .await
            .unwrap();
        let status = r.gc_status(&admin()).await.unwrap();
        assert!(!status.running);
        assert_eq!(status.last_run.unwrap().blobs_removed, 3);
        let types: Vec<EventType> = t
            .meta
            .audit_log()
            .iter()
            .map(|e| e.event.event_type)
            .collect();
        assert!(types.contains(&EventType::GcStarted) && types.contains(&EventType::GcCompleted));
        let err = r.collect_garbage(&user()).await.unwrap_err();
        assert!(matches!(err, Error::Denied { .. }), "{err}");
    });
}

#[test]
fn the_schedule_runs_gc_one_interval_after_the_last_run_started() {
    let day = Duration::from_secs(24 * 3600);
    let config = RegistryConfig {
        gc_interval: Some(day),
        ..RegistryConfig::default()
    };
    let t = TestRegistry::with_config(config.clone());
    run(async {
        let r = &t.registry;
        // Never collected: one interval after the schedule was first asked.
        let first_asked = t.clock.now();
        assert_eq!(
            r.next_scheduled_gc().await.unwrap(),
            Some(first_asked.saturating_add(day))
        );
        t.clock.advance(Duration::from_secs(3600));
        assert_eq!(
            r.next_scheduled_gc().await.unwrap(),
            Some(first_asked.saturating_add(day))
        );
        // An admin's run moves it.
        let by_admin = r.collect_garbage(&admin()).await.unwrap();
        assert_eq!(
            r.next_scheduled_gc().await.unwrap(),
            Some(by_admin.started_at.saturating_add(day))
        );

        // The schedule's own run, one at a time with everybody's.
        t.clock.advance(day);
        let scheduled = r.start_scheduled_gc().await.unwrap();
        let again = r.start_scheduled_gc().await.map(|run| run.id().to_string());
        assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
        let refused = r.start_gc(&admin()).await.map(|run| run.id().to_string());
        assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
        assert!(r.gc_status(&admin()).await.unwrap().running);
        let report = scheduled.run().await.unwrap();
        let started: Vec<_> = t
            .meta
            .audit_log()
            .into_iter()
            .filter(|e| e.event.event_type == EventType::GcStarted)
            .collect();
        assert_eq!(started.len(), 2);
        assert_eq!(started[1].event.actor_id.as_deref(), Some(SCHEDULE_SUBJECT));
        let status = r.gc_status(&admin()).await.unwrap();
        assert_eq!(status.last_run.as_ref(), Some(&report));
        assert_eq!(status.next_run, Some(report.started_at.saturating_add(day)));

        // A restart keeps the rhythm, from the audit log.
        let restarted = Registry::new(
            t.meta.clone(),
            t.blobs.clone(),
            t.identity.clone(),
            t.policy.clone(),
        )
        .with_clock(t.clock.clone())
        .with_config(config);
        t.clock.advance(Duration::from_secs(60));
        assert_eq!(
            restarted.next_scheduled_gc().await.unwrap(),
            Some(report.started_at.saturating_add(day))
        );
    });
}

#[test]
fn without_an_interval_nothing_is_scheduled() {
    let t = TestRegistry::new();
    run(async {
        assert_eq!(t.registry.next_scheduled_gc().await.unwrap(), None);
        t.registry.collect_garbage(&admin()).await.unwrap();
        let status = t.registry.gc_status(&admin()).await.unwrap();
        assert_eq!(status.next_run, None);
    });
}

#[test]
fn a_denied_principal_changes_nothing() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let (pushed, raw, layer) = push_image(r, &user(), &app, "v1", "a").await;
        let before_tags = r.list_tags(&user(), &app, None, None).await.unwrap();
        for who in [guest(), system()] {
            let denied = |e: Error| assert!(matches!(e, Error::Denied { .. }), "{e}");
            denied(r.start_upload(&who, &app).await.unwrap_err());
            denied(
                r.upload_blob(&who, &app, &Digest::sha256_of(b"x"), body(&b"x"[..]))
                    .await
                    .unwrap_err(),
            );
            denied(
                r.put_manifest(
                    &who,
                    &app,
                    &reference("evil"),
                    None,
                    Bytes::from(raw.clone()),
                )
                .await
                .unwrap_err(),
            );
            denied(
                r.delete_manifest(&who, &app, &Reference::Digest(pushed.digest.clone()))
                    .await
                    .unwrap_err(),
            );
            denied(r.delete_blob(&who, &app, &layer.digest).await.unwrap_err());
            denied(
                r.get_manifest(&who, &app, &reference("v1"))
                    .await
                    .unwrap_err(),
            );
            denied(r.catalog(&who, None, None).await.unwrap_err());
            denied(
                r.mount_blob(&who, &repo("other"), &layer.digest, Some(&app))
                    .await
                    .unwrap_err(),
            );
            denied(r.delete_repository(&who, &app).await.unwrap_err());
            denied(r.list_rules(&who).await.unwrap_err());
            r.version_check(&who).await.unwrap();
        }
        assert_eq!(
            r.list_tags(&user(), &app, None, None).await.unwrap(),
            before_tags
        );
        assert_eq!(
            r.catalog(&admin(), None, None).await.unwrap().items,
            vec![app.clone()]
        );
        r.get_manifest(&user(), &app, &Reference::Digest(pushed.digest))
            .await
            .unwrap();
        assert!(r.stat_blob(&user(), &app, &layer.digest).await.is_ok());
        let denials = t
            .meta
            .audit_log()
            .iter()
            .filter(|e| e.event.event_type == EventType::PolicyDeny)
            .count();
        assert!(denials >= 20, "{denials} denials audited");
    });
}

#[test]
fn a_stored_rule_grants_a_system_account_pull_and_nothing_more() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let ci = repo("ci/app");
        push_image(r, &user(), &ci, "v1", "a").await;
        assert!(r
            .get_manifest(&system(), &ci, &reference("v1"))
            .await
            .is_err());
        let rule = r
            .create_rule(
                &admin(),
                RuleDraft {
                    priority: 10,
                    description: "ci may pull".into(),
                    effect: Effect::Allow,
                    actions: vec![Action::Pull],
                    roles: vec![],
                    account_types: vec![AccountType::System],
                    subject: None,
                    repositories: vec![RepoPattern::new("ci/*").unwrap()],
                    tags: vec![],
                    enabled: true,
                },
            )
            .await
            .unwrap();
        r.get_manifest(&system(), &ci, &reference("v1"))
            .await
            .unwrap();
        assert!(matches!(
            r.start_upload(&system(), &ci).await,
            Err(Error::Denied { .. })
        ));
        assert!(r
            .get_manifest(&system(), &repo("web/app"), &reference("v1"))
            .await
            .is_err());
        r.delete_rule(&admin(), rule.id).await.unwrap();
        assert!(r
            .get_manifest(&system(), &ci, &reference("v1"))
            .await
            .is_err());
        let created = t
            .meta
            .audit_log()
            .iter()
            .filter(|e| e.event.event_type == EventType::PolicyRuleCreated)
            .count();
        assert_eq!(created, 1);
    });
}

#[test]
fn listings_paginate() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        for tag in ["c", "a", "b", "d"] {
            push_image(r, &user(), &app, tag, "same").await;
        }
        let page = r.list_tags(&user(), &app, None, Some(2)).await.unwrap();
        assert_eq!(
            page.items.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(
            page.next.as_deref(),
            Some("b"),
            "the cursor is the last tag"
        );
        let page = r
            .list_tags(&user(), &app, Some("b".into()), Some(2))
            .await
            .unwrap();
        assert_eq!(
            page.items.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            ["c", "d"]
        );
        assert_eq!(page.next, None, "no page after the last");
        let page = r
            .list_tags(&user(), &app, Some("b".into()), None)
            .await
            .unwrap();
        assert_eq!(page.items.len(), 2);
        for name in ["z", "m"] {
            push_blob(r, &user(), &repo(name), b"x").await;
        }
        let cat = r.catalog(&user(), None, Some(2)).await.unwrap();
        assert_eq!(cat.items, vec![repo("app"), repo("m")]);
        assert_eq!(cat.next.as_deref(), Some("m"));
        let events = r
            .audit_events(
                &admin(),
                AuditQuery {
                    event_type: Some(EventType::TagsListed),
                    ..AuditQuery::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(events.len(), 3);
    });
}

#[test]
fn deleting_a_repository_takes_its_content_but_leaves_blobs_to_gc() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let (_, _, layer) = push_image(r, &user(), &app, "v1", "a").await;
        let session = r.start_upload(&user(), &app).await.unwrap();
        assert!(matches!(
            r.delete_repository(&user(), &app).await,
            Err(Error::Denied { .. })
        ));
        r.delete_repository(&admin(), &app).await.unwrap();
        assert!(matches!(
            r.list_tags(&user(), &app, None, None).await,
            Err(Error::NameUnknown(_))
        ));
        assert!(r.upload_status(&user(), &app, &session.id).await.is_err());
        assert!(t.blobs.contents(&layer.digest).is_some());
        assert!(matches!(
            r.delete_repository(&admin(), &app).await,
            Err(Error::NameUnknown(_))
        ));
    });
}

#[test]
fn a_push_by_digest_can_tag_several_names_at_once() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let config = push_blob(r, &user(), &app, b"{}").await;
        let raw = image_manifest(&config, &[], "");
        let digest = Digest::sha256_of(raw.as_bytes());
        let tags = [
            mcr_core::names::Tag::new("a").unwrap(),
            mcr_core::names::Tag::new("b").unwrap(),
        ];
        let pushed = r
            .put_manifest_tagged(
                &user(),
                &app,
                &Reference::Digest(digest.clone()),
                &tags,
                None,
                Bytes::from(raw),
            )
            .await
            .unwrap();
        assert_eq!(pushed.tags, tags.to_vec());
        for tag in ["a", "b"] {
            assert_eq!(
                r.get_manifest(&user(), &app, &reference(tag))
                    .await
                    .unwrap()
                    .digest,
                digest
            );
        }
    });
}

/// A registry whose purge removes sessions idle for over an hour, used
/// or not.
fn purging_after_an_hour() -> TestRegistry {
    TestRegistry::with_config(RegistryConfig {
        upload_max_age: Duration::from_secs(3600),
        unused_upload_max_age: Duration::from_secs(3600),
        ..RegistryConfig::default()
    })
}

/// Issue 16, case 4: a session that never received a byte holds a slot of
/// the caps on open sessions, so it goes after `unused_upload_max_age`
/// (15 minutes by default), long before a used one (24 hours).
#[test]
fn sessions_that_never_received_a_byte_are_purged_much_sooner() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let unused = r.start_upload(&user(), &app).await.unwrap();
        let used = r.start_upload(&user(), &app).await.unwrap();
        r.upload_chunk(&user(), &app, &used.id, Some(0), body(&b"partial"[..]))
            .await
            .unwrap();
        t.clock.advance(Duration::from_secs(14 * 60));
        assert_eq!(r.purge_stale_uploads().await.unwrap(), 0);
        t.clock.advance(Duration::from_secs(2 * 60));
        assert_eq!(r.purge_stale_uploads().await.unwrap(), 1);
        assert!(matches!(
            r.upload_status(&user(), &app, &unused.id).await,
            Err(Error::UploadUnknown(_))
        ));
        assert_eq!(r.upload_status(&user(), &app, &used.id).await.unwrap(), 7);
    });
}

/// Issue 16, case 4: one principal opening sessions without end is
/// refused past its cap, in any repository, and a finished or cancelled
/// session frees a slot.
#[test]
fn open_sessions_are_capped_per_principal() {
    let t = TestRegistry::with_config(RegistryConfig {
        max_uploads_per_principal: 3,
        ..RegistryConfig::default()
    });
    run(async {
        let r = &t.registry;
        let mut open = Vec::new();
        for name in ["a", "b", "c"] {
            open.push(r.start_upload(&user(), &repo(name)).await.unwrap());
        }
        match r.start_upload(&user(), &repo("d")).await {
            Err(Error::TooManyRequests { retry_after, .. }) => {
                assert!(retry_after > Duration::ZERO)
            }
            other => panic!("expected TooManyRequests, got {other:?}"),
        }
        r.start_upload(&admin(), &repo("d")).await.unwrap();
        r.cancel_upload(&user(), &repo("a"), &open[0].id)
            .await
            .unwrap();
        r.start_upload(&user(), &repo("d")).await.unwrap();
    });
}

#[test]
fn stale_upload_sessions_are_purged_with_their_data() {
    let t = purging_after_an_hour();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let old = r.start_upload(&user(), &app).await.unwrap();
        r.upload_chunk(&user(), &app, &old.id, Some(0), body(&b"partial"[..]))
            .await
            .unwrap();
        t.clock.advance(Duration::from_secs(3000));
        let young = r.start_upload(&user(), &app).await.unwrap();
        t.clock.advance(Duration::from_secs(1000));
        assert_eq!(r.purge_stale_uploads().await.unwrap(), 1);
        assert!(matches!(
            r.upload_status(&user(), &app, &old.id).await,
            Err(Error::UploadUnknown(_))
        ));
        assert_eq!(r.upload_status(&user(), &app, &young.id).await.unwrap(), 0);
        use mcr_core::ports::BlobStore;
        let left = t
            .blobs
            .list_uploads()
            .try_collect::<Vec<_>>()
            .await
            .unwrap();
        assert_eq!(
            left,
            vec![young.id.clone()],
            "the stale session's data is gone too"
        );
        let purged = t
            .meta
            .audit_log()
            .iter()
            .filter(|e| e.event.event_type == EventType::UploadsPurged)
            .count();
        assert_eq!(purged, 1);
    });
}

#[test]
fn an_upload_still_receiving_chunks_is_not_purged_however_old() {
    let t = purging_after_an_hour();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let long = r.start_upload(&user(), &app).await.unwrap();
        let mut offset = 0;
        // A chunk every 50 minutes for ten hours.
        for _ in 0..12 {
            t.clock.advance(Duration::from_secs(3000));
            offset = r
                .upload_chunk(&user(), &app, &long.id, Some(offset), body(&b"chunk"[..]))
                .await
                .unwrap();
            assert_eq!(r.purge_stale_uploads().await.unwrap(), 0);
        }
        assert_eq!(r.upload_status(&user(), &app, &long.id).await.unwrap(), 60);
        // Then silence past the maximum age.
        t.clock.advance(Duration::from_secs(3601));
        assert_eq!(r.purge_stale_uploads().await.unwrap(), 1);
        assert!(matches!(
            r.upload_status(&user(), &app, &long.id).await,
            Err(Error::UploadUnknown(_))
        ));
    });
}

#[test]
fn a_rule_granting_policy_manage_does_not_make_an_admin_and_the_refusal_is_audited() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        r.create_rule(
            &admin(),
            RuleDraft {
                priority: 5,
                description: "user manages policy".into(),
                effect: Effect::Allow,
                actions: vec![Action::PolicyManage],
                roles: vec![],
                account_types: vec![],
                subject: Some("user".into()),
                repositories: vec![],
                tags: vec![],
                enabled: true,
            },
        )
        .await
        .unwrap();
        assert!(matches!(
            r.list_rules(&user()).await,
            Err(Error::Denied { .. })
        ));
        let denials: Vec<_> = t
            .meta
            .audit_log()
            .into_iter()
            .filter(|e| e.event.event_type == EventType::PolicyDeny)
            .collect();
        assert_eq!(denials.len(), 1);
        assert_eq!(denials[0].event.actor_id.as_deref(), Some("user"));
        assert_eq!(denials[0].event.details["reason"], "not an admin");
    });
}

#[test]
fn an_admin_takes_a_snapshot_and_it_is_audited_with_its_location() {
    let t = TestRegistry::new();
    run(async {
        let snap = t.registry.snapshot(&admin()).await.unwrap();
        assert_eq!(snap.taken_at, t.clock.now());
        assert_eq!(
            snap.location,
            format!("memory:snapshot-{}", snap.taken_at.as_millis())
        );
        assert_eq!(t.meta.snapshots(), [snap.taken_at]);
        let taken: Vec<_> = t
            .meta
            .audit_log()
            .into_iter()
            .filter(|e| e.event.event_type == EventType::SnapshotTaken)
            .collect();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].event.actor_id.as_deref(), Some("admin"));
        assert_eq!(taken[0].event.details["location"], snap.location);

        // A second one in the same instant would overwrite the first.
        let again = t.registry.snapshot(&admin()).await;
        assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
        t.clock.advance(Duration::from_secs(1));
        t.registry.snapshot(&admin()).await.unwrap();
        assert_eq!(t.meta.snapshots().len(), 2);
    });
}

#[test]
fn only_an_admin_takes_a_snapshot() {
    let t = TestRegistry::new();
    run(async {
        for caller in [user(), guest(), system()] {
            let refused = t.registry.snapshot(&caller).await;
            assert!(matches!(refused, Err(Error::Denied { .. })), "{refused:?}");
        }
        assert!(t.meta.snapshots().is_empty());
        let log = t.meta.audit_log();
        assert!(log
            .iter()
            .all(|e| e.event.event_type != EventType::SnapshotTaken));
        assert_eq!(
            log.iter()
                .filter(|e| e.event.event_type == EventType::PolicyDeny)
                .count(),
            3,
            "each refusal is audited"
        );
    });
}

#[test]
fn a_store_without_snapshots_answers_unsupported() {
    let t = TestRegistry::new();
    let bare = mcr_core::registry::Registry::new(
        t.meta.clone(),
        t.blobs.clone(),
        t.identity.clone(),
        t.policy.clone(),
    );
    run(async {
        let refused = bare.snapshot(&admin()).await;
        assert!(
            matches!(&refused, Err(Error::Unsupported(m)) if m.contains("no snapshots")),
            "{refused:?}"
        );
        assert!(t.meta.snapshots().is_empty());
        assert!(t
            .meta
            .audit_log()
            .iter()
            .all(|e| e.event.event_type != EventType::SnapshotTaken));
    });
}

/// Issue 16, case 9: the blob size limit is the engine's, enforced as the
/// upload grows, so two chunks in flight at once cannot pass it together.
#[test]
fn concurrent_chunks_cannot_pass_the_blob_size_limit_together() {
    let t = TestRegistry::with_config(RegistryConfig {
        max_blob_size: 16,
        ..RegistryConfig::default()
    });
    let r = &t.registry;
    let app = repo("app");
    run(async {
        let session = r.start_upload(&user(), &app).await.unwrap();
        // The first chunk stops inside the blob store, body read, not yet
        // stored; the second arrives meanwhile. Each fits the limit alone.
        let hold = t.blobs.hold_next_append();
        let who = user();
        let first = r.upload_chunk(&who, &app, &session.id, None, body(vec![b'a'; 10]));
        let second = r.upload_chunk(&who, &app, &session.id, None, body(vec![b'b'; 10]));
        let release = async {
            hold.reached().await;
            hold.release();
        };
        let (first, second, ()) = futures_util::future::join3(first, second, release).await;
        assert_eq!(first.unwrap(), 10);
        assert!(
            matches!(second, Err(Error::BlobTooLarge { limit: 16 })),
            "{second:?}"
        );
        assert_eq!(
            r.upload_status(&user(), &app, &session.id).await.unwrap(),
            10
        );
        assert_eq!(
            t.blobs.upload_contents(&session.id).unwrap(),
            Bytes::from(vec![b'a'; 10]),
            "the refused chunk left nothing"
        );
    });
}

#[test]
fn every_way_into_an_upload_is_held_to_the_blob_size_limit() {
    let t = TestRegistry::with_config(RegistryConfig {
        max_blob_size: 16,
        ..RegistryConfig::default()
    });
    let r = &t.registry;
    let app = repo("app");
    run(async {
        // A chunk that grows the upload past the limit, in pieces.
        let session = r.start_upload(&user(), &app).await.unwrap();
        r.upload_chunk(&user(), &app, &session.id, Some(0), body(vec![1; 12]))
            .await
            .unwrap();
        let over = r
            .upload_chunk(
                &user(),
                &app,
                &session.id,
                Some(12),
                chunks(vec![vec![2; 3], vec![3; 3]]),
            )
            .await;
        assert!(
            matches!(over, Err(Error::BlobTooLarge { limit: 16 })),
            "{over:?}"
        );
        // The last chunk of a finish, and a whole blob at once.
        let data = [vec![1; 12], vec![4; 5]].concat();
        let digest = Digest::sha256_of(&data);
        let last = r
            .finish_upload(
                &user(),
                &app,
                &session.id,
                &digest,
                Some((Some(12), body(vec![4; 5]))),
            )
            .await;
        assert!(matches!(last, Err(Error::BlobTooLarge { .. })), "{last:?}");
        assert_eq!(
            r.upload_status(&user(), &app, &session.id).await.unwrap(),
            12
        );
        let whole = r.upload_blob(&user(), &app, &digest, body(data)).await;
        assert!(
            matches!(whole, Err(Error::BlobTooLarge { .. })),
            "{whole:?}"
        );
        // Exactly at the limit is fine.
        let done = r
            .finish_upload(
                &user(),
                &app,
                &session.id,
                &Digest::sha256_of(&[vec![1; 12], vec![5; 4]].concat()),
                Some((Some(12), body(vec![5; 4]))),
            )
            .await
            .unwrap();
        assert_eq!(done.size, 16);
    });
}

/// Pulls counted in the fake's log (what is durable).
fn pulls_recorded(t: &TestRegistry) -> usize {
    t.meta
        .audit_log()
        .iter()
        .filter(|e| e.event.event_type == EventType::ManifestPulled)
        .count()
}

#[test]
fn with_an_audit_writer_pulls_are_queued_and_written_by_a_query_or_the_writers_stop() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        push_image(r, &user(), &app, "v1", "a").await;
        let writer = r.audit_writer();
        r.get_manifest(&user(), &app, &reference("v1"))
            .await
            .unwrap();
        assert_eq!(pulls_recorded(&t), 0, "queued, not written");
        // A query answers with every pull this process answered.
        let pulled = AuditQuery {
            event_type: Some(EventType::ManifestPulled),
            ..AuditQuery::default()
        };
        let events = r.audit_events(&admin(), pulled.clone()).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(pulls_recorded(&t), 1);
        // Stopping the writer writes what is left.
        r.get_manifest(&user(), &app, &reference("v1"))
            .await
            .unwrap();
        assert_eq!(pulls_recorded(&t), 1);
        writer.run(async {}).await.unwrap();
        assert_eq!(pulls_recorded(&t), 2);
        // Without a writer, each pull is written before it is answered.
        r.get_manifest(&user(), &app, &reference("v1"))
            .await
            .unwrap();
        assert_eq!(pulls_recorded(&t), 3);
        // Pushes and other changes never wait in the queue.
        let pushes = || {
            t.meta
                .audit_log()
                .iter()
                .filter(|e| e.event.event_type == EventType::ManifestPushed)
                .count()
        };
        let before = pushes();
        let _writer = r.audit_writer();
        push_image(r, &user(), &app, "v2", "b").await;
        assert_eq!(pushes(), before + 1);
    });
}

#[test]
fn a_full_audit_queue_is_written_by_the_pull_that_finds_it_full() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        push_image(r, &user(), &app, "v1", "a").await;
        // A writer that never runs: the queue fills up.
        let _writer = r.audit_writer();
        for _ in 0..MAX_QUEUED_AUDIT_EVENTS {
            r.get_manifest(&user(), &app, &reference("v1"))
                .await
                .unwrap();
        }
        assert_eq!(pulls_recorded(&t), 0);
        r.get_manifest(&user(), &app, &reference("v1"))
            .await
            .unwrap();
        assert_eq!(
            pulls_recorded(&t),
            MAX_QUEUED_AUDIT_EVENTS + 1,
            "the queue and the pull that found it full, in one write"
        );
        let log = t.meta.audit_log();
        assert!(
            log.windows(2).all(|w| w[0].event.time <= w[1].event.time),
            "kept in order"
        );
    });
}

#[test]
fn readiness_names_each_store_that_is_not_usable() {
    let t = TestRegistry::new();
    run(async {
        let ready = t.registry.readiness().await;
        assert!(ready.is_ready(), "{ready:?}");
        assert_eq!(ready.reason(), None);

        t.meta
            .set_probe_failure(Some("database file /x/mcr.db is gone"));
        let r = t.registry.readiness().await;
        assert!(!r.is_ready());
        assert_eq!(
            r.reason().as_deref(),
            Some("database: probing the fake store: database file /x/mcr.db is gone")
        );
        assert_eq!(r.storage, None);

        t.blobs.set_probe_failure(Some("no space left"));
        let r = t.registry.readiness().await;
        assert_eq!(
            r.reason().as_deref(),
            Some(
                "database: probing the fake store: database file /x/mcr.db is gone; \
                 storage: probing the fake store: no space left"
            )
        );

        t.meta.set_probe_failure(None);
        t.blobs.set_probe_failure(None);
        assert!(t.registry.readiness().await.is_ready());
        assert!(
            t.meta.audit_log().is_empty(),
            "a probe is not an audited act"
        );
    });
}

/// A rule denying `user` pulls from `pattern`.
async fn deny_user_pulls(r: &mcr_core::registry::Registry, pattern: &str) {
    r.create_rule(
        &admin(),
        RuleDraft {
            priority: 5,
            description: format!("no pulls from {pattern}"),
            effect: Effect::Deny,
            actions: vec![Action::Pull],
            roles: vec![],
            account_types: vec![],
            subject: Some("user".into()),
            repositories: vec![RepoPattern::new(pattern).unwrap()],
            tags: vec![],
            enabled: true,
        },
    )
    .await
    .unwrap();
}

/// Issue 16, case 1: listings hold only what the caller may pull, and
/// their pages stay whole and in order around the entries left out.
#[test]
fn listings_hold_only_repositories_the_caller_may_pull() {
    let t = TestRegistry::new();
    let r = &t.registry;
    run(async {
        for name in ["a", "alice/one", "alice/two", "b", "c", "d"] {
            push_blob(r, &admin(), &repo(name), name.as_bytes()).await;
        }
        deny_user_pulls(r, "alice/*").await;
        let names = |l: &mcr_core::registry::Listing<mcr_core::names::RepoName>| {
            l.items.iter().map(|n| n.to_string()).collect::<Vec<_>>()
        };
        let all = r.catalog(&user(), None, None).await.unwrap();
        assert_eq!(names(&all), ["a", "b", "c", "d"]);
        assert!(all.next.is_none());
        // Pages of two: the hidden entries fall inside the first page.
        let first = r.catalog(&user(), None, Some(2)).await.unwrap();
        assert_eq!(
            (names(&first), first.next.is_some()),
            (vec!["a".into(), "b".into()], true)
        );
        let next = r.catalog(&user(), Some("b".into()), Some(2)).await.unwrap();
        assert_eq!(
            (names(&next), next.next.is_some()),
            (vec!["c".into(), "d".into()], false)
        );
        // A page that ends just before hidden entries says whether
        // anything visible follows them.
        let one = r.catalog(&user(), None, Some(1)).await.unwrap();
        assert_eq!((names(&one), one.next.is_some()), (vec!["a".into()], true));
        let summaries = r
            .repository_summaries(&user(), RepoListing::default())
            .await
            .unwrap();
        let listed: Vec<String> = summaries
            .repositories
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(listed, ["a", "b", "c", "d"]);
        // The admin still sees everything.
        let admin_view = r.catalog(&admin(), None, None).await.unwrap();
        assert_eq!(admin_view.items.len(), 6);
    });
}

/// Issue 16, case 2: an upload session alone makes no repository, for
/// every listing; content makes one and its going takes it away.
#[test]
fn a_repository_appears_with_content_and_goes_with_it() {
    let t = TestRegistry::new();
    let r = &t.registry;
    run(async {
        let x = repo("bob/x");
        let session = r.start_upload(&user(), &x).await.unwrap();
        let missing = Digest::sha256_of(b"nowhere");
        let mounted = r.mount_blob(&user(), &repo("bob/y"), &missing, None).await;
        assert!(matches!(mounted, Ok(MountOutcome::Started(_))));
        assert!(r
            .catalog(&user(), None, None)
            .await
            .unwrap()
            .items
            .is_empty());
        let summaries = r
            .repository_summaries(&user(), RepoListing::default())
            .await
            .unwrap();
        assert!(summaries.repositories.is_empty(), "{summaries:?}");
        assert!(matches!(
            r.list_tags(&user(), &x, None, None).await,
            Err(Error::NameUnknown(_))
        ));
        assert!(matches!(
            r.repository_detail(&user(), &x).await,
            Err(Error::NameUnknown(_))
        ));

        let data = b"content".to_vec();
        let digest = Digest::sha256_of(&data);
        r.finish_upload(&user(), &x, &session.id, &digest, Some((None, body(data))))
            .await
            .unwrap();
        let listed = r.catalog(&user(), None, None).await.unwrap().items;
        assert_eq!(listed, std::slice::from_ref(&x));
        r.delete_blob(&user(), &x, &digest).await.unwrap();
        assert!(r
            .catalog(&user(), None, None)
            .await
            .unwrap()
            .items
            .is_empty());
    });
}

/// Issue 16, case 5: a mount without `from` takes the blob from any
/// repository the caller may pull, and from none it may not.
#[test]
fn an_anonymous_mount_takes_the_blob_only_from_where_the_caller_may_pull() {
    let t = TestRegistry::new();
    let r = &t.registry;
    run(async {
        let secret = push_blob(r, &admin(), &repo("alice/private"), b"secret").await;
        let shared = push_blob(r, &admin(), &repo("alice/private"), b"shared").await;
        push_blob(r, &admin(), &repo("public"), b"shared").await;
        deny_user_pulls(r, "alice/*").await;
        let to = repo("bob/app");
        let out = r
            .mount_blob(&user(), &to, &shared.digest, None)
            .await
            .unwrap();
        assert_eq!(out, MountOutcome::Mounted(shared.clone()));
        assert_eq!(
            r.stat_blob(&user(), &to, &shared.digest).await.unwrap(),
            shared
        );
        let mounted = t.meta.audit_log();
        let event = mounted
            .iter()
            .rev()
            .find(|e| e.event.event_type == EventType::BlobMounted)
            .unwrap();
        assert_eq!(
            event.event.details.get("from").map(String::as_str),
            Some("public")
        );
        // Held only where the caller may not pull: an ordinary session,
        // as for a blob that exists nowhere.
        let out = r
            .mount_blob(&user(), &to, &secret.digest, None)
            .await
            .unwrap();
        assert!(matches!(out, MountOutcome::Started(_)), "{out:?}");
        assert!(r.stat_blob(&user(), &to, &secret.digest).await.is_err());
    });
}

/// Issue 16, case 8: a push with several tags moves all of them or, when
/// storing fails partway, none.
#[test]
fn a_push_with_several_tags_moves_all_or_none() {
    let t = TestRegistry::new();
    let r = &t.registry;
    run(async {
        let app = repo("app");
        let (old, _, _) = push_image(r, &user(), &app, "a", "old").await;
        let config = push_blob(r, &user(), &app, b"{}").await;
        let raw = image_manifest(&config, &[], "");
        let digest = Digest::sha256_of(raw.as_bytes());
        let tags = [
            mcr_core::names::Tag::new("a").unwrap(),
            mcr_core::names::Tag::new("b").unwrap(),
        ];
        t.meta.refuse_tag(tags[1].clone());
        let pushed = r
            .put_manifest_tagged(
                &user(),
                &app,
                &Reference::Digest(digest.clone()),
                &tags,
                None,
                Bytes::from(raw.clone()),
            )
            .await;
        assert!(matches!(pushed, Err(Error::Storage(_))), "{pushed:?}");
        let a = r
            .get_manifest(&user(), &app, &reference("a"))
            .await
            .unwrap();
        assert_eq!(a.digest, old.digest, "a tag moved by a push that failed");
        assert!(r
            .get_manifest(&user(), &app, &Reference::Digest(digest.clone()))
            .await
            .is_err());

        t.meta
            .refuse_tag(mcr_core::names::Tag::new("unused").unwrap());
        let pushed = r
            .put_manifest_tagged(
                &user(),
                &app,
                &Reference::Digest(digest.clone()),
                &tags,
                None,
                Bytes::from(raw),
            )
            .await
            .unwrap();
        assert_eq!(pushed.tags, tags);
        for tag in ["a", "b"] {
            let m = r
                .get_manifest(&user(), &app, &reference(tag))
                .await
                .unwrap();
            assert_eq!(m.digest, digest, "{tag}");
        }
    });
}

/// Issue 16, case 8: a monolithic upload that fails is answered with its
/// cause even when cleaning up after it fails too.
#[test]
fn a_failed_monolithic_upload_reports_its_cause_not_the_cleanup() {
    let t = TestRegistry::new();
    let r = &t.registry;
    run(async {
        t.blobs.fail_cancels();
        let wrong = Digest::sha256_of(b"something else");
        let err = r
            .upload_blob(&user(), &repo("app"), &wrong, body(b"data".to_vec()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    });
}

/// A rule denying `user` pushes to `locked/*`.
fn deny_locked_pushes() -> RuleDraft {
    RuleDraft {
        priority: 5,
        description: "nothing into locked".into(),
        effect: Effect::Deny,
        actions: vec![Action::Push],
        roles: vec![],
        account_types: vec![],
        subject: Some("user".into()),
        repositories: vec![RepoPattern::new("locked/*").unwrap()],
        tags: vec![],
        enabled: true,
    }
}

/// Issue 16, case 7: a reload that listed the rules before a change and
/// installs after it must not bring the older rules back.
#[test]
fn a_reload_overtaken_by_a_rule_change_does_not_undo_it() {
    let t = TestRegistry::new();
    let r = &t.registry;
    run(async {
        // A reload lists the rules (none stored yet) and stops there.
        let hold = t.meta.hold_next_rule_read();
        let stale = r.reload_policy();
        let change = async {
            hold.reached().await;
            // Meanwhile a deny rule is stored and its own reload installs it.
            r.create_rule(&admin(), deny_locked_pushes()).await.unwrap();
            hold.release();
        };
        let (stale, ()) = futures_util::future::join(stale, change).await;
        stale.unwrap();
        let err = r
            .start_upload(&user(), &repo("locked/app"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Denied { .. }),
            "the deny rule was undone: {err:?}"
        );
    });
}

/// Issue 16, case 7: two edits of one rule at once cannot lose one; the
/// one that read the rule before the other changed it is refused.
#[test]
fn concurrent_updates_of_a_rule_lose_neither() {
    let t = TestRegistry::new();
    let r = &t.registry;
    run(async {
        let rule = r.create_rule(&admin(), deny_locked_pushes()).await.unwrap();
        let describe = mcr_core::policy::RulePatch {
            description: Some("first edit".into()),
            ..Default::default()
        };
        let disable = mcr_core::policy::RulePatch {
            enabled: Some(false),
            ..Default::default()
        };
        // The first edit reads the rule and stops; the second runs whole.
        let hold = t.meta.hold_next_rule_read();
        let who = admin();
        let first = r.update_rule(&who, rule.id, describe);
        let second = async {
            hold.reached().await;
            let done = r.update_rule(&admin(), rule.id, disable).await;
            hold.release();
            done
        };
        let (first, second) = futures_util::future::join(first, second).await;
        assert!(!second.unwrap().enabled);
        assert!(matches!(first, Err(Error::Conflict(_))), "{first:?}");
        let stored = r.get_rule(&admin(), rule.id).await.unwrap();
        assert!(!stored.enabled, "the second edit was lost");
        assert_eq!(stored.description, rule.description);
    });
}

/// Issue 14: a rule changed through one replica is enforced by another
/// sharing the metadata store within `POLICY_MAX_STALENESS`, and not
/// before the bound only because its cached rules are fresh enough.
#[test]
fn a_replica_reloads_rules_another_changed_within_the_staleness_bound() {
    let t = TestRegistry::new();
    // A second replica: its own engine over the same stores and clock.
    let replica = Registry::new(
        t.meta.clone(),
        t.blobs.clone(),
        t.identity.clone(),
        std::sync::Arc::new(mcr_core::policy::Engine::new()),
    )
    .with_clock(t.clock.clone());
    run(async {
        replica.reload_policy().await.unwrap();
        let locked = repo("locked/app");
        replica.start_upload(&user(), &locked).await.unwrap();

        t.registry
            .create_rule(&admin(), deny_locked_pushes())
            .await
            .unwrap();
        // Within the bound the replica may still use what it holds.
        t.clock
            .advance(POLICY_MAX_STALENESS - Duration::from_millis(1));
        replica.start_upload(&user(), &locked).await.unwrap();
        // Past it, the stored generation is newer: it reloads and refuses.
        t.clock.advance(Duration::from_millis(1));
        let err = replica.start_upload(&user(), &locked).await.unwrap_err();
        assert!(
            matches!(err, Error::Denied { .. }),
            "the replica kept stale rules: {err:?}"
        );
    });
}

#[test]
fn each_principal_draws_from_its_own_request_rate() {
    use mcr_core::ports::Secret;
    use mcr_core::registry::RateLimit;
    use std::num::NonZeroU32;

    let t = TestRegistry::with_config(RegistryConfig {
        rate_limit: Some(RateLimit {
            per_second: NonZeroU32::new(2).unwrap(),
            burst: NonZeroU32::new(3).unwrap(),
        }),
        ..RegistryConfig::default()
    });
    run(async {
        let r = &t.registry;
        let token = |who| t.identity.issue(who).unwrap().token;
        let user_token = token(user().principal);
        for _ in 0..3 {
            r.authenticate(&user_token).await.unwrap();
        }
        match r.authenticate(&user_token).await {
            Err(Error::TooManyRequests { what, retry_after }) => {
                assert!(what.contains("user"), "{what}");
                assert_eq!(retry_after, Duration::from_millis(500));
            }
            other => panic!("a fourth request at once: {other:?}"),
        }
        // Logins draw from the same bucket.
        let login = r
            .login("user", &Secret::new(mcr_core::testing::TEST_PASSWORD), None)
            .await;
        assert!(
            matches!(login, Err(Error::TooManyRequests { .. })),
            "{login:?}"
        );
        // Another principal is not held back.
        r.authenticate(&token(admin().principal)).await.unwrap();
        // Half a second refills one request.
        t.clock.advance(Duration::from_millis(500));
        r.authenticate(&user_token).await.unwrap();
        assert!(r.authenticate(&user_token).await.is_err());
    });
}

#[test]
fn the_repository_listing_holds_only_what_the_caller_may_pull_and_pages_past_the_rest() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        for name in ["a", "private/b", "private/c", "private/d", "z"] {
            push_image(r, &admin(), &repo(name), "v1", name).await;
        }
        deny_user_pulls(r, "private/*").await;
        let names = |p: &mcr_core::registry::RepoPage| {
            p.repositories
                .iter()
                .map(|r| r.name.to_string())
                .collect::<Vec<_>>()
        };
        let listing = |last: Option<String>| RepoListing {
            n: Some(1),
            last,
            ..RepoListing::default()
        };
        let first = r
            .repository_summaries(&user(), listing(None))
            .await
            .unwrap();
        assert_eq!(names(&first), ["a"]);
        assert_eq!(first.next.as_deref(), Some("a"));
        let second = r
            .repository_summaries(&user(), listing(first.next))
            .await
            .unwrap();
        assert_eq!(names(&second), ["z"], "the private ones are skipped");
        assert_eq!(second.next, None);
        let all = r
            .repository_summaries(&admin(), RepoListing::default())
            .await
            .unwrap();
        assert_eq!(all.repositories.len(), 5, "an admin sees everything");

        // Filtered and sorted in the store, with a cursor that carries
        // the sort key.
        let sized = r
            .repository_summaries(
                &admin(),
                RepoListing {
                    filter: Some(" PRIVATE/".into()),
                    sort: RepoSort::Size,
                    order: SortOrder::Desc,
                    n: Some(2),
                    last: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(sized.repositories.len(), 2);
        assert!(sized.repositories[0].total_size >= sized.repositories[1].total_size);
        let next = sized.next.expect("a third private repository");
        assert!(next.contains(":private/"), "{next}");
        let err = r
            .repository_summaries(
                &admin(),
                RepoListing {
                    sort: RepoSort::Size,
                    last: Some("private/b".into()),
                    ..RepoListing::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid { field: "last", .. }), "{err}");
        let err = r
            .repository_summaries(&guest(), RepoListing::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Denied { .. }), "{err}");
    });
}

#[test]
fn a_manifest_in_detail_names_its_config_layers_platforms_and_referrers() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        let app = repo("app");
        let (pushed, raw, layer) = push_image(r, &user(), &app, "v1", "a").await;
        let d = r
            .manifest_detail(&user(), &app, &reference("v1"))
            .await
            .unwrap();
        assert_eq!(d.digest, pushed.digest);
        assert_eq!(d.raw, raw);
        assert_eq!(d.size, raw.len() as u64);
        assert_eq!(d.layers.len(), 1);
        assert_eq!(d.layers[0].digest, layer.digest);
        assert_eq!(d.config_content.as_deref(), Some("{\"seed\":\"a\"}"));
        assert!(d.manifests.is_empty() && d.referrers.is_empty());

        // An index of it, with a platform, and a signature of the image.
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}],"annotations":{{"note":"<script>x</script>"}}}}"#,
            pushed.digest,
            raw.len()
        );
        r.put_manifest(&user(), &app, &reference("multi"), None, Bytes::from(index))
            .await
            .unwrap();
        let config = push_blob(r, &user(), &app, b"{}").await;
        let sig = image_manifest(
            &config,
            &[],
            &format!(
                r#","artifactType":"application/vnd.example.sig","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}"#,
                pushed.digest,
                raw.len()
            ),
        );
        let sig_digest = Digest::sha256_of(sig.as_bytes());
        r.put_manifest(
            &user(),
            &app,
            &Reference::Digest(sig_digest.clone()),
            None,
            Bytes::from(sig),
        )
        .await
        .unwrap();
        let d = r
            .manifest_detail(&user(), &app, &reference("multi"))
            .await
            .unwrap();
        assert_eq!(d.manifests.len(), 1);
        assert_eq!(
            d.manifests[0].platform().unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(d.annotations["note"], "<script>x</script>");
        assert!(d.config.is_none() && d.config_content.is_none());
        let d = r
            .manifest_detail(&user(), &app, &Reference::Digest(pushed.digest.clone()))
            .await
            .unwrap();
        assert_eq!(d.referrers.len(), 1);
        assert_eq!(d.referrers[0].digest, sig_digest);
        assert_eq!(
            d.referrers[0].artifact_type.as_ref().map(|a| a.as_str()),
            Some("application/vnd.example.sig")
        );
        let err = r
            .manifest_detail(&user(), &app, &reference("nope"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ManifestUnknown(_)), "{err}");
        let err = r
            .manifest_detail(&guest(), &app, &reference("v1"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Denied { .. }), "{err}");
    });
}

#[test]
fn the_dashboard_counts_what_the_caller_may_pull() {
    let t = TestRegistry::new();
    run(async {
        let r = &t.registry;
        for (name, tag) in [("a", "v1"), ("private/b", "v1"), ("a", "v2")] {
            push_image(r, &admin(), &repo(name), tag, name).await;
        }
        deny_user_pulls(r, "private/*").await;
        let d = r.dashboard(&admin()).await.unwrap();
        assert_eq!(d.repositories, 2);
        assert!(d.stored_bytes > 0);
        assert_eq!(
            d.recent_pushes
                .iter()
                .map(|p| (p.repository.to_string(), p.tags.join(",")))
                .collect::<Vec<_>>(),
            [
                ("a".to_string(), "v2".to_string()),
                ("private/b".to_string(), "v1".to_string()),
                ("a".to_string(), "v1".to_string()),
            ],
            "newest first"
        );
        let gc = d.gc.expect("admins see GC");
        assert!(!gc.running && gc.last_run.is_none());
        let d = r.dashboard(&user()).await.unwrap();
        assert_eq!(d.repositories, 1);
        assert!(d.recent_pushes.iter().all(|p| p.repository.as_str() == "a"));
        assert_eq!(d.recent_pushes.len(), 2);
        assert!(d.gc.is_none(), "only admins see GC");
        assert_eq!(
            d.stored_bytes,
            r.dashboard(&admin()).await.unwrap().stored_bytes,
            "stored bytes are registry-wide"
        );
    });
}
