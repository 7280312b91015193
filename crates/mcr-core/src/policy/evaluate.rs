//! The decision, and the explanation of a decision.

use std::fmt;

use serde::Serialize;

use super::rule::{Effect, Rule};
use super::PolicyInput;

/// The outcome: the effect, and the rule that decided (`None` for the
/// default deny).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub effect: Effect,
    pub rule_id: Option<i64>,
}

impl Decision {
    pub const DEFAULT_DENY: Decision = Decision {
        effect: Effect::Deny,
        rule_id: None,
    };

    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }
}

/// Why a rule did not match: the first field that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mismatch {
    Disabled,
    Action,
    Role,
    AccountType,
    Subject,
    Repository,
    /// A repository-scoped rule never matches a global operation.
    GlobalOperation,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mismatch::Disabled => "the rule is disabled",
            Mismatch::Action => "the action is not among its actions",
            Mismatch::Role => "the principal has none of its roles",
            Mismatch::AccountType => "the account type is not among its account types",
            Mismatch::Subject => "the subject differs",
            Mismatch::Repository => "the repository matches none of its patterns",
            Mismatch::GlobalOperation => "it is scoped to repositories and the operation is global",
        })
    }
}

/// Whether `rule` matches `input`, and if not, why.
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
    match input.repository {
        None if !rule.repositories.is_empty() => Err(Mismatch::GlobalOperation),
        Some(repo)
            if !rule.repositories.is_empty()
                && !rule
                    .repositories
                    .iter()
                    .any(|pat| pat.matches(repo.as_str())) =>
        {
            Err(Mismatch::Repository)
        }
        _ => Ok(()),
    }
}

/// Decides over rules already sorted by priority: the first matching deny,
/// else the first matching allow, else the default deny. One pass, no
/// allocation.
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

/// Sorts by priority, stably, so equal priorities keep their given order.
pub(super) fn sorted(rules: &[Rule]) -> Vec<&Rule> {
    let mut v: Vec<&Rule> = rules.iter().collect();
    v.sort_by_key(|r| r.priority);
    v
}

/// The decision for `input` under `rules` (in any order).
pub fn evaluate(input: &PolicyInput<'_>, rules: &[Rule]) -> Decision {
    decide_sorted(sorted(rules), input)
}

/// One rule's part in a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleVerdict {
    pub rule_id: i64,
    pub priority: u32,
    pub effect: Effect,
    pub description: String,
    pub matched: bool,
    /// Why it did not match, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<Mismatch>,
}

/// A decision with every rule's verdict, in priority order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    pub rules: Vec<RuleVerdict>,
}

/// Explains the decision for `input` under `rules`.
pub fn explain(input: &PolicyInput<'_>, rules: &[Rule]) -> Explanation {
    let ordered = sorted(rules);
    let verdicts = ordered
        .iter()
        .map(|r| {
            let m = check(r, input).err();
            RuleVerdict {
                rule_id: r.id,
                priority: r.priority,
                effect: r.effect,
                description: r.description.clone(),
                matched: m.is_none(),
                mismatch: m,
            }
        })
        .collect();
    Explanation {
        decision: decide_sorted(ordered, input),
        rules: verdicts,
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for v in &self.rules {
            write!(
                f,
                "rule {} ({}, priority {})",
                v.rule_id, v.effect, v.priority
            )?;
            if !v.description.is_empty() {
                write!(f, " \"{}\"", v.description)?;
            }
            match v.mismatch {
                None => writeln!(f, ": matched")?,
                Some(m) => writeln!(f, ": no match, {m}")?,
            }
        }
        let matched = |e: Effect| self.rules.iter().any(|v| v.matched && v.effect == e);
        match (self.decision.effect, self.decision.rule_id) {
            (Effect::Deny, Some(id)) => write!(
                f,
                "decision: deny, by rule {id} (a matching deny always wins)"
            ),
            (Effect::Allow, Some(id)) => write!(
                f,
                "decision: allow, by rule {id} (the first matching allow; no deny matched)"
            ),
            _ if matched(Effect::Allow) => write!(f, "decision: deny"),
            _ => write!(f, "decision: deny (no rule matched: default deny)"),
        }
    }
}
