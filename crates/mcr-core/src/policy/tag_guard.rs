//! [`TagGuard`]: a tag action's decision for one principal in one
//! repository, taken into the store step that moves or deletes tags.
//!
//! Why a guard and not a check before the step: whether a push moves a tag,
//! and which tags point at a manifest being deleted, is only known for sure
//! inside the store's transaction. A check made before it would read a
//! state a concurrent push can change before the write (tag `v1` moved
//! onto the manifest being deleted just after the check read its tags).
//! The decision itself depends only on the rules and the tag's name, never
//! on where the tag points, so the use case settles every field but the
//! tag here, and the store asks [`TagGuard::check`] about each tag it
//! finds in the same transaction as the change: nothing can slip between.

use std::fmt;

use super::evaluate::{check, decide_sorted, Decision};
use super::explain::Mismatch;
use super::rule::{Effect, Rule};
use super::PolicyInput;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::names::{RepoName, Tag};
use crate::principal::{Action, Principal};

/// The rules that decide one tag action (`registry:tag_overwrite` or
/// `registry:tag_delete`) for one principal in one repository, for any
/// tag: made by [`PolicyEngine::tag_guard`](super::PolicyEngine::tag_guard)
/// and carried by the store step (`NewManifest::tag_guard`,
/// `ManifestStore::delete_manifest`, `RepositoryStore::delete_repository`).
#[derive(Debug, Clone, PartialEq)]
pub struct TagGuard {
    scope: Scope,
}

#[derive(Debug, Clone, PartialEq)]
enum Scope {
    /// Every tag may be moved and deleted.
    Open,
    Bound {
        principal: Principal,
        action: Action,
        repository: Option<RepoName>,
        /// The rules that match every field but the tag, in priority
        /// order.
        rules: Vec<Rule>,
    },
}

impl TagGuard {
    /// A guard that refuses nothing: for changes no principal asks for,
    /// such as a pull-through cache following its upstream's tags.
    pub fn open() -> TagGuard {
        TagGuard { scope: Scope::Open }
    }

    /// The guard for `input` (whose `tag` is ignored) over `sorted` rules,
    /// in priority order.
    pub(super) fn new<'r>(
        input: &PolicyInput<'_>,
        sorted: impl IntoIterator<Item = &'r Rule>,
    ) -> TagGuard {
        let input = PolicyInput {
            tag: None,
            ..*input
        };
        let rules = sorted
            .into_iter()
            // `Untagged` is the tag check failing for want of a tag: such a
            // rule matches every other field and is decided per tag.
            .filter(|r| matches!(check(r, &input), Ok(()) | Err(Mismatch::Untagged)))
            .cloned()
            .collect();
        TagGuard {
            scope: Scope::Bound {
                principal: input.principal.clone(),
                action: input.action,
                repository: input.repository.cloned(),
                rules,
            },
        }
    }

    /// Whether every tag is allowed, so that a store may skip reading the
    /// tags a change touches: no deny could match, and an allow without
    /// tag patterns does.
    pub fn allows_every_tag(&self) -> bool {
        match &self.scope {
            Scope::Open => true,
            Scope::Bound { rules, .. } => {
                rules.iter().all(|r| r.effect == Effect::Allow)
                    && rules.iter().any(|r| r.tags.is_empty())
            }
        }
    }

    /// The decision for `tag`: the engine's, over the rules that matched
    /// every other field (which [`check`] still sees, so matching keeps one
    /// definition).
    pub fn decide(&self, tag: &Tag) -> Decision {
        match &self.scope {
            Scope::Open => Decision {
                effect: Effect::Allow,
                rule_id: None,
            },
            Scope::Bound {
                principal,
                action,
                repository,
                rules,
            } => decide_sorted(
                rules,
                &PolicyInput {
                    principal,
                    action: *action,
                    repository: repository.as_ref(),
                    tag: Some(tag),
                },
            ),
        }
    }

    /// `Ok` if `tag` may be moved or deleted, else `Error::TagRefused`
    /// naming the rule. `manifest` is the manifest whose deletion would
    /// take the tag with it, for the message.
    pub fn check(&self, tag: &Tag, manifest: Option<&Digest>) -> Result<()> {
        let Scope::Bound {
            principal,
            action,
            repository,
            rules,
        } = &self.scope
        else {
            return Ok(());
        };
        let decision = self.decide(tag);
        if decision.is_allowed() {
            return Ok(());
        }
        let rule = decision
            .rule_id
            .and_then(|id| rules.iter().find(|r| r.id == id))
            .map(|r| (r.id, r.description.clone()));
        Err(Error::TagRefused(Box::new(TagRefusal {
            subject: principal.subject.clone(),
            action: *action,
            repository: repository.clone(),
            tag: tag.clone(),
            manifest: manifest.cloned(),
            rule,
        })))
    }
}

/// Why a tag may not be moved or deleted: who asked, what, and the rule
/// that refused (`None` for the default deny, when no rule allows the tag
/// action at all). Its `Display` is the message a client reads, saying how
/// an admin lifts it.
#[derive(Debug, Clone, PartialEq)]
pub struct TagRefusal {
    pub subject: String,
    pub action: Action,
    pub repository: Option<RepoName>,
    pub tag: Tag,
    /// The manifest being deleted that the tag points at.
    pub manifest: Option<Digest>,
    /// The deciding rule's id and description.
    pub rule: Option<(i64, String)>,
}

impl fmt::Display for TagRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            Action::TagOverwrite => "move",
            _ => "delete",
        };
        match &self.manifest {
            Some(digest) => write!(
                f,
                "{} may not delete manifest {digest}: its tag {} ",
                self.subject, self.tag
            )?,
            None => write!(f, "{} may not {verb} tag {} ", self.subject, self.tag)?,
        }
        if let Some(repo) = &self.repository {
            write!(f, "in {repo} ")?;
        }
        write!(f, "({})", self.action)?;
        match &self.rule {
            Some((id, description)) => {
                write!(f, ": immutable by rule {id}")?;
                if !description.is_empty() {
                    write!(f, " {description:?}")?;
                }
                // A deny wins over every allow, whatever its priority, so
                // the only ways out are through the rule itself.
                write!(
                    f,
                    ". An admin lifts this by disabling, narrowing (its tags, roles or \
                     subject) or deleting rule {id}: mcrctl policy update {id} --enabled false, \
                     mcrctl policy delete {id}, or PATCH/DELETE /v1/policy/rules/{id}"
                )
            }
            None => write!(
                f,
                ": no rule allows {}; an admin can add an allow rule for it",
                self.action
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{builtin_rules, evaluate, TagPattern};
    use crate::principal::{AccountType, Role};

    fn immutable(id: i64, patterns: &[&str]) -> Rule {
        Rule {
            id,
            priority: 5,
            description: "releases are immutable".into(),
            effect: Effect::Deny,
            actions: Action::TAG_ACTIONS.to_vec(),
            roles: vec![],
            account_types: vec![],
            subject: None,
            repositories: vec![],
            tags: patterns
                .iter()
                .map(|p| TagPattern::new(p).unwrap())
                .collect(),
            enabled: true,
        }
    }

    fn tag(s: &str) -> Tag {
        Tag::new(s).unwrap()
    }

    #[test]
    fn decides_as_the_engine_would_for_each_tag() {
        let mut rules = builtin_rules();
        rules.push(immutable(7, &["v*"]));
        let admin = Principal::new("root", AccountType::Human, vec![Role::Admin]);
        let repo = RepoName::new("team/app").unwrap();
        for action in Action::TAG_ACTIONS {
            let input = PolicyInput {
                principal: &admin,
                action,
                repository: Some(&repo),
                tag: None,
            };
            let guard = TagGuard::new(&input, super::super::evaluate::sorted(&rules));
            assert!(!guard.allows_every_tag());
            for t in ["v1", "latest", "v", "x-v1"] {
                let t = tag(t);
                let with_tag = PolicyInput {
                    tag: Some(&t),
                    ..input
                };
                assert_eq!(guard.decide(&t), evaluate(&with_tag, &rules), "{t}");
            }
        }
    }

    #[test]
    fn refusal_names_the_rule_and_the_way_out() {
        let rules = [immutable(7, &["v*"])];
        let ci = Principal::new("ci", AccountType::System, vec![]);
        let repo = RepoName::new("team/app").unwrap();
        let guard = TagGuard::new(
            &PolicyInput {
                principal: &ci,
                action: Action::TagOverwrite,
                repository: Some(&repo),
                tag: None,
            },
            &rules,
        );
        let err = guard.check(&tag("v1"), None).unwrap_err().to_string();
        assert_eq!(
            err,
            "ci may not move tag v1 in team/app (registry:tag_overwrite): immutable by rule 7 \
             \"releases are immutable\". An admin lifts this by disabling, narrowing (its tags, \
             roles or subject) or deleting rule 7: mcrctl policy update 7 --enabled false, \
             mcrctl policy delete 7, or PATCH/DELETE /v1/policy/rules/7"
        );
        // No allow among these rules: `latest` falls to the default deny.
        let err = guard.check(&tag("latest"), None).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "no rule allows registry:tag_overwrite; an admin can add an allow rule for it"
            ),
            "{err}"
        );
        assert_eq!(TagGuard::open().check(&tag("v1"), None).ok(), Some(()));
        assert!(TagGuard::open().allows_every_tag());
    }
}
