//! Login, tokens, roles.

use orderflow::auth::Claims;
use orderflow::domain::user::Role;
use orderflow::service::accounts;
use serde_json::{Value, json};

use crate::common::{TEST_PASSWORD, assert_error, spawn_app};

fn login_body(org: &str, email: &str, password: &str) -> Value {
    json!({ "org_slug": org, "email": email, "password": password })
}

#[tokio::test]
async fn login_returns_a_working_bearer_token_and_audits_it() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    app.user(&org, "ann@acme.test", Role::Integrator).await;

    let resp = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&login_body("acme", "ANN@acme.test", TEST_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap();

    let me: Value = app.get_json("/api/v1/me", token).await;
    assert_eq!(me["email"], "ann@acme.test");
    assert_eq!(me["role"], "INTEGRATOR");
    assert_eq!(me["org_slug"], "acme");
    assert_eq!(me["org_id"], org.id.to_string());

    let claims: Claims = app.tokens.verify(token).unwrap();
    assert_eq!(claims.exp - claims.iat, 3600);
    assert_eq!(claims.role, Role::Integrator);

    let log = app
        .store()
        .list_audit(
            org.id,
            None,
            orderflow::domain::page::PageRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(log.items[0].action, "auth.login_succeeded");
}

#[tokio::test]
async fn wrong_credentials_are_401_and_failures_are_audited() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    app.user(&org, "ann@acme.test", Role::Admin).await;

    for (org_slug, email, password) in [
        ("acme", "ann@acme.test", "wrong-password"),
        ("acme", "nobody@acme.test", TEST_PASSWORD),
        ("no-such-org", "ann@acme.test", TEST_PASSWORD),
        ("acme", "not-an-email", TEST_PASSWORD),
    ] {
        let resp = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&login_body(org_slug, email, password))
            .send()
            .await
            .unwrap();
        let body = assert_error(resp, 401, "AUTH_REQUIRED").await;
        // The same answer whatever was wrong: no user enumeration.
        assert_eq!(body["error"]["message"], "Invalid org, e-mail or password");
    }
    let log = app
        .store()
        .list_audit(
            org.id,
            None,
            orderflow::domain::page::PageRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap();
    let failures: Vec<_> = log
        .items
        .iter()
        .filter(|e| e.action == "auth.login_failed")
        .collect();
    assert_eq!(
        failures.len(),
        3,
        "wrong password, unknown user and bad e-mail in acme"
    );
    assert!(
        failures
            .iter()
            .all(|e| !e.details.to_string().contains("wrong-password"))
    );
}

#[tokio::test]
async fn disabled_user_cannot_log_in_or_use_a_token() {
    let app = spawn_app().await;
    let (org, user, token) = app.org_with("acme", Role::Ops).await;
    assert_eq!(app.get("/api/v1/me", &token).await.status(), 200);
    accounts::disable_user(app.store(), &org, user.email.as_str())
        .await
        .unwrap();

    let resp = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&login_body("acme", user.email.as_str(), TEST_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_error(resp, 403, "FORBIDDEN").await;
    assert_error(app.get("/api/v1/me", &token).await, 403, "FORBIDDEN").await;
}

#[tokio::test]
async fn bad_tokens_are_401() {
    let app = spawn_app().await;
    let (_, user, token) = app.org_with("acme", Role::Admin).await;

    let now = jsonwebtoken::get_current_timestamp();
    let expired = app
        .tokens
        .sign(&Claims {
            sub: user.id,
            org_id: user.org_id,
            role: user.role,
            iat: now - 7200,
            exp: now - 3600,
            jti: None,
        })
        .unwrap();
    let other_key = orderflow::auth::TokenIssuer::new(&orderflow::crypto::SecretString::new(
        "another-secret-that-is-long-enough-to-use".into(),
    ));
    let wrong_signature = other_key.issue(&user, 600).unwrap();
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let none_header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{payload}.");
    let hs512_header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#);
    let swapped_alg = format!(
        "{hs512_header}.{payload}.{}",
        token.split('.').nth(2).unwrap()
    );

    for bad in [
        expired.as_str(),
        &wrong_signature,
        &alg_none,
        &swapped_alg,
        "garbage",
        "",
    ] {
        assert_error(app.get("/api/v1/me", bad).await, 401, "AUTH_REQUIRED").await;
    }
    let no_header = app.client.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_error(no_header, 401, "AUTH_REQUIRED").await;
    let basic = app
        .client
        .get(app.url("/api/v1/me"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_error(basic, 401, "AUTH_REQUIRED").await;
    assert_eq!(app.get("/api/v1/me", &token).await.status(), 200);
}

#[tokio::test]
async fn token_for_a_user_of_another_org_id_is_rejected() {
    let app = spawn_app().await;
    let (_, user, _) = app.org_with("acme", Role::Admin).await;
    let (other_org, _, _) = app.org_with("globex", Role::Admin).await;
    // A validly signed token whose org does not own the user (a forged pairing) finds nobody.
    let now = jsonwebtoken::get_current_timestamp();
    let forged = app
        .tokens
        .sign(&Claims {
            sub: user.id,
            org_id: other_org.id,
            role: Role::Admin,
            iat: now,
            exp: now + 60,
            jti: None,
        })
        .unwrap();
    assert_error(app.get("/api/v1/me", &forged).await, 401, "AUTH_REQUIRED").await;
}

/// Signing out ends the token at once: the API refuses it afterwards, and so does the
/// console (the cookie holds the same kind of token).
#[tokio::test]
async fn signing_out_revokes_the_token_everywhere_and_only_that_token() {
    let app = spawn_app().await;
    let (_, user, token) = app.org_with("acme", Role::Ops).await;
    let other_session = app.token_for(&user);
    assert_eq!(app.get("/api/v1/me", &token).await.status(), 200);

    let resp = app.post_empty("/api/v1/auth/logout", &token).await;
    assert_eq!(resp.status(), 204);

    assert_error(app.get("/api/v1/me", &token).await, 401, "AUTH_REQUIRED").await;
    assert_error(
        app.post_empty("/api/v1/auth/logout", &token).await,
        401,
        "AUTH_REQUIRED",
    )
    .await;
    let console = app
        .client
        .get(app.url("/ui/drafts"))
        .header("Cookie", format!("orderflow_session={token}"))
        .send()
        .await
        .unwrap();
    assert!(
        console.url().path().ends_with("/ui/login") || console.status().is_redirection(),
        "the console still accepted a signed-out token: {}",
        console.url()
    );
    // The user's other sessions go on.
    assert_eq!(app.get("/api/v1/me", &other_session).await.status(), 200);
    let audit = app
        .store()
        .list_audit(
            user.org_id,
            Some("auth.logged_out"),
            orderflow::domain::page::PageRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(audit.items.len(), 1);
}
