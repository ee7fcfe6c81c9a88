//! Orgs and users. Creations and changes are written with their audit row in one transaction.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
use crate::domain::audit::NewAuditEntry;
use crate::domain::org::Org;
use crate::domain::user::{Email, Role, User};

/// A user together with its password hash (only the login path needs the hash).
#[derive(Debug, Clone)]
pub struct UserWithHash {
    /// The user.
    pub user: User,
    /// PHC-format Argon2id hash.
    pub password_hash: String,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    /// Chosen by the caller, so the audit row can name it.
    pub id: Uuid,
    /// Owning org.
    pub org_id: Uuid,
    /// Login e-mail.
    pub email: &'a Email,
    /// PHC hash.
    pub password_hash: &'a str,
    /// Role.
    pub role: Role,
}

/// Orgs and users.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates an org; `Conflict` if the slug is taken. (Bootstrap, not audited: the audit log
    /// is per org and starts with the org's first user.)
    async fn create_org(&self, id: Uuid, slug: &str, name: &str) -> Result<Org, StoreError>;
    /// Looks an org up by slug (login and bootstrap; not tenant-scoped by nature).
    async fn org_by_slug(&self, slug: &str) -> Result<Option<Org>, StoreError>;
    /// Looks an org up by id.
    async fn org_by_id(&self, org_id: Uuid) -> Result<Option<Org>, StoreError>;
    /// Orgs by id (the delivery worker loads a claimed batch's at once).
    async fn orgs_by_ids(&self, ids: &[Uuid]) -> Result<Vec<Org>, StoreError>;
    /// Creates a user with its audit row; `Conflict` if the e-mail exists in the org.
    async fn create_user(
        &self,
        new: &NewUser<'_>,
        audit: &NewAuditEntry,
    ) -> Result<User, StoreError>;
    /// A user of `org_id` by e-mail, with the hash.
    async fn user_by_email(
        &self,
        org_id: Uuid,
        email: &Email,
    ) -> Result<Option<UserWithHash>, StoreError>;
    /// A user of `org_id` by id.
    async fn user_by_id(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<User>, StoreError>;
    /// A user of `org_id` by id for a token, and whether the token (`token_id`, its `jti`)
    /// was revoked: one round trip for every authenticated request.
    async fn user_for_token(
        &self,
        org_id: Uuid,
        user_id: Uuid,
        token_id: Option<Uuid>,
    ) -> Result<Option<(User, bool)>, StoreError>;
    /// Ends a token before its expiry (signing out); repeating it changes nothing.
    async fn revoke_token(
        &self,
        token_id: Uuid,
        org_id: Uuid,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError>;
    /// Forgets revocations of tokens that expired before `now`; how many.
    async fn purge_revoked_tokens(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError>;
    /// Sets the disabled flag with its audit row; `NotFound` if no such user in the org.
    async fn set_user_disabled(
        &self,
        org_id: Uuid,
        user_id: Uuid,
        disabled: bool,
        audit: &NewAuditEntry,
    ) -> Result<User, StoreError>;
}

pub(super) const INSERT_ORG: &str = "INSERT INTO org (id, slug, name, created_at) \
    VALUES ($1, $2, $3, $4) RETURNING id, slug, name, created_at";
pub(super) const ORG_BY_SLUG: &str = "SELECT id, slug, name, created_at FROM org WHERE slug = $1";
pub(super) const ORG_BY_ID: &str = "SELECT id, slug, name, created_at FROM org WHERE id = $1";
pub(super) const INSERT_USER: &str = "INSERT INTO app_user \
    (id, org_id, email, password_hash, role, disabled, created_at) \
    VALUES ($1, $2, $3, $4, $5, FALSE, $6) \
    RETURNING id, org_id, email, password_hash, role, disabled, created_at";
pub(super) const USER_BY_EMAIL: &str = "SELECT id, org_id, email, password_hash, role, disabled, \
    created_at FROM app_user WHERE org_id = $1 AND email = $2";
pub(super) const USER_BY_ID: &str = "SELECT id, org_id, email, password_hash, role, disabled, \
    created_at FROM app_user WHERE org_id = $1 AND id = $2";
pub(super) const USER_FOR_TOKEN: &str = "SELECT id, org_id, email, password_hash, role, \
    disabled, created_at, EXISTS (SELECT 1 FROM revoked_token WHERE jti = $3) AS revoked \
    FROM app_user WHERE org_id = $1 AND id = $2";
pub(super) const REVOKE_TOKEN: &str = "INSERT INTO revoked_token (jti, org_id, expires_at) \
    VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING";
pub(super) const PURGE_REVOKED_TOKENS: &str = "DELETE FROM revoked_token WHERE expires_at < $1";
pub(super) const SET_USER_DISABLED: &str = "UPDATE app_user SET disabled = $3 \
    WHERE org_id = $1 AND id = $2 \
    RETURNING id, org_id, email, password_hash, role, disabled, created_at";
