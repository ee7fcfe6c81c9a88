//! `HTTP_JSON_V1` config: parsing and validation, without I/O. The same parser reads submitted
//! configs (then [`HttpConfig::to_config`] stores the normalised form) and stored ones (a stored
//! config that no longer parses is `CONFIG_UNREADABLE`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use crate::connectors::fields::{
    non_empty_string, nullable, optional, timeout_schema, timeout_secs, titled,
};
use crate::connectors::network::{HostLiteral, is_blocked, parse_host};
use crate::connectors::{ConnectorConfig, ConnectorInfo, ValidationEnv};
use crate::crypto::{SecretBytes, SecretString};
use crate::domain::FieldError;

/// Longest accepted URL.
const MAX_URL_LEN: usize = 2048;
/// Most extra headers.
const MAX_HEADERS: usize = 20;
/// Longest PEM text accepted.
const MAX_PEM_LEN: usize = 64 * 1024;
/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The type's names and field classes.
pub static INFO: ConnectorInfo = ConnectorInfo {
    connector_type: "HTTP_JSON_V1",
    slug: "http-json-v1",
    display_name: "JSON over HTTPS, signed (Standard Webhooks)",
    // Never shown, `writeOnly` in the schema.
    secret_fields: &["signing_secret", "headers", "client_key_pem"],
    // An API key meant for one endpoint must not follow the orders to another one silently.
    identity_fields: &["url"],
    sticky_fields: &[],
    schema,
    validate: |config, env| HttpConfig::parse(config, env).map(|c| c.to_config()),
};

const FIELDS: &[&str] = &[
    "url",
    "signing_secret",
    "headers",
    "timeout_secs",
    "ca_certificate_pem",
    "client_certificate_pem",
    "client_key_pem",
    "erp_order_id_pointer",
    "ack_mode",
];

/// Headers the connector sets itself (or HTTP owns); a static header may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "idempotency-key",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// How the ERP acknowledges an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// A 2xx whose body holds the order number (at `erp_order_id_pointer`) means ACKED.
    Response,
    /// The ERP calls `POST /hooks/{connection_id}/acks` later.
    Callback,
    /// No acknowledgement: SENT is final.
    None,
}

impl AckMode {
    fn as_str(self) -> &'static str {
        match self {
            AckMode::Response => "response",
            AckMode::Callback => "callback",
            AckMode::None => "none",
        }
    }
}

/// A validated `HTTP_JSON_V1` config.
#[derive(Clone)]
pub struct HttpConfig {
    /// Where orders are POSTed.
    pub url: Url,
    /// The Standard Webhooks secret as given (`whsec_<base64>`), None before it is generated.
    pub signing_secret: Option<SecretString>,
    /// Extra static headers (an API key): name, value.
    pub headers: Vec<(String, SecretString)>,
    /// Per-request timeout (and the whole connection test's).
    pub timeout_secs: u64,
    /// A private CA to trust instead of the system's roots.
    pub ca_certificate_pem: Option<String>,
    /// The client certificate for mTLS.
    pub client_certificate_pem: Option<String>,
    /// Its key.
    pub client_key_pem: Option<SecretString>,
    /// JSON Pointer to the ERP's order number in a 2xx response body.
    pub erp_order_id_pointer: Option<String>,
    /// How acknowledgements arrive.
    pub ack_mode: AckMode,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("url", &self.url.as_str())
            .field("headers", &self.headers.len())
            .field("timeout_secs", &self.timeout_secs)
            .field("ack_mode", &self.ack_mode)
            .finish_non_exhaustive()
    }
}

/// The HMAC key inside a `whsec_<base64>` secret (24 to 64 bytes, as Standard Webhooks
/// senders generate them).
pub fn secret_key(secret: &str) -> Option<SecretBytes> {
    let encoded = secret.strip_prefix(SECRET_PREFIX)?;
    let key = STANDARD.decode(encoded).ok()?;
    (24..=64)
        .contains(&key.len())
        .then(|| SecretBytes::new(key))
}

/// A fresh random signing secret.
pub fn generate_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

fn parse_url(raw: &str, env: &ValidationEnv) -> Result<Url, FieldError> {
    if raw.chars().count() > MAX_URL_LEN {
        return Err(FieldError::new("url", "is too long (max 2048 characters)"));
    }
    if raw.chars().any(char::is_control) || raw.trim() != raw {
        return Err(FieldError::new(
            "url",
            "must not contain spaces or control characters",
        ));
    }
    let url = Url::parse(raw).map_err(|e| FieldError::new("url", format!("is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if env.allow_plain_http => {}
        "http" => {
            return Err(FieldError::new(
                "url",
                "must be https (http is allowed only with CONNECTOR_ALLOW_PLAIN_HTTP=true)",
            ));
        }
        _ => return Err(FieldError::new("url", "must be an https URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FieldError::new(
            "url",
            "must not carry credentials; put an API key in headers instead",
        ));
    }
    if url.fragment().is_some() {
        return Err(FieldError::new("url", "must not have a #fragment"));
    }
    let Some(host) = url.host_str() else {
        return Err(FieldError::new("url", "must name a host"));
    };
    match parse_host(host) {
        HostLiteral::Ip(ip) if is_blocked(ip, &env.blocked_networks) => Err(FieldError::new(
            "url",
            "names a host in a blocked network (CONNECTOR_BLOCKED_NETWORKS)",
        )),
        HostLiteral::BadNumeric => Err(FieldError::new("url", "names an invalid address")),
        _ => Ok(url),
    }
}

fn parse_headers(config: &ConnectorConfig) -> Result<Vec<(String, SecretString)>, FieldError> {
    let Some(value) = optional(config, "headers") else {
        return Ok(Vec::new());
    };
    let Value::Object(map) = value else {
        return Err(FieldError::new(
            "headers",
            "must be an object of header name to value",
        ));
    };
    if map.len() > MAX_HEADERS {
        return Err(FieldError::new("headers", "may hold at most 20 headers"));
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let lower = name.to_ascii_lowercase();
        if HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(FieldError::new(
                "headers",
                format!("{name:?} is not a header name"),
            ));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("webhook-") {
            return Err(FieldError::new(
                "headers",
                format!("{name} is set by the connector and cannot be replaced"),
            ));
        }
        let Value::String(text) = value else {
            return Err(FieldError::new(
                "headers",
                format!("{name} must be a string"),
            ));
        };
        if text.len() > 4096 || HeaderValue::from_str(text).is_err() {
            return Err(FieldError::new(
                "headers",
                format!("{name} must be visible ASCII text of at most 4096 characters"),
            ));
        }
        out.push((lower, SecretString::new(text.clone())));
    }
    Ok(out)
}

fn pem_field(
    config: &ConnectorConfig,
    field: &str,
    label: &str,
) -> Result<Option<String>, FieldError> {
    let Some(text) = non_empty_string(config, field)? else {
        return Ok(None);
    };
    if text.len() > MAX_PEM_LEN {
        return Err(FieldError::new(field, "is too long (max 64 KiB)"));
    }
    if !text.contains(&format!("-----BEGIN {label}")) {
        return Err(FieldError::new(
            field,
            format!("must be PEM text (-----BEGIN {label}…)"),
        ));
    }
    Ok(Some(text))
}

/// The mTLS certificate and key: both or neither, and together a usable identity.
fn client_identity(
    config: &ConnectorConfig,
) -> Result<(Option<String>, Option<String>), FieldError> {
    let client_certificate_pem = pem_field(config, "client_certificate_pem", "CERTIFICATE")?;
    let client_key_pem = pem_field(config, "client_key_pem", "")?;
    match (&client_certificate_pem, &client_key_pem) {
        (Some(cert), Some(key)) => {
            let mut both = cert.clone().into_bytes();
            both.push(b'\n');
            both.extend_from_slice(key.as_bytes());
            if reqwest::Identity::from_pem(&both).is_err() {
                return Err(FieldError::new(
                    "client_key_pem",
                    "and client_certificate_pem do not make a usable client identity (PEM certificate and PKCS#8, RSA or EC key)",
                ));
            }
        }
        (Some(_), None) => {
            return Err(FieldError::new(
                "client_key_pem",
                "is required with client_certificate_pem",
            ));
        }
        (None, Some(_)) => {
            return Err(FieldError::new(
                "client_certificate_pem",
                "is required with client_key_pem",
            ));
        }
        (None, None) => {}
    }
    Ok((client_certificate_pem, client_key_pem))
}

impl HttpConfig {
    /// Checks a config (without I/O) and returns it normalised.
    pub fn parse(config: &ConnectorConfig, env: &ValidationEnv) -> Result<Self, FieldError> {
        if let Some(unknown) = config
            .fields()
            .keys()
            .find(|k| !FIELDS.contains(&k.as_str()))
        {
            return Err(FieldError::new(unknown, "is not a field of HTTP_JSON_V1"));
        }
        let url = match optional(config, "url") {
            Some(Value::String(s)) if !s.is_empty() => parse_url(s, env)?,
            Some(Value::String(_)) | None => return Err(FieldError::new("url", "is required")),
            Some(_) => return Err(FieldError::new("url", "must be a string")),
        };
        let signing_secret = non_empty_string(config, "signing_secret")?;
        if let Some(secret) = &signing_secret
            && secret_key(secret).is_none()
        {
            return Err(FieldError::new(
                "signing_secret",
                "must be whsec_ followed by the base64 of 24 to 64 random bytes (omit it to have one generated)",
            ));
        }
        let timeout_secs = timeout_secs(config)?;
        let ca_certificate_pem = pem_field(config, "ca_certificate_pem", "CERTIFICATE")?;
        if let Some(pem) = &ca_certificate_pem
            && reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_or(true, |c| c.is_empty())
        {
            return Err(FieldError::new(
                "ca_certificate_pem",
                "holds no readable certificate",
            ));
        }
        let (client_certificate_pem, client_key_pem) = client_identity(config)?;
        let erp_order_id_pointer = non_empty_string(config, "erp_order_id_pointer")?;
        if let Some(pointer) = &erp_order_id_pointer
            && (!pointer.starts_with('/') || pointer.len() > 512 || has_bad_escape(pointer))
        {
            return Err(FieldError::new(
                "erp_order_id_pointer",
                "must be a JSON Pointer such as /order/number",
            ));
        }
        let ack_mode = match optional(config, "ack_mode") {
            None => AckMode::None,
            Some(Value::String(s)) if s == "response" => AckMode::Response,
            Some(Value::String(s)) if s == "callback" => AckMode::Callback,
            Some(Value::String(s)) if s == "none" => AckMode::None,
            Some(_) => {
                return Err(FieldError::new(
                    "ack_mode",
                    "must be response, callback or none",
                ));
            }
        };
        Ok(Self {
            url,
            signing_secret: signing_secret.map(SecretString::new),
            headers: parse_headers(config)?,
            timeout_secs,
            ca_certificate_pem,
            client_certificate_pem,
            client_key_pem: client_key_pem.map(SecretString::new),
            erp_order_id_pointer,
            ack_mode,
        })
    }

    /// The stored form: defaults filled in.
    pub fn to_config(&self) -> ConnectorConfig {
        let mut map = Map::new();
        map.insert("url".into(), json!(self.url.as_str()));
        if let Some(secret) = &self.signing_secret {
            map.insert("signing_secret".into(), json!(secret.expose()));
        }
        if !self.headers.is_empty() {
            let headers: Map<String, Value> = self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), json!(v.expose())))
                .collect();
            map.insert("headers".into(), Value::Object(headers));
        }
        map.insert("timeout_secs".into(), json!(self.timeout_secs));
        for (field, value) in [
            ("ca_certificate_pem", &self.ca_certificate_pem),
            ("client_certificate_pem", &self.client_certificate_pem),
            ("erp_order_id_pointer", &self.erp_order_id_pointer),
        ] {
            if let Some(v) = value {
                map.insert(field.into(), json!(v));
            }
        }
        if let Some(key) = &self.client_key_pem {
            map.insert("client_key_pem".into(), json!(key.expose()));
        }
        map.insert("ack_mode".into(), json!(self.ack_mode.as_str()));
        ConnectorConfig::new(map)
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// A `~` not followed by 0 or 1 (RFC 6901).
fn has_bad_escape(pointer: &str) -> bool {
    let bytes = pointer.as_bytes();
    bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')))
}

/// The config's JSON Schema. PEM contents and the blocked networks are checked by the service
/// beyond what the patterns say.
pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "HTTP_JSON_V1",
        "description": "Each order POSTed as export JSON v1 to an HTTPS endpoint, signed per Standard Webhooks.",
        "type": "object",
        "additionalProperties": false,
        "required": ["url"],
        "properties": {
            "url": { "title": "Endpoint URL", "propertyOrder": 1, "type": "string", "minLength": 8, "maxLength": 2048, "pattern": "^https?://[^\\s@#/?]+(/[^\\s#]*)?$",
                     "description": "Where orders are POSTed. https; http only with CONNECTOR_ALLOW_PLAIN_HTTP=true. No credentials, no fragment; a host in CONNECTOR_BLOCKED_NETWORKS is refused." },
            "signing_secret": { "title": "Signing secret", "propertyOrder": 20, "anyOf": [
                { "type": "string", "pattern": "^whsec_[A-Za-z0-9+/]{32,88}={0,2}$", "writeOnly": true },
                { "type": "null" }
            ], "writeOnly": true, "description": "Standard Webhooks secret (whsec_ + base64 of 24–64 bytes). Omitted on create: generated and shown once in the response." },
            "headers": { "title": "Extra headers (JSON object)", "propertyOrder": 21, "anyOf": [
                { "type": "object", "maxProperties": 20, "writeOnly": true,
                  "propertyNames": { "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$" },
                  "additionalProperties": { "type": "string", "maxLength": 4096, "pattern": "^[\\t\\x20-\\x7e]*$" } },
                { "type": "null" }
            ], "writeOnly": true, "description": "Extra static headers, e.g. an API key. Content-Type, Idempotency-Key, webhook-* and hop-by-hop headers are set by the connector." },
            "timeout_secs": timeout_schema("Timeout for each request and for a whole connection test."),
            "ca_certificate_pem": titled(nullable(json!({ "type": "string", "pattern": "-----BEGIN CERTIFICATE-----", "description": "A private CA trusted instead of the system roots." })), "Private CA certificate (PEM)", 8),
            "client_certificate_pem": titled(nullable(json!({ "type": "string", "pattern": "-----BEGIN CERTIFICATE-----", "description": "Client certificate for mTLS (with client_key_pem)." })), "Client certificate (PEM)", 9),
            "client_key_pem": { "title": "Client key (PEM)", "propertyOrder": 22, "anyOf": [
                { "type": "string", "pattern": "-----BEGIN ", "writeOnly": true },
                { "type": "null" }
            ], "writeOnly": true, "description": "The client certificate's private key (PEM)." },
            "erp_order_id_pointer": titled(nullable(json!({ "type": "string", "maxLength": 512, "pattern": "^(/([^~]|~[01])*)+$", "description": "JSON Pointer to the ERP's order number in a 2xx response body, e.g. /order/number." })), "ERP order number in the answer (JSON Pointer)", 3),
            "ack_mode": { "title": "Acknowledgement", "propertyOrder": 2, "enum": ["response", "callback", "none", null], "default": "none",
                          "description": "response: a 2xx with the pointer's value means ACKED. callback: the ERP calls POST /api/v1/hooks/{connection_id}/acks. none: SENT is final." }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::connectors::testing::{cfg, env};

    fn field_of(value: Value) -> String {
        HttpConfig::parse(&cfg(value), &env(false))
            .unwrap_err()
            .field
    }

    #[test]
    fn defaults_and_normal_form() {
        let parsed = HttpConfig::parse(
            &cfg(json!({"url": "https://ERP.example.com/orders"})),
            &env(false),
        )
        .unwrap();
        assert_eq!(parsed.url.as_str(), "https://erp.example.com/orders");
        assert_eq!(parsed.ack_mode, AckMode::None);
        assert_eq!(parsed.timeout_secs, 10);
        let stored = parsed.to_config();
        assert_eq!(stored.get("ack_mode"), Some(&json!("none")));
        assert!(stored.get("signing_secret").is_none());
        let secret = generate_secret();
        assert_eq!(secret_key(&secret).unwrap().expose().len(), 32);
    }

    #[test]
    fn invalid_configs_name_the_field() {
        for (value, field) in [
            (json!({}), "url"),
            (json!({"url": "http://erp.example.com"}), "url"),
            (json!({"url": "ftp://erp.example.com"}), "url"),
            (json!({"url": "https://user:pw@erp.example.com"}), "url"),
            (json!({"url": "https://127.0.0.1/x"}), "url"),
            (json!({"url": "https://0x7f.1/x"}), "url"),
            (json!({"url": "https://[::ffff:127.0.0.1]/x"}), "url"),
            (json!({"url": "https://169.254.169.254/latest"}), "url"),
            (json!({"url": "https://e.example/#x"}), "url"),
            (
                json!({"url": "https://e.example", "signing_secret": "plain"}),
                "signing_secret",
            ),
            (
                json!({"url": "https://e.example", "timeout_secs": 0}),
                "timeout_secs",
            ),
            (
                json!({"url": "https://e.example", "timeout_secs": 121}),
                "timeout_secs",
            ),
            (
                json!({"url": "https://e.example", "headers": {"Content-Type": "x"}}),
                "headers",
            ),
            (
                json!({"url": "https://e.example", "headers": {"Webhook-Id": "x"}}),
                "headers",
            ),
            (
                json!({"url": "https://e.example", "headers": {"X-Key": "a\nb"}}),
                "headers",
            ),
            (
                json!({"url": "https://e.example", "headers": {"bad name": "x"}}),
                "headers",
            ),
            (
                json!({"url": "https://e.example", "headers": ["x"]}),
                "headers",
            ),
            (
                json!({"url": "https://e.example", "ca_certificate_pem": "nope"}),
                "ca_certificate_pem",
            ),
            (
                json!({"url": "https://e.example", "client_key_pem": "-----BEGIN PRIVATE KEY-----"}),
                "client_certificate_pem",
            ),
            (
                json!({"url": "https://e.example", "erp_order_id_pointer": "order"}),
                "erp_order_id_pointer",
            ),
            (
                json!({"url": "https://e.example", "erp_order_id_pointer": "/a~2"}),
                "erp_order_id_pointer",
            ),
            (
                json!({"url": "https://e.example", "ack_mode": "email"}),
                "ack_mode",
            ),
            (
                json!({"url": "https://e.example", "colour": "blue"}),
                "colour",
            ),
        ] {
            assert_eq!(field_of(value.clone()), field, "{value}");
        }
        assert!(
            HttpConfig::parse(&cfg(json!({"url": "http://erp.example.com"})), &env(true)).is_ok()
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let parsed = HttpConfig::parse(
            &cfg(
                json!({"url": "https://e.example", "signing_secret": generate_secret(),
                        "headers": {"X-Api-Key": "key-8842-secret"}}),
            ),
            &env(false),
        )
        .unwrap();
        let shown = format!("{parsed:?}");
        assert!(
            !shown.contains("key-8842") && !shown.contains("whsec_"),
            "{shown}"
        );
    }

    /// What the schema allows, the validation allows too (for the values a schema can judge).
    #[test]
    fn the_schema_and_the_validation_agree() {
        let validator = jsonschema::options().build(&schema()).unwrap();
        for case in [
            json!({"url": "https://erp.example.com/orders"}),
            json!({"url": "https://erp.example.com/orders", "ack_mode": "callback", "timeout_secs": 30}),
            json!({"url": "https://erp.example.com", "erp_order_id_pointer": "/order/number", "ack_mode": "response"}),
            json!({"url": "https://erp.example.com", "signing_secret": generate_secret()}),
            json!({"url": "https://erp.example.com", "headers": {"X-Api-Key": "abc"}}),
            json!({"url": "https://erp.example.com", "headers": null, "ack_mode": null}),
            json!({"url": "https://erp.example.com", "colour": 1}),
            json!({"url": "https://erp.example.com", "timeout_secs": 0}),
            json!({"url": "https://erp.example.com", "signing_secret": "plain"}),
            json!({"url": "https://erp.example.com", "erp_order_id_pointer": "x"}),
            json!({"url": "https://erp.example.com", "ack_mode": "mail"}),
            json!({"url": "ftp://erp.example.com"}),
            json!({"url": "https://a@erp.example.com"}),
        ] {
            let by_schema = validator.is_valid(&case);
            let by_code = HttpConfig::parse(&cfg(case.clone()), &env(false)).is_ok();
            assert_eq!(
                by_schema, by_code,
                "schema {by_schema}, validation {by_code}: {case}"
            );
        }
    }
}
