//! `MOCK`: a connector for tests. It is never in [`super::registry::builtin`], so a normal
//! `serve` cannot reach it; tests add it with [`super::Registry::with`].

use std::time::Duration;

use super::{
    ConnectorConfig, ConnectorContext, ConnectorError, Delivered, Delivery, ErrorCode, Learned,
    ValidationEnv,
};
use crate::domain::FieldError;
use async_trait::async_trait;
use serde_json::{Value, json};

/// Accepts any config with an optional `fail_with` error code; deliveries write nothing
/// anywhere.
#[derive(Debug, Default)]
pub struct MockConnector;

fn failure(config: &ConnectorConfig) -> Option<ConnectorError> {
    let code: ErrorCode = serde_json::from_value(config.get("fail_with")?.clone()).ok()?;
    Some(ConnectorError::new(code))
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "fail_with": { "type": "string" },
            "token": { "type": "string", "writeOnly": true }
        }
    })
}

fn validate(config: &ConnectorConfig, _env: &ValidationEnv) -> Result<ConnectorConfig, FieldError> {
    if config.has("fail_with") && failure(config).is_none() {
        return Err(FieldError::new("fail_with", "not an error code"));
    }
    Ok(config.clone())
}

#[async_trait]
impl super::Connector for MockConnector {
    fn info(&self) -> &'static super::ConnectorInfo {
        static INFO: super::ConnectorInfo = super::ConnectorInfo {
            connector_type: "MOCK",
            slug: "mock",
            display_name: "Mock (for tests)",
            secret_fields: &["token"],
            identity_fields: &[],
            sticky_fields: &[],
            schema,
            validate,
        };
        &INFO
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

    async fn deliver(
        &self,
        _ctx: &ConnectorContext,
        delivery: &Delivery<'_>,
        config: &ConnectorConfig,
    ) -> Result<Delivered, ConnectorError> {
        if let Some(err) = failure(config) {
            return Err(err);
        }
        Ok(Delivered {
            dropzone_path: format!("mock://{}", delivery.file_name),
            already_present: false,
            learned: Learned::default(),
            ack: None,
        })
    }
}
