//! Rules, their validated parts, and the bodies that create and change
//! them.

use std::fmt;

use glob::{MatchOptions, Pattern};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::principal::{AccountType, Action, Role};

/// Whether a matching rule grants or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        })
    }
}

/// A glob over repository names where `*` and `?` do not cross `/`.
#[derive(Clone)]
pub struct RepoPattern {
    source: Box<str>,
    pattern: Pattern,
}

const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// Longest pattern accepted.
const MAX_PATTERN_LEN: usize = 255;

impl RepoPattern {
    pub fn new(s: &str) -> Result<RepoPattern> {
        if s.is_empty() || s.len() > MAX_PATTERN_LEN {
            return Err(Error::invalid(
                "repositories",
                format!("pattern {s:?} must have 1 to {MAX_PATTERN_LEN} characters"),
            ));
        }
        let pattern = Pattern::new(s).map_err(|e| {
            Error::invalid(
                "repositories",
                format!("pattern {s:?} is not a valid glob: {e}"),
            )
        })?;
        Ok(RepoPattern {
            source: s.into(),
            pattern,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, repo: &str) -> bool {
        self.pattern.matches_with(repo, MATCH)
    }
}

impl PartialEq for RepoPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for RepoPattern {}

impl fmt::Debug for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoPattern({:?})", &*self.source)
    }
}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for RepoPattern {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for RepoPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RepoPattern::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A policy rule. Built-ins have negative ids and priority 0; stored rules
/// have positive ids and priority ≥ 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: i64,
    pub priority: u32,
    #[serde(default)]
    pub description: String,
    pub effect: Effect,
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub account_types: Vec<AccountType>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub repositories: Vec<RepoPattern>,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

/// Longest description accepted.
const MAX_DESCRIPTION_LEN: usize = 1024;
/// Most repository patterns a rule may carry.
const MAX_PATTERNS: usize = 256;

/// The body of a rule to create: a rule without its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDraft {
    pub priority: u32,
    #[serde(default)]
    pub description: String,
    pub effect: Effect,
    pub actions: Vec<Action>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub account_types: Vec<AccountType>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub repositories: Vec<RepoPattern>,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

impl RuleDraft {
    /// Checks what the types cannot: priority ≥ 1 (0 is the built-ins'),
    /// at least one action, a non-empty subject when one is given, and
    /// bounded sizes. Errors name the field.
    pub fn validate(self) -> Result<RuleDraft> {
        if self.priority == 0 {
            return Err(Error::invalid(
                "priority",
                "must be 1 or more (0 is reserved for the built-in rules)",
            ));
        }
        if self.actions.is_empty() {
            return Err(Error::invalid("actions", "name at least one action"));
        }
        if self.subject.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(Error::invalid("subject", "must not be empty when given"));
        }
        if self.description.len() > MAX_DESCRIPTION_LEN {
            return Err(Error::invalid(
                "description",
                format!("is over {MAX_DESCRIPTION_LEN} characters"),
            ));
        }
        if self.repositories.len() > MAX_PATTERNS {
            return Err(Error::invalid(
                "repositories",
                format!("at most {MAX_PATTERNS} patterns"),
            ));
        }
        Ok(self)
    }

    /// The rule this draft becomes under `id`.
    pub fn into_rule(self, id: i64) -> Rule {
        Rule {
            id,
            priority: self.priority,
            description: self.description,
            effect: self.effect,
            actions: self.actions,
            roles: self.roles,
            account_types: self.account_types,
            subject: self.subject,
            repositories: self.repositories,
            enabled: self.enabled,
        }
    }
}

impl From<&Rule> for RuleDraft {
    fn from(r: &Rule) -> RuleDraft {
        RuleDraft {
            priority: r.priority,
            description: r.description.clone(),
            effect: r.effect,
            actions: r.actions.clone(),
            roles: r.roles.clone(),
            account_types: r.account_types.clone(),
            subject: r.subject.clone(),
            repositories: r.repositories.clone(),
            enabled: r.enabled,
        }
    }
}

/// A partial update: each field given replaces the rule's. `subject`
/// distinguishes "leave" (absent) from "clear" (`null`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulePatch {
    pub priority: Option<u32>,
    pub description: Option<String>,
    pub effect: Option<Effect>,
    pub actions: Option<Vec<Action>>,
    pub roles: Option<Vec<Role>>,
    pub account_types: Option<Vec<AccountType>>,
    #[serde(default, deserialize_with = "present")]
    pub subject: Option<Option<String>>,
    pub repositories: Option<Vec<RepoPattern>>,
    pub enabled: Option<bool>,
}

fn present<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl RulePatch {
    /// The rule with this patch applied, validated as a whole.
    pub fn apply(&self, rule: &Rule) -> Result<Rule> {
        let mut d = RuleDraft::from(rule);
        let p = self.clone();
        if let Some(v) = p.priority {
            d.priority = v;
        }
        if let Some(v) = p.description {
            d.description = v;
        }
        if let Some(v) = p.effect {
            d.effect = v;
        }
        if let Some(v) = p.actions {
            d.actions = v;
        }
        if let Some(v) = p.roles {
            d.roles = v;
        }
        if let Some(v) = p.account_types {
            d.account_types = v;
        }
        if let Some(v) = p.subject {
            d.subject = v;
        }
        if let Some(v) = p.repositories {
            d.repositories = v;
        }
        if let Some(v) = p.enabled {
            d.enabled = v;
        }
        Ok(d.validate()?.into_rule(rule.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_does_not_cross_a_slash() {
        let p = RepoPattern::new("production/*").unwrap();
        assert!(p.matches("production/app"));
        assert!(!p.matches("production/team/app"));
        assert!(!p.matches("staging/app"));
        assert!(RepoPattern::new("**").unwrap().matches("a"));
        assert!(RepoPattern::new("a/[").is_err());
    }

    fn draft() -> RuleDraft {
        RuleDraft {
            priority: 10,
            description: String::new(),
            effect: Effect::Allow,
            actions: vec![Action::Pull],
            roles: vec![],
            account_types: vec![AccountType::System],
            subject: None,
            repositories: vec![RepoPattern::new("ci/*").unwrap()],
            enabled: true,
        }
    }

    #[test]
    fn validation_names_the_bad_field() {
        let field = |d: RuleDraft| match d.validate() {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(RuleDraft {
                priority: 0,
                ..draft()
            }),
            "priority"
        );
        assert_eq!(
            field(RuleDraft {
                actions: vec![],
                ..draft()
            }),
            "actions"
        );
        assert_eq!(
            field(RuleDraft {
                subject: Some(" ".into()),
                ..draft()
            }),
            "subject"
        );
        assert!(draft().validate().is_ok());
    }

    #[test]
    fn json_with_an_unknown_action_or_effect_is_refused_by_name() {
        let err = serde_json::from_str::<RuleDraft>(
            r#"{"priority":1,"effect":"allow","actions":["registry:fly"]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("registry:fly"), "{err}");
        let err = serde_json::from_str::<RuleDraft>(
            r#"{"priority":1,"effect":"maybe","actions":["registry:pull"]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("maybe"), "{err}");
    }

    #[test]
    fn patches_apply_and_revalidate() {
        let rule = draft().into_rule(7);
        let patch = RulePatch {
            enabled: Some(false),
            subject: Some(Some("svc-1".into())),
            ..RulePatch::default()
        };
        let updated = patch.apply(&rule).unwrap();
        assert_eq!(updated.id, 7);
        assert!(!updated.enabled);
        assert_eq!(updated.subject.as_deref(), Some("svc-1"));
        let cleared: RulePatch = serde_json::from_str(r#"{"subject":null}"#).unwrap();
        assert_eq!(cleared.apply(&updated).unwrap().subject, None);
        let bad = RulePatch {
            priority: Some(0),
            ..RulePatch::default()
        };
        assert!(bad.apply(&rule).is_err());
    }
}
