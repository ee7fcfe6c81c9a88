//! A connector config as JSON, treated as a secret: `Debug` is redacted and every string in it
//! is wiped when it is dropped.

use std::fmt;

use serde_json::{Map, Value};
use zeroize::Zeroize;

use crate::crypto::SecretBytes;

/// A config object (field name → JSON value). Connectors read typed views of it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectorConfig(Map<String, Value>);

impl ConnectorConfig {
    /// Wraps a JSON object.
    pub fn new(fields: Map<String, Value>) -> Self {
        Self(fields)
    }

    /// Parses decrypted plaintext; it must be a JSON object.
    pub fn from_plaintext(plaintext: &SecretBytes) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(plaintext.expose()).map(Self)
    }

    /// Serialises for encryption; the bytes are wiped on drop.
    pub fn to_plaintext(&self) -> SecretBytes {
        // Serialising a Map of Values cannot fail.
        SecretBytes::new(serde_json::to_vec(&self.0).unwrap_or_default())
    }

    /// One field.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field)
    }

    /// True when the field is present and not null.
    pub fn has(&self, field: &str) -> bool {
        self.0.get(field).is_some_and(|v| !v.is_null())
    }

    /// Sets a field.
    pub fn insert(&mut self, field: &str, value: Value) {
        if let Some(mut old) = self.0.insert(field.to_owned(), value) {
            wipe(&mut old);
        }
    }

    /// Removes a field.
    pub fn remove(&mut self, field: &str) -> Option<Value> {
        self.0.remove(field)
    }

    /// The fields.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The stored form of a typed config: its fields, the absent ones left out.
    pub fn from_typed<T: serde::Serialize>(typed: &T) -> Self {
        // Config structs hold strings, numbers and string-keyed maps, which always serialise.
        let mut fields = match serde_json::to_value(typed) {
            Ok(Value::Object(fields)) => fields,
            _ => Map::new(),
        };
        fields.retain(|_, value| !value.is_null());
        Self(fields)
    }

    /// A copy without the named (secret) fields, safe to show.
    pub fn without(&self, secret_fields: &[&str]) -> Map<String, Value> {
        self.0
            .iter()
            .filter(|(k, _)| !secret_fields.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

fn wipe(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(map) => map.values_mut().for_each(wipe),
        _ => {}
    }
}

impl Drop for ConnectorConfig {
    fn drop(&mut self) {
        self.0.values_mut().for_each(wipe);
    }
}

impl fmt::Debug for ConnectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectorConfig({} fields, [redacted])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn debug_is_redacted_and_plaintext_round_trips() {
        let Value::Object(map) = json!({"password": "pa55-word", "port": 22}) else {
            unreachable!()
        };
        let config = ConnectorConfig::new(map);
        assert!(!format!("{config:?}").contains("pa55"));
        let back = ConnectorConfig::from_plaintext(&config.to_plaintext()).unwrap();
        assert_eq!(back, config);
        assert_eq!(config.without(&["password"]).len(), 1);
    }
}
