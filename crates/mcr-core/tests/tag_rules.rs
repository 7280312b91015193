//! Tag rules in the use cases: a deny of `registry:tag_overwrite` and
//! `registry:tag_delete` makes matching tags immutable for everyone it
//! binds (admins included), a re-push of the same manifest still succeeds,
//! and without such a rule nothing changes. The property: under any
//! sequence of pushes, retags and deletes, an immutable tag never changes
//! its digest and never disappears.

mod support;

use std::collections::BTreeMap;

use bytes::Bytes;
use mcr_core::audit::{AuditQuery, EventType};
use mcr_core::digest::Digest;
use mcr_core::names::{Reference, Tag};
use mcr_core::policy::{Effect, RuleDraft, TagPattern};
use mcr_core::principal::Action;
use mcr_core::registry::{Caller, Registry};
use mcr_core::testing::{admin, system, user, TestRegistry};
use mcr_core::Error;
use proptest::prelude::*;
use support::*;

/// Stores "tags `v*` are immutable" (rule 1) for everyone.
async fn immutable_v_tags(r: &Registry) -> i64 {
    r.create_rule(
        &admin(),
        RuleDraft {
            priority: 10,
            description: "release tags are immutable".into(),
            effect: Effect::Deny,
            actions: Action::TAG_ACTIONS.to_vec(),
            roles: vec![],
            account_types: vec![],
            subject: None,
            repositories: vec![],
            tags: vec![TagPattern::new("v*").unwrap()],
            enabled: true,
        },
    )
    .await
    .expect("an admin creates the rule")
    .id
}

fn refused(e: Error, tag: &str, rule: i64) -> String {
    match &e {
        Error::TagRefused(r) => {
            assert_eq!(r.tag.as_str(), tag);
            assert_eq!(r.rule.as_ref().map(|(id, _)| *id), Some(rule));
        }
        other => panic!("expected TagRefused, got {other:?}"),
    }
    e.to_string()
}

async fn digest_of(r: &Registry, repo: &str, tag: &str) -> Option<Digest> {
    r.get_manifest(&user(), &support::repo(repo), &reference(tag))
        .await
        .ok()
        .map(|m| m.digest)
}

async fn push_raw(
    r: &Registry,
    who: &Caller,
    repo: &str,
    reference: &Reference,
    tags: &[&str],
    raw: &str,
) -> Result<Digest, Error> {
    let tags: Vec<Tag> = tags.iter().map(|t| Tag::new(t).unwrap()).collect();
    r.put_manifest_tagged(
        who,
        &support::repo(repo),
        reference,
        &tags,
        None,
        Bytes::from(raw.to_string()),
    )
    .await
    .map(|p| p.digest)
}

#[test]
fn an_immutable_tag_is_refused_a_move_and_a_delete_but_takes_a_re_push() {
    run(async {
        let t = TestRegistry::new();
        let r = &t.registry;
        let app = repo("team/app");
        let rule = immutable_v_tags(r).await;
        let (one, raw_one, _) = push_image(r, &user(), &app, "v1.0.0", "one").await;
        // The same manifest again, under the same tag: idempotent.
        let again = push_raw(r, &user(), "team/app", &reference("v1.0.0"), &[], &raw_one)
            .await
            .expect("a re-push of the same manifest succeeds");
        assert_eq!(again, one.digest);

        let (two, raw_two, _) = push_image(r, &user(), &app, "latest", "two").await;
        for who in [user(), admin()] {
            let msg = refused(
                push_raw(r, &who, "team/app", &reference("v1.0.0"), &[], &raw_two)
                    .await
                    .unwrap_err(),
                "v1.0.0",
                rule,
            );
            assert!(msg.contains("may not move tag v1.0.0 in team/app"), "{msg}");
            assert!(msg.contains("\"release tags are immutable\""), "{msg}");
            assert!(msg.contains("mcrctl policy delete 1"), "{msg}");
            // An extra tag in the same push: all or nothing.
            let e = push_raw(
                r,
                &who,
                "team/app",
                &Reference::Digest(two.digest.clone()),
                &["rc", "v1.0.0"],
                &raw_two,
            )
            .await
            .unwrap_err();
            refused(e, "v1.0.0", rule);
            assert_eq!(digest_of(r, "team/app", "rc").await, None, "rc was tagged");

            refused(
                r.delete_manifest(&who, &app, &reference("v1.0.0"))
                    .await
                    .unwrap_err(),
                "v1.0.0",
                rule,
            );
            let msg = refused(
                r.delete_manifest(&who, &app, &Reference::Digest(one.digest.clone()))
                    .await
                    .unwrap_err(),
                "v1.0.0",
                rule,
            );
            assert!(
                msg.contains(&format!(
                    "may not delete manifest {}: its tag v1.0.0",
                    one.digest
                )),
                "{msg}"
            );
            assert_eq!(
                digest_of(r, "team/app", "v1.0.0").await,
                Some(one.digest.clone())
            );
        }
        refused(
            r.delete_repository(&admin(), &app).await.unwrap_err(),
            "v1.0.0",
            rule,
        );
        // Tags the rule does not match move and go as before.
        push_raw(r, &user(), "team/app", &reference("latest"), &[], &raw_one)
            .await
            .expect("latest moves");
        r.delete_manifest(&user(), &app, &reference("latest"))
            .await
            .expect("latest goes");
        r.delete_manifest(&user(), &app, &Reference::Digest(two.digest))
            .await
            .expect("an untagged manifest goes");
        push_raw(r, &user(), "team/app", &reference("v2"), &[], &raw_one)
            .await
            .expect("a new v tag is created");

        // Every refusal was audited with its rule and tag.
        let denials = r
            .audit_events(
                &admin(),
                AuditQuery {
                    event_type: Some(EventType::PolicyDeny),
                    ..AuditQuery::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(denials.len(), 9, "{denials:?}");
        for e in &denials {
            let d = &e.event.details;
            assert_eq!(d.get("rule_id").map(String::as_str), Some("1"), "{e:?}");
            assert_eq!(d.get("tag").map(String::as_str), Some("v1.0.0"), "{e:?}");
        }

        // Lifted by the rule's owner: the admin deletes it.
        r.delete_rule(&admin(), rule).await.unwrap();
        r.delete_manifest(&admin(), &app, &reference("v1.0.0"))
            .await
            .expect("the tag goes once the rule is gone");
    });
}

#[test]
fn without_tag_rules_nothing_changes_for_whoever_may_push() {
    run(async {
        let t = TestRegistry::new();
        let r = &t.registry;
        // A system account allowed to push and delete by a stored rule
        // moves and deletes tags without any rule naming the tag actions.
        r.create_rule(
            &admin(),
            RuleDraft {
                priority: 5,
                description: "ci pushes".into(),
                effect: Effect::Allow,
                actions: vec![Action::Pull, Action::Push, Action::Delete],
                roles: vec![],
                account_types: vec![],
                subject: Some("system".into()),
                repositories: vec![],
                tags: vec![],
                enabled: true,
            },
        )
        .await
        .unwrap();
        let app = repo("ci/app");
        let (one, _, _) = push_image(r, &system(), &app, "v1", "one").await;
        let (two, _, _) = push_image(r, &system(), &app, "v1", "two").await;
        assert_ne!(one.digest, two.digest);
        assert_eq!(digest_of(r, "ci/app", "v1").await, Some(two.digest.clone()));
        r.delete_manifest(&system(), &app, &Reference::Digest(two.digest))
            .await
            .expect("the manifest and its tag go");
        assert_eq!(digest_of(r, "ci/app", "v1").await, None);
    });
}

#[test]
fn explain_answers_for_a_tag() {
    run(async {
        let t = TestRegistry::new();
        let r = &t.registry;
        let rule = immutable_v_tags(r).await;
        let app = repo("team/app");
        let v1 = Tag::new("v1").unwrap();
        let e = r
            .explain(
                &admin(),
                &admin().principal,
                Action::TagOverwrite,
                Some(&app),
                Some(&v1),
            )
            .await
            .unwrap();
        assert_eq!(e.decision.rule_id, Some(rule));
        assert!(!e.decision.is_allowed());
        assert!(e.to_string().contains("on tag v1"), "{e}");
    });
}

// ---- the property ----

const TAGS: [&str; 4] = ["v1", "v2", "latest", "dev"];

#[derive(Debug, Clone)]
enum Op {
    /// Push image `seed` under `tag`, with `extra` tags in the same push.
    Push {
        admin: bool,
        seed: u8,
        tag: usize,
        extra: Vec<usize>,
    },
    /// Point `tag` at the manifest `from` names (by digest, `?tag=`).
    Retag {
        admin: bool,
        from: usize,
        tag: usize,
    },
    DeleteTag {
        admin: bool,
        tag: usize,
    },
    /// Delete, by digest, the manifest `tag` names.
    DeleteManifest {
        admin: bool,
        tag: usize,
    },
    DeleteRepository,
}

fn op() -> impl Strategy<Value = Op> {
    let tag = 0..TAGS.len();
    prop_oneof![
        (
            any::<bool>(),
            0u8..4,
            tag.clone(),
            prop::collection::vec(tag.clone(), 0..2)
        )
            .prop_map(|(admin, seed, tag, extra)| Op::Push {
                admin,
                seed,
                tag,
                extra
            }),
        (any::<bool>(), tag.clone(), tag.clone()).prop_map(|(admin, from, tag)| Op::Retag {
            admin,
            from,
            tag
        }),
        (any::<bool>(), tag.clone()).prop_map(|(admin, tag)| Op::DeleteTag { admin, tag }),
        (any::<bool>(), tag).prop_map(|(admin, tag)| Op::DeleteManifest { admin, tag }),
        Just(Op::DeleteRepository),
    ]
}

fn who(is_admin: bool) -> Caller {
    if is_admin {
        admin()
    } else {
        user()
    }
}

async fn apply(r: &Registry, op: &Op) {
    let app = repo("team/app");
    // Refusals are expected; the invariant is checked after each step.
    match op {
        Op::Push {
            admin,
            seed,
            tag,
            extra,
        } => {
            let who = who(*admin);
            let config = push_blob(r, &who, &app, format!("config {seed}").as_bytes()).await;
            let raw = image_manifest(&config, &[], "");
            let extra: Vec<&str> = extra.iter().map(|i| TAGS[*i]).collect();
            let _ = push_raw(r, &who, "team/app", &reference(TAGS[*tag]), &extra, &raw).await;
        }
        Op::Retag { admin, from, tag } => {
            if let Ok(m) = r.get_manifest(&user(), &app, &reference(TAGS[*from])).await {
                let raw = String::from_utf8(m.raw.to_vec()).unwrap();
                let _ = push_raw(
                    r,
                    &who(*admin),
                    "team/app",
                    &Reference::Digest(m.digest.clone()),
                    &[TAGS[*tag]],
                    &raw,
                )
                .await;
            }
        }
        Op::DeleteTag { admin, tag } => {
            let _ = r
                .delete_manifest(&who(*admin), &app, &reference(TAGS[*tag]))
                .await;
        }
        Op::DeleteManifest { admin, tag } => {
            if let Ok(m) = r.get_manifest(&user(), &app, &reference(TAGS[*tag])).await {
                let _ = r
                    .delete_manifest(&who(*admin), &app, &Reference::Digest(m.digest.clone()))
                    .await;
            }
        }
        Op::DeleteRepository => {
            let _ = r.delete_repository(&admin(), &app).await;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Once a `v*` tag exists it names the same digest for good, whoever
    /// (user or admin) pushes, retags or deletes; other tags stay free.
    #[test]
    fn an_immutable_tag_never_moves_or_disappears(ops in prop::collection::vec(op(), 1..30)) {
        let t = TestRegistry::new();
        let r = &t.registry;
        run(async {
            immutable_v_tags(r).await;
            let mut pinned: BTreeMap<&str, Digest> = BTreeMap::new();
            for op in &ops {
                apply(r, op).await;
                for (tag, digest) in &pinned {
                    let now = digest_of(r, "team/app", tag).await;
                    prop_assert_eq!(
                        now.as_ref(),
                        Some(digest),
                        "{} moved or went after {:?}", tag, op
                    );
                }
                for tag in ["v1", "v2"] {
                    if let Some(d) = digest_of(r, "team/app", tag).await {
                        pinned.entry(tag).or_insert(d);
                    }
                }
            }
            Ok(())
        })?;
    }
}
