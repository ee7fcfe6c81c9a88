//! Users and roles.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::FieldError;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// Everything.
    Admin,
    /// Connectors, exports, audit log, read drafts.
    Integrator,
    /// Create/approve/push/retry drafts, read exports.
    Ops,
    /// Read only.
    Viewer,
}

impl Role {
    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Integrator => "INTEGRATOR",
            Role::Ops => "OPS",
            Role::Viewer => "VIEWER",
        }
    }

    /// Roles allowed to manage connectors and read the audit log.
    pub const CONNECTOR_MANAGERS: &'static [Role] = &[Role::Admin, Role::Integrator];
    /// Every role (reading drafts and exports).
    pub const ALL: &'static [Role] = &[Role::Admin, Role::Integrator, Role::Ops, Role::Viewer];
    /// Roles that store drafts and run acknowledgement polls.
    pub const DRAFT_WRITERS: &'static [Role] = &[Role::Admin, Role::Ops, Role::Integrator];
    /// Roles that approve, push and retry drafts.
    pub const ORDER_OPERATORS: &'static [Role] = &[Role::Admin, Role::Ops];
    /// May tell a failing connection to be tried again now ("retry now").
    pub const DELIVERY_OPERATORS: &'static [Role] = &[Role::Admin, Role::Integrator, Role::Ops];
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "ADMIN" => Ok(Role::Admin),
            "INTEGRATOR" => Ok(Role::Integrator),
            "OPS" => Ok(Role::Ops),
            "VIEWER" => Ok(Role::Viewer),
            _ => Err(FieldError::new(
                "role",
                "must be ADMIN, INTEGRATOR, OPS or VIEWER",
            )),
        }
    }
}

/// A normalised e-mail address (trimmed, lowercase). Logins compare these.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Validates and normalises an address: one `@`, something on both sides, at most 320 bytes.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let text = text.trim().to_lowercase();
        let valid = text.len() <= 320
            && !text.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(text.split_once('@'), Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if valid {
            Ok(Self(text))
        } else {
            Err(FieldError::new("email", "not a valid e-mail address"))
        }
    }

    /// The address text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user of one org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub id: Uuid,
    /// Owning org.
    pub org_id: Uuid,
    /// Login e-mail, unique within the org.
    pub email: Email,
    /// Role.
    pub role: Role,
    /// Disabled users cannot log in or use their tokens.
    pub disabled: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Minimum password length accepted by `user create`.
pub const MIN_PASSWORD_LEN: usize = 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_case_insensitively() {
        assert_eq!("integrator".parse::<Role>().unwrap(), Role::Integrator);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in ["", "ann", "@x", "ann@", "a b@x", "a@b@c"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
