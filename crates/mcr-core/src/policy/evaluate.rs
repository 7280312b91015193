//! Matching one rule, and deciding over many.
//!
//! [`check`] is the single definition of "a rule matches"; [`evaluate`],
//! [`explain`](fn@super::explain) and the [`Engine`](super::Engine) all go
//! through it, so they cannot disagree.

use serde::Serialize;

use super::explain::Mismatch;
use super::rule::{Effect, Rule};
use super::PolicyInput;
use crate::names::Tag;

/// The outcome: the effect, and the rule that decided (`None` for the
/// default deny).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub effect: Effect,
    pub rule_id: Option<i64>,
}

impl Decision {
    /// What happens when no rule matches.
    pub const DEFAULT_DENY: Decision = Decision {
        effect: Effect::Deny,
        rule_id: None,
    };

    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
}

/// Whether `rule` matches `input`, and if not, the first field that
/// failed, checked in the order of [`Mismatch`]'s variants.
pub(super) fn check(rule: &Rule, input: &PolicyInput<'_>) -> Result<(), Mismatch> {
    let p = input.principal;
    if !rule.enabled {
        return Err(Mismatch::Disabled);
    }
    if !rule.actions.is_empty() && !rule.actions.contains(&input.action) {
        return Err(Mismatch::Action);
    }
    if !rule.roles.is_empty() && !p.roles.iter().any(|r| rule.roles.contains(r)) {
        return Err(Mismatch::Role);
    }
    if !rule.account_types.is_empty() && !rule.account_types.contains(&p.account_type) {
        return Err(Mismatch::AccountType);
    }
    if rule.subject.as_deref().is_some_and(|s| s != p.subject) {
        return Err(Mismatch::Subject);
    }
    if !rule.repositories.is_empty() {
        match input.repository {
            // A rule scoped to repositories says nothing about the registry
            // as a whole; otherwise `deny prod/*` would also deny the
            // catalog.
            None => return Err(Mismatch::GlobalOperation),
            Some(repo) if rule.repositories.iter().any(|p| p.matches(repo.as_str())) => {}
            Some(_) => return Err(Mismatch::Repository),
        }
    }
    check_tag(rule, input.tag)
}

/// The last field of [`check`]: whether the rule's tag patterns take
/// `tag`. Apart so that a [`TagGuard`](super::TagGuard) can check every
/// other field once and this one per tag.
fn check_tag(rule: &Rule, tag: Option<&Tag>) -> Result<(), Mismatch> {
    if rule.tags.is_empty() {
        return Ok(());
    }
    match tag {
        // Validation keeps tag patterns to the tag actions, which are
        // always asked with a tag; this is for explain's hypotheticals.
        None => Err(Mismatch::Untagged),
        Some(t) if rule.tags.iter().any(|p| p.matches(t)) => Ok(()),
        Some(_) => Err(Mismatch::Tag),
    }
}

/// Decides over rules already in priority order: the first matching deny,
/// else the first matching allow, else the default deny. One pass, no
/// allocation: this is the engine's hot path.
pub(super) fn decide_sorted<'r>(
    rules: impl IntoIterator<Item = &'r Rule>,
    input: &PolicyInput<'_>,
) -> Decision {
    let mut allow = None;
    for rule in rules {
        if check(rule, input).is_err() {
            continue;
        }
        match rule.effect {
            // Nothing after a matching deny can change the outcome, and the
            // first one is the one to name.
            Effect::Deny => {
                return Decision {
                    effect: Effect::Deny,
                    rule_id: Some(rule.id),
                }
            }
            Effect::Allow if allow.is_none() => allow = Some(rule.id),
            Effect::Allow => {}
        }
    }
    allow.map_or(Decision::DEFAULT_DENY, |id| Decision {
        effect: Effect::Allow,
        rule_id: Some(id),
    })
}

/// `rules` by priority, stably, so equal priorities keep their given order.
pub(super) fn sorted(rules: &[Rule]) -> Vec<&Rule> {
    let mut v: Vec<&Rule> = rules.iter().collect();
    v.sort_by_key(|r| r.priority);
    v
}

/// The decision for `input` under `rules`, given in any order: sorted by
/// priority (stable), any matching deny wins, else the first matching
/// allow, else the default deny. Disabled rules never match.
pub fn evaluate(input: &PolicyInput<'_>, rules: &[Rule]) -> Decision {
    decide_sorted(sorted(rules), input)
}

#[cfg(test)]
mod tests {
    use std::slice;

    use super::*;
    use crate::names::RepoName;
    use crate::policy::RepoPattern;
    use crate::principal::{AccountType, Action, Principal, Role};

    /// An enabled rule over pulls, for anyone, anywhere.
    fn rule(id: i64, priority: u32, effect: Effect) -> Rule {
        Rule {
            id,
            priority,
            description: String::new(),
            effect,
            actions: vec![Action::Pull],
            roles: vec![],
            account_types: vec![],
            subject: None,
            repositories: vec![],
            tags: vec![],
            enabled: true,
        }
    }

    fn scoped(mut r: Rule, patterns: &[&str]) -> Rule {
        r.repositories = patterns
            .iter()
            .map(|p| RepoPattern::new(p).unwrap())
            .collect();
        r
    }

    fn alice() -> Principal {
        Principal::new("alice", AccountType::Human, vec![Role::User])
    }

    fn decide(rules: &[Rule], action: Action, repo: Option<&str>) -> Decision {
        let p = alice();
        let repo = repo.map(|r| RepoName::new(r).unwrap());
        evaluate(
            &PolicyInput {
                principal: &p,
                action,
                repository: repo.as_ref(),
                tag: None,
            },
            rules,
        )
    }

    fn pull(rules: &[Rule]) -> Decision {
        decide(rules, Action::Pull, Some("prod/app"))
    }

    fn allow(id: i64) -> Decision {
        Decision {
            effect: Effect::Allow,
            rule_id: Some(id),
        }
    }

    fn deny(id: i64) -> Decision {
        Decision {
            effect: Effect::Deny,
            rule_id: Some(id),
        }
    }

    #[test]
    fn no_rules_is_the_default_deny() {
        assert_eq!(pull(&[]), Decision::DEFAULT_DENY);
        assert!(!Decision::DEFAULT_DENY.is_allowed());
        assert_eq!(
            pull(&[rule(1, 1, Effect::Allow)]),
            allow(1),
            "sanity: the example rule matches"
        );
    }

    #[test]
    fn a_matching_deny_wins_whatever_its_priority() {
        // The deny comes last in priority order and still wins.
        let rules = [
            rule(1, 1, Effect::Allow),
            rule(2, 5, Effect::Allow),
            rule(3, 9, Effect::Deny),
        ];
        assert_eq!(pull(&rules), deny(3));
        // Of several denies, the first in priority order is named.
        let rules = [
            rule(1, 1, Effect::Allow),
            rule(4, 7, Effect::Deny),
            rule(3, 2, Effect::Deny),
        ];
        assert_eq!(pull(&rules), deny(3));
    }

    #[test]
    fn the_first_matching_allow_by_priority_decides() {
        let rules = [
            rule(1, 30, Effect::Allow),
            rule(2, 10, Effect::Allow),
            rule(3, 20, Effect::Allow),
        ];
        assert_eq!(pull(&rules), allow(2));
        // Equal priorities keep the order they were given in.
        let rules = [rule(5, 10, Effect::Allow), rule(4, 10, Effect::Allow)];
        assert_eq!(pull(&rules), allow(5));
        let rules = [rule(4, 10, Effect::Allow), rule(5, 10, Effect::Allow)];
        assert_eq!(pull(&rules), allow(4));
    }

    #[test]
    fn populated_fields_are_anded_and_empty_ones_are_wildcards() {
        let mut r = rule(1, 1, Effect::Allow);
        r.actions = vec![];
        assert_eq!(
            decide(slice::from_ref(&r), Action::Push, Some("x")),
            allow(1)
        );
        r.actions = vec![Action::Pull, Action::Push];
        assert_eq!(
            decide(slice::from_ref(&r), Action::Push, Some("x")),
            allow(1)
        );
        assert!(!decide(slice::from_ref(&r), Action::Delete, Some("x")).is_allowed());

        // Roles: any of the principal's roles will do.
        r.roles = vec![Role::Admin, Role::User];
        assert_eq!(pull(slice::from_ref(&r)), allow(1));
        r.roles = vec![Role::Guest];
        assert!(!pull(slice::from_ref(&r)).is_allowed());
        r.roles = vec![];

        r.account_types = vec![AccountType::System];
        assert!(!pull(slice::from_ref(&r)).is_allowed());
        r.account_types = vec![AccountType::Human];
        assert_eq!(pull(slice::from_ref(&r)), allow(1));

        r.subject = Some("bob".into());
        assert!(!pull(slice::from_ref(&r)).is_allowed());
        r.subject = Some("alice".into());
        assert_eq!(pull(slice::from_ref(&r)), allow(1));

        let r = scoped(r, &["staging/*", "prod/*"]);
        assert_eq!(pull(slice::from_ref(&r)), allow(1));
        assert!(!decide(&[r], Action::Pull, Some("dev/app")).is_allowed());
    }

    #[test]
    fn a_principal_without_roles_fails_a_role_scoped_rule() {
        let p = Principal::new("svc", AccountType::System, vec![]);
        let mut r = rule(1, 1, Effect::Allow);
        r.roles = vec![Role::Guest];
        let input = PolicyInput {
            principal: &p,
            action: Action::Pull,
            repository: None,
            tag: None,
        };
        assert_eq!(check(&r, &input), Err(Mismatch::Role));
        r.roles = vec![];
        assert_eq!(check(&r, &input), Ok(()));
    }

    #[test]
    fn repository_globs_decide_where_a_rule_applies() {
        let rules = [
            rule(1, 1, Effect::Allow),
            scoped(rule(2, 2, Effect::Deny), &["production/*"]),
        ];
        let at = |repo| decide(&rules, Action::Pull, Some(repo));
        assert_eq!(at("production/app"), deny(2));
        assert_eq!(at("production/team/app"), allow(1), "* stays in a segment");
        assert_eq!(at("production"), allow(1));
        assert_eq!(at("staging/app"), allow(1));
    }

    #[test]
    fn a_global_operation_ignores_repository_scoped_rules() {
        let mut catalog_deny = scoped(rule(2, 1, Effect::Deny), &["**"]);
        catalog_deny.actions = vec![Action::Catalog];
        let mut catalog_allow = rule(1, 5, Effect::Allow);
        catalog_allow.actions = vec![Action::Catalog];
        let rules = [catalog_deny.clone(), catalog_allow];
        // `**` matches every repository, but the catalog is not in one.
        assert_eq!(decide(&rules, Action::Catalog, None), allow(1));
        assert_eq!(decide(&rules, Action::Catalog, Some("a")), deny(2));
        // A scoped allow alone does not grant a global operation.
        catalog_deny.effect = Effect::Allow;
        assert_eq!(
            decide(&[catalog_deny], Action::Catalog, None),
            Decision::DEFAULT_DENY
        );
    }

    #[test]
    fn disabled_rules_never_match() {
        let mut d = rule(2, 1, Effect::Deny);
        d.enabled = false;
        assert_eq!(pull(&[rule(1, 5, Effect::Allow), d.clone()]), allow(1));
        let mut a = rule(1, 5, Effect::Allow);
        a.enabled = false;
        assert_eq!(pull(&[a, d]), Decision::DEFAULT_DENY);
    }

    #[test]
    fn check_reports_the_first_failing_field() {
        let p = alice();
        let repo = RepoName::new("prod/app").unwrap();
        let input = PolicyInput {
            principal: &p,
            action: Action::Pull,
            repository: Some(&repo),
            tag: None,
        };
        let base = rule(1, 1, Effect::Allow);
        let cases: [(Rule, Mismatch); 7] = [
            (
                Rule {
                    enabled: false,
                    actions: vec![Action::Push],
                    ..base.clone()
                },
                Mismatch::Disabled,
            ),
            (
                Rule {
                    actions: vec![Action::Push],
                    roles: vec![Role::Guest],
                    ..base.clone()
                },
                Mismatch::Action,
            ),
            (
                Rule {
                    roles: vec![Role::Guest],
                    ..base.clone()
                },
                Mismatch::Role,
            ),
            (
                Rule {
                    account_types: vec![AccountType::System],
                    ..base.clone()
                },
                Mismatch::AccountType,
            ),
            (
                Rule {
                    subject: Some("bob".into()),
                    ..base.clone()
                },
                Mismatch::Subject,
            ),
            (scoped(base.clone(), &["dev/*"]), Mismatch::Repository),
            (scoped(base.clone(), &["prod/*"]), Mismatch::GlobalOperation),
        ];
        for (r, want) in cases {
            let input = if want == Mismatch::GlobalOperation {
                PolicyInput {
                    repository: None,
                    ..input
                }
            } else {
                input
            };
            assert_eq!(check(&r, &input), Err(want), "{r:?}");
        }
        assert_eq!(check(&base, &input), Ok(()));
    }
}
