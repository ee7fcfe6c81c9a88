//! The validated parts of an `HTTP_JSON_V1` config: the endpoint URL, the signing secret, extra
//! headers, PEM certificates and key, the JSON Pointer to the ERP's order number. Each reads
//! itself from JSON and states its JSON Schema beside the rules it checks.

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Value, json};

use super::config::secret_key;
use crate::connectors::ValidationEnv;
use crate::connectors::fields::{Text, TextRule, text};
use crate::connectors::network::{HostLiteral, is_blocked, parse_host};
use crate::crypto::SecretString;
use crate::domain::FieldError;

/// Longest accepted URL.
const MAX_URL_LEN: usize = 2048;
/// Most extra headers.
const MAX_HEADERS: usize = 20;
/// Longest header value.
const MAX_HEADER_LEN: usize = 4096;
/// Longest PEM text accepted.
const MAX_PEM_LEN: usize = 64 * 1024;
/// Longest JSON Pointer.
const MAX_POINTER_LEN: usize = 512;

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

/// Where orders are POSTed: an http(s) URL naming a host, without credentials or fragment.
/// Whether plain http and the host are allowed is this server's policy, checked when saving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "Value", into = "String")]
#[schemars(inline, schema_with = "url_schema")]
pub struct EndpointUrl(Url);

impl EndpointUrl {
    /// The URL.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The URL as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Refuses plain http unless allowed, and an address literal in a blocked network.
    pub fn require_allowed(&self, env: &ValidationEnv) -> Result<(), FieldError> {
        if self.0.scheme() == "http" && !env.allow_plain_http {
            return Err(FieldError::new(
                "url",
                "must be https (http is allowed only with CONNECTOR_ALLOW_PLAIN_HTTP=true)",
            ));
        }
        match parse_host(self.0.host_str().unwrap_or_default()) {
            HostLiteral::Ip(ip) if is_blocked(ip, &env.blocked_networks) => Err(FieldError::new(
                "url",
                "names a host in a blocked network (CONNECTOR_BLOCKED_NETWORKS)",
            )),
            _ => Ok(()),
        }
    }
}

impl From<EndpointUrl> for String {
    fn from(url: EndpointUrl) -> String {
        url.0.into()
    }
}

impl TryFrom<Value> for EndpointUrl {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, String> {
        let raw = match value {
            Value::Null => String::new(),
            other => text(other)?,
        };
        if raw.is_empty() {
            return Err("is required".into());
        }
        if raw.chars().count() > MAX_URL_LEN {
            return Err("is too long (max 2048 characters)".into());
        }
        if raw.chars().any(char::is_control) || raw.trim() != raw {
            return Err("must not contain spaces or control characters".into());
        }
        let url = Url::parse(&raw).map_err(|e| format!("is not a URL: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("must be an https URL".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials; put an API key in headers instead".into());
        }
        if url.fragment().is_some() {
            return Err("must not have a #fragment".into());
        }
        match url.host_str().map(parse_host) {
            None => Err("must name a host".into()),
            Some(HostLiteral::BadNumeric) => Err("names an invalid address".into()),
            Some(_) => Ok(Self(url)),
        }
    }
}

fn url_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 8,
        "maxLength": MAX_URL_LEN,
        "pattern": "^https?://[^\\s@#/?]+(/[^\\s#]*)?$"
    })
}

/// A Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 random bytes.
pub struct WebhookSecret;

/// A signing secret.
pub type SigningSecret = Text<WebhookSecret>;

impl TextRule for WebhookSecret {
    const SECRET: bool = true;

    fn check(secret: String) -> Result<String, String> {
        match secret_key(&secret) {
            Some(_) => Ok(secret),
            None => Err("must be whsec_ followed by the base64 of 24 to 64 random bytes (omit it to have one generated)".into()),
        }
    }

    fn schema() -> Value {
        json!({ "type": "string", "pattern": "^whsec_[A-Za-z0-9+/]{32,88}={0,2}$" })
    }
}

/// Extra static headers (an API key): lowercase name and value, at most [`MAX_HEADERS`]; none
/// may replace a header the connector sets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(try_from = "Value")]
#[schemars(inline, schema_with = "headers_schema")]
pub struct Headers(Vec<(String, SecretString)>);

impl Headers {
    /// Name and value of each header.
    pub fn pairs(&self) -> &[(String, SecretString)] {
        &self.0
    }
}

impl TryFrom<Value> for Headers {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return Err("must be an object of header name to value".into());
        };
        if map.len() > MAX_HEADERS {
            return Err("may hold at most 20 headers".into());
        }
        let mut pairs = Vec::with_capacity(map.len());
        for (name, value) in map {
            let lower = name.to_ascii_lowercase();
            if HeaderName::from_bytes(lower.as_bytes()).is_err() {
                return Err(format!("{name:?} is not a header name"));
            }
            if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("webhook-") {
                return Err(format!(
                    "{name} is set by the connector and cannot be replaced"
                ));
            }
            let Value::String(text) = value else {
                return Err(format!("{name} must be a string"));
            };
            let text = SecretString::new(text);
            if text.expose().len() > MAX_HEADER_LEN || HeaderValue::from_str(text.expose()).is_err()
            {
                return Err(format!(
                    "{name} must be visible ASCII text of at most 4096 characters"
                ));
            }
            pairs.push((lower, text));
        }
        Ok(Self(pairs))
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value.expose())))
    }
}

fn headers_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": MAX_HEADERS,
        "writeOnly": true,
        "propertyNames": { "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$" },
        "additionalProperties": { "type": "string", "maxLength": MAX_HEADER_LEN, "pattern": "^[\\t\\x20-\\x7e]*$" }
    })
}

/// PEM text of at most 64 KiB holding a `-----BEGIN <label>` block.
fn pem(text: String, label: &str) -> Result<String, String> {
    if text.len() > MAX_PEM_LEN {
        return Err("is too long (max 64 KiB)".into());
    }
    if !text.contains(&format!("-----BEGIN {label}")) {
        return Err(format!("must be PEM text (-----BEGIN {label}…)"));
    }
    Ok(text)
}

/// One or more PEM certificates.
pub struct Certificates;

/// PEM certificates.
pub type CertificatePem = Text<Certificates>;

impl CertificatePem {
    /// Refuses a bundle in which no certificate can be read.
    pub fn require_readable_bundle(&self, field: &str) -> Result<(), FieldError> {
        match reqwest::Certificate::from_pem_bundle(self.as_str().as_bytes()) {
            Ok(certs) if !certs.is_empty() => Ok(()),
            _ => Err(FieldError::new(field, "holds no readable certificate")),
        }
    }
}

impl TextRule for Certificates {
    const NOT_EMPTY: bool = true;

    fn check(text: String) -> Result<String, String> {
        pem(text, "CERTIFICATE")
    }

    fn schema() -> Value {
        json!({ "type": "string", "pattern": "-----BEGIN CERTIFICATE-----" })
    }
}

/// A private key in PEM (PKCS#8, RSA or EC).
pub struct PemKey;

/// A PEM private key.
pub type KeyPem = Text<PemKey>;

impl KeyPem {
    /// Refuses a key that does not make a usable client identity with `certificate`.
    pub fn require_identity_with(&self, certificate: &CertificatePem) -> Result<(), FieldError> {
        let mut both = zeroize::Zeroizing::new(certificate.as_str().as_bytes().to_vec());
        both.push(b'\n');
        both.extend_from_slice(self.as_str().as_bytes());
        match reqwest::Identity::from_pem(&both) {
            Ok(_) => Ok(()),
            Err(_) => Err(FieldError::new(
                "client_key_pem",
                "and client_certificate_pem do not make a usable client identity (PEM certificate and PKCS#8, RSA or EC key)",
            )),
        }
    }
}

impl TextRule for PemKey {
    const SECRET: bool = true;

    fn check(text: String) -> Result<String, String> {
        pem(text, "")
    }

    fn schema() -> Value {
        json!({ "type": "string", "pattern": "-----BEGIN " })
    }
}

/// A JSON Pointer (RFC 6901) such as `/order/number`.
pub struct Pointer;

/// A JSON Pointer.
pub type JsonPointer = Text<Pointer>;

impl TextRule for Pointer {
    const NOT_EMPTY: bool = true;

    fn check(pointer: String) -> Result<String, String> {
        // Every `~` escapes a 0 or a 1.
        let bytes = pointer.as_bytes();
        let bad_escape = bytes
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0' | b'1')));
        if !pointer.starts_with('/') || pointer.len() > MAX_POINTER_LEN || bad_escape {
            return Err("must be a JSON Pointer such as /order/number".into());
        }
        Ok(pointer)
    }

    fn schema() -> Value {
        json!({ "type": "string", "maxLength": MAX_POINTER_LEN, "pattern": "^(/([^~]|~[01])*)+$" })
    }
}
