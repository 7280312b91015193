//! The policy engine: priority-ordered allow and deny rules per repository.
//!
//! [`evaluate`] is stateless: rules sorted by priority (stable, lower
//! first), every matching rule collected, any matching deny wins, else the
//! first matching allow, else **default deny**. A rule's populated fields
//! are ANDed; an empty field is a wildcard. A global operation (no
//! repository) matches only rules without repository patterns.
//!
//! The [`builtin_rules`] (negative ids, priority 0) are always present;
//! stored rules have priority ≥ 1. [`Engine`] holds both, pre-sorted, and
//! is what the use cases ask through the [`PolicyEngine`] port.

mod builtin;
mod engine;
mod evaluate;
mod rule;

pub use builtin::builtin_rules;
pub use engine::{Engine, PolicyEngine};
pub use evaluate::{evaluate, explain, Decision, Explanation, Mismatch, RuleVerdict};
pub use rule::{Effect, RepoPattern, Rule, RuleDraft, RulePatch};

use crate::names::RepoName;
use crate::principal::{Action, Principal};

/// What is being decided: who, doing what, where (`None` for a global
/// operation such as the catalog or the version check).
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    pub principal: &'a Principal,
    pub action: Action,
    pub repository: Option<&'a RepoName>,
}
