//! Signing in and out, with the same accounts, throttling and answers as `POST /auth/login`.

use std::collections::HashMap;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use maud::html;

use crate::api::console::session::{
    CSRF_FIELD, ConsoleUser, LOGIN_CSRF_COOKIE, SESSION_COOKIE, SignedForm, cookie, csrf_token,
    csrf_valid, set_cookie, with_cookie,
};
use crate::api::console::views::{Html, Notice, OrPage, PageError, notice, page};
use crate::api::error::ApiError;
use crate::api::extract::ClientAddr;
use crate::api::state::AppState;
use crate::crypto::SecretString;
use crate::service::login::LoginAttempt;

/// How long the login form's double-submit cookie lives.
const LOGIN_FORM_SECS: u64 = 3600;

fn login_page(
    state: &AppState,
    status: StatusCode,
    org_slug: &str,
    email: &str,
    message: Option<&Notice>,
) -> Response {
    let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let content = html! {
        (notice(message))
        form.login method="post" action="/ui/login" {
            input type="hidden" name=(CSRF_FIELD) value=(csrf_token(state, "login", &nonce));
            label for="org_slug" { "Organisation" }
            input id="org_slug" name="org_slug" required autocomplete="organization" value=(org_slug);
            label for="email" { "E-mail" }
            input id="email" name="email" type="email" required autocomplete="username" value=(email);
            label for="password" { "Password" }
            input id="password" name="password" type="password" required autocomplete="current-password";
            button type="submit" { "Sign in" }
        }
    };
    let markup = page(state, None, "Sign in", content);
    with_cookie(
        Html(status, markup).into_response(),
        set_cookie(state, LOGIN_CSRF_COOKIE, &nonce, LOGIN_FORM_SECS),
    )
}

/// `GET /ui/login`.
pub async fn form(State(state): State<AppState>, user: Option<ConsoleUser>) -> Response {
    if user.is_some() {
        return Redirect::to("/ui/drafts").into_response();
    }
    login_page(&state, StatusCode::OK, "", "", None)
}

/// `POST /ui/login`.
pub async fn submit(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    let nonce = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if nonce.is_empty()
        || !csrf_valid(
            &state,
            "login",
            nonce,
            fields.get(CSRF_FIELD).map(String::as_str),
        )
    {
        let refused = Notice::Error(
            "The form expired or did not come from this site; please sign in again.".into(),
        );
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            field("org_slug"),
            field("email"),
            Some(&refused),
        );
    }
    let attempt = LoginAttempt {
        org_slug: field("org_slug"),
        email: field("email"),
        password: SecretString::new(field("password").to_owned()),
        client: client.0,
    };
    match state.login.login(attempt).await {
        Ok(logged_in) => {
            let response = Redirect::to("/ui/drafts").into_response();
            let response = with_cookie(
                response,
                set_cookie(
                    &state,
                    SESSION_COOKIE,
                    &logged_in.access_token,
                    logged_in.expires_in,
                ),
            );
            with_cookie(response, set_cookie(&state, LOGIN_CSRF_COOKIE, "", 0))
        }
        Err(err) => {
            let (status, n) = Notice::from_error(ApiError::from(err));
            login_page(&state, status, field("org_slug"), field("email"), Some(&n))
        }
    }
}

/// `POST /ui/logout`.
pub async fn logout(
    State(state): State<AppState>,
    SignedForm { user, .. }: SignedForm,
) -> Result<Response, PageError> {
    // The cookie's token must stop working, not just leave this browser: revoke it.
    state
        .login
        .logout(&user.auth.session)
        .await
        .or_page(&state, &user)?;
    Ok(with_cookie(
        Redirect::to("/ui/login").into_response(),
        set_cookie(&state, SESSION_COOKIE, "", 0),
    ))
}
