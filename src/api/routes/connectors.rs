//! Connector endpoints, ADMIN and INTEGRATOR only.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{AuthUser, body_bytes, parse_json, parse_uuid};
use crate::api::state::AppState;
use crate::connectors::TestResult;
use crate::domain::connection::{Connection, ConnectionStatus};
use crate::domain::user::Role;
use crate::service::ack_poll::AckCounts;
use crate::service::connections::{ConnectionHealth, SaveOutcome};
use crate::service::preview::{Preview, PreviewWith};

/// A connector type from the registry.
#[derive(Serialize, ToSchema)]
pub struct ConnectorType {
    /// e.g. `DROPZONE_JSON_V1`.
    connector_type: &'static str,
    /// e.g. `dropzone-json-v1`.
    slug: &'static str,
    /// Human name.
    display_name: &'static str,
    /// JSON Schema of the config; secret fields are `writeOnly`.
    #[schema(value_type = Object)]
    config_schema: Value,
}

/// A connection, without its config.
#[derive(Serialize, ToSchema)]
pub struct ConnectionSummary {
    id: Uuid,
    connector_type: String,
    status: ConnectionStatus,
    last_test_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// How deliveries to it are doing (its circuit breaker and queue).
    health: ConnectionHealth,
}

impl ConnectionSummary {
    fn new(c: &Connection, health: ConnectionHealth) -> Self {
        Self {
            id: c.id,
            connector_type: c.connector_type.clone(),
            status: c.status,
            last_test_at: c.last_test_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
            health,
        }
    }

    async fn of(state: &AppState, c: &Connection) -> Result<Self, ApiError> {
        let health = state
            .connections
            .health(std::slice::from_ref(c))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::internal("no health for a connection"))?;
        Ok(Self::new(c, health))
    }
}

/// The active connection with its non-secret config.
#[derive(Serialize, ToSchema)]
pub struct ConnectionDetailsView {
    #[serde(flatten)]
    summary: ConnectionSummary,
    /// Every non-secret field, including a recorded `host_key_fingerprint`.
    #[schema(value_type = Object)]
    config: Map<String, Value>,
    /// Names of the secret fields that hold a value.
    secrets_set: Vec<String>,
}

/// The answer to a save.
#[derive(Serialize, ToSchema)]
pub struct SaveResponse {
    id: Uuid,
    connector_type: String,
    status: ConnectionStatus,
    last_test_at: Option<DateTime<Utc>>,
    /// The test result when `test_on_save` was set, else null.
    test_result: Option<TestResult>,
    /// Secrets the service generated for this save (an `HTTP_JSON_V1` signing secret), shown
    /// in this response only.
    #[serde(skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    generated_secrets: Map<String, Value>,
}

/// Reads an optional JSON object body (an empty body or `null`: None).
async fn optional_object(req: Request) -> Result<Option<Map<String, Value>>, ApiError> {
    let bytes = body_bytes(req, &()).await?;
    // Only a body that is not there means "none": whitespace is not a JSON document, and
    // answering it as if nothing was sent would hide a client's broken serialiser.
    if bytes.is_empty() {
        return Ok(None);
    }
    match parse_json::<Value>(&bytes)? {
        Value::Object(map) => Ok(Some(map)),
        Value::Null => Ok(None),
        _ => Err(ApiError::invalid("body", "must be a JSON object")),
    }
}

fn test_response(result: TestResult) -> Response {
    let status = if result.success {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, Json(result)).into_response()
}

/// Every connector type.
#[utoipa::path(get, path = "/api/v1/connectors/types", tag = "connectors", security(("bearer" = [])),
    responses((status = 200, body = Vec<ConnectorType>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn types(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<Vec<ConnectorType>>, ApiError> {
    auth.require(Role::CONNECTOR_MANAGERS)?;
    let types = state
        .connections
        .registry()
        .all()
        .iter()
        .map(|c| ConnectorType {
            connector_type: c.connector_type(),
            slug: c.slug(),
            display_name: c.display_name(),
            config_schema: crate::formats::connection_schema(c.config_schema()),
        })
        .collect();
    Ok(Json(types))
}

/// The org's connections (active and disabled), never their configs.
#[utoipa::path(get, path = "/api/v1/connectors", tag = "connectors", security(("bearer" = [])),
    responses((status = 200, body = Vec<ConnectionSummary>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<Vec<ConnectionSummary>>, ApiError> {
    auth.require(Role::CONNECTOR_MANAGERS)?;
    let connections = state.connections.list(auth.org_id()).await?;
    let health = state.connections.health(&connections).await?;
    Ok(Json(
        connections
            .iter()
            .zip(health)
            .map(|(c, h)| ConnectionSummary::new(c, h))
            .collect(),
    ))
}

/// Creates the org's active connection of this type, or updates it. Body: the config fields
/// plus `test_on_save`. A failed `test_on_save` answers 400 with the test result and stores
/// nothing.
#[utoipa::path(post, path = "/api/v1/connectors/{slug}", tag = "connectors", security(("bearer" = [])),
    params(("slug" = String, Path, description = "e.g. dropzone-json-v1")),
    request_body(content = Object, description = "Config fields (see the type's config_schema) plus test_on_save"),
    responses(
        (status = 200, body = SaveResponse),
        (status = 400, description = "test_on_save failed", body = TestResult),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn save(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(slug): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    auth.require(Role::CONNECTOR_MANAGERS)?;
    let body = optional_object(req)
        .await?
        .ok_or_else(|| ApiError::invalid("body", "a JSON object is required"))?;
    match state
        .connections
        .save(&auth.actor(), auth.org_id(), &slug, body)
        .await?
    {
        SaveOutcome::TestFailed(result) => Ok(test_response(result)),
        SaveOutcome::Saved {
            connection,
            test_result,
            generated_secrets,
        } => {
            // A generated secret is in this answer only: no cache may keep a copy.
            let no_store = (!generated_secrets.is_empty())
                .then_some([(axum::http::header::CACHE_CONTROL, "no-store")]);
            Ok((
                no_store,
                Json(SaveResponse {
                    id: connection.id,
                    connector_type: connection.connector_type,
                    status: connection.status,
                    last_test_at: connection.last_test_at,
                    test_result,
                    generated_secrets,
                }),
            )
                .into_response())
        }
    }
}

/// The active connection of this type with its non-secret config; 404 if none is active.
#[utoipa::path(get, path = "/api/v1/connectors/{slug}", tag = "connectors", security(("bearer" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, body = ConnectionDetailsView), (status = 404, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn details(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(slug): Path<String>,
) -> Result<Json<ConnectionDetailsView>, ApiError> {
    auth.require(Role::CONNECTOR_MANAGERS)?;
    let details = state.connections.details(auth.org_id(), &slug).await?;
    Ok(Json(ConnectionDetailsView {
        summary: ConnectionSummary::of(&state, &details.connection).await?,
        config: details.config,
        secrets_set: details.secrets_set,
    }))
}

/// Tests the stored active config, or the unsaved config in the body. 200 on success, 400
/// with the failure; never sends an order.
#[utoipa::path(post, path = "/api/v1/connectors/{slug}/test", tag = "connectors", security(("bearer" = [])),
    params(("slug" = String, Path)),
    request_body(content = Option<Object>, description = "Optional unsaved config to test instead of the stored one"),
    responses((status = 200, body = TestResult), (status = 400, body = TestResult),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn test(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(slug): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    auth.require(Role::CONNECTOR_MANAGERS)?;
    let body = optional_object(req).await?;
    let result = state
        .connections
        .test(&auth.actor(), auth.org_id(), &slug, body)
        .await?;
    Ok(test_response(result))
}

/// The sample order (umlauts, separators, a line without a price) as the active connection,
/// or the unsaved config in the body (`{"config": {...}}`, only its `format` and
/// `file_name_template` are read), would deliver it: the exact bytes, with their content type
/// and, in `X-File-Name` and `Content-Disposition`, the file name. Creates nothing.
#[utoipa::path(post, path = "/api/v1/connectors/{slug}/preview", tag = "connectors", security(("bearer" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, description = "The file a push would deliver"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn preview(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(slug): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    auth.require(Role::CONNECTOR_MANAGERS)?;
    if state.connections.registry().by_slug(&slug).is_none() {
        return Err(ApiError::NotFound(format!(
            "Unknown connector type '{slug}'"
        )));
    }
    let body = preview_body(req).await?;
    let with = match &body {
        Some(config) => PreviewWith::Unsaved(config),
        None => PreviewWith::Active,
    };
    let preview = state.previews.sample(auth.org_id(), with).await?;
    Ok(preview_response(preview))
}

/// A preview's optional body: `{"config": {...}}` (the unsaved config), or nothing.
pub async fn preview_body(req: Request) -> Result<Option<Map<String, Value>>, ApiError> {
    let Some(mut body) = optional_object(req).await? else {
        return Ok(None);
    };
    if let Some(other) = body.keys().find(|k| *k != "config") {
        return Err(ApiError::invalid(
            other,
            "is not a preview field (only config)",
        ));
    }
    match body.remove("config") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(config)) => Ok(Some(config)),
        Some(_) => Err(ApiError::invalid("config", "must be a JSON object")),
    }
}

/// The previewed file as the answer: its bytes, content type and name.
pub fn preview_response(preview: Preview) -> Response {
    let disposition = format!("inline; filename=\"{}\"", preview.file_name);
    let mut response = (
        [
            (CONTENT_TYPE, preview.content_type.to_owned()),
            (CONTENT_DISPOSITION, disposition),
            (HeaderName::from_static(FILE_NAME_HEADER), preview.file_name),
        ],
        preview.bytes,
    )
        .into_response();
    // A preview is of this moment: the draft or the config may change.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The header naming a previewed file.
pub const FILE_NAME_HEADER: &str = "x-file-name";

/// Disables the active connection of this type (kept as history).
#[utoipa::path(post, path = "/api/v1/connectors/{slug}/disable", tag = "connectors", security(("bearer" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, body = ConnectionSummary), (status = 404, body = ErrorBody)))]
pub async fn disable(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(slug): Path<String>,
) -> Result<Json<ConnectionSummary>, ApiError> {
    auth.require(Role::CONNECTOR_MANAGERS)?;
    let connection = state
        .connections
        .disable(&auth.actor(), auth.org_id(), &slug)
        .await?;
    Ok(Json(ConnectionSummary::of(&state, &connection).await?))
}

/// Re-activates a connection; 409 if another one is active.
#[utoipa::path(post, path = "/api/v1/connections/{id}/enable", tag = "connectors", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ConnectionSummary), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn enable(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<ConnectionSummary>, ApiError> {
    auth.require(Role::CONNECTOR_MANAGERS)?;
    let id = parse_uuid("id", &id)?;
    let connection = state
        .connections
        .enable(&auth.actor(), auth.org_id(), id)
        .await?;
    Ok(Json(ConnectionSummary::of(&state, &connection).await?))
}

/// Runs one acknowledgement poll of the active connection now (instead of waiting for the
/// next `ACK_POLL_INTERVAL_SECS`) and answers what it did with the files it found.
#[utoipa::path(post, path = "/api/v1/connectors/{slug}/poll-acks", tag = "connectors", security(("bearer" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, body = AckCounts),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 500, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn poll_acks(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(slug): Path<String>,
) -> Result<Json<AckCounts>, ApiError> {
    auth.require(Role::DRAFT_WRITERS)?;
    Ok(Json(state.ack_polls.poll_now(auth.org_id(), &slug).await?))
}

/// "Retry now": closes the active connection's circuit and makes its waiting exports due at
/// once (audited). Its health afterwards.
#[utoipa::path(post, path = "/api/v1/connectors/{slug}/retry-now", tag = "connectors", security(("bearer" = [])),
    params(("slug" = String, Path)),
    responses((status = 200, body = ConnectionHealth), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn retry_now(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(slug): Path<String>,
) -> Result<Json<ConnectionHealth>, ApiError> {
    auth.require(Role::DELIVERY_OPERATORS)?;
    Ok(Json(
        state
            .connections
            .retry_now(&auth.actor(), auth.org_id(), &slug)
            .await?,
    ))
}
