//! Audit log entries: who did what to which entity, never with secrets.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Who performed an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The acting user, when a user acted (None for the CLI or the system itself).
    pub user_id: Option<Uuid>,
    /// A readable label: the user's e-mail, `cli` or `system`.
    pub label: String,
}

impl Actor {
    /// An operator at the command line.
    pub fn cli() -> Self {
        Self {
            user_id: None,
            label: "cli".to_owned(),
        }
    }

    /// The service itself (workers).
    pub fn system() -> Self {
        Self {
            user_id: None,
            label: "system".to_owned(),
        }
    }

    /// A user acting through the API.
    pub fn user(id: Uuid, email: &str) -> Self {
        Self {
            user_id: Some(id),
            label: email.to_owned(),
        }
    }
}

/// Action names written to the audit log. The first ones predate the pipeline and keep their
/// dotted names (scripts filter on them); the pipeline's use the upper-case names the issues
/// give (`EXPORT_ACKED`, …).
pub mod action {
    /// Successful login.
    pub const LOGIN_SUCCEEDED: &str = "auth.login_succeeded";
    /// Failed login (wrong password, unknown user, disabled user).
    pub const LOGIN_FAILED: &str = "auth.login_failed";
    /// A user signed out (the token used is revoked).
    pub const LOGGED_OUT: &str = "auth.logged_out";
    /// User created.
    pub const USER_CREATED: &str = "user.created";
    /// User disabled.
    pub const USER_DISABLED: &str = "user.disabled";
    /// Access token issued from the CLI.
    pub const TOKEN_ISSUED: &str = "token.issued";
    /// Connection created.
    pub const CONNECTION_CREATED: &str = "connection.created";
    /// Connection config updated.
    pub const CONNECTION_UPDATED: &str = "connection.updated";
    /// Connection tested (details say whether it passed).
    pub const CONNECTION_TESTED: &str = "connection.tested";
    /// Connection disabled.
    pub const CONNECTION_DISABLED: &str = "connection.disabled";
    /// Connection enabled.
    pub const CONNECTION_ENABLED: &str = "connection.enabled";
    /// Host key recorded on first use.
    pub const HOST_KEY_RECORDED: &str = "connection.host_key_recorded";
    /// Config decrypted by an operator.
    pub const CONFIG_DECRYPTED: &str = "connection.config_decrypted";
    /// Config re-encrypted under the current key.
    pub const CONFIG_REENCRYPTED: &str = "connection.config_reencrypted";
    /// Draft order stored.
    pub const DRAFT_CREATED: &str = "DRAFT_CREATED";
    /// Draft order approved.
    pub const DRAFT_APPROVED: &str = "DRAFT_APPROVED";
    /// Export created by a push or a retry-push.
    pub const EXPORT_CREATED: &str = "EXPORT_CREATED";
    /// Export delivered to the dropzone.
    pub const EXPORT_SENT: &str = "EXPORT_SENT";
    /// A delivery attempt failed transiently; another is scheduled.
    pub const EXPORT_RETRY_SCHEDULED: &str = "EXPORT_RETRY_SCHEDULED";
    /// Export failed for good.
    pub const EXPORT_FAILED: &str = "EXPORT_FAILED";
    /// The ERP acknowledged an export.
    pub const EXPORT_ACKED: &str = "EXPORT_ACKED";
    /// The ERP rejected an export.
    pub const EXPORT_REJECTED: &str = "EXPORT_REJECTED";
    /// An ack file could not be read (moved to `error/`).
    pub const ACK_FILE_MALFORMED: &str = "ACK_FILE_MALFORMED";
    /// A connection's circuit opened (it is not tried until its next probe).
    pub const CIRCUIT_OPENED: &str = "CIRCUIT_OPENED";
    /// A connection's circuit closed (deliveries resume).
    pub const CIRCUIT_CLOSED: &str = "CIRCUIT_CLOSED";
    /// Someone closed a connection's circuit by hand ("retry now").
    pub const CIRCUIT_RESET: &str = "CIRCUIT_RESET";
    /// An ack file names no export of this org (moved to `error/`).
    pub const ACK_FILE_UNMATCHED: &str = "ACK_FILE_UNMATCHED";
}

/// An entry to append.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    /// Owning org.
    pub org_id: Uuid,
    /// Who acted.
    pub actor: Actor,
    /// One of [`action`].
    pub action: &'static str,
    /// Kind of entity acted on (`user`, `erp_connection`, …).
    pub entity_type: &'static str,
    /// Its id, when there is one.
    pub entity_id: Option<String>,
    /// Extra facts; callers must never put secrets here.
    pub details: serde_json::Value,
}

impl NewAuditEntry {
    /// The same entry with one more detail (details are an object).
    pub fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        if let Some(details) = self.details.as_object_mut() {
            details.insert(key.to_owned(), value.into());
        }
        self
    }

    /// An entry about one export (`erp_export`).
    pub fn export(
        org_id: Uuid,
        export_id: Uuid,
        actor: Actor,
        action: &'static str,
        details: serde_json::Value,
    ) -> Self {
        Self {
            org_id,
            actor,
            action,
            entity_type: "erp_export",
            entity_id: Some(export_id.to_string()),
            details,
        }
    }
}

/// A stored entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Entry id.
    pub id: Uuid,
    /// Owning org.
    #[serde(skip)]
    pub org_id: Uuid,
    /// Acting user, if any.
    pub actor_user_id: Option<Uuid>,
    /// Actor label (e-mail, `cli`, `system`).
    pub actor: String,
    /// Action name.
    pub action: String,
    /// Entity kind.
    pub entity_type: String,
    /// Entity id.
    pub entity_id: Option<String>,
    /// Extra facts.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// Position in the log, for pagination.
    #[serde(skip)]
    pub seq: i64,
}
