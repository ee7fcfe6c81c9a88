//! Typed readers of connector config fields, shared by every connector type's validation
//! (pure), and the annotations every type's schema gives its fields. Null counts as absent
//! everywhere: it is how a client leaves a value out.

use serde_json::Value;

use super::ConnectorConfig;
use crate::crypto::SecretString;
use crate::domain::FieldError;

/// Reads an optional field; null counts as absent.
pub fn optional<'a>(config: &'a ConnectorConfig, field: &str) -> Option<&'a Value> {
    config.get(field).filter(|v| !v.is_null())
}

/// An optional string field.
pub fn string_field(config: &ConnectorConfig, field: &str) -> Result<Option<String>, FieldError> {
    match optional(config, field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FieldError::new(field, "must be a string")),
    }
}

/// A string field that must be there and not empty.
pub fn required_string(config: &ConnectorConfig, field: &str) -> Result<String, FieldError> {
    string_field(config, field)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| FieldError::new(field, "is required"))
}

/// An optional string that, when given, is not empty (null is how a value is left out).
pub fn non_empty_string(
    config: &ConnectorConfig,
    field: &str,
) -> Result<Option<String>, FieldError> {
    match string_field(config, field)? {
        Some(s) if s.is_empty() => Err(FieldError::new(
            field,
            "must not be empty (send null to leave it out)",
        )),
        other => Ok(other),
    }
}

/// An optional non-empty string, held as a secret.
pub fn secret_field(
    config: &ConnectorConfig,
    field: &str,
) -> Result<Option<SecretString>, FieldError> {
    Ok(non_empty_string(config, field)?.map(SecretString::new))
}

/// An optional whole number in `range`.
pub fn integer_field(
    config: &ConnectorConfig,
    field: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, FieldError> {
    let Some(value) = optional(config, field) else {
        return Ok(None);
    };
    let message = format!(
        "must be an integer from {} to {}",
        range.start(),
        range.end()
    );
    // JSON Schema's "integer" includes 22.0, so a whole float counts.
    let whole = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    });
    whole
        .filter(|n| range.contains(n))
        .map(Some)
        .ok_or_else(|| FieldError::new(field, message))
}

/// `timeout_secs` when a config leaves it out; every connector type's operations share it.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// The longest `timeout_secs` a config may set.
pub const MAX_TIMEOUT_SECS: u64 = 120;

/// A submitted config's `timeout_secs`: 1 to [`MAX_TIMEOUT_SECS`], [`DEFAULT_TIMEOUT_SECS`]
/// when left out.
pub fn timeout_secs(config: &ConnectorConfig) -> Result<u64, FieldError> {
    Ok(
        integer_field(config, "timeout_secs", 1..=MAX_TIMEOUT_SECS)?
            .unwrap_or(DEFAULT_TIMEOUT_SECS),
    )
}

/// The timeout a stored config's `timeout_secs` names, read leniently (a stored config was
/// validated when saved), clamped to the allowed range.
pub fn timeout(config: &ConnectorConfig) -> std::time::Duration {
    let secs = config.get("timeout_secs").and_then(Value::as_u64);
    std::time::Duration::from_secs(
        secs.unwrap_or(DEFAULT_TIMEOUT_SECS)
            .clamp(1, MAX_TIMEOUT_SECS),
    )
}

/// `timeout_secs`'s schema, its limits taken from the same constants the validation uses.
pub fn timeout_schema(description: &str) -> Value {
    titled(
        serde_json::json!({
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_TIMEOUT_SECS,
            "default": DEFAULT_TIMEOUT_SECS,
            "description": description,
        }),
        "Timeout (seconds)",
        7,
    )
}

/// A field's schema that also admits null (how a client leaves an optional value out).
pub fn nullable(schema: Value) -> Value {
    serde_json::json!({ "anyOf": [schema, { "type": "null" }] })
}

/// A field's schema with what a form needs beside the rules: a human `title` and its place
/// among the fields (`propertyOrder`, the json-editor convention; JSON objects have no order).
pub fn titled(mut schema: Value, title: &str, order: u32) -> Value {
    if let Some(fields) = schema.as_object_mut() {
        fields.insert("title".into(), title.into());
        fields.insert("propertyOrder".into(), order.into());
    }
    schema
}
