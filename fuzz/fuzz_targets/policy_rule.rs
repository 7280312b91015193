//! Policy rule JSON: the bodies that create (`RuleDraft`) and change
//! (`RulePatch`) rules, and stored rules (`Rule`). The first input byte
//! picks which (`'0'`, `'2'`, `'1'`); the rest is the JSON.
//!
//! What validates round-trips through JSON unchanged, becomes a rule that
//! round-trips too, and matching its patterns against names never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcr_core::policy::{Effect, RepoPattern, Rule, RuleDraft, RulePatch};
use mcr_core::principal::Action;
use serde::{de::DeserializeOwned, Serialize};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let json = serde_json::to_vec(v).expect("serializes");
    let back: T = serde_json::from_slice(&json).expect("its own JSON parses");
    assert_eq!(&back, v, "{}", String::from_utf8_lossy(&json));
}

/// Names a pattern is tried on: short, deep, and the longest allowed.
fn names() -> [String; 4] {
    [
        "library/alpine".into(),
        "a".into(),
        "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p".into(),
        format!("{}/{}", "x".repeat(127), "y".repeat(127)),
    ]
}

fn check_patterns(patterns: &[RepoPattern]) {
    for p in patterns {
        assert_eq!(RepoPattern::new(p.as_str()).ok().as_ref(), Some(p));
        for name in names() {
            let _ = p.matches(&name);
        }
    }
}

fn check_rule(rule: &Rule) {
    round_trip(rule);
    check_patterns(&rule.repositories);
}

fn stored() -> Rule {
    RuleDraft {
        priority: 10,
        description: "pull for ci".into(),
        effect: Effect::Allow,
        actions: vec![Action::Pull],
        roles: vec![],
        account_types: vec![],
        subject: Some("local:ci".into()),
        repositories: vec![RepoPattern::new("ci/**").expect("a valid pattern")],
        tags: vec![],
        enabled: true,
    }
    .into_rule(3)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, json)) = data.split_first() else {
        return;
    };
    match pick % 3 {
        0 => {
            let Ok(draft) = serde_json::from_slice::<RuleDraft>(json) else {
                return;
            };
            round_trip(&draft);
            let Ok(draft) = draft.validate() else {
                return;
            };
            let rule = draft.clone().into_rule(7);
            assert_eq!(RuleDraft::from(&rule), draft);
            assert!(!rule.is_builtin() && rule.priority >= 1 && !rule.actions.is_empty());
            check_rule(&rule);
        }
        1 => {
            if let Ok(rule) = serde_json::from_slice::<Rule>(json) {
                check_rule(&rule);
            }
        }
        _ => {
            let Ok(patch) = serde_json::from_slice::<RulePatch>(json) else {
                return;
            };
            round_trip(&patch);
            let base = stored();
            if let Ok(rule) = patch.apply(&base) {
                assert_eq!(rule.id, base.id);
                assert!(RuleDraft::from(&rule).validate().is_ok());
                check_rule(&rule);
            }
        }
    }
});
