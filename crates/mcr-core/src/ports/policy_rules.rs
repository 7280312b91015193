//! The `PolicyRuleStore` port: the stored policy rules (the built-ins live
//! in the engine).

use async_trait::async_trait;

use crate::error::Result;
use crate::policy::{Rule, RuleDraft};

/// Every stored rule, as of one generation of the rule set.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRules {
    /// Grows with every change to the stored rules (0 before the first),
    /// so of two listings the later one is the one with the larger
    /// generation, whatever order they arrive in.
    pub generation: u64,
    pub rules: Vec<Rule>,
}

/// Stored policy rules. Ids are assigned by the store, only grow, and are
/// never reused after a delete, so an audit entry's rule id names one rule
/// forever. Every create, update and delete advances the rule set's
/// generation in the same step, so a policy engine can refuse to go back
/// to an older listing (issue 16, case 7).
#[async_trait]
pub trait PolicyRuleStore: Send + Sync + 'static {
    /// Every rule with the generation they make up, read in one step.
    async fn list_rules(&self) -> Result<StoredRules>;
    /// The rule set's current generation alone: one short read, which a
    /// replica makes every few seconds to learn whether another changed
    /// the rules ([`crate::registry::POLICY_MAX_STALENESS`]).
    async fn rule_generation(&self) -> Result<u64>;
    async fn get_rule(&self, id: i64) -> Result<Option<Rule>>;
    async fn create_rule(&self, draft: &RuleDraft) -> Result<Rule>;
    /// Replaces `current` with `updated` (same id) if the stored rule is
    /// still `current`, in one step: `NotFound` if there is no such rule,
    /// `Conflict` if it changed since `current` was read (a lost update
    /// otherwise).
    async fn update_rule(&self, current: &Rule, updated: &Rule) -> Result<()>;
    async fn delete_rule(&self, id: i64) -> Result<bool>;
}
