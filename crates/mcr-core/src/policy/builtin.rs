//! The rules that are always present.

use super::rule::{Effect, Rule};
use crate::principal::{AccountType, Action, Role};

/// Admin role → every action (-1); human accounts with role user → pull,
/// push, delete, catalog (-2); everyone → version check (-3). Guests and
/// system accounts get nothing else unless a stored rule allows it.
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
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::RepoName;
    use crate::policy::{evaluate, PolicyInput};
    use crate::principal::Principal;

    /// What the built-ins alone grant each role and account type.
    fn expected(role: Role, account: AccountType, action: Action) -> bool {
        match (role, account, action) {
            (_, _, Action::VersionCheck) => true,
            (Role::Admin, _, _) => true,
            (Role::User, AccountType::Human, a) => a != Action::PolicyManage,
            _ => false,
        }
    }

    #[test]
    fn every_builtin_against_every_role_account_type_and_action() {
        let rules = builtin_rules();
        let repo = RepoName::new("any/repo").unwrap();
        for role in Role::ALL {
            for account in AccountType::ALL {
                let p = Principal::new("s", account, vec![role]);
                for action in Action::ALL {
                    for repository in [None, Some(&repo)] {
                        let d = evaluate(
                            &PolicyInput {
                                principal: &p,
                                action,
                                repository,
                            },
                            &rules,
                        );
                        assert_eq!(
                            d.is_allowed(),
                            expected(role, account, action),
                            "{role} {account} {action} {repository:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_principal_without_roles_gets_only_the_version_check() {
        let p = Principal::new("s", AccountType::System, vec![]);
        for action in Action::ALL {
            let d = evaluate(
                &PolicyInput {
                    principal: &p,
                    action,
                    repository: None,
                },
                &builtin_rules(),
            );
            assert_eq!(d.is_allowed(), action == Action::VersionCheck, "{action}");
        }
    }
}
