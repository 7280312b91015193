//! The `PolicyRuleStore` port: the stored policy rules (the built-ins live
//! in the engine).

use async_trait::async_trait;

use crate::error::Result;
use crate::policy::{Rule, RuleDraft};

/// Stored policy rules. Ids are assigned by the store, only grow, and are
/// never reused after a delete, so an audit entry's rule id names one rule
/// forever.
#[async_trait]
pub trait PolicyRuleStore: Send + Sync + 'static {
    async fn list_rules(&self) -> Result<Vec<Rule>>;
    async fn get_rule(&self, id: i64) -> Result<Option<Rule>>;
    async fn create_rule(&self, draft: &RuleDraft) -> Result<Rule>;
    /// Replaces the rule with `rule.id`; `NotFound` if there is none.
    async fn update_rule(&self, rule: &Rule) -> Result<()>;
    async fn delete_rule(&self, id: i64) -> Result<bool>;
}
