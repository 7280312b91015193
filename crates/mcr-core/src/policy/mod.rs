//! The policy engine: who may do what, where.
//!
//! [`evaluate()`] is stateless: rules sorted by priority (stable, lower
//! first), every matching rule considered, any matching deny wins, else the
//! first matching allow, else **default deny**. A rule's populated fields
//! are ANDed; an empty field is a wildcard. A global operation (no
//! repository) matches only rules without repository patterns.
//!
//! The [`builtin_rules`] (negative ids, priority 0) are always present;
//! stored rules have priority ≥ 1. [`Engine`] holds both, pre-sorted, and
//! is what the use cases ask through the [`PolicyEngine`] port.
//! [`explain()`] shows every rule's verdict and why the decision fell as it
//! did.
//!
//! Tag rules: a rule's `tags` patterns match only the tag actions
//! (`registry:tag_overwrite`, `registry:tag_delete`), which the use cases
//! ask for each tag a push would move or a delete would remove, after
//! `registry:push` or `registry:delete` was allowed. A deny of them makes
//! the matching tags immutable; a [`TagGuard`] carries that decision into
//! the store step that moves or deletes tags.
//!
//! Layout: `rule` (rules and their create/patch bodies), `pattern`
//! (repository and tag globs), `evaluate` (matching and deciding),
//! `explain`, `builtin`, `engine`, `tag_guard`. Nothing here does I/O:
//! rules come in as values.

mod builtin;
mod engine;
mod evaluate;
mod explain;
mod pattern;
mod rule;
mod tag_guard;

pub use builtin::builtin_rules;
pub use engine::{Engine, PolicyEngine};
pub use evaluate::{evaluate, Decision};
pub use explain::{explain, Explanation, Mismatch, RuleVerdict};
pub use pattern::{RepoPattern, TagPattern};
pub use rule::{Effect, Rule, RuleDraft, RulePatch};
pub use tag_guard::{TagGuard, TagRefusal};

use crate::names::{RepoName, Tag};
use crate::principal::{Action, Principal};

/// What is being decided: who, doing what, where.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    pub principal: &'a Principal,
    pub action: Action,
    /// `None` for a global operation such as the catalog or the version
    /// check.
    pub repository: Option<&'a RepoName>,
    /// The tag a tag action is on; `None` for every other action. A rule
    /// with tag patterns matches only an input with a tag.
    pub tag: Option<&'a Tag>,
}
