//! The parts connector configs are built from, and how a config is read into its typed form.
//!
//! Each part reads itself from a JSON value (null is how a client leaves an optional value
//! out) and states its own JSON Schema from the same constants, so a config struct made of
//! parts derives both its validation and its schema: a new field is one edit.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{DeserializeOwned, Error as _, IntoDeserializer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::ConnectorConfig;
use crate::crypto::SecretString;
use crate::domain::FieldError;

/// `timeout_secs` when a config leaves it out; every connector type's operations share it.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// The longest `timeout_secs` a config may set.
pub const MAX_TIMEOUT_SECS: u64 = 120;

/// Reads a config into its typed form, naming the field at fault.
pub fn read<T: DeserializeOwned>(config: &ConnectorConfig) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(config.fields().into_deserializer()).map_err(|e| {
        let path = e.path().to_string();
        field_error(&path, e.into_inner().to_string())
    })
}

/// A read error as the field it is about and what is wrong with it. Serde names unknown and
/// missing fields in its message; the message then says it in the words of the other errors.
fn field_error(path: &str, message: String) -> FieldError {
    let named = |prefix: &str| {
        let rest = message.strip_prefix(prefix)?;
        let (name, after) = rest.split_once('`')?;
        Some((name.to_owned(), after.trim_start_matches(", ").to_owned()))
    };
    if let Some((name, expected)) = named("unknown field `") {
        return FieldError::new(
            name,
            format!("is not a setting of this connector type; {expected}"),
        );
    }
    if let Some((name, _)) = named("missing field `") {
        return FieldError::new(name, "is required");
    }
    FieldError::new(path, message)
}

/// The JSON Schema (2020-12) of a config struct, every part inlined: forms and clients read one
/// self-contained document.
pub fn schema_of<T: JsonSchema>() -> Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>();
    let mut schema = schema.to_value();
    unwrap_descriptions(&mut schema);
    schema
}

/// Descriptions come from doc comments, wrapped at source width; a form shows them as one
/// paragraph.
fn unwrap_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(fields) => {
            for (key, value) in fields.iter_mut() {
                match value {
                    Value::String(text) if key == "description" => *text = text.replace('\n', " "),
                    other => unwrap_descriptions(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
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

/// The text of a string value.
pub fn text(value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err("must be a string".into()),
    }
}

/// The text of a string value that may not be empty (null is how a value is left out).
pub fn non_empty_text(value: Value) -> Result<String, String> {
    match text(value)? {
        s if s.is_empty() => Err("must not be empty (send null to leave it out)".into()),
        s => Ok(s),
    }
}

/// A whole number in `range`. JSON Schema's "integer" includes 22.0, so a whole float counts.
pub fn whole_number(value: &Value, range: std::ops::RangeInclusive<u64>) -> Result<u64, String> {
    let whole = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    });
    whole.filter(|n| range.contains(n)).ok_or_else(|| {
        format!(
            "must be an integer from {} to {}",
            range.start(),
            range.end()
        )
    })
}

/// The timeout of every operation of a connection (and of a whole connection test): 1 to
/// [`MAX_TIMEOUT_SECS`] seconds; null or absent means [`DEFAULT_TIMEOUT_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "Value")]
#[schemars(inline, schema_with = "timeout_schema")]
pub struct TimeoutSecs(u64);

impl TimeoutSecs {
    /// As a duration.
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }

    /// The timeout a stored config names, read leniently (a stored config was validated when
    /// saved), clamped to the allowed range.
    pub fn of_stored(config: &ConnectorConfig) -> Duration {
        let secs = config.get("timeout_secs").and_then(Value::as_u64);
        Duration::from_secs(
            secs.unwrap_or(DEFAULT_TIMEOUT_SECS)
                .clamp(1, MAX_TIMEOUT_SECS),
        )
    }
}

impl Default for TimeoutSecs {
    fn default() -> Self {
        Self(DEFAULT_TIMEOUT_SECS)
    }
}

impl TryFrom<Value> for TimeoutSecs {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, String> {
        if value.is_null() {
            return Ok(Self::default());
        }
        whole_number(&value, 1..=MAX_TIMEOUT_SECS).map(Self)
    }
}

fn timeout_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": MAX_TIMEOUT_SECS,
        "default": DEFAULT_TIMEOUT_SECS,
    })
}

/// What a checked text value must be: its check (which may normalise the text), the JSON
/// Schema of the values the check accepts, and whether it is a secret.
pub trait TextRule {
    /// A secret is never shown (`writeOnly`), `Debug` prints `[redacted]`, and by default it
    /// may not be empty ([`TextRule::NOT_EMPTY`]).
    const SECRET: bool = false;
    /// Whether empty text is refused before [`TextRule::check`] sees it, with the one message
    /// that tells a client null is how a value is left out. Rules whose empty text deserves
    /// a message of its own (a host, a user name) leave it to their check.
    const NOT_EMPTY: bool = Self::SECRET;
    /// The text as stored, or what is wrong with it.
    fn check(text: String) -> Result<String, String>;
    /// The schema of what [`TextRule::check`] accepts.
    fn schema() -> Value;
}

/// A text value its rule accepted, stored as given (normalised). The text is wiped from
/// memory when dropped, as secrets are.
pub struct Text<R>(SecretString, PhantomData<fn() -> R>);

impl<R> Text<R> {
    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.expose()
    }

    /// The text, as a secret to hand on.
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl<R> Clone for Text<R> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<R: TextRule> std::fmt::Debug for Text<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if R::SECRET {
            self.0.fmt(f)
        } else {
            self.as_str().fmt(f)
        }
    }
}

impl<'de, R: TextRule> Deserialize<'de> for Text<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let given = if R::NOT_EMPTY {
            non_empty_text(value)
        } else {
            text(value)
        };
        given
            .and_then(R::check)
            .map(|t| Self(SecretString::new(t), PhantomData))
            .map_err(D::Error::custom)
    }
}

impl<R> Serialize for Text<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<R: TextRule> JsonSchema for Text<R> {
    fn schema_name() -> Cow<'static, str> {
        std::any::type_name::<R>().into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let mut schema = R::schema();
        if let Some(fields) = schema.as_object_mut().filter(|_| R::SECRET) {
            fields.insert("writeOnly".into(), true.into());
        }
        Schema::try_from(schema).unwrap_or_default()
    }
}

/// A secret that is not empty: a password, a passphrase.
pub struct Password;

/// A [`Password`] rule's value.
pub type SecretText = Text<Password>;

impl TextRule for Password {
    const SECRET: bool = true;

    fn check(text: String) -> Result<String, String> {
        Ok(text)
    }

    fn schema() -> Value {
        serde_json::json!({ "type": "string", "minLength": 1 })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::connectors::testing::cfg;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        #[serde(default)]
        timeout_secs: TimeoutSecs,
        secret: Option<SecretText>,
    }

    #[test]
    fn a_read_error_names_the_field_at_fault() {
        let field = |value: Value| read::<Sample>(&cfg(value)).unwrap_err().field;
        assert_eq!(field(json!({"timeout_secs": 5})), "name");
        assert_eq!(field(json!({"name": "a", "colour": 1})), "colour");
        let unknown = read::<Sample>(&cfg(json!({"name": "a", "colour": 1}))).unwrap_err();
        assert!(
            unknown.message.starts_with("is not a setting"),
            "{}",
            unknown.message
        );
        let missing = read::<Sample>(&cfg(json!({}))).unwrap_err();
        assert_eq!(
            (missing.field.as_str(), missing.message.as_str()),
            ("name", "is required")
        );
        assert_eq!(
            field(json!({"name": "a", "timeout_secs": 0})),
            "timeout_secs"
        );
        assert_eq!(
            field(json!({"name": "a", "timeout_secs": "5"})),
            "timeout_secs"
        );
        assert_eq!(field(json!({"name": "a", "secret": ""})), "secret");
        let sample = read::<Sample>(&cfg(
            json!({"name": "a", "timeout_secs": 30.0, "secret": null}),
        ))
        .unwrap();
        assert_eq!(sample.timeout_secs.duration(), Duration::from_secs(30));
        assert!(sample.secret.is_none());
        let defaulted = read::<Sample>(&cfg(json!({"name": "a", "timeout_secs": null}))).unwrap();
        assert_eq!(defaulted.timeout_secs, TimeoutSecs::default());
    }
}
