//! The retention plan over random repositories of images, indexes,
//! referrers and tags of random ages: it never deletes a manifest
//! reachable from a tag that stays (through an index's children, a
//! manifest's subject, or as a referrer of a manifest that stays), never
//! deletes a tag a keep clause saves, deletes only what a delete clause
//! reaches, and orders each manifest before what it references.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mcr_core::digest::Digest;
use mcr_core::names::Tag;
use mcr_core::retention::{
    plan, GraphManifest, GraphTag, ManifestGraph, Policies, RetentionPolicy, RetentionSpec,
};
use mcr_core::time::Timestamp;
use proptest::prelude::*;

const DAY: i64 = 86_400_000;
const NOW: Timestamp = Timestamp::from_millis(100 * DAY);
const TAG_NAMES: &[&str] = &[
    "v1", "v2", "v3", "latest", "dev-1", "dev-2", "rc", "nightly",
];

#[derive(Debug, Clone)]
enum Kind {
    Image,
    /// Children: indexes into the manifests made before.
    Index(Vec<usize>),
    /// Subject: an index into the manifests made before.
    Referrer(usize),
}

fn digest(i: usize) -> Digest {
    Digest::sha256_of(format!("manifest {i}").as_bytes())
}

fn graph_strategy() -> impl Strategy<Value = ManifestGraph> {
    let manifest = (
        0..3u8,
        proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
        0..100i64,
    );
    (
        proptest::collection::vec(manifest, 1..14),
        proptest::collection::vec(
            (0..TAG_NAMES.len(), any::<prop::sample::Index>(), 0..100i64),
            0..8,
        ),
    )
        .prop_map(|(manifests, tags)| {
            let mut out = Vec::new();
            for (i, (kind, picks, age)) in manifests.into_iter().enumerate() {
                let kind = match (kind, i) {
                    (_, 0) | (0, _) => Kind::Image,
                    (1, _) => Kind::Index(picks.iter().map(|p| p.index(i)).collect()),
                    _ => Kind::Referrer(picks[0].index(i)),
                };
                let (children, subject) = match kind {
                    Kind::Image => (Vec::new(), None),
                    Kind::Index(c) => {
                        let set: BTreeSet<Digest> = c.into_iter().map(digest).collect();
                        (set.into_iter().collect(), None)
                    }
                    Kind::Referrer(s) => (Vec::new(), Some(digest(s))),
                };
                out.push(GraphManifest {
                    digest: digest(i),
                    created: Timestamp::from_millis((100 - age) * DAY),
                    subject,
                    children,
                });
            }
            let mut by_name = BTreeMap::new();
            for (name, target, age) in tags {
                by_name.insert(
                    TAG_NAMES[name],
                    GraphTag {
                        name: Tag::new(TAG_NAMES[name]).unwrap(),
                        digest: out[target.index(out.len())].digest.clone(),
                        updated: Timestamp::from_millis((100 - age) * DAY),
                    },
                );
            }
            out.sort_by(|a, b| a.digest.cmp(&b.digest));
            ManifestGraph {
                manifests: out,
                tags: by_name.into_values().collect(),
            }
        })
}

fn policy_strategy(id: i64) -> impl Strategy<Value = RetentionPolicy> {
    (
        proptest::option::of(1..4u32),
        proptest::sample::subsequence(vec!["v*", "latest"], 0..=2),
        proptest::option::of(1..60u64),
        proptest::option::of(1..60u64),
        any::<bool>(),
    )
        .prop_filter("a policy deletes something", |p| {
            p.2.is_some() || p.3.is_some()
        })
        .prop_map(move |(keep_last, keep_tags, tags_days, untagged_days, _)| {
            let json = serde_json::json!({
                "repositories": ["*"],
                "keep_last": keep_last,
                "keep_tags": keep_tags,
                "delete_tags_older_than": tags_days.map(|d| format!("{d}days")),
                "delete_untagged_older_than": untagged_days.map(|d| format!("{d}days")),
            });
            let spec: RetentionSpec = serde_json::from_value(json).unwrap();
            RetentionPolicy {
                id,
                spec,
                created: NOW,
                updated: NOW,
            }
        })
}

/// Manifests reachable from `roots` through children, subjects and
/// referrers, in `graph`.
fn reachable<'g>(
    graph: &'g ManifestGraph,
    roots: impl Iterator<Item = &'g Digest>,
) -> BTreeSet<&'g Digest> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&Digest> = roots.collect();
    while let Some(d) = todo.pop() {
        if !seen.insert(d) {
            continue;
        }
        for m in &graph.manifests {
            if &m.digest == d {
                todo.extend(m.children.iter());
                todo.extend(m.subject.iter());
            }
            if m.subject.as_ref() == Some(d) {
                todo.push(&m.digest);
            }
        }
    }
    seen
}

fn older(at: Timestamp, days: Option<Duration>) -> bool {
    days.is_some_and(|d| at < NOW.saturating_sub(d))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn retention_never_deletes_what_a_kept_tag_reaches(
        graph in graph_strategy(),
        selecting in policy_strategy(1),
        keeping in policy_strategy(2),
        both_select in any::<bool>(),
    ) {
        let select = if both_select { vec![&selecting, &keeping] } else { vec![&selecting] };
        let policies = Policies { select: select.clone(), keep: vec![&selecting, &keeping] };
        let planned = plan(&graph, &policies, NOW);
        prop_assert_eq!(&planned, &plan(&graph, &policies, NOW), "the plan is deterministic");

        let deleted_tags: BTreeSet<&Tag> = planned.iter().flat_map(|d| d.tags.iter()).collect();
        let deleted: BTreeSet<&Digest> =
            planned.iter().filter(|d| d.manifest).map(|d| &d.digest).collect();
        let kept_tags: Vec<&GraphTag> =
            graph.tags.iter().filter(|t| !deleted_tags.contains(&t.name)).collect();

        // Nothing a kept tag reaches is deleted.
        let protected = reachable(&graph, kept_tags.iter().map(|t| &t.digest));
        for d in &deleted {
            prop_assert!(!protected.contains(d), "{} is reachable from a kept tag", d);
        }
        // Nor anything a manifest that stays reaches.
        let staying = graph.manifests.iter().map(|m| &m.digest).filter(|d| !deleted.contains(d));
        let needed = reachable(&graph, staying);
        for d in &deleted {
            prop_assert!(!needed.contains(d), "{} is reachable from a manifest that stays", d);
        }

        // Keep clauses hold.
        let mut newest: Vec<&GraphTag> = graph.tags.iter().collect();
        newest.sort_by(|a, b| b.updated.cmp(&a.updated).then(a.name.cmp(&b.name)));
        for p in [&selecting, &keeping] {
            for t in &graph.tags {
                if p.spec.keep_tags().iter().any(|k| k.matches(&t.name)) {
                    prop_assert!(!deleted_tags.contains(&t.name), "kept by pattern: {}", t.name);
                }
            }
            for t in newest.iter().take(p.spec.keep_last().unwrap_or(0) as usize) {
                prop_assert!(!deleted_tags.contains(&t.name), "kept as recent: {}", t.name);
            }
        }

        // Only what a selecting clause reaches goes.
        for t in graph.tags.iter().filter(|t| deleted_tags.contains(&t.name)) {
            prop_assert!(
                select.iter().any(|p| older(t.updated, p.spec.delete_tags_older_than().map(|a| a.as_duration()))),
                "tag {} deleted by no clause", t.name
            );
        }
        for m in graph.manifests.iter().filter(|m| deleted.contains(&m.digest)) {
            prop_assert!(
                select.iter().any(|p| older(m.created, p.spec.delete_untagged_older_than().map(|a| a.as_duration()))),
                "manifest {} deleted by no clause", m.digest
            );
            prop_assert!(
                !kept_tags.iter().any(|t| t.digest == m.digest),
                "manifest {} deleted with a tag left on it", m.digest
            );
        }

        // Each deleted manifest goes before what it references.
        let position: BTreeMap<&Digest, usize> = planned
            .iter()
            .enumerate()
            .filter(|(_, d)| d.manifest)
            .map(|(i, d)| (&d.digest, i))
            .collect();
        for m in graph.manifests.iter().filter(|m| deleted.contains(&m.digest)) {
            for r in m.children.iter().chain(m.subject.iter()) {
                if let Some(&later) = position.get(r) {
                    prop_assert!(position[&m.digest] < later, "{} deleted after {}", m.digest, r);
                }
            }
        }
    }
}
