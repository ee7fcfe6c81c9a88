//! Applying the ERP's verdicts — one code path for every way a verdict arrives: an
//! ack or error file, an HTTP response naming the ERP's order number, and a signed callback.
//! Each verdict changes a SENT export (and its draft) once, with its audit row, in one
//! transaction; a verdict about an export that is already final changes nothing.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::ServiceError;
use super::connections::ConnectionService;
use crate::connectors::{CallbackRefused, Registry};
use crate::domain::ack::{AckOutcome, ExportRef, parse_callback};
use crate::domain::audit::{Actor, NewAuditEntry, action};
use crate::domain::connection::ConnectionStatus;
use crate::domain::export::{Export, ExportStatus};
use crate::store::{AckApply, Store, StoreError};
use crate::telemetry::metric;

/// One verdict about one export, and how it arrived (for the audit row, e.g.
/// `{"file_name": …}` or `{"callback_id": …}`).
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The export as last read.
    pub export: Export,
    /// What the ERP said.
    pub outcome: AckOutcome,
    /// How it arrived.
    pub via: Map<String, Value>,
}

/// Applies verdicts; the ids of the exports they changed (those still SENT). The work runs to
/// completion in a task of its own even when the caller goes away (a client that hung up, a
/// poll stopped by its time limit), so no transaction is ever abandoned half-way.
pub async fn apply(
    store: &Arc<dyn Store>,
    verdicts: &[Verdict],
) -> Result<HashSet<Uuid>, StoreError> {
    let store = store.clone();
    let verdicts = verdicts.to_vec();
    tokio::spawn(async move { apply_now(store.as_ref(), &verdicts).await })
        .await
        .map_err(|e| StoreError::Unavailable(format!("applying acknowledgements stopped: {e}")))?
}

/// [`apply`] in the caller's task. A batch the database refuses is applied verdict by
/// verdict, so one bad verdict never keeps the others (another export's, another file's)
/// from being applied; one refused alone is logged and left for the next look.
async fn apply_now(store: &dyn Store, verdicts: &[Verdict]) -> Result<HashSet<Uuid>, StoreError> {
    match apply_batch(store, verdicts).await {
        Ok(changed) => Ok(changed),
        Err(err) if err.is_unreachable() || verdicts.len() < 2 => Err(err),
        Err(err) => {
            tracing::warn!(error = %err, verdicts = verdicts.len(), "the database refused a batch of acknowledgements; applying each on its own");
            let mut changed = HashSet::new();
            for verdict in verdicts {
                match apply_batch(store, std::slice::from_ref(verdict)).await {
                    Ok(ids) => changed.extend(ids),
                    Err(e) if e.is_unreachable() => return Err(e),
                    Err(e) => {
                        tracing::warn!(export_id = %verdict.export.id, error = %e, "an acknowledgement could not be applied")
                    }
                }
            }
            Ok(changed)
        }
    }
}

async fn apply_batch(store: &dyn Store, verdicts: &[Verdict]) -> Result<HashSet<Uuid>, StoreError> {
    let audits: Vec<NewAuditEntry> = verdicts.iter().map(audit).collect();
    let applies: Vec<AckApply<'_>> = verdicts
        .iter()
        .zip(&audits)
        .map(|(v, audit)| AckApply {
            export: &v.export,
            outcome: &v.outcome,
            audit,
        })
        .collect();
    let changed: HashSet<Uuid> = store.apply_acks(&applies).await?.into_iter().collect();
    let now = chrono::Utc::now();
    for v in verdicts.iter().filter(|v| changed.contains(&v.export.id)) {
        let status = match v.outcome {
            AckOutcome::Acked { .. } => "ACKED",
            AckOutcome::Rejected { .. } => "FAILED",
        };
        metrics::counter!(metric::EXPORTS, "status" => status).increment(1);
        if let (AckOutcome::Acked { .. }, Some(sent)) = (&v.outcome, v.export.sent_at) {
            let lag = (now - sent).to_std().unwrap_or_default();
            metrics::histogram!(metric::ACK_LAG).record(lag.as_secs_f64());
        }
    }
    Ok(changed)
}

fn audit(v: &Verdict) -> NewAuditEntry {
    let mut details = v.via.clone();
    details.insert("draft_order_id".into(), json!(v.export.draft_order_id));
    let action = match &v.outcome {
        AckOutcome::Acked {
            erp_order_id,
            processed_at,
        } => {
            details.insert("erp_order_id".into(), json!(erp_order_id));
            details.insert("processed_at".into(), json!(processed_at));
            action::EXPORT_ACKED
        }
        AckOutcome::Rejected { .. } => {
            details.insert("error".into(), json!(v.outcome.error_json()));
            action::EXPORT_REJECTED
        }
    };
    NewAuditEntry::export(
        v.export.org_id,
        v.export.id,
        Actor::system(),
        action,
        Value::Object(details),
    )
}

/// What a callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackResult {
    /// The export changed (ACKED, or FAILED as rejected).
    Applied,
    /// The export was already final (a replay, or a second verdict): nothing changed.
    Unchanged,
}

/// Callback acknowledgements (`POST /hooks/{connection_id}/acks`).
#[derive(Clone)]
pub struct CallbackService {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    connections: ConnectionService,
}

impl std::fmt::Debug for CallbackService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackService").finish_non_exhaustive()
    }
}

impl CallbackService {
    /// Builds the service.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        connections: ConnectionService,
    ) -> Self {
        Self {
            store,
            registry,
            connections,
        }
    }

    /// Authenticates a callback by its connection's signing secret, then applies its verdict.
    /// An unknown, disabled or non-callback connection is 404 (nothing to tell a prober); a bad
    /// signature or stale timestamp 401; an export of another org 404; one not yet recorded as
    /// sent 409 (the sender retries).
    pub async fn receive(
        &self,
        connection_id: Uuid,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Result<CallbackResult, ServiceError> {
        let not_found = || ServiceError::NotFound("No such callback endpoint".into());
        let connection = self
            .store
            .connection_by_id_any_org(connection_id)
            .await?
            .filter(|c| c.status == ConnectionStatus::Active)
            .ok_or_else(not_found)?;
        let connector = self
            .registry
            .by_type(&connection.connector_type)
            .ok_or_else(not_found)?
            .clone();
        let config = self.connections.open_split(&connection)?.transport;
        // Hashing the body is the one costly step anyone may trigger: off the async threads.
        let (owned_headers, owned_body) = (headers.clone(), body.to_vec());
        let verified = tokio::task::spawn_blocking(move || {
            connector.verify_callback(&config, &owned_headers, &owned_body, chrono::Utc::now())
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("verifying a callback stopped: {e}")))?
        .map_err(|refused| match refused {
            CallbackRefused::NotAccepted => not_found(),
            CallbackRefused::Unauthenticated(why) => ServiceError::Unauthenticated(why),
        })?;
        let callback = parse_callback(body)
            .map_err(|m| ServiceError::Invalid(crate::domain::FieldError::new("body", m.0)))?;
        let export = match &callback.export {
            ExportRef::Id(id) => self.store.export(connection.org_id, *id).await?,
            ExportRef::FileName(name) => self
                .store
                .exports_by_file_names(connection.org_id, std::slice::from_ref(name))
                .await?
                .into_iter()
                .next(),
        }
        .filter(|e| e.erp_connection_id == connection.id)
        .ok_or_else(|| ServiceError::NotFound("Export not found".into()))?;
        match export.status {
            ExportStatus::Pending => {
                return Err(ServiceError::Conflict(
                    "The export is not recorded as sent yet; send the acknowledgement again shortly"
                        .into(),
                ));
            }
            ExportStatus::Sent => {}
            _ => return Ok(CallbackResult::Unchanged),
        }
        let mut via = Map::new();
        via.insert("callback_id".into(), json!(verified.message_id));
        let verdict = Verdict {
            export,
            outcome: callback.outcome,
            via,
        };
        let changed = apply(&self.store, std::slice::from_ref(&verdict)).await?;
        Ok(if changed.contains(&verdict.export.id) {
            CallbackResult::Applied
        } else {
            CallbackResult::Unchanged
        })
    }
}
