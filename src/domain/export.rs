//! Exports: one delivery of a draft to the org's ERP connection, its status rules,
//! its error record and the retry schedule. No I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::FieldError;

/// `PENDING → SENT → ACKED | FAILED`, and `PENDING → FAILED`. `FAILED` never changes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExportStatus {
    /// Waiting for (another) delivery attempt.
    Pending,
    /// Written to the dropzone.
    Sent,
    /// The ERP confirmed it.
    Acked,
    /// Delivery failed for good, or the ERP rejected it.
    Failed,
}

impl ExportStatus {
    /// Every status.
    pub const ALL: [ExportStatus; 4] = [
        ExportStatus::Pending,
        ExportStatus::Sent,
        ExportStatus::Acked,
        ExportStatus::Failed,
    ];

    /// The statuses an export may move to from this one: the export's state machine, in one
    /// place (the store's statements implement it; a store test checks them against it).
    pub fn next(self) -> &'static [ExportStatus] {
        match self {
            ExportStatus::Pending => &[ExportStatus::Sent, ExportStatus::Failed],
            ExportStatus::Sent => &[ExportStatus::Acked, ExportStatus::Failed],
            ExportStatus::Acked | ExportStatus::Failed => &[],
        }
    }

    /// True when an export in this status may move to `to`.
    pub fn may_become(self, to: ExportStatus) -> bool {
        self.next().contains(&to)
    }

    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportStatus::Pending => "PENDING",
            ExportStatus::Sent => "SENT",
            ExportStatus::Acked => "ACKED",
            ExportStatus::Failed => "FAILED",
        }
    }
}

impl fmt::Display for ExportStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExportStatus {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| FieldError::new("status", "must be PENDING, SENT, ACKED or FAILED"))
    }
}

/// A stored export.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// Export id.
    pub id: Uuid,
    /// Owning org.
    pub org_id: Uuid,
    /// The draft it delivers.
    pub draft_order_id: Uuid,
    /// The connection it goes through.
    pub erp_connection_id: Uuid,
    /// Status.
    pub status: ExportStatus,
    /// `sales_order_<draft id>_<YYYYMMDDTHHMMSSZ>.json`, fixed at creation.
    pub file_name: String,
    /// The final path as the connector sees it, once delivered.
    pub dropzone_path: Option<String>,
    /// Object storage key of the archived file.
    pub export_storage_key: Option<String>,
    /// Lowercase hex SHA-256 of the file.
    pub content_sha256: Option<String>,
    /// The ERP's order number, once acknowledged.
    pub erp_order_id: Option<String>,
    /// The last error (`{code, message, at, attempt}`; ERP rejections carry the ERP's fields).
    pub error_json: Option<Value>,
    /// Delivery attempts started.
    pub attempts: u32,
    /// The `Idempotency-Key` the push carried.
    pub idempotency_key: Option<String>,
    /// When the export is next due (PENDING only).
    pub next_attempt_at: DateTime<Utc>,
    /// When it was delivered.
    pub sent_at: Option<DateTime<Utc>>,
    /// When the ERP acknowledged it.
    pub acked_at: Option<DateTime<Utc>>,
    /// Created (the push).
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Position in the org's list (pagination).
    pub seq: i64,
}

/// The object storage key of an export file: `exports/<org_id>/<file name>`.
pub fn storage_key(org_id: Uuid, file_name: &str) -> String {
    format!("exports/{org_id}/{file_name}")
}

/// `error_json` for a delivery failure: `{code, message, at, attempt}`.
pub fn delivery_error(code: &str, message: &str, at: DateTime<Utc>, attempt: u32) -> Value {
    serde_json::json!({
        "code": code,
        "message": message,
        "at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "attempt": attempt,
    })
}

/// A validated `Idempotency-Key`: 1-255 visible ASCII characters.
pub fn parse_idempotency_key(raw: &str) -> Result<String, FieldError> {
    let ok = !raw.is_empty() && raw.len() <= 255 && raw.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(FieldError::new(
            "Idempotency-Key",
            "must be 1-255 visible ASCII characters",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keys_and_statuses() {
        let id = Uuid::nil();
        assert_eq!(
            storage_key(id, "a.json"),
            "exports/00000000-0000-0000-0000-000000000000/a.json"
        );
        assert!(parse_idempotency_key("abc-123").is_ok());
        for bad in ["", "a b", &"x".repeat(256), "é"] {
            assert!(parse_idempotency_key(bad).is_err(), "{bad}");
        }
        assert_eq!(
            "ACKED".parse::<ExportStatus>().unwrap(),
            ExportStatus::Acked
        );
        let err = delivery_error("AUTH_FAILED", "Authentication failed", Utc::now(), 2);
        assert_eq!(err["attempt"], 2);
        assert!(err["at"].as_str().unwrap().ends_with('Z'));
    }
}
