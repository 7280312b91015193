//! Properties of the policy engine, each over at least 256 random cases.
//!
//! The generators draw from small alphabets (four path segments, three
//! subjects, a handful of priorities) so that rules and inputs collide
//! often: most cases have some rules that match and some that do not.
//! `spec_matches` restates "a rule matches" from the spec's words,
//! independently of the engine's own `check`.

use mcr_core::names::{RepoName, Tag};
use mcr_core::policy::{
    builtin_rules, evaluate, explain, Decision, Effect, Engine, PolicyEngine, PolicyInput,
    RepoPattern, Rule, TagPattern,
};
use mcr_core::principal::{AccountType, Action, Principal, Role};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

const SEGMENTS: [&str; 4] = ["ci", "app", "prod", "web"];
const SUBJECTS: [&str; 3] = ["alice", "bob", "ci"];
const TAGS: [&str; 4] = ["v1", "v2.0", "latest", "release-1"];

// ---- strategies ----

/// Lowercase segments joined by '/', like repository names.
fn repo_name() -> impl Strategy<Value = RepoName> {
    prop::collection::vec(select(&SEGMENTS[..]), 1..4)
        .prop_map(|parts| RepoName::new(&parts.join("/")).expect("segments make a valid name"))
}

/// Patterns built from literal segments and the wildcard forms.
fn pattern() -> impl Strategy<Value = RepoPattern> {
    let segment = prop_oneof![
        4 => select(&SEGMENTS[..]).prop_map(str::to_string),
        2 => Just("*".to_string()),
        1 => Just("**".to_string()),
        1 => Just("p*".to_string()),
        1 => Just("?pp".to_string()),
    ];
    prop::collection::vec(segment, 1..4)
        .prop_map(|parts| RepoPattern::new(&parts.join("/")).expect("valid pattern"))
}

fn tag() -> impl Strategy<Value = Tag> {
    select(&TAGS[..]).prop_map(|t| Tag::new(t).expect("valid tag"))
}

/// Tag patterns: literal tags and the wildcard forms.
fn tag_pattern() -> impl Strategy<Value = TagPattern> {
    prop_oneof![
        2 => select(&TAGS[..]).prop_map(str::to_string),
        1 => Just("v*".to_string()),
        1 => Just("*".to_string()),
        1 => Just("release-?".to_string()),
    ]
    .prop_map(|p| TagPattern::new(&p).expect("valid pattern"))
}

fn principal() -> impl Strategy<Value = Principal> {
    (
        select(&SUBJECTS[..]),
        select(AccountType::ALL.to_vec()),
        subsequence(Role::ALL.to_vec(), 0..=3),
    )
        .prop_map(|(s, a, roles)| Principal::new(s, a, roles))
}

fn action() -> impl Strategy<Value = Action> {
    select(Action::ALL.to_vec())
}

fn effect() -> impl Strategy<Value = Effect> {
    select(Effect::ALL.to_vec())
}

/// A rule with the given id; every field is empty (a wildcard) often
/// enough to matter.
fn rule_with(id: i64, priority: impl Strategy<Value = u32>) -> impl Strategy<Value = Rule> {
    (
        priority,
        effect(),
        subsequence(Action::ALL.to_vec(), 0..=3),
        subsequence(Role::ALL.to_vec(), 0..=2),
        subsequence(AccountType::ALL.to_vec(), 0..=1),
        prop::option::of(select(&SUBJECTS[..2]).prop_map(str::to_string)),
        prop::collection::vec(pattern(), 0..3),
        prop::collection::vec(tag_pattern(), 0..2),
        prop::bool::weighted(0.85),
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
                tags,
                enabled,
            )| {
                Rule {
                    id,
                    priority,
                    description: String::new(),
                    effect,
                    actions,
                    roles,
                    account_types,
                    subject,
                    repositories,
                    tags,
                    enabled,
                }
            },
        )
}

fn rule(id: i64) -> impl Strategy<Value = Rule> {
    rule_with(id, 1u32..5)
}

/// Up to eight stored-like rules with unique positive ids and colliding
/// priorities.
fn rules() -> impl Strategy<Value = Vec<Rule>> {
    (0usize..8).prop_flat_map(|n| (1..=n as i64).map(rule).collect::<Vec<_>>())
}

/// Everything a decision is asked about.
#[derive(Debug, Clone)]
struct Ask {
    principal: Principal,
    action: Action,
    repository: Option<RepoName>,
    /// Given for the tag actions, as the use cases do; sometimes for
    /// others too, which tag-scoped rules must still not match.
    tag: Option<Tag>,
}

impl Ask {
    fn input(&self) -> PolicyInput<'_> {
        PolicyInput {
            principal: &self.principal,
            action: self.action,
            repository: self.repository.as_ref(),
            tag: self.tag.as_ref(),
        }
    }
}

fn ask() -> impl Strategy<Value = Ask> {
    (
        principal(),
        action(),
        prop::option::of(repo_name()),
        prop::option::of(tag()),
    )
        .prop_map(|(principal, action, repository, tag)| Ask {
            principal,
            action,
            repository,
            tag,
        })
}

// ---- the spec, restated ----

/// Whether `rule` matches, by the spec's words.
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
        && match input.tag {
            None => rule.tags.is_empty(),
            Some(t) => rule.tags.is_empty() || rule.tags.iter().any(|pat| pat.matches(t)),
        }
}

/// The spec's decision: stable sort by priority, any matching deny wins
/// (the first is named), else the first matching allow, else default deny.
fn spec_decision(input: &PolicyInput<'_>, rules: &[Rule]) -> Decision {
    let mut ordered: Vec<&Rule> = rules.iter().collect();
    ordered.sort_by_key(|r| r.priority);
    let matching: Vec<&Rule> = ordered
        .into_iter()
        .filter(|r| spec_matches(r, input))
        .collect();
    let first = |e: Effect| matching.iter().find(|r| r.effect == e).map(|r| r.id);
    match (first(Effect::Deny), first(Effect::Allow)) {
        (Some(id), _) => Decision {
            effect: Effect::Deny,
            rule_id: Some(id),
        },
        (None, Some(id)) => Decision {
            effect: Effect::Allow,
            rule_id: Some(id),
        },
        (None, None) => Decision::DEFAULT_DENY,
    }
}

/// Whether `rule` alone matches: a single rule matches iff the decision
/// names it.
fn matches_alone(rule: &Rule, input: &PolicyInput<'_>) -> bool {
    evaluate(input, std::slice::from_ref(rule)).rule_id == Some(rule.id)
}

fn find(rules: &[Rule], id: Option<i64>) -> &Rule {
    let id = id.expect("the decision names a rule");
    rules
        .iter()
        .find(|r| r.id == id)
        .expect("the named rule is in the set")
}

// ---- properties ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The whole algorithm, against the spec restated.
    #[test]
    fn evaluate_is_the_spec(rules in rules(), ask in ask()) {
        let input = ask.input();
        prop_assert_eq!(evaluate(&input, &rules), spec_decision(&input, &rules));
    }

    /// (1) If any enabled matching rule denies, the decision is deny, and
    /// it names a matching deny of the lowest priority among them.
    #[test]
    fn deny_wins(rules in rules(), ask in ask()) {
        let input = ask.input();
        let denies: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.effect == Effect::Deny && spec_matches(r, &input))
            .collect();
        let d = evaluate(&input, &rules);
        if let Some(lowest) = denies.iter().map(|r| r.priority).min() {
            prop_assert_eq!(d.effect, Effect::Deny);
            let named = find(&rules, d.rule_id);
            prop_assert_eq!(named.effect, Effect::Deny);
            prop_assert!(spec_matches(named, &input));
            prop_assert_eq!(named.priority, lowest);
        } else {
            prop_assert!(d.rule_id.is_none() || d.is_allowed());
        }
    }

    /// (2) Without a matching allow, the answer is deny; an allow always
    /// names a matching allow.
    #[test]
    fn default_deny(rules in rules(), ask in ask()) {
        let input = ask.input();
        let any_allow = rules.iter().any(|r| r.effect == Effect::Allow && spec_matches(r, &input));
        let d = evaluate(&input, &rules);
        if !any_allow {
            prop_assert!(!d.is_allowed());
        }
        if d.is_allowed() {
            let named = find(&rules, d.rule_id);
            prop_assert_eq!(named.effect, Effect::Allow);
            prop_assert!(spec_matches(named, &input));
        }
        if !rules.iter().any(|r| spec_matches(r, &input)) {
            prop_assert_eq!(d, Decision::DEFAULT_DENY);
        }
    }

    /// (3) The result does not depend on the order rules are given in.
    /// Equal priorities tie-break by input order, so a shuffle may name a
    /// different rule, but one with the same effect and priority.
    #[test]
    fn independent_of_rule_order(
        (rules, shuffled) in rules().prop_flat_map(|r| (Just(r.clone()), Just(r).prop_shuffle())),
        ask in ask(),
    ) {
        let input = ask.input();
        let d1 = evaluate(&input, &rules);
        let d2 = evaluate(&input, &shuffled);
        prop_assert_eq!(d1.effect, d2.effect);
        prop_assert_eq!(d1.rule_id.is_some(), d2.rule_id.is_some());
        if d1.rule_id.is_some() {
            prop_assert_eq!(find(&rules, d1.rule_id).priority, find(&rules, d2.rule_id).priority);
        }
        let mut priorities: Vec<u32> = rules.iter().map(|r| r.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        if priorities.len() == rules.len() {
            prop_assert_eq!(d1, d2);
        }
    }

    /// (4) An empty field is a wildcard: clearing a field never narrows
    /// what a rule matches, and populating an empty one never widens it.
    #[test]
    fn an_empty_field_is_a_wildcard(
        r in rule(1),
        ask in ask(),
        actions in subsequence(Action::ALL.to_vec(), 1..=3),
        roles in subsequence(Role::ALL.to_vec(), 1..=2),
        account_type in select(AccountType::ALL.to_vec()),
        subject in select(&SUBJECTS[..]),
        patterns in prop::collection::vec(pattern(), 1..3),
        tag_patterns in prop::collection::vec(tag_pattern(), 1..3),
    ) {
        let input = ask.input();
        let m = |rule: &Rule| matches_alone(rule, &input);
        let cleared = [
            Rule { actions: vec![], ..r.clone() },
            Rule { roles: vec![], ..r.clone() },
            Rule { account_types: vec![], ..r.clone() },
            Rule { subject: None, ..r.clone() },
            Rule { repositories: vec![], ..r.clone() },
            Rule { tags: vec![], ..r.clone() },
        ];
        for c in &cleared {
            prop_assert!(!m(&r) || m(c), "clearing narrowed: {:?} -> {:?}", r, c);
        }
        let populated = [
            (r.actions.is_empty(), Rule { actions, ..r.clone() }),
            (r.roles.is_empty(), Rule { roles, ..r.clone() }),
            (r.account_types.is_empty(), Rule { account_types: vec![account_type], ..r.clone() }),
            (r.subject.is_none(), Rule { subject: Some(subject.to_string()), ..r.clone() }),
            (r.repositories.is_empty(), Rule { repositories: patterns, ..r.clone() }),
            (r.tags.is_empty(), Rule { tags: tag_patterns, ..r.clone() }),
        ];
        for (was_empty, p) in &populated {
            if *was_empty {
                prop_assert!(!m(p) || m(&r), "populating widened: {:?} -> {:?}", r, p);
            }
        }
    }

    /// (5) A global operation ignores repository-scoped rules, even those
    /// whose patterns match everything.
    #[test]
    fn a_global_operation_ignores_repository_scoped_rules(
        rules in rules(), p in principal(), a in action(),
    ) {
        let input = PolicyInput { principal: &p, action: a, repository: None, tag: None };
        let unscoped: Vec<Rule> = rules.iter().filter(|r| r.repositories.is_empty()).cloned().collect();
        prop_assert_eq!(evaluate(&input, &rules), evaluate(&input, &unscoped));
        for r in rules.iter().filter(|r| !r.repositories.is_empty()) {
            prop_assert!(!matches_alone(r, &input));
        }
    }

    /// (6) The built-ins alone give guests (whose only role is guest, or
    /// who have none) and non-admin system accounts nothing but the
    /// version check and the tag actions (which gate nothing alone: the
    /// use cases ask them only after a push or delete is allowed).
    #[test]
    fn builtins_give_guests_and_system_accounts_only_the_version_check(
        p in prop_oneof![
            (select(&SUBJECTS[..]), select(AccountType::ALL.to_vec()), subsequence(vec![Role::Guest], 0..=1))
                .prop_map(|(s, a, roles)| Principal::new(s, a, roles)),
            (select(&SUBJECTS[..]), subsequence(vec![Role::User, Role::Guest], 0..=2))
                .prop_map(|(s, roles)| Principal::new(s, AccountType::System, roles)),
        ],
        ask in ask(),
    ) {
        let input = PolicyInput { principal: &p, ..ask.input() };
        let d = evaluate(&input, &builtin_rules());
        prop_assert_eq!(
            d.is_allowed(),
            input.action == Action::VersionCheck || input.action.is_tag_action()
        );
    }

    /// (7) Stored rules cannot make the built-ins grant a guest more: with
    /// only denies stored, a guest still gets nothing but the version
    /// check; with any rules stored, whatever else a guest gets, some
    /// stored allow granted.
    #[test]
    fn stored_rules_never_widen_the_builtins_for_guests(
        stored in rules(),
        subject in select(&SUBJECTS[..]),
        account in select(AccountType::ALL.to_vec()),
        ask in ask(),
    ) {
        let guest = Principal::new(subject, account, vec![Role::Guest]);
        let input = PolicyInput { principal: &guest, ..ask.input() };

        let denies: Vec<Rule> = stored.iter().cloned().map(|r| Rule { effect: Effect::Deny, ..r }).collect();
        let engine = Engine::new();
        engine.set_rules(denies);
        let built_in = input.action == Action::VersionCheck || input.action.is_tag_action();
        if engine.evaluate(&input).is_allowed() {
            prop_assert!(built_in, "{:?}", input.action);
        }

        engine.set_rules(stored.clone());
        let d = engine.evaluate(&input);
        if d.is_allowed() && !built_in {
            let named = find(&stored, d.rule_id);
            prop_assert_eq!(named.effect, Effect::Allow);
            prop_assert!(spec_matches(named, &input));
        }
    }

    /// (8) The engine agrees with the free `evaluate` over the built-ins
    /// plus the admissible stored rules (a stored rule claiming priority 0
    /// or a non-positive id is dropped), and its explanation agrees too.
    #[test]
    fn the_engine_agrees_with_evaluate(
        stored in (0usize..8).prop_flat_map(|n| {
            // Ids from -1 and priorities from 0, so some rules pose as
            // built-ins and must be dropped.
            (0..n as i64).map(|i| rule_with(i - 1, 0u32..5)).collect::<Vec<_>>()
        }),
        ask in ask(),
    ) {
        let engine = Engine::new();
        engine.set_rules(stored.clone());
        let mut all = builtin_rules();
        all.extend(stored.into_iter().filter(|r| r.priority >= 1 && r.id > 0));
        let input = ask.input();
        let d = engine.evaluate(&input);
        prop_assert_eq!(d, evaluate(&input, &all));
        prop_assert_eq!(engine.explain(&input).decision, d);
        let held = engine.rules();
        prop_assert_eq!(held.len(), all.len());
        prop_assert!(held.windows(2).all(|w| w[0].priority <= w[1].priority));
        prop_assert_eq!(held.iter().filter(|r| r.is_builtin()).count(), 4);
    }

    /// `explain` gives every rule once, in priority order, with a verdict
    /// that is the spec's, and the decision `evaluate` gives.
    #[test]
    fn explain_tells_the_same_story(rules in rules(), ask in ask()) {
        let input = ask.input();
        let e = explain(&input, &rules);
        prop_assert_eq!(e.decision, evaluate(&input, &rules));
        prop_assert_eq!(e.rules.len(), rules.len());
        prop_assert!(e.rules.windows(2).all(|w| w[0].rule.priority <= w[1].rule.priority));
        for v in &e.rules {
            prop_assert_eq!(v.matched, spec_matches(&v.rule, &input));
            prop_assert_eq!(v.matched, v.mismatch.is_none());
        }
        let text = e.to_string();
        prop_assert!(text.lines().count() == rules.len() + 2, "{}", text);
    }

    /// Glob semantics: `*` never crosses a '/', `**` as a segment does,
    /// a literal pattern matches exactly its own name, and a pattern
    /// survives a JSON round trip.
    #[test]
    fn glob_semantics(name in repo_name(), other in repo_name(), pat in pattern()) {
        let parts: Vec<&str> = name.as_str().split('/').collect();
        let one_level = RepoPattern::new(&format!("{}/*", parts[0])).expect("valid");
        prop_assert_eq!(one_level.matches(name.as_str()), parts.len() == 2);
        let any_depth = RepoPattern::new(&format!("{}/**", parts[0])).expect("valid");
        prop_assert_eq!(any_depth.matches(name.as_str()), parts.len() >= 2);
        let stars = RepoPattern::new(&vec!["*"; parts.len()].join("/")).expect("valid");
        prop_assert!(stars.matches(name.as_str()));
        prop_assert_eq!(stars.matches(other.as_str()), other.as_str().split('/').count() == parts.len());
        let literal = RepoPattern::new(name.as_str()).expect("a name is a pattern");
        prop_assert_eq!(literal.matches(other.as_str()), name == other);

        let json = serde_json::to_string(&pat).expect("serializes");
        let back: RepoPattern = serde_json::from_str(&json).expect("deserializes");
        prop_assert_eq!(back.matches(name.as_str()), pat.matches(name.as_str()));
        prop_assert_eq!(back, pat);
    }

    /// (9) A tag guard decides each tag as the engine decides the same
    /// input with that tag: the store step's answer is the policy's.
    #[test]
    fn a_tag_guard_decides_as_the_engine(stored in rules(), ask in ask(), tag in tag()) {
        let engine = Engine::new();
        engine.set_rules(stored);
        let guard = engine.tag_guard(&ask.input());
        let with_tag = PolicyInput { tag: Some(&tag), ..ask.input() };
        prop_assert_eq!(guard.decide(&tag), engine.evaluate(&with_tag));
        prop_assert_eq!(guard.check(&tag, None).is_ok(), engine.evaluate(&with_tag).is_allowed());
        if guard.allows_every_tag() {
            for t in TAGS {
                let t = Tag::new(t).expect("valid tag");
                prop_assert!(guard.check(&t, None).is_ok());
            }
        }
    }
}
