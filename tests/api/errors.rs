//! The error contract: shape, request ids, limits, malformed input.

use orderflow::domain::user::Role;
use serde_json::json;

use crate::common::{TestDb, assert_error, spawn_app, spawn_app_on};

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

/// Database connections cut under the server (PostgreSQL terminates their backends, as a
/// restart or a failover would): a request that meets a dead pooled connection answers 503
/// with Retry-After, never a 500, and the service recovers by itself on fresh connections.
#[tokio::test]
async fn cut_database_connections_answer_503_and_the_service_recovers() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let schema = db.pg_schema().unwrap().to_owned();
    let admin = sqlx::PgPool::connect(&std::env::var("TEST_DATABASE_URL").unwrap())
        .await
        .unwrap();
    let app = spawn_app_on(db, &[]).await;
    let (_, _, token) = app.org_with("acme", Role::Admin).await;
    let warm =
        futures::future::join_all((0..6).map(|_| app.get("/api/v1/draft-orders", &token))).await;
    assert!(warm.iter().all(|r| r.status() == 200));

    let cut: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&schema)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(cut >= 1, "no connection of this test's pool found");
    for _ in 0..100 {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&schema)
                .fetch_one(&admin)
                .await
                .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Every pooled connection is dead now: the next request meets one.
    let mut answers = Vec::new();
    for _ in 0..40 {
        let resp = app.get("/api/v1/draft-orders", &token).await;
        let status = resp.status().as_u16();
        answers.push(status);
        if status == 200 {
            break;
        }
        assert!(resp.headers().contains_key("retry-after"), "{answers:?}");
        assert_error(resp, 503, "SERVICE_UNAVAILABLE").await;
    }
    assert_eq!(answers.first(), Some(&503), "{answers:?}");
    assert_eq!(answers.last(), Some(&200), "never recovered: {answers:?}");
    for _ in 0..5 {
        assert_eq!(app.get("/api/v1/draft-orders", &token).await.status(), 200);
    }
    admin.close().await;
}
