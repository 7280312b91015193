//! The built-in rules: present in every rule set, whatever is stored.
//!
//! They are allows only, so stored rules can narrow them (a stored deny
//! wins) but nothing stored can widen what they give; the rest of the
//! access story is the stored rules' allows.

use super::rule::{Effect, Rule};
use crate::principal::{AccountType, Action, Role};

/// Admin role → every action (-1); human accounts with role user → pull,
/// push, delete, catalog (-2); everyone → version check (-3); everyone →
/// the tag actions (-4). All have priority 0, which stored rules cannot
/// claim. Guests and system accounts get nothing else unless a stored rule
/// allows it.
///
/// Rule -4 grants nothing by itself: the use cases ask
/// `registry:tag_overwrite` only of a push already allowed and
/// `registry:tag_delete` only of a delete already allowed, so it reads
/// "whoever may push may move tags, whoever may delete may delete them" —
/// including a system account a stored rule lets push. Without a stored
/// deny on the tag actions nothing changes; with one, the deny wins.
pub fn builtin_rules() -> Vec<Rule> {
    let rule = |id, description: &str, actions: Vec<Action>, roles, account_types| Rule {
        id,
        priority: 0,
        description: description.to_string(),
        effect: Effect::Allow,
        actions,
        roles,
        account_types,
        subject: None,
        repositories: Vec::new(),
        tags: Vec::new(),
        enabled: true,
    };
    vec![
        rule(
            -1,
            "built-in: admins may do everything",
            Action::ALL.to_vec(),
            vec![Role::Admin],
            vec![],
        ),
        rule(
            -2,
            "built-in: human users may pull, push, delete and list",
            vec![Action::Pull, Action::Push, Action::Delete, Action::Catalog],
            vec![Role::User],
            vec![AccountType::Human],
        ),
        rule(
            -3,
            "built-in: everyone may check the API version",
            vec![Action::VersionCheck],
            vec![],
            vec![],
        ),
        rule(
            -4,
            "built-in: whoever may push may move tags, whoever may delete may delete them",
            Action::TAG_ACTIONS.to_vec(),
            vec![],
            vec![],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::RepoName;
    use crate::policy::{evaluate, PolicyInput};
    use crate::principal::Principal;

    const ADMIN: Option<i64> = Some(-1);
    const USER: Option<i64> = Some(-2);
    const VERSION: Option<i64> = Some(-3);
    const TAGS: Option<i64> = Some(-4);
    const NONE: Option<i64> = None;

    /// For each role and account type, the built-in that allows each action
    /// (in `Action::ALL` order: version_check, pull, push, delete, catalog,
    /// policy:manage, tag_overwrite, tag_delete), or `None` for a deny.
    /// Equal priorities keep the built-ins' order, so the admin rule
    /// decides even the version check.
    const TABLE: [(Role, AccountType, [Option<i64>; 8]); 6] = [
        (Role::Admin, AccountType::Human, [ADMIN; 8]),
        (Role::Admin, AccountType::System, [ADMIN; 8]),
        (
            Role::User,
            AccountType::Human,
            [VERSION, USER, USER, USER, USER, NONE, TAGS, TAGS],
        ),
        (
            Role::User,
            AccountType::System,
            [VERSION, NONE, NONE, NONE, NONE, NONE, TAGS, TAGS],
        ),
        (
            Role::Guest,
            AccountType::Human,
            [VERSION, NONE, NONE, NONE, NONE, NONE, TAGS, TAGS],
        ),
        (
            Role::Guest,
            AccountType::System,
            [VERSION, NONE, NONE, NONE, NONE, NONE, TAGS, TAGS],
        ),
    ];

    fn decide(p: &Principal, action: Action, repository: Option<&RepoName>) -> Option<i64> {
        let d = evaluate(
            &PolicyInput {
                principal: p,
                action,
                repository,
                tag: None,
            },
            &builtin_rules(),
        );
        // A built-in decision is an allow naming its rule, or the default
        // deny: the built-ins never deny.
        assert_eq!(d.is_allowed(), d.rule_id.is_some(), "{d:?}");
        d.rule_id
    }

    #[test]
    fn every_builtin_against_every_role_account_type_and_action() {
        let repo = RepoName::new("any/repo").unwrap();
        assert_eq!(TABLE.len(), Role::ALL.len() * AccountType::ALL.len());
        for (role, account, expected) in TABLE {
            let p = Principal::new("s", account, vec![role]);
            for (action, want) in Action::ALL.into_iter().zip(expected) {
                // The built-ins are not scoped to repositories, so a global
                // operation and a repository one decide alike.
                for repository in [None, Some(&repo)] {
                    assert_eq!(
                        decide(&p, action, repository),
                        want,
                        "{role} {account} {action} {repository:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn roles_combine_as_their_union() {
        for account in AccountType::ALL {
            let row = |role| {
                TABLE
                    .iter()
                    .find(|(r, a, _)| *r == role && *a == account)
                    .map(|(_, _, row)| row)
                    .unwrap()
            };
            for roles in [vec![Role::Guest, Role::User], vec![Role::User, Role::Admin]] {
                let p = Principal::new("s", account, roles.clone());
                for (i, action) in Action::ALL.into_iter().enumerate() {
                    let allowed_by_some = roles.iter().any(|&r| row(r)[i].is_some());
                    assert_eq!(
                        decide(&p, action, None).is_some(),
                        allowed_by_some,
                        "{roles:?} {account} {action}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_principal_without_roles_gets_only_the_version_check_and_the_tag_gates() {
        for account in AccountType::ALL {
            let p = Principal::new("s", account, vec![]);
            for action in Action::ALL {
                let want = match action {
                    Action::VersionCheck => Some(-3),
                    a if a.is_tag_action() => Some(-4),
                    _ => None,
                };
                assert_eq!(decide(&p, action, None), want, "{account} {action}");
            }
        }
    }

    #[test]
    fn builtins_are_unscoped_allows_with_negative_ids_at_priority_zero() {
        let rules = builtin_rules();
        let ids: Vec<i64> = rules.iter().map(|r| r.id).collect();
        assert_eq!(ids, [-1, -2, -3, -4]);
        for r in &rules {
            assert!(r.is_builtin());
            assert_eq!(r.priority, 0);
            assert_eq!(r.effect, Effect::Allow);
            assert!(r.enabled && r.repositories.is_empty() && r.subject.is_none());
            assert!(r.tags.is_empty());
            assert!(!r.description.is_empty());
        }
    }
}
