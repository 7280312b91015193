//! Explaining a decision: every rule in priority order, whether it matched,
//! and if not the field that failed.
//!
//! This is what `mcrctl policy explain` and `POST /v1/policy/explain` show.
//! It is built on the same [`check`] as the decision, so an explanation can
//! never tell a different story from the decision it explains.

use std::fmt;

use serde::Serialize;

use super::evaluate::{check, decide_sorted, sorted, Decision};
use super::rule::{Effect, Rule};
use super::PolicyInput;
use crate::names::{RepoName, Tag};
use crate::principal::{Action, Principal};

/// Why a rule did not match: the first field that failed, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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
    Tag,
    /// A tag-scoped rule never matches an action asked without a tag.
    Untagged,
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
            Mismatch::Tag => "the tag matches none of its patterns",
            Mismatch::Untagged => "it is scoped to tags and the action names no tag",
        })
    }
}

/// One rule's part in a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleVerdict {
    pub rule: Rule,
    pub matched: bool,
    /// Why it did not match, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<Mismatch>,
}

/// A decision, what it was asked about, and every rule's verdict in
/// priority order. `Display` renders it for a person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub principal: Principal,
    pub action: Action,
    /// `None` for a global operation.
    pub repository: Option<RepoName>,
    /// The tag a tag action was asked on; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<Tag>,
    pub decision: Decision,
    pub rules: Vec<RuleVerdict>,
}

/// Explains the decision for `input` under `rules` (in any order).
pub fn explain(input: &PolicyInput<'_>, rules: &[Rule]) -> Explanation {
    let ordered = sorted(rules);
    let verdicts = ordered
        .iter()
        .map(|&r| {
            let mismatch = check(r, input).err();
            RuleVerdict {
                rule: r.clone(),
                matched: mismatch.is_none(),
                mismatch,
            }
        })
        .collect();
    Explanation {
        principal: input.principal.clone(),
        action: input.action,
        repository: input.repository.cloned(),
        tag: input.tag.cloned(),
        decision: decide_sorted(ordered, input),
        rules: verdicts,
    }
}

/// Writes `items` as "a, b or c".
fn list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T], last: &str) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        match i {
            0 => {}
            _ if i + 1 == items.len() => write!(f, " {last} ")?,
            _ => f.write_str(", ")?,
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl Explanation {
    /// Says, with the rule's and the input's values, why `rule` failed.
    fn write_mismatch(&self, f: &mut fmt::Formatter<'_>, rule: &Rule, m: Mismatch) -> fmt::Result {
        let p = &self.principal;
        match m {
            Mismatch::Disabled => f.write_str("disabled"),
            Mismatch::Action => {
                write!(f, "{} is not ", self.action)?;
                list(f, &rule.actions, "or")
            }
            Mismatch::Role => {
                f.write_str("wants role ")?;
                list(f, &rule.roles, "or")?;
                if p.roles.is_empty() {
                    f.write_str(", the principal has no roles")
                } else {
                    f.write_str(", the principal has ")?;
                    list(f, &p.roles, "and")
                }
            }
            Mismatch::AccountType => {
                f.write_str("wants a ")?;
                list(f, &rule.account_types, "or")?;
                write!(f, " account, this is {}", p.account_type)
            }
            Mismatch::Subject => write!(
                f,
                "wants subject {:?}, this is {:?}",
                rule.subject.as_deref().unwrap_or_default(),
                p.subject
            ),
            Mismatch::Repository => {
                if let Some(repo) = &self.repository {
                    write!(f, "{repo} matches none of ")?;
                }
                list(f, &rule.repositories, "or")
            }
            Mismatch::GlobalOperation => {
                f.write_str("scoped to ")?;
                list(f, &rule.repositories, "and")?;
                write!(f, ", and {} is a global operation", self.action)
            }
            Mismatch::Tag => {
                if let Some(tag) = &self.tag {
                    write!(f, "tag {tag} matches none of ")?;
                }
                list(f, &rule.tags, "or")
            }
            Mismatch::Untagged => {
                f.write_str("scoped to tags ")?;
                list(f, &rule.tags, "and")?;
                write!(f, ", and {} was asked without a tag", self.action)
            }
        }
    }
}

impl fmt::Display for Explanation {
    /// ```text
    /// ci (system, no roles) asks registry:pull on ci/app
    ///   rule -1 (allow, priority 0) "built-in: admins may do everything": no match: wants role admin, the principal has no roles
    ///   rule 1 (allow, priority 10): matched
    ///   rule 2 (deny, priority 20): matched; deny wins
    /// decision: deny, by rule 2 (a matching deny wins over every allow)
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.principal;
        write!(f, "{}", p.subject)?;
        if let Some(name) = &p.username {
            write!(f, " [{name}]")?;
        }
        write!(f, " ({}, ", p.account_type)?;
        if p.roles.is_empty() {
            f.write_str("no roles")?;
        } else {
            f.write_str("roles ")?;
            list(f, &p.roles, "and")?;
        }
        write!(f, ") asks {}", self.action)?;
        if let Some(tag) = &self.tag {
            write!(f, " on tag {tag}")?;
        }
        match &self.repository {
            Some(repo) => writeln!(f, " on {repo}")?,
            None => writeln!(f, " (a global operation)")?,
        }

        for v in &self.rules {
            let r = &v.rule;
            write!(f, "  rule {} ({}, priority {})", r.id, r.effect, r.priority)?;
            if !r.description.is_empty() {
                write!(f, " {:?}", r.description)?;
            }
            match v.mismatch {
                Some(m) => {
                    f.write_str(": no match: ")?;
                    self.write_mismatch(f, r, m)?;
                }
                None => {
                    f.write_str(": matched")?;
                    if self.decision.rule_id == Some(r.id) {
                        f.write_str(match r.effect {
                            Effect::Deny => "; deny wins",
                            Effect::Allow => "; the first matching allow",
                        })?;
                    }
                }
            }
            writeln!(f)?;
        }

        match (self.decision.effect, self.decision.rule_id) {
            (Effect::Deny, Some(id)) => write!(
                f,
                "decision: deny, by rule {id} (a matching deny wins over every allow)"
            ),
            (Effect::Allow, Some(id)) => write!(
                f,
                "decision: allow, by rule {id} (the first matching allow; no deny matched)"
            ),
            _ => write!(f, "decision: deny (no rule matched: default deny)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{builtin_rules, RepoPattern};
    use crate::principal::{AccountType, Role};

    fn stored(id: i64, priority: u32, effect: Effect, patterns: &[&str]) -> Rule {
        Rule {
            id,
            priority,
            description: String::new(),
            effect,
            actions: vec![Action::Pull],
            roles: vec![],
            account_types: vec![AccountType::System],
            subject: None,
            repositories: patterns
                .iter()
                .map(|p| RepoPattern::new(p).unwrap())
                .collect(),
            tags: vec![],
            enabled: true,
        }
    }

    fn rules() -> Vec<Rule> {
        let mut rules = vec![
            stored(2, 20, Effect::Deny, &["ci/app"]),
            stored(1, 10, Effect::Allow, &["ci/*"]),
        ];
        rules.extend(builtin_rules());
        rules
    }

    fn explain_for(p: &Principal, action: Action, repo: Option<&str>) -> Explanation {
        let repo = repo.map(|r| RepoName::new(r).unwrap());
        explain(
            &PolicyInput {
                principal: p,
                action,
                repository: repo.as_ref(),
                tag: None,
            },
            &rules(),
        )
    }

    fn ci() -> Principal {
        Principal::new("ci", AccountType::System, vec![])
    }

    #[test]
    fn lists_every_rule_in_priority_order_with_its_verdict() {
        let e = explain_for(&ci(), Action::Pull, Some("ci/app"));
        let ids: Vec<i64> = e.rules.iter().map(|v| v.rule.id).collect();
        assert_eq!(ids, [-1, -2, -3, -4, 1, 2]);
        let verdicts: Vec<Option<Mismatch>> = e.rules.iter().map(|v| v.mismatch).collect();
        assert_eq!(
            verdicts,
            [
                Some(Mismatch::Role),
                Some(Mismatch::Role),
                Some(Mismatch::Action),
                Some(Mismatch::Action),
                None,
                None
            ]
        );
        assert!(e.rules.iter().all(|v| v.matched == v.mismatch.is_none()));
        assert_eq!(
            e.decision,
            Decision {
                effect: Effect::Deny,
                rule_id: Some(2)
            }
        );
    }

    #[test]
    fn reads_well_when_a_deny_wins() {
        let text = explain_for(&ci(), Action::Pull, Some("ci/app")).to_string();
        let want = "\
ci (system, no roles) asks registry:pull on ci/app
  rule -1 (allow, priority 0) \"built-in: admins may do everything\": no match: wants role admin, the principal has no roles
  rule -2 (allow, priority 0) \"built-in: human users may pull, push, delete and list\": no match: wants role user, the principal has no roles
  rule -3 (allow, priority 0) \"built-in: everyone may check the API version\": no match: registry:pull is not registry:version_check
  rule -4 (allow, priority 0) \"built-in: whoever may push may move tags, whoever may delete may delete them\": no match: registry:pull is not registry:tag_overwrite or registry:tag_delete
  rule 1 (allow, priority 10): matched
  rule 2 (deny, priority 20): matched; deny wins
decision: deny, by rule 2 (a matching deny wins over every allow)";
        assert_eq!(text, want);
    }

    #[test]
    fn reads_well_when_an_allow_decides_or_nothing_matches() {
        let text = explain_for(&ci(), Action::Pull, Some("ci/web")).to_string();
        assert!(
            text.contains("rule 1 (allow, priority 10): matched; the first matching allow"),
            "{text}"
        );
        assert!(
            text.contains("rule 2 (deny, priority 20): no match: ci/web matches none of ci/app"),
            "{text}"
        );
        assert!(text
            .ends_with("decision: allow, by rule 1 (the first matching allow; no deny matched)"));

        let text = explain_for(&ci(), Action::Push, Some("web/app")).to_string();
        assert!(
            text.contains("registry:push is not registry:pull"),
            "{text}"
        );
        assert!(
            text.ends_with("decision: deny (no rule matched: default deny)"),
            "{text}"
        );

        let text = explain_for(&ci(), Action::Pull, None).to_string();
        assert!(text.starts_with("ci (system, no roles) asks registry:pull (a global operation)"));
        assert!(
            text.contains("no match: scoped to ci/*, and registry:pull is a global operation"),
            "{text}"
        );

        let mut bob = Principal::new("bob", AccountType::Human, vec![Role::Guest]);
        bob.username = Some("Bob".into());
        let text = explain_for(&bob, Action::Pull, Some("ci/app")).to_string();
        assert!(text.starts_with("bob [Bob] (human, roles guest)"), "{text}");
        assert!(
            text.contains("no match: wants role admin, the principal has guest"),
            "{text}"
        );
        assert!(
            text.contains(
                "rule 1 (allow, priority 10): no match: wants a system account, this is human"
            ),
            "{text}"
        );
    }

    #[test]
    fn every_mismatch_renders_with_its_values() {
        let mut r = stored(7, 3, Effect::Deny, &["a/*", "b/*"]);
        r.roles = vec![Role::Admin, Role::User];
        r.subject = Some("svc".into());
        r.enabled = false;
        r.tags = vec![
            crate::policy::TagPattern::new("v2*").unwrap(),
            crate::policy::TagPattern::new("rc").unwrap(),
        ];
        let p = Principal::new("ci", AccountType::Human, vec![Role::Guest, Role::User]);
        let e = Explanation {
            principal: p,
            action: Action::Push,
            repository: Some(RepoName::new("c/d").unwrap()),
            tag: Some(Tag::new("v1").unwrap()),
            decision: Decision::DEFAULT_DENY,
            rules: vec![],
        };
        let render = |m| {
            struct Show<'a>(&'a Explanation, &'a Rule, Mismatch);
            impl fmt::Display for Show<'_> {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    self.0.write_mismatch(f, self.1, self.2)
                }
            }
            Show(&e, &r, m).to_string()
        };
        assert_eq!(render(Mismatch::Disabled), "disabled");
        assert_eq!(
            render(Mismatch::Action),
            "registry:push is not registry:pull"
        );
        assert_eq!(
            render(Mismatch::Role),
            "wants role admin or user, the principal has guest and user"
        );
        assert_eq!(
            render(Mismatch::AccountType),
            "wants a system account, this is human"
        );
        assert_eq!(
            render(Mismatch::Subject),
            "wants subject \"svc\", this is \"ci\""
        );
        assert_eq!(
            render(Mismatch::Repository),
            "c/d matches none of a/* or b/*"
        );
        assert_eq!(
            render(Mismatch::GlobalOperation),
            "scoped to a/* and b/*, and registry:push is a global operation"
        );
        assert_eq!(render(Mismatch::Tag), "tag v1 matches none of v2* or rc");
        assert_eq!(
            render(Mismatch::Untagged),
            "scoped to tags v2* and rc, and registry:push was asked without a tag"
        );
        // The short form, for logs and the JSON's readers.
        assert_eq!(
            Mismatch::Role.to_string(),
            "the principal has none of its roles"
        );
        assert_eq!(
            serde_json::to_string(&Mismatch::GlobalOperation).unwrap(),
            "\"global_operation\""
        );
    }

    #[test]
    fn a_tag_action_is_explained_with_its_tag() {
        let mut rules = builtin_rules();
        rules.push(Rule {
            actions: vec![Action::TagOverwrite],
            roles: vec![],
            account_types: vec![],
            repositories: vec![],
            tags: vec![crate::policy::TagPattern::new("v*").unwrap()],
            description: "releases".into(),
            ..stored(5, 1, Effect::Deny, &[])
        });
        let admin = Principal::new("root", AccountType::Human, vec![Role::Admin]);
        let repo = RepoName::new("team/app").unwrap();
        let ask = |t: &str| {
            let t = Tag::new(t).unwrap();
            explain(
                &PolicyInput {
                    principal: &admin,
                    action: Action::TagOverwrite,
                    repository: Some(&repo),
                    tag: Some(&t),
                },
                &rules,
            )
        };
        let e = ask("v1");
        assert_eq!(e.decision.rule_id, Some(5));
        let text = e.to_string();
        assert!(
            text.starts_with(
                "root (human, roles admin) asks registry:tag_overwrite on tag v1 on team/app"
            ),
            "{text}"
        );
        assert!(
            text.contains("rule 5 (deny, priority 1) \"releases\": matched; deny wins"),
            "{text}"
        );
        assert_eq!(serde_json::to_value(&e).unwrap()["tag"], "v1");
        let text = ask("latest").to_string();
        assert!(
            text.contains("no match: tag latest matches none of v*"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "decision: allow, by rule -1 (the first matching allow; no deny matched)"
            ),
            "{text}"
        );
    }

    #[test]
    fn serializes_for_the_api() {
        let e = explain_for(&ci(), Action::Pull, Some("ci/app"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["decision"]["effect"], "deny");
        assert_eq!(json["decision"]["rule_id"], 2);
        assert_eq!(json["action"], "registry:pull");
        assert_eq!(json["repository"], "ci/app");
        assert_eq!(json["principal"]["subject"], "ci");
        assert_eq!(json["rules"][0]["rule"]["id"], -1);
        assert_eq!(json["rules"][0]["matched"], false);
        assert_eq!(json["rules"][0]["mismatch"], "role");
        assert_eq!(json["rules"][5]["matched"], true);
        assert!(json["rules"][5].get("mismatch").is_none());
        assert!(json.get("tag").is_none(), "no tag asked, none shown");
    }
}
