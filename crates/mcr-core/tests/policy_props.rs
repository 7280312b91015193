//! Properties of the policy engine, each over at least 256 random cases.

use mcr_core::names::RepoName;
use mcr_core::policy::{
    builtin_rules, evaluate, Effect, Engine, PolicyEngine, PolicyInput, RepoPattern, Rule,
};
use mcr_core::principal::{AccountType, Action, Principal, Role};
use proptest::prelude::*;
use proptest::sample::subsequence;

const SEGMENTS: [&str; 4] = ["ci", "app", "prod", "web"];

fn repo_name() -> impl Strategy<Value = RepoName> {
    prop::collection::vec(prop::sample::select(&SEGMENTS[..]), 1..4)
        .prop_map(|parts| RepoName::new(&parts.join("/")).expect("valid name"))
}

fn pattern() -> impl Strategy<Value = RepoPattern> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(&SEGMENTS[..]).prop_map(str::to_string),
            Just("*".to_string())
        ],
        1..3,
    )
    .prop_map(|parts| RepoPattern::new(&parts.join("/")).expect("valid pattern"))
}

fn principal() -> impl Strategy<Value = Principal> {
    (
        prop::sample::select(vec!["alice", "bob", "ci"]),
        prop::sample::select(AccountType::ALL.to_vec()),
        subsequence(Role::ALL.to_vec(), 0..=2),
    )
        .prop_map(|(s, a, roles)| Principal::new(s, a, roles))
}

fn rule(id: i64) -> impl Strategy<Value = Rule> {
    (
        1u32..5,
        prop::sample::select(vec![Effect::Allow, Effect::Deny]),
        subsequence(Action::ALL.to_vec(), 0..=3),
        subsequence(Role::ALL.to_vec(), 0..=2),
        subsequence(AccountType::ALL.to_vec(), 0..=1),
        prop::option::of(prop::sample::select(vec![
            "alice".to_string(),
            "ci".to_string(),
        ])),
        prop::collection::vec(pattern(), 0..3),
        prop::bool::weighted(0.9),
    )
        .prop_map(
            move |(
                priority,
                effect,
                actions,
                roles,
                account_types,
                subject,
                repositories,
                enabled,
            )| Rule {
                id,
                priority,
                description: String::new(),
                effect,
                actions,
                roles,
                account_types,
                subject,
                repositories,
                enabled,
            },
        )
}

fn rules() -> impl Strategy<Value = Vec<Rule>> {
    (0usize..8).prop_flat_map(|n| (1..=n as i64).map(rule).collect::<Vec<_>>())
}

fn action() -> impl Strategy<Value = Action> {
    prop::sample::select(Action::ALL.to_vec())
}

/// Whether `rule` matches, by the spec's words, written independently of
/// the engine.
fn spec_matches(rule: &Rule, input: &PolicyInput<'_>) -> bool {
    let p = input.principal;
    rule.enabled
        && (rule.actions.is_empty() || rule.actions.contains(&input.action))
        && (rule.roles.is_empty() || p.roles.iter().any(|r| rule.roles.contains(r)))
        && (rule.account_types.is_empty() || rule.account_types.contains(&p.account_type))
        && rule.subject.as_ref().is_none_or(|s| *s == p.subject)
        && match input.repository {
            None => rule.repositories.is_empty(),
            Some(r) => {
                rule.repositories.is_empty()
                    || rule.repositories.iter().any(|pat| pat.matches(r.as_str()))
            }
        }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn deny_wins(rules in rules(), p in principal(), a in action(), repo in prop::option::of(repo_name())) {
        let input = PolicyInput { principal: &p, action: a, repository: repo.as_ref() };
        let any_deny = rules.iter().any(|r| r.effect == Effect::Deny && spec_matches(r, &input));
        let d = evaluate(&input, &rules);
        if any_deny {
            prop_assert_eq!(d.effect, Effect::Deny);
            let id = d.rule_id.expect("a deny names its rule");
            let r = rules.iter().find(|r| r.id == id).expect("the rule exists");
            prop_assert_eq!(r.effect, Effect::Deny);
        }
    }

    #[test]
    fn default_deny(rules in rules(), p in principal(), a in action(), repo in prop::option::of(repo_name())) {
        let input = PolicyInput { principal: &p, action: a, repository: repo.as_ref() };
        let any_allow = rules.iter().any(|r| r.effect == Effect::Allow && spec_matches(r, &input));
        let d = evaluate(&input, &rules);
        if !any_allow {
            prop_assert!(!d.is_allowed());
        }
        if d.is_allowed() {
            let r = rules.iter().find(|r| Some(r.id) == d.rule_id).expect("an allow names its rule");
            prop_assert!(spec_matches(r, &input));
        }
    }

    #[test]
    fn independent_of_rule_order(
        (rules, shuffled) in rules().prop_flat_map(|r| (Just(r.clone()), Just(r).prop_shuffle())),
        p in principal(), a in action(), repo in prop::option::of(repo_name()),
    ) {
        let input = PolicyInput { principal: &p, action: a, repository: repo.as_ref() };
        // Ids are unique and equal-priority rules tie-break by input order,
        // so compare the effect, and that the deciding rule matches.
        let d1 = evaluate(&input, &rules);
        let d2 = evaluate(&input, &shuffled);
        prop_assert_eq!(d1.effect, d2.effect);
        prop_assert_eq!(d1.rule_id.is_some(), d2.rule_id.is_some());
    }

    #[test]
    fn an_empty_field_is_a_wildcard(r in rule(1), p in principal(), a in action(), repo in prop::option::of(repo_name())) {
        let input = PolicyInput { principal: &p, action: a, repository: repo.as_ref() };
        let matched = |rule: &Rule| evaluate(&input, std::slice::from_ref(rule)).rule_id.is_some();
        // Clearing a field never narrows what a rule matches.
        for cleared in [
            Rule { actions: vec![], ..r.clone() },
            Rule { roles: vec![], ..r.clone() },
            Rule { account_types: vec![], ..r.clone() },
            Rule { subject: None, ..r.clone() },
        ] {
            prop_assert!(!matched(&r) || matched(&cleared));
        }
        if repo.is_some() {
            let unscoped = Rule { repositories: vec![], ..r.clone() };
            prop_assert!(!matched(&r) || matched(&unscoped));
        }
    }

    #[test]
    fn a_global_operation_ignores_repository_scoped_rules(rules in rules(), p in principal(), a in action()) {
        let input = PolicyInput { principal: &p, action: a, repository: None };
        let unscoped: Vec<Rule> = rules.iter().filter(|r| r.repositories.is_empty()).cloned().collect();
        prop_assert_eq!(evaluate(&input, &rules), evaluate(&input, &unscoped));
    }

    #[test]
    fn builtins_give_guests_and_system_accounts_only_the_version_check(
        p in principal(), a in action(), repo in prop::option::of(repo_name()),
    ) {
        prop_assume!(!p.roles.contains(&Role::Admin));
        prop_assume!(p.account_type == AccountType::System || !p.roles.contains(&Role::User));
        let input = PolicyInput { principal: &p, action: a, repository: repo.as_ref() };
        prop_assert_eq!(evaluate(&input, &builtin_rules()).is_allowed(), a == Action::VersionCheck);
    }

    #[test]
    fn stored_denies_never_grant_a_guest_more(
        denies in rules().prop_map(|rs| rs.into_iter().map(|r| Rule { effect: Effect::Deny, ..r }).collect::<Vec<_>>()),
        a in action(), repo in prop::option::of(repo_name()),
    ) {
        let guest = Principal::new("g", AccountType::Human, vec![Role::Guest]);
        let engine = Engine::new();
        engine.set_rules(denies);
        let input = PolicyInput { principal: &guest, action: a, repository: repo.as_ref() };
        if engine.evaluate(&input).is_allowed() {
            prop_assert_eq!(a, Action::VersionCheck);
        }
    }

    #[test]
    fn the_engine_agrees_with_evaluate(stored in rules(), p in principal(), a in action(), repo in prop::option::of(repo_name())) {
        let engine = Engine::new();
        engine.set_rules(stored.clone());
        let mut all = builtin_rules();
        all.extend(stored);
        let input = PolicyInput { principal: &p, action: a, repository: repo.as_ref() };
        prop_assert_eq!(engine.evaluate(&input), evaluate(&input, &all));
        prop_assert_eq!(engine.explain(&input).decision, engine.evaluate(&input));
    }

    #[test]
    fn star_never_crosses_a_slash(parts in prop::collection::vec(prop::sample::select(&SEGMENTS[..]), 2..4)) {
        let name = RepoName::new(&parts.join("/")).expect("valid");
        let one_level = RepoPattern::new(&format!("{}/*", parts[0])).expect("valid");
        prop_assert_eq!(one_level.matches(name.as_str()), parts.len() == 2);
    }
}
