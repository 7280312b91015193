//! Who is asking, and what they may ask for.
//!
//! A [`Principal`] is what a [`crate::ports::TokenValidator`] turns a token
//! into; an [`Action`] is what the policy engine decides on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Whether an account belongs to a person or to a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Human,
    System,
}

impl AccountType {
    pub const ALL: [AccountType; 2] = [AccountType::Human, AccountType::System];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Human => "human",
            AccountType::System => "system",
        }
    }
}

impl fmt::Display for AccountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "human" => Ok(AccountType::Human),
            "system" => Ok(AccountType::System),
            other => Err(Error::invalid(
                "account_type",
                format!("unknown account type {other:?} (expected human or system)"),
            )),
        }
    }
}

/// A role granted by the identity service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
    Guest,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::User, Role::Guest];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Guest => "guest",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            "guest" => Ok(Role::Guest),
            other => Err(Error::invalid(
                "role",
                format!("unknown role {other:?} (expected admin, user or guest)"),
            )),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable subject id from the identity service (never a secret).
    pub subject: String,
    /// Human-readable name when the identity service gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub account_type: AccountType,
    pub roles: Vec<Role>,
}

impl Principal {
    pub fn new(subject: impl Into<String>, account_type: AccountType, roles: Vec<Role>) -> Self {
        Principal {
            subject: subject.into(),
            username: None,
            account_type,
            roles,
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role(Role::Admin)
    }
}

/// Something a principal asks to do; the policy engine decides on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "registry:version_check")]
    VersionCheck,
    #[serde(rename = "registry:pull")]
    Pull,
    #[serde(rename = "registry:push")]
    Push,
    #[serde(rename = "registry:delete")]
    Delete,
    #[serde(rename = "registry:catalog")]
    Catalog,
    #[serde(rename = "policy:manage")]
    PolicyManage,
    /// Moving an existing tag to another manifest. Asked only after
    /// `registry:push` is allowed, for each tag a push would move.
    #[serde(rename = "registry:tag_overwrite")]
    TagOverwrite,
    /// Deleting a tag, or a manifest (or repository) a tag points into.
    /// Asked only after `registry:delete` is allowed.
    #[serde(rename = "registry:tag_delete")]
    TagDelete,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::VersionCheck,
        Action::Pull,
        Action::Push,
        Action::Delete,
        Action::Catalog,
        Action::PolicyManage,
        Action::TagOverwrite,
        Action::TagDelete,
    ];

    /// The actions on one tag: the only ones a rule's `tags` patterns can
    /// match, and the only ones asked with a tag.
    pub const TAG_ACTIONS: [Action; 2] = [Action::TagOverwrite, Action::TagDelete];

    pub fn is_tag_action(self) -> bool {
        Action::TAG_ACTIONS.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::VersionCheck => "registry:version_check",
            Action::Pull => "registry:pull",
            Action::Push => "registry:push",
            Action::Delete => "registry:delete",
            Action::Catalog => "registry:catalog",
            Action::PolicyManage => "policy:manage",
            Action::TagOverwrite => "registry:tag_overwrite",
            Action::TagDelete => "registry:tag_delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "actions",
                    format!(
                        "unknown action {s:?} (expected one of {})",
                        Action::ALL.map(Action::as_str).join(", ")
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_round_trips_through_its_name() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>().unwrap(), a);
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.as_str())
            );
        }
        assert!("registry:fly".parse::<Action>().is_err());
    }

    #[test]
    fn roles_and_account_types_parse() {
        assert_eq!("admin".parse::<Role>().unwrap(), Role::Admin);
        assert_eq!(
            "system".parse::<AccountType>().unwrap(),
            AccountType::System
        );
        assert!("root".parse::<Role>().is_err());
    }
}
