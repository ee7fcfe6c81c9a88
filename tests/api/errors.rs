//! The error contract: shape, request ids, limits, malformed input.

use orderflow::domain::user::Role;
use serde_json::json;

use crate::common::{assert_error, spawn_app};

#[tokio::test]
async fn every_error_has_the_standard_shape_and_request_id() {
    let app = spawn_app().await;
    let (_, _, viewer) = app.org_with("acme", Role::Viewer).await;

    assert_error(
        app.client.get(app.url("/api/v1/me")).send().await.unwrap(),
        401,
        "AUTH_REQUIRED",
    )
    .await;
    assert_error(
        app.get("/api/v1/audit-log", &viewer).await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert_error(app.get("/api/v1/nope", &viewer).await, 404, "NOT_FOUND").await;
    let body = assert_error(
        app.get("/api/v1/audit-log?limit=-1", &viewer).await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert_eq!(body["error"]["details"], serde_json::json!({}));

    let resp = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"org_slug": "acme"}))
        .send()
        .await
        .unwrap();
    let body = assert_error(resp, 422, "VALIDATION_ERROR").await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("email"),
        "{body}"
    );

    let big = "x".repeat(2 * 1024 * 1024);
    let resp = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_error(resp, 413, "PAYLOAD_TOO_LARGE").await;

    let resp = app
        .client
        .delete(app.url("/api/v1/me"))
        .send()
        .await
        .unwrap();
    assert_error(resp, 405, "METHOD_NOT_ALLOWED").await;
}

#[tokio::test]
async fn client_request_id_is_echoed_and_a_fresh_one_generated_otherwise() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/api/v1/me"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-abc-123");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "trace-abc-123");

    let resp = app.client.get(app.url("/healthz")).send().await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    // An id with spaces or control characters is not trusted (it would end up in logs).
    let resp = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "a b")
        .send()
        .await
        .unwrap();
    assert_ne!(resp.headers()["x-request-id"], "a b");
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_422_naming_the_field() {
    let app = spawn_app().await;
    for (body, field) in [
        ("{not json", "body"),
        ("", "body"),
        (
            r#"{"org_slug": 5, "email": "a@b.c", "password": "x"}"#,
            "org_slug",
        ),
        (
            r#"{"org_slug": "a", "email": ["a@b.c"], "password": "x"}"#,
            "email",
        ),
        (r#"["a"]"#, "body"),
        (
            r#"{"org_slug": "a", "email": "a@b.c", "password": "x"} trailing"#,
            "body",
        ),
    ] {
        let resp = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let err = assert_error(resp, 422, "VALIDATION_ERROR").await;
        assert_eq!(err["error"]["details"]["field"], field, "{body}");
    }
}
