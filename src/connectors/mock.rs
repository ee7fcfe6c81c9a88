//! `MOCK`: a connector for tests. It is never in [`super::registry::builtin`], so a normal
//! `serve` cannot reach it; tests add it with [`super::Registry::with`].

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    ConnectorConfig, ConnectorContext, ConnectorError, ErrorCode, ExportRequest, ExportResult,
    Learned, ValidationEnv,
};
use crate::domain::FieldError;

/// Accepts any config with an optional `fail_with` error code; exports render a small JSON
/// document without writing it anywhere.
#[derive(Debug, Default)]
pub struct MockConnector;

fn failure(config: &ConnectorConfig) -> Option<ConnectorError> {
    let code: ErrorCode = serde_json::from_value(config.get("fail_with")?.clone()).ok()?;
    Some(ConnectorError::new(code))
}

#[async_trait]
impl super::Connector for MockConnector {
    fn connector_type(&self) -> &'static str {
        "MOCK"
    }

    fn slug(&self) -> &'static str {
        "mock"
    }

    fn display_name(&self) -> &'static str {
        "Mock (tests only)"
    }

    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "fail_with": { "type": "string" },
                "token": { "type": "string", "writeOnly": true }
            }
        })
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        &["token"]
    }

    fn identity_fields(&self) -> &'static [&'static str] {
        &[]
    }

    fn validate(
        &self,
        config: &ConnectorConfig,
        _env: &ValidationEnv,
    ) -> Result<ConnectorConfig, FieldError> {
        if config.has("fail_with") && failure(config).is_none() {
            return Err(FieldError::new("fail_with", "not an error code"));
        }
        Ok(config.clone())
    }

    fn timeout(&self, _config: &ConnectorConfig) -> Duration {
        Duration::from_secs(5)
    }

    async fn test_connection(
        &self,
        _ctx: &ConnectorContext,
        config: &ConnectorConfig,
    ) -> Result<Learned, ConnectorError> {
        failure(config).map_or(Ok(Learned::default()), Err)
    }

    async fn export(
        &self,
        _ctx: &ConnectorContext,
        request: &ExportRequest,
        config: &ConnectorConfig,
    ) -> Result<ExportResult, ConnectorError> {
        if let Some(err) = failure(config) {
            return Err(err);
        }
        let content = serde_json::to_vec(&json!({
            "draft_order_id": request.order.draft_order_id,
            "lines": request.order.lines.len(),
        }))
        .map_err(|e| ConnectorError::with_detail(ErrorCode::SchemaInvalid, e))?;
        Ok(ExportResult {
            success: true,
            file_name: request.file_name.clone(),
            dropzone_path: format!("mock://{}", request.file_name),
            content_sha256: hex::encode(Sha256::digest(&content)),
            content,
            already_present: false,
            learned: Learned::default(),
        })
    }
}
