//! Tag rules in the use cases: the [`TagGuard`] a push or delete hands to
//! its store step, and the audit of a refusal.
//!
//! The order is the same everywhere: `registry:push` or `registry:delete`
//! is authorized first (so the tag actions only ever narrow what those
//! allow), then the guard for `registry:tag_overwrite` or
//! `registry:tag_delete` is made from the same fresh rule set, and the
//! store asks it about each tag inside the step that moves or deletes
//! them (the race this closes is described in `policy::tag_guard`).

use super::{details, Caller, Registry};
use crate::audit::EventType;
use crate::error::{Error, Result};
use crate::names::RepoName;
use crate::policy::{PolicyInput, TagGuard};
use crate::principal::Action;

impl Registry {
    /// The guard of `action` (a tag action) for the caller in `repo`. Call
    /// after [`Registry::authorize`], which brought the rules up to date.
    pub(super) fn tag_guard(&self, caller: &Caller, action: Action, repo: &RepoName) -> TagGuard {
        self.policy.tag_guard(&PolicyInput {
            principal: &caller.principal,
            action,
            repository: Some(repo),
            tag: None,
        })
    }

    /// Passes `result` on, auditing a tag refusal as a `policy_deny` with
    /// the action, the tag and the rule, as any other denial is.
    pub(super) async fn audit_tag_refusal<T>(
        &self,
        caller: &Caller,
        repo: &RepoName,
        result: Result<T>,
    ) -> Result<T> {
        let Err(Error::TagRefused(refusal)) = &result else {
            return result;
        };
        let mut d = details([
            ("action", refusal.action.as_str().to_string()),
            ("tag", refusal.tag.to_string()),
        ]);
        if let Some((id, _)) = &refusal.rule {
            d.insert("rule_id".to_string(), id.to_string());
        }
        self.audit(
            caller,
            EventType::PolicyDeny,
            Some(repo),
            refusal.manifest.as_ref(),
            d,
        )
        .await?;
        result
    }
}
