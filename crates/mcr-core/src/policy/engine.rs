//! The engine the use cases ask: built-ins plus stored rules, pre-sorted.

use std::sync::{Arc, RwLock};

use super::builtin::builtin_rules;
use super::evaluate::{decide_sorted, explain, Decision, Explanation};
use super::rule::Rule;
use super::PolicyInput;

/// The port the use cases decide through.
pub trait PolicyEngine: Send + Sync {
    fn evaluate(&self, input: &PolicyInput<'_>) -> Decision;
    fn explain(&self, input: &PolicyInput<'_>) -> Explanation;
    /// Replaces the stored rules; the built-ins stay.
    fn set_rules(&self, stored: Vec<Rule>);
    /// Built-ins and stored rules, in priority order.
    fn rules(&self) -> Vec<Rule>;
}

/// Caches the rule set, sorted once per change, behind a lock held only
/// long enough to clone an `Arc`.
pub struct Engine {
    rules: RwLock<Arc<[Rule]>>,
}

impl Engine {
    pub fn new() -> Engine {
        let engine = Engine {
            rules: RwLock::new(Arc::from(Vec::new())),
        };
        engine.set_rules(Vec::new());
        engine
    }

    fn current(&self) -> Arc<[Rule]> {
        Arc::clone(&self.rules.read().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl PolicyEngine for Engine {
    fn evaluate(&self, input: &PolicyInput<'_>) -> Decision {
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner());
        decide_sorted(rules.iter(), input)
    }

    fn explain(&self, input: &PolicyInput<'_>) -> Explanation {
        explain(input, &self.current())
    }

    fn set_rules(&self, stored: Vec<Rule>) {
        // A stored rule can never pose as a built-in.
        let mut all = builtin_rules();
        all.extend(stored.into_iter().filter(|r| r.priority >= 1 && r.id > 0));
        all.sort_by_key(|r| r.priority);
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(all);
    }

    fn rules(&self) -> Vec<Rule> {
        self.current().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::RepoName;
    use crate::policy::{Effect, RepoPattern};
    use crate::principal::{AccountType, Action, Principal};

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
            enabled: true,
        }
    }

    #[test]
    fn stored_rules_are_applied_and_replaced() {
        let engine = Engine::new();
        let ci = Principal::new("ci", AccountType::System, vec![]);
        let repo = RepoName::new("ci/app").unwrap();
        let input = PolicyInput {
            principal: &ci,
            action: Action::Pull,
            repository: Some(&repo),
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
    }

    #[test]
    fn a_stored_rule_cannot_pose_as_a_builtin() {
        let engine = Engine::new();
        engine.set_rules(vec![
            rule(-5, 10, Effect::Allow, "*"),
            rule(6, 0, Effect::Allow, "*"),
        ]);
        assert_eq!(engine.rules().len(), 3);
    }

    #[test]
    fn explain_says_why() {
        let engine = Engine::new();
        engine.set_rules(vec![
            rule(1, 10, Effect::Allow, "ci/*"),
            rule(2, 20, Effect::Deny, "ci/app"),
        ]);
        let ci = Principal::new("ci", AccountType::System, vec![]);
        let repo = RepoName::new("ci/app").unwrap();
        let e = engine.explain(&PolicyInput {
            principal: &ci,
            action: Action::Pull,
            repository: Some(&repo),
        });
        let text = e.to_string();
        assert!(
            text.contains("rule 2 (deny, priority 20): matched"),
            "{text}"
        );
        assert!(text.contains("decision: deny, by rule 2"), "{text}");
        assert!(text.contains("rule -1 (allow, priority 0)"), "{text}");
        let other = RepoName::new("web/app").unwrap();
        let e = engine.explain(&PolicyInput {
            principal: &ci,
            action: Action::Pull,
            repository: Some(&other),
        });
        assert!(e.to_string().contains("default deny"), "{e}");
        assert!(e
            .rules
            .iter()
            .any(|v| v.mismatch == Some(crate::policy::Mismatch::Repository)));
    }
}
