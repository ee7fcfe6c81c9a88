//! Request extractors: the authenticated caller, JSON bodies and path ids with our error shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use super::state::AppState;
use crate::domain::audit::Actor;
use crate::domain::user::{Role, User};

/// The authenticated caller: a valid Bearer token of an existing, enabled user.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user as stored now (role changes apply at once, not at token expiry).
    pub user: User,
}

impl AuthUser {
    /// The caller's org; every store call is scoped by it.
    pub fn org_id(&self) -> Uuid {
        self.user.org_id
    }

    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.user.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden("Your role does not allow this action"))
        }
    }

    /// The caller as an audit actor.
    pub fn actor(&self) -> Actor {
        Actor::user(self.user.id, self.user.email.as_str())
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized("Missing Authorization header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError::Unauthorized(
                "Authorization must be 'Bearer <token>'",
            ))?;
        let claims = state
            .tokens
            .verify(token)
            .map_err(|_| ApiError::Unauthorized("Invalid or expired token"))?;
        let user = state
            .store
            .user_by_id(claims.org_id, claims.sub)
            .await?
            .ok_or(ApiError::Unauthorized("Invalid or expired token"))?;
        if user.disabled {
            return Err(ApiError::Forbidden("User is disabled"));
        }
        Ok(AuthUser { user })
    }
}

/// A JSON body whose errors are 422s naming the field (or 413 when too large).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Parses a JSON body, naming the offending field on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let field = if inner.is_syntax() || inner.is_eof() || path == "." {
            "body".to_owned()
        } else {
            path
        };
        ApiError::invalid(field, inner.to_string())
    })?;
    de.end()
        .map_err(|e| ApiError::invalid("body", e.to_string()))?;
    Ok(value)
}

/// Reads the whole body, mapping an over-limit body to 413.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::invalid("body", rejection.body_text())
        }
    })
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a path segment as a UUID, 422 naming `field` otherwise.
pub fn parse_uuid(field: &str, text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}
