//! Request extractors: the authenticated caller, JSON bodies and path ids with our error shape.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::ConnectInfo;
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
    /// The verified token (what signing out revokes).
    pub session: crate::service::login::Authenticated,
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
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized(
                "Authorization must be 'Bearer <token>'",
            ))?;
        AuthUser::from_token(state, token).await
    }
}

impl AuthUser {
    /// The user an access token names, if it is valid and the user exists and is enabled (the
    /// API's Bearer header and the console's session cookie carry the same tokens).
    pub async fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let session = state.login.authenticate(token).await?;
        Ok(AuthUser {
            user: session.user.clone(),
            session,
        })
    }
}

/// The client's address: the TCP peer the server recorded, None when served without one
/// (in-process calls).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A JSON object body whose errors are 422s naming the field (or 413 when too large).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Parses a JSON object body, naming the offending field on error. Anything but an object at
/// the top is refused (serde would otherwise read `["acme", "a@b.c", "pw"]` as a struct).
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    }
    parse_json(bytes)
}

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
        parse_object(&bytes).map(ApiJson)
    }
}

/// Parses a path segment as a UUID, 422 naming `field` otherwise.
pub fn parse_uuid(field: &str, text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

/// A page request from raw `limit` and `cursor` values (the API's and the console's lists).
pub fn page_request(
    cursors: &crate::crypto::cursor::Cursors,
    listing: &str,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<crate::domain::page::PageRequest, ApiError> {
    let before = cursor.map(|c| cursors.open(listing, c)).transpose()?;
    Ok(crate::domain::page::PageRequest::parse(limit, before)?)
}

/// The query string of a list endpoint. Extraction never fails, so handlers check the
/// caller's role first (403 before 422); [`ListQuery::page`] and [`ListQuery::parsed`] then
/// validate, naming the field.
#[derive(Debug, Clone)]
pub struct ListQuery {
    params: Result<std::collections::HashMap<String, String>, String>,
}

impl ListQuery {
    fn params(&self) -> Result<&std::collections::HashMap<String, String>, ApiError> {
        self.params
            .as_ref()
            .map_err(|e| ApiError::invalid("query", e.clone()))
    }

    /// `limit` and `cursor`; a cursor must have been sealed for `listing`.
    pub fn page(
        &self,
        cursors: &crate::crypto::cursor::Cursors,
        listing: &str,
    ) -> Result<crate::domain::page::PageRequest, ApiError> {
        let params = self.params()?;
        page_request(
            cursors,
            listing,
            params.get("limit").map(String::as_str),
            params.get("cursor").map(String::as_str),
        )
    }

    /// A raw parameter, None when absent (an empty value is a value, and usually invalid).
    pub fn get(&self, name: &str) -> Result<Option<&str>, ApiError> {
        Ok(self.params()?.get(name).map(String::as_str))
    }

    /// A parameter parsed with `FromStr` into a domain type (whose error names the field), or
    /// None when absent.
    pub fn parsed<T>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T: std::str::FromStr<Err = crate::domain::FieldError>,
    {
        match self.get(name)? {
            None => Ok(None),
            Some(v) => Ok(Some(v.parse()?)),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params =
            axum::extract::Query::<std::collections::HashMap<String, String>>::from_request_parts(
                parts, state,
            )
            .await
            .map(|q| q.0)
            .map_err(|e| e.body_text());
        Ok(Self { params })
    }
}
