//! Logging in, shared by the API and the console: throttled per client and account,
//! password checks on the bounded hashing workers, uniform answers and timing whatever was
//! wrong, every failure audited.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;

use super::ServiceError;
use crate::auth::password::{Hasher, Place};
use crate::auth::throttle::{LoginThrottle, Throttled, retry_after_secs};
use crate::auth::token::{DEFAULT_TTL_SECS, TokenIssuer};
use crate::crypto::SecretString;
use crate::domain::audit::{Actor, NewAuditEntry, action};
use crate::domain::user::{Email, User};
use crate::store::Store;
use crate::telemetry::Bounded;

/// What every wrong-credentials answer says.
pub const BAD_CREDENTIALS: &str = "Invalid org, e-mail or password";

/// One login attempt.
#[derive(Debug)]
pub struct LoginAttempt<'a> {
    /// The org's slug, as typed.
    pub org_slug: &'a str,
    /// The e-mail, as typed.
    pub email: &'a str,
    /// The password.
    pub password: SecretString,
    /// The client's address, when known (per-client throttling).
    pub client: Option<IpAddr>,
}

/// A successful login.
#[derive(Debug)]
pub struct LoggedIn {
    /// The user.
    pub user: User,
    /// An access token.
    pub access_token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
}

/// A verified access token: the user as stored now, and the token's own id and expiry (what
/// signing out revokes).
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The user.
    pub user: User,
    /// The token's id (`jti`); None for tokens issued before ids existed.
    pub token_id: Option<uuid::Uuid>,
    /// When the token expires.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// What every refused token is told.
const INVALID_TOKEN: &str = "Invalid or expired token";

/// Logs users in.
#[derive(Clone)]
pub struct LoginService {
    store: Arc<dyn Store>,
    tokens: Arc<TokenIssuer>,
    hasher: Arc<Hasher>,
    throttle: Arc<LoginThrottle>,
}

impl std::fmt::Debug for LoginService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginService").finish_non_exhaustive()
    }
}

fn throttled(Throttled(wait): Throttled) -> ServiceError {
    ServiceError::Throttled {
        retry_after_secs: retry_after_secs(wait).max(1),
    }
}

impl LoginService {
    /// Builds the service.
    pub fn new(
        store: Arc<dyn Store>,
        tokens: Arc<TokenIssuer>,
        hasher: Arc<Hasher>,
        throttle: Arc<LoginThrottle>,
    ) -> Self {
        Self {
            store,
            tokens,
            hasher,
            throttle,
        }
    }

    /// The throttle (pruned periodically by the server).
    pub fn throttle(&self) -> &Arc<LoginThrottle> {
        &self.throttle
    }

    /// The hashing workers (user creation uses them too).
    pub fn hasher(&self) -> &Arc<Hasher> {
        &self.hasher
    }

    async fn check_password(
        &self,
        place: Place,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<bool, ServiceError> {
        self.hasher
            .verify_in(place, password, stored)
            .await
            .map_err(|_| ServiceError::Busy {
                retry_after_secs: 1,
            })
    }

    /// Counts a failure and answers 401. An attempt that used up the allowance still gets its
    /// 401 (it was allowed to start); the attempts after it get 429 before any work.
    fn failure(&self, attempt: &LoginAttempt<'_>) -> ServiceError {
        if self
            .throttle
            .failed(attempt.client, attempt.org_slug, attempt.email)
            .is_err()
        {
            metrics::counter!(crate::telemetry::metric::LOGIN_REFUSED, "reason" => "throttled")
                .increment(1);
        }
        ServiceError::Unauthenticated(BAD_CREDENTIALS)
    }

    /// The user an access token names, if its signature and lifetime are valid, it was not
    /// signed out, and its user exists and is enabled (checked on every request, so disabling a
    /// user or signing out ends a token at once).
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, ServiceError> {
        let claims = self
            .tokens
            .verify(token)
            .map_err(|_| ServiceError::Unauthenticated(INVALID_TOKEN))?;
        let (user, revoked) = self
            .store
            .user_for_token(claims.org_id, claims.sub, claims.jti)
            .await?
            .ok_or(ServiceError::Unauthenticated(INVALID_TOKEN))?;
        if revoked {
            return Err(ServiceError::Unauthenticated(INVALID_TOKEN));
        }
        if user.disabled {
            return Err(ServiceError::Forbidden("User is disabled"));
        }
        let expires_at = i64::try_from(claims.exp)
            .ok()
            .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
            .unwrap_or_else(chrono::Utc::now);
        Ok(Authenticated {
            user,
            token_id: claims.jti,
            expires_at,
        })
    }

    /// The org of an authenticated user.
    pub async fn org_of(
        &self,
        session: &Authenticated,
    ) -> Result<crate::domain::org::Org, ServiceError> {
        self.store
            .org_by_id(session.user.org_id)
            .await?
            .ok_or_else(|| ServiceError::Internal("an authenticated user's org is missing".into()))
    }

    /// Signs out: the token presented stops working at once, for the console and the API
    /// alike. Audited.
    pub async fn logout(&self, session: &Authenticated) -> Result<(), ServiceError> {
        if let Some(token_id) = session.token_id {
            self.store
                .revoke_token(token_id, session.user.org_id, session.expires_at)
                .await?;
        }
        let user = &session.user;
        self.store
            .append_audit(&NewAuditEntry {
                org_id: user.org_id,
                actor: Actor::user(user.id, user.email.as_str()),
                action: action::LOGGED_OUT,
                entity_type: "user",
                entity_id: Some(user.id.to_string()),
                details: json!({}),
            })
            .await?;
        Ok(())
    }

    /// Forgets revocations of tokens past their expiry (their signature check refuses them).
    pub async fn forget_expired_revocations(&self) -> Result<u64, ServiceError> {
        Ok(self
            .store
            .purge_revoked_tokens(crate::store::now() - chrono::Duration::seconds(60))
            .await?)
    }

    /// The org a login names. A slug that cannot be one (too long, control characters, NUL,
    /// which PostgreSQL refuses in text) is an unknown org, answered the same way after the
    /// same work.
    async fn org_named(&self, slug: &str) -> Result<Option<crate::domain::org::Org>, ServiceError> {
        let plausible = slug.trim().len() <= 63 && !slug.chars().any(char::is_control);
        if !plausible {
            return Ok(None);
        }
        Ok(self.store.org_by_slug(slug.trim()).await?)
    }

    /// Checks the credentials and issues a token. Wrong org, e-mail or password: the same 401
    /// after the same work; disabled user (right password): 403.
    pub async fn login(&self, attempt: LoginAttempt<'_>) -> Result<LoggedIn, ServiceError> {
        // The queue first: in a storm most attempts get a cheap 503 here, so the few that are
        // checked are all the failures the throttle sees, and a storm of concurrent attempts is
        // answered 401/503 rather than locking its client out half-way.
        let place = self.hasher.reserve().map_err(|_| ServiceError::Busy {
            retry_after_secs: 1,
        })?;
        self.throttle
            .check(attempt.client, attempt.org_slug, attempt.email)
            .map_err(throttled)?;
        let password = attempt.password.clone();
        let Some(org) = self.org_named(attempt.org_slug).await? else {
            self.check_password(place, password, None).await?;
            tracing::info!(org_slug = %Bounded(attempt.org_slug), "login failed: unknown org");
            return Err(self.failure(&attempt));
        };
        let audit = |action, details| attempt_audit(org.id, attempt.email, action, details);
        let found = match Email::parse(attempt.email) {
            Ok(email) => self.store.user_by_email(org.id, &email).await?,
            Err(_) => None,
        };
        let Some(found) = found else {
            self.check_password(place, password, None).await?;
            self.store
                .append_audit(&audit(
                    action::LOGIN_FAILED,
                    json!({"reason": "unknown_user"}),
                ))
                .await?;
            return Err(self.failure(&attempt));
        };
        let matches = self
            .check_password(place, password, Some(found.password_hash.clone()))
            .await?;
        let user = found.user;
        let entry = |action, details| NewAuditEntry {
            actor: Actor::user(user.id, user.email.as_str()),
            entity_id: Some(user.id.to_string()),
            ..audit(action, details)
        };
        if !matches {
            self.store
                .append_audit(&entry(
                    action::LOGIN_FAILED,
                    json!({"reason": "wrong_password"}),
                ))
                .await?;
            return Err(self.failure(&attempt));
        }
        if user.disabled {
            self.store
                .append_audit(&entry(action::LOGIN_FAILED, json!({"reason": "disabled"})))
                .await?;
            return Err(ServiceError::Forbidden("User is disabled"));
        }
        let access_token = self
            .tokens
            .issue(&user, DEFAULT_TTL_SECS)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.store
            .append_audit(&entry(action::LOGIN_SUCCEEDED, json!({})))
            .await?;
        Ok(LoggedIn {
            user,
            access_token,
            expires_in: DEFAULT_TTL_SECS,
        })
    }
}

/// The audit row of a login attempt in an org, before the user is known.
fn attempt_audit(
    org_id: uuid::Uuid,
    email: &str,
    action: &'static str,
    details: serde_json::Value,
) -> NewAuditEntry {
    NewAuditEntry {
        org_id,
        actor: Actor {
            user_id: None,
            // What was typed, bounded: it is untrusted input headed for the audit log.
            label: email.trim().to_lowercase().chars().take(320).collect(),
        },
        action,
        entity_type: "user",
        entity_id: None,
        details,
    }
}
