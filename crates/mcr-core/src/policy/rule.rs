//! Rules, and the bodies that create ([`RuleDraft`]) and change
//! ([`RulePatch`]) them, with the validation a stored rule must pass.
//!
//! JSON is the rules' wire and storage format. A bad value is reported
//! against its field ("invalid actions: unknown action …") in the same words
//! the `FromStr` impls use, so the API and the CLI say the same thing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use super::pattern::{RepoPattern, TagPattern};
use crate::error::{Error, Result};
use crate::principal::{AccountType, Action, Role};

/// Whether a matching rule grants or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub const ALL: [Effect; 2] = [Effect::Allow, Effect::Deny];

    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Effect {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "allow" => Ok(Effect::Allow),
            "deny" => Ok(Effect::Deny),
            other => Err(Error::invalid(
                "effect",
                format!("unknown effect {other:?} (expected allow or deny)"),
            )),
        }
    }
}

/// A policy rule. Its populated fields are ANDed; an empty field (or no
/// subject) is a wildcard. Built-ins have negative ids and priority 0;
/// stored rules have positive ids and priority ≥ 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: i64,
    /// Lower is considered first; ties keep their given order.
    #[serde(deserialize_with = "field::priority")]
    pub priority: u32,
    #[serde(default)]
    pub description: String,
    #[serde(deserialize_with = "field::one")]
    pub effect: Effect,
    /// Any of these actions.
    #[serde(default, deserialize_with = "field::list")]
    pub actions: Vec<Action>,
    /// Any of these roles: the principal needs at least one of them.
    #[serde(default, deserialize_with = "field::list")]
    pub roles: Vec<Role>,
    /// Any of these account types.
    #[serde(default, deserialize_with = "field::list")]
    pub account_types: Vec<AccountType>,
    /// Exactly this principal subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// Any of these patterns; a rule with patterns never matches a global
    /// operation.
    #[serde(default)]
    pub repositories: Vec<RepoPattern>,
    /// Any of these tag patterns; a rule with patterns matches only the
    /// tag actions (`registry:tag_overwrite`, `registry:tag_delete`),
    /// which are asked with a tag. Empty: every tag. Rules stored before
    /// the field existed read as empty.
    #[serde(default)]
    pub tags: Vec<TagPattern>,
    /// A disabled rule never matches.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

impl Rule {
    /// Whether this is one of the [`builtin_rules`](super::builtin_rules).
    pub fn is_builtin(&self) -> bool {
        self.id < 0
    }
}

fn enabled() -> bool {
    true
}

/// Longest description accepted, in characters.
const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Most repository patterns a rule may carry.
const MAX_PATTERNS: usize = 256;

/// The body of a rule to create: a rule without its id. Call
/// [`RuleDraft::validate`] before storing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDraft {
    #[serde(deserialize_with = "field::priority")]
    pub priority: u32,
    #[serde(default)]
    pub description: String,
    #[serde(deserialize_with = "field::one")]
    pub effect: Effect,
    #[serde(deserialize_with = "field::list")]
    pub actions: Vec<Action>,
    #[serde(default, deserialize_with = "field::list")]
    pub roles: Vec<Role>,
    #[serde(default, deserialize_with = "field::list")]
    pub account_types: Vec<AccountType>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub repositories: Vec<RepoPattern>,
    #[serde(default)]
    pub tags: Vec<TagPattern>,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

impl RuleDraft {
    /// Checks what the types cannot: priority ≥ 1 (0 is the built-ins'),
    /// at least one action, a non-blank subject when one is given, and
    /// bounded sizes. Errors are `Error::Invalid` naming the field.
    pub fn validate(self) -> Result<RuleDraft> {
        if self.priority == 0 {
            return Err(Error::invalid(
                "priority",
                "must be 1 or more (0 is reserved for the built-in rules)",
            ));
        }
        // An empty list would be a wildcard; a stored rule over every action
        // should say so by listing them, not by forgetting the field.
        if self.actions.is_empty() {
            return Err(Error::invalid("actions", "name at least one action"));
        }
        // Admin operations need `policy:manage`, and a deny wins: a stored
        // deny of it would take the admin API from every admin, with no
        // way back but SQL on the database.
        if self.effect == Effect::Deny && self.actions.contains(&Action::PolicyManage) {
            return Err(Error::invalid(
                "actions",
                "a deny of policy:manage would lock the admins out of the admin API",
            ));
        }
        if self.subject.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(Error::invalid(
                "subject",
                "must not be empty when given (leave it out to match every subject)",
            ));
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(Error::invalid(
                "description",
                format!("is over {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if self.repositories.len() > MAX_PATTERNS {
            return Err(Error::invalid(
                "repositories",
                format!("at most {MAX_PATTERNS} patterns"),
            ));
        }
        if self.tags.len() > MAX_PATTERNS {
            return Err(Error::invalid(
                "tags",
                format!("at most {MAX_PATTERNS} patterns"),
            ));
        }
        // Only the tag actions are asked with a tag; a rule with tag
        // patterns over any other action would never match it, and a deny
        // that silently never applies is a hole nobody sees.
        if let Some(a) = self.actions.iter().find(|a| !a.is_tag_action()) {
            if !self.tags.is_empty() {
                return Err(Error::invalid(
                    "tags",
                    format!(
                        "apply only to registry:tag_overwrite and registry:tag_delete, \
                         not {a}; put other actions in a rule without tags"
                    ),
                ));
            }
        }
        Ok(self)
    }

    /// The rule this draft becomes under `id` (which the store assigns).
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
            tags: self.tags,
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
            tags: r.tags.clone(),
            enabled: r.enabled,
        }
    }
}

/// A partial update: each field given replaces the rule's, and the result
/// is validated as a whole. `subject` tells "leave it" (absent) from "clear
/// it" (`null`). It serializes to only the fields it sets, so its JSON
/// parses back to the same patch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulePatch {
    #[serde(
        default,
        deserialize_with = "field::opt_priority",
        skip_serializing_if = "Option::is_none"
    )]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(
        default,
        deserialize_with = "field::opt_one",
        skip_serializing_if = "Option::is_none"
    )]
    pub effect: Option<Effect>,
    #[serde(
        default,
        deserialize_with = "field::opt_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub actions: Option<Vec<Action>>,
    #[serde(
        default,
        deserialize_with = "field::opt_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub roles: Option<Vec<Role>>,
    #[serde(
        default,
        deserialize_with = "field::opt_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub account_types: Option<Vec<AccountType>>,
    /// Absent leaves the subject, `null` clears it: `None` must not be
    /// written as `null`, which would read back as "clear".
    #[serde(
        default,
        deserialize_with = "field::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub subject: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<RepoPattern>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<TagPattern>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl RulePatch {
    /// The rule with this patch applied, validated as a whole (so a patch
    /// cannot set priority 0 or clear the actions). The id is kept.
    pub fn apply(&self, rule: &Rule) -> Result<Rule> {
        fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *slot = v.clone();
            }
        }
        let mut d = RuleDraft::from(rule);
        set(&mut d.priority, &self.priority);
        set(&mut d.description, &self.description);
        set(&mut d.effect, &self.effect);
        set(&mut d.actions, &self.actions);
        set(&mut d.roles, &self.roles);
        set(&mut d.account_types, &self.account_types);
        set(&mut d.subject, &self.subject);
        set(&mut d.repositories, &self.repositories);
        set(&mut d.tags, &self.tags);
        set(&mut d.enabled, &self.enabled);
        Ok(d.validate()?.into_rule(rule.id))
    }
}

/// `deserialize_with` helpers that report a bad value against its field.
///
/// serde_json would say "unknown variant `registry:fly`" without naming
/// the field; these parse through `FromStr` and prefix the field name.
/// (serde_json lifts a trailing "at line L column C" out of a custom
/// message, so positions survive the rewording.)
mod field {
    use super::*;

    /// A value parsed by name, reported under its JSON field.
    pub(super) trait Named: FromStr<Err = Error> {
        const FIELD: &'static str;
    }

    impl Named for Action {
        const FIELD: &'static str = "actions";
    }
    impl Named for Role {
        const FIELD: &'static str = "roles";
    }
    impl Named for AccountType {
        const FIELD: &'static str = "account_types";
    }
    impl Named for Effect {
        const FIELD: &'static str = "effect";
    }

    fn reword<E: serde::de::Error>(field: &str, e: impl fmt::Display) -> E {
        E::custom(format!("invalid {field}: {e}"))
    }

    fn parse<T: Named, E: serde::de::Error>(s: &str) -> Result<T, E> {
        s.parse().map_err(|e| match e {
            // The `FromStr` impls name a singular field ("role"); say the
            // JSON one.
            Error::Invalid { reason, .. } => reword(T::FIELD, reason),
            other => reword(T::FIELD, other),
        })
    }

    pub(super) fn one<'de, D: Deserializer<'de>, T: Named>(d: D) -> Result<T, D::Error> {
        let s = String::deserialize(d).map_err(|e| reword(T::FIELD, e))?;
        parse(&s)
    }

    pub(super) fn opt_one<'de, D: Deserializer<'de>, T: Named>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        let s = Option::<String>::deserialize(d).map_err(|e| reword(T::FIELD, e))?;
        s.as_deref().map(parse).transpose()
    }

    pub(super) fn list<'de, D: Deserializer<'de>, T: Named>(d: D) -> Result<Vec<T>, D::Error> {
        let raw = Vec::<String>::deserialize(d).map_err(|e| reword(T::FIELD, e))?;
        raw.iter().map(|s| parse(s)).collect()
    }

    pub(super) fn opt_list<'de, D: Deserializer<'de>, T: Named>(
        d: D,
    ) -> Result<Option<Vec<T>>, D::Error> {
        let raw = Option::<Vec<String>>::deserialize(d).map_err(|e| reword(T::FIELD, e))?;
        raw.map(|v| v.iter().map(|s| parse(s)).collect())
            .transpose()
    }

    pub(super) fn priority<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        u32::deserialize(d).map_err(|e| reword("priority", e))
    }

    pub(super) fn opt_priority<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        Option::<u32>::deserialize(d).map_err(|e| reword("priority", e))
    }

    /// A field that is present, even as `null`, is `Some`.
    pub(super) fn present<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            tags: vec![],
            enabled: true,
        }
    }

    #[test]
    fn tag_patterns_go_only_with_tag_actions() {
        let immutable = RuleDraft {
            effect: Effect::Deny,
            actions: Action::TAG_ACTIONS.to_vec(),
            tags: vec![TagPattern::new("v*").unwrap()],
            ..draft()
        };
        assert_eq!(immutable.clone().validate().unwrap(), immutable);
        let (field, reason) = invalid_field(
            RuleDraft {
                actions: vec![Action::TagDelete, Action::Pull],
                ..immutable.clone()
            }
            .validate(),
        );
        assert_eq!(field, "tags");
        assert!(reason.contains("not registry:pull"), "{reason}");
        let (field, _) = invalid_field(
            RuleDraft {
                tags: vec![TagPattern::new("v*").unwrap(); MAX_PATTERNS + 1],
                ..immutable.clone()
            }
            .validate(),
        );
        assert_eq!(field, "tags");
        // Absent in JSON (rules stored before the field) reads as every tag.
        let d: RuleDraft = serde_json::from_str(
            r#"{"priority":3,"effect":"deny","actions":["registry:tag_overwrite"]}"#,
        )
        .unwrap();
        assert!(d.tags.is_empty());
        let err = json_error::<RuleDraft>(
            r#"{"priority":3,"effect":"deny","actions":["registry:tag_delete"],"tags":["v/1"]}"#,
        );
        assert!(err.contains("invalid tags: pattern \"v/1\""), "{err}");
        let patch: RulePatch = serde_json::from_str(r#"{"tags":["release-*"]}"#).unwrap();
        let rule = immutable.into_rule(3);
        assert_eq!(patch.apply(&rule).unwrap().tags[0].as_str(), "release-*");
    }

    fn invalid_field(r: Result<RuleDraft>) -> (&'static str, String) {
        match r {
            Err(Error::Invalid { field, reason }) => (field, reason),
            other => panic!("expected Error::Invalid, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_bad_field() {
        let (field, reason) = invalid_field(
            RuleDraft {
                priority: 0,
                ..draft()
            }
            .validate(),
        );
        assert_eq!(field, "priority");
        assert!(reason.contains("reserved for the built-in"), "{reason}");
        let cases = [
            (
                RuleDraft {
                    actions: vec![],
                    ..draft()
                },
                "actions",
            ),
            (
                RuleDraft {
                    subject: Some(" ".into()),
                    ..draft()
                },
                "subject",
            ),
            (
                RuleDraft {
                    description: "x".repeat(MAX_DESCRIPTION_CHARS + 1),
                    ..draft()
                },
                "description",
            ),
            (
                RuleDraft {
                    repositories: vec![RepoPattern::new("a").unwrap(); MAX_PATTERNS + 1],
                    ..draft()
                },
                "repositories",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(invalid_field(d.validate()).0, want);
        }
        assert_eq!(draft().validate().unwrap(), draft());
        // Multi-byte characters count once.
        let d = RuleDraft {
            description: "é".repeat(MAX_DESCRIPTION_CHARS),
            ..draft()
        };
        assert!(d.validate().is_ok());
    }

    fn json_error<T: serde::de::DeserializeOwned + fmt::Debug>(json: &str) -> String {
        serde_json::from_str::<T>(json).unwrap_err().to_string()
    }

    #[test]
    fn json_with_a_bad_value_is_refused_naming_the_field() {
        let cases = [
            (
                r#"{"priority":1,"effect":"allow","actions":["registry:fly"]}"#,
                "invalid actions: unknown action \"registry:fly\"",
            ),
            (
                r#"{"priority":1,"effect":"maybe","actions":["registry:pull"]}"#,
                "invalid effect: unknown effect \"maybe\" (expected allow or deny)",
            ),
            (
                r#"{"priority":1,"effect":"allow","actions":["registry:pull"],"roles":["root"]}"#,
                "invalid roles: unknown role \"root\"",
            ),
            (
                r#"{"priority":1,"effect":"allow","actions":["registry:pull"],"account_types":["robot"]}"#,
                "invalid account_types: unknown account type \"robot\"",
            ),
            (
                r#"{"priority":-1,"effect":"allow","actions":["registry:pull"]}"#,
                "invalid priority:",
            ),
            (
                r#"{"priority":1,"effect":"allow","actions":"registry:pull"}"#,
                "invalid actions: invalid type",
            ),
            (
                r#"{"priority":1,"effect":"allow","actions":["registry:pull"],"repositories":["A/*"]}"#,
                "invalid repositories: pattern \"A/*\"",
            ),
            (
                r#"{"priority":1,"effect":"allow","actions":["registry:pull"],"colour":"red"}"#,
                "unknown field `colour`",
            ),
            (
                r#"{"effect":"allow","actions":[]}"#,
                "missing field `priority`",
            ),
        ];
        for (json, want) in cases {
            let err = json_error::<RuleDraft>(json);
            assert!(err.contains(want), "{json}: {err}");
            // The position is kept, once.
            assert_eq!(err.matches(" at line ").count(), 1, "{err}");
        }
        let err = json_error::<RulePatch>(r#"{"actions":["registry:fly"]}"#);
        assert!(err.contains("invalid actions: unknown action"), "{err}");
        let err = json_error::<RulePatch>(r#"{"effect":"maybe"}"#);
        assert!(err.contains("invalid effect"), "{err}");
        let err = json_error::<RulePatch>(r#"{"priority":"high"}"#);
        assert!(err.contains("invalid priority"), "{err}");
    }

    #[test]
    fn rules_round_trip_through_json() {
        let rule = RuleDraft {
            roles: vec![Role::Guest, Role::User],
            subject: Some("svc-1".into()),
            ..draft()
        }
        .into_rule(4);
        let json = serde_json::to_value(&rule).unwrap();
        assert_eq!(json["effect"], "allow");
        assert_eq!(json["actions"][0], "registry:pull");
        assert_eq!(json["repositories"][0], "ci/*");
        let back: Rule = serde_json::from_value(json).unwrap();
        assert_eq!(back, rule);
        // Optional fields may be left out of a draft.
        let d: RuleDraft =
            serde_json::from_str(r#"{"priority":3,"effect":"deny","actions":["registry:push"]}"#)
                .unwrap();
        assert!(d.enabled);
        assert!(d.roles.is_empty() && d.repositories.is_empty() && d.subject.is_none());
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
        assert_eq!(updated.actions, rule.actions, "untouched fields stay");

        let leave: RulePatch = serde_json::from_str(r#"{"priority":4}"#).unwrap();
        assert_eq!(
            leave.apply(&updated).unwrap().subject.as_deref(),
            Some("svc-1")
        );
        let cleared: RulePatch = serde_json::from_str(r#"{"subject":null}"#).unwrap();
        assert_eq!(cleared.apply(&updated).unwrap().subject, None);

        for (patch, field) in [
            (
                RulePatch {
                    priority: Some(0),
                    ..RulePatch::default()
                },
                "priority",
            ),
            (
                RulePatch {
                    actions: Some(vec![]),
                    ..RulePatch::default()
                },
                "actions",
            ),
            (
                RulePatch {
                    subject: Some(Some(String::new())),
                    ..RulePatch::default()
                },
                "subject",
            ),
        ] {
            assert_eq!(
                invalid_field(patch.apply(&rule).map(|r| (&r).into())).0,
                field
            );
        }
    }

    #[test]
    fn patches_serialize_only_what_they_change_and_round_trip() {
        let clear = RulePatch {
            priority: Some(3),
            subject: Some(None),
            ..RulePatch::default()
        };
        let set = RulePatch {
            subject: Some(Some("ci".into())),
            ..RulePatch::default()
        };
        for (patch, json) in [
            (RulePatch::default(), serde_json::json!({})),
            (clear, serde_json::json!({"priority": 3, "subject": null})),
            (set, serde_json::json!({"subject": "ci"})),
        ] {
            assert_eq!(serde_json::to_value(&patch).unwrap(), json);
            let back: RulePatch = serde_json::from_value(json).unwrap();
            assert_eq!(back, patch);
        }
    }

    #[test]
    fn effect_parses_and_prints() {
        for e in Effect::ALL {
            assert_eq!(e.as_str().parse::<Effect>().unwrap(), e);
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{e}\""));
        }
        assert!("Allow".parse::<Effect>().is_err());
    }
}
