//! Encrypted configs at rest, an unreadable config, and secrets never leaking.

use orderflow::crypto::{Keyring, connection_aad};
use orderflow::domain::user::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{
    Backend, TEST_KEY, TEST_PASSWORD, TestApp, TestDb, captured_logs, spawn_app, spawn_app_on,
};

const SLUG: &str = "/api/v1/connectors/dropzone-json-v1";

async fn raw_blob(app: &TestApp, id: Uuid) -> Vec<u8> {
    const Q: &str = "SELECT config_encrypted FROM erp_connection WHERE id = $1";
    match app.db.backend {
        Backend::Sqlite => sqlx::query_scalar(Q)
            .bind(id)
            .fetch_one(app.db.sqlite.as_ref().unwrap().pool())
            .await
            .unwrap(),
        Backend::Postgres => sqlx::query_scalar(Q)
            .bind(id)
            .fetch_one(app.db.postgres.as_ref().unwrap().pool())
            .await
            .unwrap(),
    }
}

async fn overwrite_blob(app: &TestApp, id: Uuid, blob: &[u8]) {
    const Q: &str = "UPDATE erp_connection SET config_encrypted = $2 WHERE id = $1";
    match app.db.backend {
        Backend::Sqlite => {
            sqlx::query(Q)
                .bind(id)
                .bind(blob)
                .execute(app.db.sqlite.as_ref().unwrap().pool())
                .await
                .unwrap();
        }
        Backend::Postgres => {
            sqlx::query(Q)
                .bind(id)
                .bind(blob)
                .execute(app.db.postgres.as_ref().unwrap().pool())
                .await
                .unwrap();
        }
    }
}

async fn stored_config_is_ciphertext_bound_to_its_row(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let app = spawn_app_on(db, &[]).await;
    let (org, _, token) = app.org_with("acme", Role::Admin).await;
    let password = "Plaintext-Canary-4711";
    let saved: Value = app
        .post_json(SLUG, &token, &json!({"mode": "sftp", "host": "sftp.example.com", "username": "erp", "password": password, "export_path": "/in"}))
        .await
        .json()
        .await
        .unwrap();
    let id = Uuid::parse_str(saved["id"].as_str().unwrap()).unwrap();
    let blob = raw_blob(&app, id).await;

    assert!(blob.len() > 28);
    let haystack = String::from_utf8_lossy(&blob);
    for plain in [password, "sftp.example.com", "export_path", "\"mode\""] {
        assert!(!haystack.contains(plain), "{plain} stored in clear");
    }
    let keyring = Keyring::from_hex(TEST_KEY, "").unwrap();
    let aad = connection_aad(org.id, id);
    let config: Value = serde_json::from_slice(
        keyring
            .decrypt(aad.as_bytes(), &blob)
            .unwrap()
            .plaintext
            .expose(),
    )
    .unwrap();
    assert_eq!(config["password"], password);
    assert!(
        keyring
            .decrypt(connection_aad(org.id, Uuid::new_v4()).as_bytes(), &blob)
            .is_err(),
        "opens for another row"
    );
    assert!(
        keyring
            .decrypt(connection_aad(Uuid::new_v4(), id).as_bytes(), &blob)
            .is_err(),
        "opens for another org"
    );
    let other_key = Keyring::from_hex(&orderflow::crypto::generate_key_hex(), "").unwrap();
    assert!(
        other_key.decrypt(aad.as_bytes(), &blob).is_err(),
        "opens with another key"
    );

    // Saving again re-encrypts with a fresh IV.
    app.post_json(SLUG, &token, &json!({"mode": "sftp", "host": "sftp.example.com", "username": "erp", "export_path": "/in"})).await;
    let again = raw_blob(&app, id).await;
    assert_ne!(blob[..12], again[..12]);
}

#[tokio::test]
async fn stored_config_is_ciphertext_bound_to_its_row_sqlite() {
    stored_config_is_ciphertext_bound_to_its_row(Backend::Sqlite).await;
}

#[tokio::test]
async fn stored_config_is_ciphertext_bound_to_its_row_postgres() {
    stored_config_is_ciphertext_bound_to_its_row(Backend::Postgres).await;
}

#[tokio::test]
async fn an_undecryptable_config_is_a_clean_500_and_can_be_replaced() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    let saved: Value = app
        .post_json(SLUG, &token, &json!({"mode": "sftp", "host": "sftp.example.com", "username": "erp", "password": "pw-xyz-123", "export_path": "/in"}))
        .await
        .json()
        .await
        .unwrap();
    let id = Uuid::parse_str(saved["id"].as_str().unwrap()).unwrap();
    let mut blob = raw_blob(&app, id).await;
    blob[20] ^= 0xff;
    overwrite_blob(&app, id, &blob).await;

    for resp in [
        app.post_empty(&format!("{SLUG}/test"), &token).await,
        app.get(SLUG, &token).await,
    ] {
        let body = crate::common::assert_error(resp, 500, "INTERNAL_ERROR").await;
        assert_eq!(body["error"]["message"], "Configuration error");
        assert!(!body.to_string().contains("sftp.example.com"));
    }
    // The server is still up, and a complete new config replaces the broken one.
    let resp = app.post_json(SLUG, &token, &json!({"mode": "sftp", "host": "sftp.example.com", "username": "erp", "password": "pw-new-456", "export_path": "/in"})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.get(SLUG, &token).await.status(), 200);
}

/// Drives every secret-bearing endpoint with known secrets, then scans everything the server
/// answered here and everything logged in this test binary so far for them.
#[tokio::test]
async fn secrets_never_appear_in_responses_or_logs() {
    let app = spawn_app().await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    let password = "Leak-Canary-Password-93jd";
    let passphrase = "Leak-Canary-Passphrase-k2";
    let mut answers = Vec::new();
    let login = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"org_slug": "acme", "email": "admin@acme.test", "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    answers.push(login.text().await.unwrap());
    let wrong = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"org_slug": "acme", "email": "admin@acme.test", "password": password}))
        .send()
        .await
        .unwrap();
    answers.push(wrong.text().await.unwrap());

    let config = json!({"mode": "sftp", "host": "sftp.invalid", "username": "erp", "password": password, "export_path": "/in", "timeout_secs": 2});
    for body in [
        config.clone(),
        json!({"mode": "sftp", "host": "sftp.invalid", "username": "erp", "password": password, "export_path": "relative"}),
        json!({"mode": "sftp", "host": "sftp.invalid", "username": "erp", "private_key": password, "private_key_passphrase": passphrase, "export_path": "/in"}),
        json!({"mode": "sftp", "host": "other.invalid", "username": "erp", "export_path": "/in"}),
    ] {
        answers.push(
            app.post_json(SLUG, &token, &body)
                .await
                .text()
                .await
                .unwrap(),
        );
        answers.push(
            app.post_json(&format!("{SLUG}/test"), &token, &body)
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    let mut with_test = config.clone();
    with_test["test_on_save"] = json!(true);
    answers.push(
        app.post_json(SLUG, &token, &with_test)
            .await
            .text()
            .await
            .unwrap(),
    );
    answers.push(
        app.post_empty(&format!("{SLUG}/test"), &token)
            .await
            .text()
            .await
            .unwrap(),
    );
    answers.push(app.get(SLUG, &token).await.text().await.unwrap());
    answers.push(
        app.get("/api/v1/connectors", &token)
            .await
            .text()
            .await
            .unwrap(),
    );
    answers.push(
        app.get("/api/v1/audit-log?limit=200", &token)
            .await
            .text()
            .await
            .unwrap(),
    );

    let logs = captured_logs();
    assert!(
        logs.contains("connection test finished"),
        "logs were not captured"
    );
    for secret in [password, passphrase, TEST_PASSWORD] {
        for answer in &answers {
            assert!(!answer.contains(secret), "{secret} in a response: {answer}");
        }
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
    assert!(!logs.contains(&token), "bearer token in the logs");
}
