//! Administration: repositories with their counts, policy rules and the
//! audit log.

use super::{details, Caller, Registry};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditQuery, EventType};
use crate::error::{Error, Result};
use crate::names::{RepoName, Tag};
use crate::policy::{builtin_rules, Explanation, PolicyInput, Rule, RuleDraft, RulePatch};
use crate::ports::{RepoDetail, RepoSummary};
use crate::principal::{Action, Principal};

/// One page of the repository listing: the admin REST API's JSON, the
/// fields of gRPC's `ListRepositoriesResponse`, and what `mcrctl` and
/// `mcr-web` read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoPage {
    pub repositories: Vec<RepoSummary>,
    /// Present when there are more: pass it as `last` for the next page.
    pub next: Option<String>,
}

impl Registry {
    /// Tags, manifests and layers of a repository (needs pull on it).
    pub async fn repository_detail(&self, caller: &Caller, repo: &RepoName) -> Result<RepoDetail> {
        self.authorize(caller, Action::Pull, Some(repo)).await?;
        self.meta
            .repository_detail(repo)
            .await?
            .ok_or_else(|| Error::NameUnknown(repo.clone()))
    }

    /// Every rule in force, in the order the engine considers them: the
    /// built-ins ([`Rule::is_builtin`]: negative ids, priority 0) first,
    /// then the stored rules by priority, disabled ones included (admin
    /// only). Every listing — REST, gRPC, mcrctl, the web UI — shows both.
    pub async fn list_rules(&self, caller: &Caller) -> Result<Vec<Rule>> {
        self.authorize_admin(caller).await?;
        let mut stored = self.meta.list_rules().await?.rules;
        stored.sort_by_key(|r| (r.priority, r.id));
        let mut rules = builtin_rules();
        rules.extend(stored);
        Ok(rules)
    }

    pub async fn get_rule(&self, caller: &Caller, id: i64) -> Result<Rule> {
        self.authorize_admin(caller).await?;
        self.meta
            .get_rule(id)
            .await?
            .ok_or_else(|| Error::not_found("policy rule", id))
    }

    /// Validates and stores a rule, then reloads the engine.
    pub async fn create_rule(&self, caller: &Caller, draft: RuleDraft) -> Result<Rule> {
        self.authorize_admin(caller).await?;
        let draft = draft.validate()?;
        let rule = self.meta.create_rule(&draft).await?;
        self.rules_changed(caller, EventType::PolicyRuleCreated, rule.id)
            .await?;
        Ok(rule)
    }

    /// Applies a partial update, re-validating the whole rule. An update
    /// racing another edit of the same rule fails with `Conflict` rather
    /// than undoing it; the client reads the rule again and retries.
    pub async fn update_rule(&self, caller: &Caller, id: i64, patch: RulePatch) -> Result<Rule> {
        self.authorize_admin(caller).await?;
        let current = self
            .meta
            .get_rule(id)
            .await?
            .ok_or_else(|| Error::not_found("policy rule", id))?;
        let updated = patch.apply(&current)?;
        self.meta.update_rule(&current, &updated).await?;
        self.rules_changed(caller, EventType::PolicyRuleUpdated, id)
            .await?;
        Ok(updated)
    }

    pub async fn delete_rule(&self, caller: &Caller, id: i64) -> Result<()> {
        self.authorize_admin(caller).await?;
        if !self.meta.delete_rule(id).await? {
            return Err(Error::not_found("policy rule", id));
        }
        self.rules_changed(caller, EventType::PolicyRuleDeleted, id)
            .await
    }

    async fn rules_changed(&self, caller: &Caller, event: EventType, id: i64) -> Result<()> {
        self.reload_policy().await?;
        self.audit(
            caller,
            event,
            None,
            None,
            details([("rule_id", id.to_string())]),
        )
        .await
    }

    /// Which rules match `principal` doing `action` on `repository` (and
    /// on `tag`, for the tag actions), and why the decision fell as it did
    /// (admin only).
    pub async fn explain(
        &self,
        caller: &Caller,
        principal: &Principal,
        action: Action,
        repository: Option<&RepoName>,
        tag: Option<&Tag>,
    ) -> Result<Explanation> {
        self.authorize_admin(caller).await?;
        Ok(self.policy.explain(&PolicyInput {
            principal,
            action,
            repository,
            tag,
        }))
    }

    /// Audit events, newest first (admin only), including the pulls still
    /// queued for the audit writer.
    pub async fn audit_events(
        &self,
        caller: &Caller,
        mut query: AuditQuery,
    ) -> Result<Vec<AuditEvent>> {
        self.authorize_admin(caller).await?;
        if query.limit == 0 {
            query.limit = AuditQuery::DEFAULT_LIMIT;
        }
        query.limit = query.limit.min(AuditQuery::MAX_LIMIT);
        // Queued pull events first, so the answer holds every request
        // this process has answered.
        self.flush_audit().await?;
        self.meta.query_audit(&query).await
    }
}
