//! `HTTP_JSON_V1` config: one typed struct, from which both the validation and the JSON Schema
//! served to clients are derived; no I/O. The same reader takes submitted configs (then
//! [`HttpConfig::to_config`] stores the normalised form) and stored ones (a stored config that
//! no longer reads is `CONFIG_UNREADABLE`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::parts::{CertificatePem, EndpointUrl, Headers, JsonPointer, KeyPem, SigningSecret};
use crate::connectors::fields::{self, TimeoutSecs};
use crate::connectors::{ConnectorConfig, ConnectorInfo, ValidationEnv};
use crate::crypto::SecretBytes;
use crate::domain::FieldError;

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
    schema: fields::schema_of::<HttpConfig>,
    validate: |config, env| HttpConfig::validate(config, env).map(|c| c.to_config()),
};

/// How the ERP acknowledges an order: `response`, a 2xx whose body holds the order number (at
/// `erp_order_id_pointer`) means ACKED; `callback`, the ERP calls
/// `POST /hooks/{connection_id}/acks` later; `none`, no acknowledgement (SENT is final).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    Response,
    Callback,
    #[default]
    None,
}

/// An `HTTP_JSON_V1` config: what a client sends, what is stored (normalised, defaults filled
/// in) and what the connector reads. Field docs are the schema's descriptions.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "HTTP_JSON_V1",
    description = "Each order POSTed as export JSON v1 to an HTTPS endpoint, signed per Standard Webhooks."
)]
pub struct HttpConfig {
    /// Where orders are POSTed. https; http only with CONNECTOR_ALLOW_PLAIN_HTTP=true. No
    /// credentials, no fragment; a host in CONNECTOR_BLOCKED_NETWORKS is refused.
    #[schemars(title = "Endpoint URL", extend("propertyOrder" = 1))]
    pub url: EndpointUrl,
    /// response: a 2xx with the pointer's value means ACKED. callback: the ERP calls POST
    /// /api/v1/hooks/{connection_id}/acks. none: SENT is final.
    #[schemars(title = "Acknowledgement", extend("propertyOrder" = 2, "default" = "none"))]
    pub ack_mode: Option<AckMode>,
    /// JSON Pointer to the ERP's order number in a 2xx response body, e.g. /order/number.
    #[schemars(
        title = "ERP order number in the answer (JSON Pointer)",
        extend("propertyOrder" = 3)
    )]
    pub erp_order_id_pointer: Option<JsonPointer>,
    /// Timeout for each request and for a whole connection test.
    #[serde(default)]
    #[schemars(title = "Timeout (seconds)", extend("propertyOrder" = 7))]
    pub timeout_secs: TimeoutSecs,
    /// A private CA trusted instead of the system roots.
    #[schemars(title = "Private CA certificate (PEM)", extend("propertyOrder" = 8))]
    pub ca_certificate_pem: Option<CertificatePem>,
    /// Client certificate for mTLS (with client_key_pem).
    #[schemars(title = "Client certificate (PEM)", extend("propertyOrder" = 9))]
    pub client_certificate_pem: Option<CertificatePem>,
    /// Standard Webhooks secret (whsec_ + base64 of 24–64 bytes). Omitted on create: generated
    /// and shown once in the response.
    #[schemars(title = "Signing secret", extend("propertyOrder" = 20))]
    pub signing_secret: Option<SigningSecret>,
    /// Extra static headers, e.g. an API key. Content-Type, Idempotency-Key, webhook-* and
    /// hop-by-hop headers are set by the connector.
    #[schemars(title = "Extra headers (JSON object)", extend("propertyOrder" = 21))]
    pub headers: Option<Headers>,
    /// The client certificate's private key (PEM).
    #[schemars(title = "Client key (PEM)", extend("propertyOrder" = 22))]
    pub client_key_pem: Option<KeyPem>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("url", &self.url.as_str())
            .field("headers", &self.headers().len())
            .field("timeout_secs", &self.timeout_secs)
            .field("ack_mode", &self.ack_mode())
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

impl HttpConfig {
    /// Reads a stored config: its fields, and that the certificates make a usable TLS setup.
    /// The network policy applies when connecting.
    pub fn read(config: &ConnectorConfig) -> Result<Self, FieldError> {
        let mut typed: Self = fields::read(config)?;
        if let Some(ca) = &typed.ca_certificate_pem {
            ca.require_readable_bundle("ca_certificate_pem")?;
        }
        match (&typed.client_certificate_pem, &typed.client_key_pem) {
            (Some(cert), Some(key)) => key.require_identity_with(cert)?,
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
        typed.ack_mode.get_or_insert_default();
        Ok(typed)
    }

    /// Checks a submitted config and returns it normalised: also the server's network policy
    /// (plain http, blocked address literals).
    pub fn validate(config: &ConnectorConfig, env: &ValidationEnv) -> Result<Self, FieldError> {
        let typed = Self::read(config)?;
        typed.url.require_allowed(env)?;
        Ok(typed)
    }

    /// The stored form: defaults filled in.
    pub fn to_config(&self) -> ConnectorConfig {
        ConnectorConfig::from_typed(self)
    }

    /// How acknowledgements arrive.
    pub fn ack_mode(&self) -> AckMode {
        self.ack_mode.unwrap_or_default()
    }

    /// The extra static headers: lowercase name, value.
    pub fn headers(&self) -> &[(String, crate::crypto::SecretString)] {
        self.headers.as_ref().map_or(&[], Headers::pairs)
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout_secs.duration()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    use crate::connectors::testing::{cfg, env};

    fn field_of(value: Value) -> String {
        HttpConfig::validate(&cfg(value), &env(false))
            .unwrap_err()
            .field
    }

    #[test]
    fn defaults_and_normal_form() {
        let parsed = HttpConfig::validate(
            &cfg(json!({"url": "https://ERP.example.com/orders"})),
            &env(false),
        )
        .unwrap();
        assert_eq!(parsed.url.as_str(), "https://erp.example.com/orders");
        assert_eq!(parsed.ack_mode(), AckMode::None);
        assert_eq!(parsed.timeout(), Duration::from_secs(10));
        let stored = parsed.to_config();
        assert_eq!(stored.get("ack_mode"), Some(&json!("none")));
        assert!(stored.get("signing_secret").is_none());
        let secret = generate_secret();
        assert_eq!(secret_key(&secret).unwrap().expose().len(), 32);
    }

    #[test]
    fn empty_text_is_told_that_null_leaves_a_value_out() {
        for field in [
            "erp_order_id_pointer",
            "ca_certificate_pem",
            "client_certificate_pem",
            "client_key_pem",
            "signing_secret",
        ] {
            let err = HttpConfig::validate(
                &cfg(json!({"url": "https://e.example", field: ""})),
                &env(false),
            )
            .unwrap_err();
            assert_eq!(
                (err.field.as_str(), err.message.as_str()),
                (field, "must not be empty (send null to leave it out)")
            );
        }
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
            HttpConfig::validate(&cfg(json!({"url": "http://erp.example.com"})), &env(true))
                .is_ok()
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let parsed = HttpConfig::validate(
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
        let validator = jsonschema::options()
            .build(&fields::schema_of::<HttpConfig>())
            .unwrap();
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
            let by_code = HttpConfig::validate(&cfg(case.clone()), &env(false)).is_ok();
            assert_eq!(
                by_schema, by_code,
                "schema {by_schema}, validation {by_code}: {case}"
            );
        }
    }
}
