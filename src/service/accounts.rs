//! Orgs, users and tokens: the bootstrap use cases behind the CLI.

use serde_json::json;
use uuid::Uuid;

use crate::auth::password;
use crate::auth::token::{MAX_TTL_SECS, TokenIssuer};
use crate::crypto::SecretString;
use crate::domain::FieldError;
use crate::domain::audit::{Actor, NewAuditEntry, action};
use crate::domain::org::{Org, Slug, validate_org_name};
use crate::domain::user::{Email, MIN_PASSWORD_LEN, Role, User};
use crate::store::{NewUser, Store, StoreError};

use super::ServiceError;

/// Creates an org; 409-style `Conflict` if the slug is taken.
pub async fn create_org(store: &dyn Store, slug: &str, name: &str) -> Result<Org, ServiceError> {
    let slug = Slug::parse(slug)?;
    let name = validate_org_name(name)?;
    match store.create_org(Uuid::new_v4(), slug.as_str(), &name).await {
        Err(StoreError::Conflict(_)) => {
            Err(ServiceError::Conflict(format!("org {slug} already exists")))
        }
        other => Ok(other?),
    }
}

/// Finds an org by slug or fails with `NotFound` naming it.
pub async fn org_by_slug(store: &dyn Store, slug: &str) -> Result<Org, ServiceError> {
    store
        .org_by_slug(slug)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no org with slug {slug:?}")))
}

/// Creates a user with an Argon2id-hashed password and audits it.
pub async fn create_user(
    store: &dyn Store,
    org: &Org,
    email: &str,
    role: Role,
    password: SecretString,
    actor: Actor,
) -> Result<User, ServiceError> {
    let email = Email::parse(email)?;
    if password.expose().chars().count() < MIN_PASSWORD_LEN {
        return Err(FieldError::new(
            "password",
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        )
        .into());
    }
    let hash = tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let id = Uuid::new_v4();
    let audit = NewAuditEntry {
        org_id: org.id,
        actor,
        action: action::USER_CREATED,
        entity_type: "user",
        entity_id: Some(id.to_string()),
        details: json!({ "email": email, "role": role }),
    };
    let new = NewUser {
        id,
        org_id: org.id,
        email: &email,
        password_hash: &hash,
        role,
    };
    match store.create_user(&new, &audit).await {
        Err(StoreError::Conflict(_)) => Err(ServiceError::Conflict(format!(
            "user {email} already exists in {}",
            org.slug
        ))),
        other => Ok(other?),
    }
}

/// Disables a user (tokens stop working at once) and audits it.
pub async fn disable_user(store: &dyn Store, org: &Org, email: &str) -> Result<User, ServiceError> {
    let email = Email::parse(email)?;
    let missing = || ServiceError::NotFound(format!("no user {email} in {}", org.slug));
    let user = store
        .user_by_email(org.id, &email)
        .await?
        .ok_or_else(missing)?
        .user;
    let audit = NewAuditEntry {
        org_id: org.id,
        actor: Actor::cli(),
        action: action::USER_DISABLED,
        entity_type: "user",
        entity_id: Some(user.id.to_string()),
        details: json!({ "email": user.email }),
    };
    store
        .set_user_disabled(org.id, user.id, true, &audit)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => missing(),
            other => other.into(),
        })
}

/// Issues an access token for an enabled user and audits it (not the token itself).
pub async fn issue_token(
    store: &dyn Store,
    tokens: &TokenIssuer,
    org: &Org,
    email: &str,
    ttl_secs: u64,
) -> Result<String, ServiceError> {
    if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
        return Err(FieldError::new("ttl", format!("must be 1-{MAX_TTL_SECS} seconds")).into());
    }
    let email = Email::parse(email)?;
    let user = store
        .user_by_email(org.id, &email)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no user {email} in {}", org.slug)))?
        .user;
    if user.disabled {
        return Err(ServiceError::Conflict(format!("user {email} is disabled")));
    }
    let token = tokens
        .issue(&user, ttl_secs)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    store
        .append_audit(&NewAuditEntry {
            org_id: org.id,
            actor: Actor::cli(),
            action: action::TOKEN_ISSUED,
            entity_type: "user",
            entity_id: Some(user.id.to_string()),
            details: json!({ "email": user.email, "ttl_secs": ttl_secs }),
        })
        .await?;
    Ok(token)
}
