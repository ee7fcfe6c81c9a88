//! Organisations (tenants).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::FieldError;

/// An org slug: `^[a-z0-9][a-z0-9-]{0,62}$`. Also used as the org's dropzone folder name,
/// which is why the rule is strict.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    /// Validates a slug.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let bytes = text.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 63
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(FieldError::new(
                "slug",
                "must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
            ))
        }
    }

    /// The slug text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    /// Org id.
    pub id: Uuid,
    /// Unique slug.
    pub slug: Slug,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Validates an org display name (1-200 characters, no control characters).
pub fn validate_org_name(name: &str) -> Result<String, FieldError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "name",
            "must be 1-200 printable characters",
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_rule_matches_the_spec_pattern() {
        for good in ["a", "0", "acme", "acme-gmbh-2", &"a".repeat(63)] {
            assert!(Slug::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-acme",
            "Acme",
            "ac me",
            "acme/..",
            "ac_me",
            &"a".repeat(64),
            "äcme",
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }
}
