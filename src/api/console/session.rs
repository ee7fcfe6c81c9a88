//! Console sessions and CSRF protection.
//!
//! The session cookie holds the same access token the API issues (so roles, disabling a user
//! and expiry work exactly as for the API); it is `HttpOnly`, `SameSite=Strict`, limited to
//! `/ui`, and `Secure` when `PUBLIC_URL` is https. Every state-changing form carries a CSRF
//! token: an HMAC of the session token under a key derived from `JWT_SECRET`, so nothing is
//! stored and a token is worthless for any other session. The login form, which has no session
//! yet, uses a random double-submit cookie instead.

use std::collections::HashMap;

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit as _, Mac};

use crate::api::extract::AuthUser;
use crate::api::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "orderflow_session";
/// The login form's double-submit cookie.
pub const LOGIN_CSRF_COOKIE: &str = "orderflow_login_csrf";
/// The hidden form field every POST carries.
pub const CSRF_FIELD: &str = "csrf";

/// One cookie's value from the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value; `max_age` 0 deletes it.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = state
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let text = format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    // Tokens and random values are URL-safe ASCII, so this cannot fail; an empty value is the
    // harmless fallback.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn csrf_mac(state: &AppState, purpose: &str, value: &str) -> Option<hmac::Hmac<sha2::Sha256>> {
    let mut mac =
        <hmac::Hmac<sha2::Sha256>>::new_from_slice(state.console_secret.expose().as_bytes())
            .ok()?;
    mac.update(b"orderflow-console-csrf\0");
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(value.as_bytes());
    Some(mac)
}

/// The CSRF token of a session (or of a login form's random value).
pub fn csrf_token(state: &AppState, purpose: &str, value: &str) -> String {
    csrf_mac(state, purpose, value)
        .map(|mac| URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
        .unwrap_or_default()
}

/// True when `token` is the CSRF token of `value` (constant-time).
pub fn csrf_valid(state: &AppState, purpose: &str, value: &str, token: Option<&str>) -> bool {
    let Some(bytes) = token.and_then(|t| URL_SAFE_NO_PAD.decode(t).ok()) else {
        return false;
    };
    csrf_mac(state, purpose, value).is_some_and(|mac| mac.verify_slice(&bytes).is_ok())
}

/// A signed-in console user: the API's [`AuthUser`] plus the session's token.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    /// The user as stored now.
    pub auth: AuthUser,
    token: String,
}

impl ConsoleUser {
    /// The token forms must carry.
    pub fn csrf(&self, state: &AppState) -> String {
        csrf_token(state, "session", &self.token)
    }

    /// True when a submitted form's token belongs to this session.
    pub fn csrf_ok(&self, state: &AppState, submitted: Option<&str>) -> bool {
        csrf_valid(state, "session", &self.token, submitted)
    }
}

/// Not signed in (or the session ended): go to the sign-in page.
#[derive(Debug)]
pub struct SignIn;

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        let mut response = Redirect::to("/ui/login").into_response();
        // htmx follows a redirect inside a fragment; tell it to load the whole page instead.
        response
            .headers_mut()
            .insert("HX-Redirect", HeaderValue::from_static("/ui/login"));
        response
    }
}

impl FromRequestParts<AppState> for ConsoleUser {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, SignIn> {
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .filter(|t| !t.is_empty())
            .ok_or(SignIn)?
            .to_owned();
        let auth = AuthUser::from_token(state, &token)
            .await
            .map_err(|_| SignIn)?;
        Ok(ConsoleUser { auth, token })
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for ConsoleUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Self as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

/// A state-changing form from a signed-in user, its CSRF token checked: the one place that
/// check is made, so no handler can forget it. A forged form is refused with the console's
/// error page (403); no session sends the browser to sign in.
#[derive(Debug)]
pub struct SignedForm {
    /// Who sent it.
    pub user: ConsoleUser,
    /// Its fields, the token among them.
    pub fields: HashMap<String, String>,
}

impl FromRequest<AppState> for SignedForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let user =
            <ConsoleUser as FromRequestParts<AppState>>::from_request_parts(&mut parts, state)
                .await
                .map_err(IntoResponse::into_response)?;
        let Form(fields) =
            Form::<HashMap<String, String>>::from_request(Request::from_parts(parts, body), state)
                .await
                .map_err(IntoResponse::into_response)?;
        let token = fields.get(CSRF_FIELD).map(String::as_str);
        if !user.csrf_ok(state, token) {
            let refusal = crate::api::error::ApiError::Forbidden(
                "The form did not come from this session; reload the page and try again",
            );
            return Err(super::views::PageError::new(state, Some(&user), refusal).into_response());
        }
        Ok(Self { user, fields })
    }
}

/// Adds a `Set-Cookie` header to a response.
pub fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(SET_COOKIE, cookie);
    response
}
