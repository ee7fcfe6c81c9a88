//! Health, readiness, metrics and the OpenAPI document.

use serde_json::Value;

use crate::common::spawn_app;

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.store().close().await;
    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
}

#[tokio::test]
async fn metrics_count_requests_by_route_method_and_status() {
    let app = spawn_app().await;
    app.client.get(app.url("/healthz")).send().await.unwrap();
    app.client.get(app.url("/api/v1/me")).send().await.unwrap();
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("http_requests_total{"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total")
            && l.contains("route=\"/api/v1/me\"")
            && l.contains("status=\"401\"")
            && l.contains("method=\"GET\"")),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_lists_every_endpoint() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/auth/login",
        "/api/v1/me",
        "/api/v1/audit-log",
        "/api/v1/connectors/types",
        "/api/v1/connectors",
        "/api/v1/connectors/dropzone-json-v1",
        "/api/v1/connectors/dropzone-json-v1/test",
        "/api/v1/connectors/dropzone-json-v1/disable",
        "/api/v1/connections/{id}/enable",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    for path in [
        "/api/v1/draft-orders",
        "/api/v1/draft-orders/{id}",
        "/api/v1/draft-orders/{id}/approve",
        "/api/v1/draft-orders/{id}/push",
        "/api/v1/draft-orders/{id}/retry-push",
        "/api/v1/exports",
        "/api/v1/exports/{id}",
        "/api/v1/exports/{id}/file",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    // Each connector type's paths carry its real config schema as the body.
    let save = &paths["/api/v1/connectors/dropzone-json-v1"]["post"];
    let schema = &save["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["additionalProperties"], false);
    assert!(schema["properties"]["test_on_save"].is_object());
    for status in ["200", "400", "401", "403", "404", "409", "413", "422"] {
        assert!(
            save["responses"].get(status).is_some(),
            "save lacks {status}"
        );
    }
    // Only save and test take a config; the other connector actions take no body.
    assert!(paths["/api/v1/connectors/dropzone-json-v1/test"]["post"]["requestBody"].is_object());
    for action in ["disable", "poll-acks"] {
        let op = &paths[&format!("/api/v1/connectors/dropzone-json-v1/{action}")]["post"];
        assert!(op["requestBody"].is_null(), "{action} documents a body");
    }
    let list = &paths["/api/v1/exports"]["get"];
    let cursor = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cursor")
        .unwrap();
    assert!(cursor["schema"]["pattern"].is_string());
}

/// Two schema components with one name overwrite each other in the document; the probe answers
/// are where that once happened, so their real bodies are checked against what is documented.
#[tokio::test]
async fn probe_answers_match_their_documented_schema() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/healthz", "/readyz"] {
        let documented =
            &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        assert!(documented.is_object(), "{path} documents no body");
        let mut schema = doc.clone();
        schema
            .as_object_mut()
            .unwrap()
            .extend(documented.as_object().unwrap().clone());
        let validator = jsonschema::validator_for(&schema).unwrap();
        let body: Value = app
            .client
            .get(app.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{path}: {body} against {documented}: {errors:?}"
        );
    }
}
