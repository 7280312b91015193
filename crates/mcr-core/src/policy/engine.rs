//! The [`PolicyEngine`] port and [`Engine`], its implementation: the
//! built-ins plus the stored rules, sorted once per change.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use super::builtin::builtin_rules;
use super::evaluate::{decide_sorted, Decision};
use super::explain::{explain, Explanation};
use super::rule::Rule;
use super::tag_guard::TagGuard;
use super::PolicyInput;

/// The port the use cases decide through. Synchronous on purpose: a
/// decision is pure computation over rules in memory; loading them is the
/// MetaStore's business, and the registry calls [`set_rules`] after every
/// change.
///
/// [`set_rules`]: PolicyEngine::set_rules
pub trait PolicyEngine: Send + Sync {
    /// The decision for `input` under the built-ins and the stored rules.
    fn evaluate(&self, input: &PolicyInput<'_>) -> Decision;
    /// The same decision, with every rule's verdict.
    fn explain(&self, input: &PolicyInput<'_>) -> Explanation;
    /// The decision of a tag action (`input.action`) for every tag at
    /// once, for a store step to ask per tag; `input.tag` is ignored.
    fn tag_guard(&self, input: &PolicyInput<'_>) -> TagGuard;
    /// Replaces the stored rules; the built-ins stay. A rule posing as a
    /// built-in (priority 0, or an id ≤ 0) is dropped. The generation
    /// held stays as it was: for rules that come from no store.
    fn set_rules(&self, stored: Vec<Rule>);
    /// Replaces the stored rules with those of `generation`, unless the
    /// engine already holds a later generation: then nothing changes and
    /// the answer is `false`. Loads that overtake one another thus never
    /// bring back an older rule set (issue 16, case 7).
    fn install_rules(&self, generation: u64, stored: Vec<Rule>) -> bool;
    /// The generation of the stored rules installed (0 before any).
    fn generation(&self) -> u64;
    /// Built-ins and stored rules, in priority order.
    fn rules(&self) -> Vec<Rule>;
}

/// Holds the rule set, built-ins first and sorted by priority, behind a
/// lock that a change swaps whole: readers never see a half-made set.
pub struct Engine {
    rules: RwLock<Installed>,
}

/// The sorted rule set and the generation of the stored rules in it.
struct Installed {
    rules: Arc<[Rule]>,
    generation: u64,
}

impl Engine {
    /// An engine with the built-in rules only.
    pub fn new() -> Engine {
        Engine {
            rules: RwLock::new(Installed {
                rules: Self::assemble(Vec::new()),
                generation: 0,
            }),
        }
    }

    /// The built-ins and the admissible stored rules, stably sorted.
    /// Built-ins come first, so among equal priorities (only the
    /// built-ins' 0) their order is kept.
    fn assemble(stored: Vec<Rule>) -> Arc<[Rule]> {
        let mut all = builtin_rules();
        all.extend(stored.into_iter().filter(|r| r.priority >= 1 && r.id > 0));
        all.sort_by_key(|r| r.priority);
        Arc::from(all)
    }

    fn read(&self) -> RwLockReadGuard<'_, Installed> {
        // A writer only ever swaps in a finished `Arc`, so a poisoned lock
        // still guards a consistent rule set; keep serving it.
        self.rules.read().unwrap_or_else(|p| p.into_inner())
    }

    fn current(&self) -> Arc<[Rule]> {
        Arc::clone(&self.read().rules)
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl PolicyEngine for Engine {
    fn evaluate(&self, input: &PolicyInput<'_>) -> Decision {
        // The hot path: one pass over the pre-sorted slice under the read
        // lock; no clone, no sort, no allocation.
        decide_sorted(self.read().rules.iter(), input)
    }

    fn explain(&self, input: &PolicyInput<'_>) -> Explanation {
        explain(input, &self.current())
    }

    fn tag_guard(&self, input: &PolicyInput<'_>) -> TagGuard {
        TagGuard::new(input, self.read().rules.iter())
    }

    fn set_rules(&self, stored: Vec<Rule>) {
        // Sort outside the lock; hold the write lock only for the swap.
        let next = Self::assemble(stored);
        self.rules.write().unwrap_or_else(|p| p.into_inner()).rules = next;
    }

    fn install_rules(&self, generation: u64, stored: Vec<Rule>) -> bool {
        let next = Self::assemble(stored);
        let mut installed = self.rules.write().unwrap_or_else(|p| p.into_inner());
        if generation < installed.generation {
            return false;
        }
        *installed = Installed {
            rules: next,
            generation,
        };
        true
    }

    fn generation(&self) -> u64 {
        self.read().generation
    }

    fn rules(&self) -> Vec<Rule> {
        self.current().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::RepoName;
    use crate::policy::{Effect, Mismatch, RepoPattern};
    use crate::principal::{AccountType, Action, Principal, Role};

    fn rule(id: i64, priority: u32, effect: Effect, pattern: &str) -> Rule {
        Rule {
            id,
            priority,
            description: String::new(),
            effect,
            actions: vec![Action::Pull],
            roles: vec![],
            account_types: vec![AccountType::System],
            subject: None,
            repositories: vec![RepoPattern::new(pattern).unwrap()],
            tags: vec![],
            enabled: true,
        }
    }

    fn ci() -> Principal {
        Principal::new("ci", AccountType::System, vec![])
    }

    #[test]
    fn starts_with_the_builtins_only() {
        let ids = |e: &Engine| e.rules().iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(&Engine::new()), [-1, -2, -3, -4]);
        assert_eq!(ids(&Engine::default()), [-1, -2, -3, -4]);
    }

    #[test]
    fn stored_rules_are_applied_and_replaced() {
        let engine = Engine::new();
        let ci = ci();
        let repo = RepoName::new("ci/app").unwrap();
        let input = PolicyInput {
            principal: &ci,
            action: Action::Pull,
            repository: Some(&repo),
            tag: None,
        };
        assert!(!engine.evaluate(&input).is_allowed());
        engine.set_rules(vec![rule(1, 10, Effect::Allow, "ci/*")]);
        assert_eq!(engine.evaluate(&input).rule_id, Some(1));
        engine.set_rules(vec![
            rule(1, 10, Effect::Allow, "ci/*"),
            rule(2, 20, Effect::Deny, "ci/app"),
        ]);
        let d = engine.evaluate(&input);
        assert_eq!((d.effect, d.rule_id), (Effect::Deny, Some(2)));
        engine.set_rules(vec![]);
        assert!(!engine.evaluate(&input).is_allowed());
        assert_eq!(engine.rules().len(), 4, "the built-ins stay");
    }

    #[test]
    fn rules_come_back_in_priority_order() {
        let engine = Engine::new();
        engine.set_rules(vec![
            rule(3, 30, Effect::Allow, "a"),
            rule(1, 10, Effect::Allow, "b"),
            rule(4, 10, Effect::Deny, "c"),
        ]);
        let ids: Vec<i64> = engine.rules().iter().map(|r| r.id).collect();
        assert_eq!(ids, [-1, -2, -3, -4, 1, 4, 3]);
    }

    #[test]
    fn a_stored_rule_cannot_pose_as_a_builtin() {
        let engine = Engine::new();
        engine.set_rules(vec![
            rule(-5, 10, Effect::Allow, "*"),
            rule(0, 10, Effect::Allow, "*"),
            rule(6, 0, Effect::Allow, "*"),
            rule(7, 1, Effect::Allow, "*"),
        ]);
        let ids: Vec<i64> = engine.rules().iter().map(|r| r.id).collect();
        assert_eq!(ids, [-1, -2, -3, -4, 7]);
    }

    #[test]
    fn a_stored_deny_narrows_a_builtin() {
        let engine = Engine::new();
        let mut no_push = rule(9, 1, Effect::Deny, "prod/*");
        no_push.actions = vec![Action::Push];
        no_push.account_types = vec![];
        no_push.roles = vec![Role::User];
        engine.set_rules(vec![no_push]);
        let alice = Principal::new("alice", AccountType::Human, vec![Role::User]);
        let prod = RepoName::new("prod/app").unwrap();
        let dev = RepoName::new("dev/app").unwrap();
        let push = |repo| {
            engine.evaluate(&PolicyInput {
                principal: &alice,
                action: Action::Push,
                repository: Some(repo),
                tag: None,
            })
        };
        assert_eq!(push(&prod).rule_id, Some(9));
        assert!(!push(&prod).is_allowed());
        assert_eq!(push(&dev).rule_id, Some(-2));
        assert!(push(&dev).is_allowed());
    }

    #[test]
    fn explain_agrees_with_evaluate() {
        let engine = Engine::new();
        engine.set_rules(vec![
            rule(1, 10, Effect::Allow, "ci/*"),
            rule(2, 20, Effect::Deny, "ci/app"),
        ]);
        let ci = ci();
        for name in ["ci/app", "ci/web", "web/app"] {
            let repo = RepoName::new(name).unwrap();
            let input = PolicyInput {
                principal: &ci,
                action: Action::Pull,
                repository: Some(&repo),
                tag: None,
            };
            let e = engine.explain(&input);
            assert_eq!(e.decision, engine.evaluate(&input), "{name}");
            assert_eq!(e.rules.len(), 6);
        }
        let other = RepoName::new("web/app").unwrap();
        let e = engine.explain(&PolicyInput {
            principal: &ci,
            action: Action::Pull,
            repository: Some(&other),
            tag: None,
        });
        assert!(e.to_string().contains("default deny"), "{e}");
        assert!(e
            .rules
            .iter()
            .any(|v| v.mismatch == Some(Mismatch::Repository)));
    }

    #[test]
    fn is_shared_across_threads() {
        let engine = Arc::new(Engine::new());
        let ci = ci();
        let repo = RepoName::new("ci/app").unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..200 {
                    let effect = if i % 2 == 0 {
                        Effect::Allow
                    } else {
                        Effect::Deny
                    };
                    engine.set_rules(vec![rule(1, 10, effect, "ci/*")]);
                }
            });
            for _ in 0..200 {
                let d = engine.evaluate(&PolicyInput {
                    principal: &ci,
                    action: Action::Pull,
                    repository: Some(&repo),
                    tag: None,
                });
                // Whichever set a reader sees, it sees a whole one.
                assert!(d.rule_id.is_none() || d.rule_id == Some(1), "{d:?}");
            }
        });
    }
}
