//! The OpenAPI 3 document, generated from the handlers' annotations and then made exact
//! ([`finalize`]): each connector type gets its own paths with its real config schema as the
//! request body, every operation lists the error answers the shared layers give (401/403 for
//! authenticated ones, 404/422 for path ids, 413/422 for bodies), and query parameters carry
//! the same limits the validation applies. Schemathesis checks the result in CI.

use std::sync::Arc;

use axum::{Extension, Json};
use serde_json::{Map, Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

use crate::connectors::Registry;
use crate::crypto::cursor::CURSOR_PATTERN;

/// The document's fixed parts; paths are added by the router.
pub fn base() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("OrderFlow Connect")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Delivers approved B2B sales orders into ERP systems."))
                .build(),
        )
        .build();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    doc
}

/// The document, as served.
#[derive(Debug, Clone)]
pub struct Document(pub Value);

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json(Extension(doc): Extension<Arc<Document>>) -> Json<Value> {
    Json(doc.0.clone())
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
    })
}

fn ensure_response(responses: &mut Map<String, Value>, status: &str, description: &str) {
    responses
        .entry(status.to_owned())
        .or_insert_with(|| error_response(description));
}

/// Tightens query and header parameters to the validation's rules.
fn tighten_parameters(operation: &mut Map<String, Value>) {
    let Some(Value::Array(params)) = operation.get_mut("parameters") else {
        return;
    };
    for param in params.iter_mut() {
        let name = param["name"].as_str().unwrap_or_default().to_owned();
        let schema = &mut param["schema"];
        match name.as_str() {
            "limit" => {
                *schema = json!({ "type": "integer", "minimum": 1, "maximum": 200 });
            }
            "cursor" => {
                *schema = json!({ "type": "string", "pattern": CURSOR_PATTERN });
            }
            "action" => {
                *schema = json!({ "type": "string", "minLength": 1, "maxLength": 64,
                                  "pattern": "^[!-~]+$" });
            }
            "Idempotency-Key" => {
                *schema = json!({ "type": "string", "pattern": "^[!-~]{1,255}$" });
            }
            _ => {}
        }
    }
}

/// A preview's optional body (an unsaved config, of which the shared delivery fields are read)
/// and its answer in each format's media type.
fn describe_preview(op: &mut Map<String, Value>) {
    let delivery = crate::formats::DeliveryFormat::schema_properties();
    op.insert(
        "requestBody".into(),
        json!({
            "required": false,
            "description": "An unsaved connector config to preview with instead of the active connection's",
            // A null body means no body, as a null config means no config.
            "content": { "application/json": { "schema": {
                "type": ["object", "null"],
                "additionalProperties": false,
                "properties": { "config": { "type": ["object", "null"], "properties": delivery } }
            } } }
        }),
    );
    if let Some(ok) = op
        .get_mut("responses")
        .and_then(|r| r.get_mut("200"))
        .and_then(Value::as_object_mut)
    {
        ok.insert(
            "headers".into(),
            json!({ "X-File-Name": { "description": "The name a push would deliver the file under",
                                     "schema": { "type": "string" } } }),
        );
    }
}

/// An export file's answer: one of the formats' media types.
fn describe_file(op: &mut Map<String, Value>) {
    let file = json!({ "schema": { "type": "string", "format": "binary" } });
    let content: Map<String, Value> = crate::formats::MEDIA_TYPES
        .iter()
        .map(|t| {
            let schema = if *t == "application/json" {
                json!({ "schema": { "type": "object" } })
            } else {
                file.clone()
            };
            ((*t).to_owned(), schema)
        })
        .collect();
    if let Some(ok) = op
        .get_mut("responses")
        .and_then(|r| r.get_mut("200"))
        .and_then(Value::as_object_mut)
    {
        ok.insert("content".into(), Value::Object(content));
    }
}

/// The request body of a connector save or test: the type's config schema plus `test_on_save`.
fn connector_body(config_schema: &Value, optional: bool) -> Value {
    let mut schema = config_schema.clone();
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
        if let Some(Value::Object(props)) = map.get_mut("properties") {
            props.insert(
                "test_on_save".into(),
                json!({ "type": ["boolean", "null"], "description": "Test the config before storing it (default false)." }),
            );
        }
    }
    json!({
        "required": !optional,
        "description": "The connector type's config (see GET /api/v1/connectors/types)",
        "content": { "application/json": { "schema": schema } }
    })
}

/// The answers every operation can give beside its own: 401/403 when secured, 404/422 with a
/// path parameter, 413/422 with a body, 422 with a query.
fn add_standard_responses(path: &str, op: &mut Map<String, Value>) {
    let secured = op.contains_key("security");
    let has_body = op.contains_key("requestBody");
    let has_path_param = path.contains('{');
    let has_query = op.get("parameters").is_some_and(|p| {
        p.as_array()
            .is_some_and(|ps| ps.iter().any(|x| x["in"] == "query"))
    });
    let Some(Value::Object(responses)) = op.get_mut("responses") else {
        return;
    };
    if secured {
        ensure_response(
            responses,
            "401",
            "Missing, malformed or expired credentials",
        );
        ensure_response(
            responses,
            "403",
            "The role does not allow this, or the user is disabled",
        );
    }
    if has_path_param {
        ensure_response(
            responses,
            "404",
            "Not found (also for another org's objects)",
        );
        ensure_response(responses, "422", "A path parameter is not a valid id");
    }
    if has_body {
        ensure_response(responses, "413", "The body is larger than 1 MiB");
        ensure_response(
            responses,
            "422",
            "The body is malformed or a field is invalid",
        );
    }
    if has_query {
        ensure_response(responses, "422", "A query parameter is invalid");
    }
}

/// Makes the generated document exact; see the module docs.
pub fn finalize(doc: OpenApi, registry: &Registry) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|_| json!({}));
    let Some(Value::Object(paths)) = doc.get_mut("paths") else {
        return doc;
    };
    let mut expanded = Map::new();
    for (path, item) in std::mem::take(paths) {
        if !path.contains("{slug}") {
            expanded.insert(path, item);
            continue;
        }
        for connector in registry.all() {
            let mut item = item.clone();
            if let Some(ops) = item.as_object_mut() {
                for (method, op) in ops.iter_mut() {
                    if let Some(Value::Array(params)) = op.get_mut("parameters") {
                        params.retain(|p| p["name"] != "slug");
                    }
                    // Only `POST /connectors/{slug}` (save) and `…/test` take a config.
                    let is_save = method == "post" && path.ends_with("{slug}");
                    if is_save || (method == "post" && path.ends_with("/test")) {
                        let optional = path.ends_with("/test");
                        op["requestBody"] = connector_body(
                            &crate::formats::connection_schema(connector.config_schema()),
                            optional,
                        );
                    }
                }
            }
            expanded.insert(path.replace("{slug}", connector.slug()), item);
        }
    }
    for (path, item) in expanded.iter_mut() {
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for op in ops.values_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            tighten_parameters(op);
            if path.ends_with("/preview") {
                describe_preview(op);
            }
            if path.ends_with("/preview") || path.ends_with("/file") {
                describe_file(op);
            }
            add_standard_responses(path, op);
        }
    }
    doc["paths"] = Value::Object(expanded);
    doc
}
