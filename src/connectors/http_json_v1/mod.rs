//! `HTTP_JSON_V1`: each order POSTed as the export JSON v1 document to the ERP's HTTPS endpoint,
//! signed per Standard Webhooks; the ERP acknowledges in its response, by calling us back, or
//! not at all.
//!
//! - `config`: the settings, their validation and their schema, derived from one struct (pure).
//! - `parts`: the validated values the settings are made of (URL, secret, headers, PEM, …).
//! - `signing`: Standard Webhooks signatures, for deliveries and callbacks.
//! - `client`: pooled HTTPS clients with the network policy, and HTTP outcomes as error codes.

pub mod client;
pub mod config;
pub mod parts;
pub mod signing;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use self::client::{ClientPool, check_target, post, signed_headers};
use self::config::{AckMode, HttpConfig, generate_secret, secret_key};
use super::{
    CallbackRefused, ConnectorConfig, ConnectorContext, ConnectorError, Delivered, Delivery,
    ErrorCode, Learned, VerifiedCallback,
};
use crate::crypto::SecretBytes;
use crate::domain::ack::{AckOutcome, identifier_value};

/// The connector type; holds its pooled HTTPS clients.
#[derive(Debug, Default)]
pub struct HttpJsonV1 {
    clients: ClientPool,
}

/// Re-reads a stored config (the network policy applies when connecting).
fn parse(config: &ConnectorConfig) -> Result<HttpConfig, ConnectorError> {
    HttpConfig::read(config)
        .map_err(|e| ConnectorError::with_detail(ErrorCode::ConfigUnreadable, e))
}

fn signing_key(config: &HttpConfig) -> Result<SecretBytes, ConnectorError> {
    config
        .signing_secret
        .as_ref()
        .and_then(|s| secret_key(s.secret().expose()))
        .ok_or_else(|| {
            ConnectorError::with_detail(ErrorCode::ConfigUnreadable, "no signing_secret")
        })
}

/// The ERP's order number at `pointer` in a JSON answer: a string or a number, as text, by
/// the same rules as an ack file's (none when it is no usable identifier: the export then
/// stays SENT, waiting for another acknowledgement).
fn order_number(body: &[u8], pointer: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    identifier_value(value.pointer(pointer)?).ok().flatten()
}

/// Subject and days to expiry of a DER certificate.
fn certificate_facts(der: &[u8]) -> Option<Value> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = cert.tbs_certificate();
    let not_after = tbs.validity().not_after.to_unix_duration().as_secs() as i64;
    let days = (not_after - chrono::Utc::now().timestamp()).div_euclid(86_400);
    Some(json!({ "subject": tbs.subject().to_string(), "days_until_expiry": days }))
}

impl HttpJsonV1 {
    /// Signs and POSTs one body; the config it was sent with, and the answer. `pooled`: reuse
    /// the connection version's client (deliveries), or make a fresh one (connection tests,
    /// which should prove that a new connection and handshake work today, as SFTP tests do).
    async fn send(
        &self,
        ctx: &ConnectorContext,
        config: &ConnectorConfig,
        message_id: &str,
        body: Vec<u8>,
        content_type: &str,
        pooled: bool,
    ) -> Result<(Arc<HttpConfig>, client::Answer), ConnectorError> {
        let key = ctx.connection.filter(|_| pooled);
        let (parsed, client) =
            self.clients
                .prepared(key, || parse(config), &ctx.env.blocked_networks)?;
        check_target(
            parsed.url.url(),
            &ctx.env.blocked_networks,
            ctx.env.allow_plain_http,
        )?;
        let key = signing_key(&parsed)?;
        let timestamp = chrono::Utc::now().timestamp();
        let headers = signed_headers(
            &parsed,
            key.expose(),
            message_id,
            timestamp,
            &body,
            content_type,
        )?;
        let answer = post(&client, parsed.url.url(), headers, body).await?;
        Ok((parsed, answer))
    }
}

#[async_trait]
impl super::Connector for HttpJsonV1 {
    fn info(&self) -> &'static super::ConnectorInfo {
        &config::INFO
    }

    fn generate_secrets(&self, config: &mut ConnectorConfig) -> Vec<&'static str> {
        if config.has("signing_secret") {
            return Vec::new();
        }
        config.insert("signing_secret", json!(generate_secret()));
        vec!["signing_secret"]
    }

    async fn test_connection(
        &self,
        ctx: &ConnectorContext,
        config: &ConnectorConfig,
    ) -> Result<Learned, ConnectorError> {
        let message_id = format!("test_{}", uuid::Uuid::new_v4());
        let body = json!({
            "type": "connection.test",
            "org_slug": ctx.org_slug.as_str(),
            "sent_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        let (_, answer) = self
            .send(
                ctx,
                config,
                &message_id,
                body.to_string().into_bytes(),
                "application/json",
                false,
            )
            .await?;
        let mut details = serde_json::Map::new();
        details.insert("http_status".into(), json!(answer.status.as_u16()));
        if let Some(facts) = answer
            .peer_certificate
            .as_deref()
            .and_then(certificate_facts)
        {
            details.insert("certificate".into(), facts);
        }
        Ok(Learned {
            test_message: Some(format!(
                "Signed test event accepted with HTTP {}",
                answer.status.as_u16()
            )),
            test_details: Some(Value::Object(details)),
            ..Learned::default()
        })
    }

    async fn deliver(
        &self,
        ctx: &ConnectorContext,
        delivery: &Delivery<'_>,
        config: &ConnectorConfig,
    ) -> Result<Delivered, ConnectorError> {
        // The export id is the message id: stable across retries, so the ERP can drop
        // duplicates (also sent as Idempotency-Key).
        let (parsed, answer) = self
            .send(
                ctx,
                config,
                &delivery.export_id.to_string(),
                delivery.content.bytes.clone(),
                delivery.content_type,
                true,
            )
            .await?;
        let ack = match (parsed.ack_mode(), &parsed.erp_order_id_pointer) {
            (AckMode::Response, Some(pointer)) => {
                order_number(&answer.body, pointer.as_str()).map(|erp_order_id| AckOutcome::Acked {
                    erp_order_id: Some(erp_order_id),
                    processed_at: None,
                })
            }
            _ => None,
        };
        // Where it went, without a query (which may carry a token the ERP asked for).
        let mut destination = parsed.url.url().clone();
        destination.set_query(None);
        Ok(Delivered {
            dropzone_path: destination.to_string(),
            already_present: false,
            learned: Learned::default(),
            ack,
        })
    }

    fn verify_callback(
        &self,
        config: &ConnectorConfig,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<VerifiedCallback, CallbackRefused> {
        let parsed = parse(config).map_err(|_| CallbackRefused::NotAccepted)?;
        if parsed.ack_mode() != AckMode::Callback {
            return Err(CallbackRefused::NotAccepted);
        }
        let key = signing_key(&parsed).map_err(|_| CallbackRefused::NotAccepted)?;
        signing::verify(key.expose(), headers, body, now.timestamp())
            .map(|message_id| VerifiedCallback { message_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_numbers_are_found_by_pointer() {
        let body = br#"{"order": {"number": "SO-1", "id": 42, "none": null}}"#;
        assert_eq!(order_number(body, "/order/number").as_deref(), Some("SO-1"));
        assert_eq!(order_number(body, "/order/id").as_deref(), Some("42"));
        assert_eq!(order_number(body, "/order/none"), None);
        assert_eq!(order_number(body, "/missing"), None);
        assert_eq!(order_number(b"not json", "/order"), None);
        let hostile = br#"{"order": {"number": "SO\u00001", "esc": "\u001b[2J"}}"#;
        assert_eq!(order_number(hostile, "/order/number"), None);
        assert_eq!(order_number(hostile, "/order/esc"), None);
    }
}
