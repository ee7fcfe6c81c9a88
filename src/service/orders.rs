//! Draft orders and pushes: store a draft, approve it, push it (creating an export
//! for the org's active connection, exactly once however often and however concurrently the
//! request arrives), retry a failed push, and read drafts and exports back.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;

use super::ServiceError;
use super::connections::ConnectionService;
use super::push_batch::{Batched, PushBatcher, QueuedPush};
use crate::archive::Archive;
use crate::domain::audit::{Actor, NewAuditEntry, action};
use crate::domain::draft::{DraftInput, DraftOrder, DraftStatus};
use crate::domain::export::{Export, ExportStatus};
use crate::domain::page::{Page, PageRequest};
use crate::formats::DeliveryFormat;
use crate::formats::naming::NameFacts;
use crate::store::{PushOutcome, Store, StoreError};
use crate::telemetry::metric;

/// The message when the org has no active connection.
pub const NO_ACTIVE_CONNECTOR: &str = "No active ERP connector";

/// A push's answer: the export and the draft's status (answered as `202 {status, erp_export_id}`).
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The export created now, or found by the repeated `Idempotency-Key`.
    pub export: Export,
    /// The draft's status.
    pub draft_status: DraftStatus,
    /// False when the key was seen before.
    pub created: bool,
}

/// Which push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    /// `POST /draft-orders/{id}/push`: from APPROVED.
    Push,
    /// `POST /draft-orders/{id}/retry-push`: from ERROR, when the latest export FAILED.
    Retry,
}

/// Draft and export use cases.
#[derive(Clone)]
pub struct OrderService {
    store: Arc<dyn Store>,
    connections: ConnectionService,
    archive: Archive,
    on_push: [Arc<Notify>; 2],
    /// None on a backend that records pushes one at a time.
    batcher: Option<PushBatcher>,
}

impl std::fmt::Debug for OrderService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderService").finish_non_exhaustive()
    }
}

fn draft_entry(
    org_id: Uuid,
    actor: &Actor,
    action: &'static str,
    id: Uuid,
    details: serde_json::Value,
) -> NewAuditEntry {
    NewAuditEntry {
        org_id,
        actor: actor.clone(),
        action,
        entity_type: "draft_order",
        entity_id: Some(id.to_string()),
        details,
    }
}

impl OrderService {
    /// Builds the service; `on_push` (the in-process delivery worker, the announcer) is
    /// notified after every push. Starts the push batcher where the backend records pushes
    /// together, so it needs a Tokio runtime.
    pub fn new(
        store: Arc<dyn Store>,
        connections: ConnectionService,
        archive: Archive,
        on_push: [Arc<Notify>; 2],
    ) -> Self {
        Self {
            batcher: store
                .records_pushes_together()
                .then(|| PushBatcher::start(store.clone())),
            store,
            connections,
            archive,
            on_push,
        }
    }

    /// `POST /draft-orders`: validates and stores a READY draft.
    pub async fn create(
        &self,
        actor: &Actor,
        org_id: Uuid,
        input: DraftInput,
    ) -> Result<DraftOrder, ServiceError> {
        let draft = input.validate()?;
        let id = Uuid::new_v4();
        let audit = draft_entry(
            org_id,
            actor,
            action::DRAFT_CREATED,
            id,
            json!({ "lines": draft.lines.len(),
                    "external_order_number": draft.header.external_order_number }),
        );
        Ok(self.store.insert_draft(id, org_id, &draft, &audit).await?)
    }

    fn draft_not_found() -> ServiceError {
        ServiceError::NotFound("Draft order not found".into())
    }

    /// One draft with its exports (newest first).
    pub async fn get(
        &self,
        org_id: Uuid,
        id: Uuid,
    ) -> Result<(DraftOrder, Vec<Export>), ServiceError> {
        let draft = self
            .store
            .draft(org_id, id)
            .await?
            .ok_or_else(Self::draft_not_found)?;
        let exports = self.store.exports_of_draft(org_id, id).await?;
        Ok((draft, exports))
    }

    /// A draft's exports, newest first.
    pub async fn exports_of_draft(
        &self,
        org_id: Uuid,
        draft_id: Uuid,
    ) -> Result<Vec<Export>, ServiceError> {
        Ok(self.store.exports_of_draft(org_id, draft_id).await?)
    }

    /// The org's drafts, newest first.
    pub async fn list(
        &self,
        org_id: Uuid,
        status: Option<DraftStatus>,
        page: PageRequest,
    ) -> Result<Page<DraftOrder>, ServiceError> {
        Ok(self.store.list_drafts(org_id, status, page).await?)
    }

    /// `READY → APPROVED`; 409 from any other status.
    pub async fn approve(
        &self,
        actor: &Actor,
        approver_email: &str,
        org_id: Uuid,
        id: Uuid,
    ) -> Result<DraftOrder, ServiceError> {
        let at = crate::store::now();
        let audit = draft_entry(org_id, actor, action::DRAFT_APPROVED, id, json!({}));
        if let Some(draft) = self
            .store
            .approve_draft(org_id, id, approver_email, at, &audit)
            .await?
        {
            return Ok(draft);
        }
        let draft = self
            .store
            .draft(org_id, id)
            .await?
            .ok_or_else(Self::draft_not_found)?;
        Err(ServiceError::ConflictWith {
            message: format!(
                "Draft order is {}; only READY drafts can be approved",
                draft.status
            ),
            details: json!({ "status": draft.status }),
        })
    }

    /// The name an export pushed now gets: the active connection's template (or the default)
    /// with the format's extension. Without a readable active connection the default JSON
    /// name: the push itself then says what is wrong, or the delivery does.
    async fn file_name(
        &self,
        org_id: Uuid,
        draft_id: Uuid,
        export_id: Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, ServiceError> {
        let opened = match self.connections.active_config(org_id).await {
            Ok(active) => active.map(|(_, opened)| opened),
            Err(ServiceError::ConfigUnreadable) => None,
            Err(other) => return Err(other),
        };
        let default = DeliveryFormat::default();
        let delivery = opened.as_ref().map_or(&default, |o| &o.delivery);
        let draft = match &delivery.template {
            Some(t) if t.needs_draft() => self.store.draft(org_id, draft_id).await?,
            _ => None,
        };
        Ok(delivery.file_name(&NameFacts::for_draft(
            draft_id,
            draft.as_ref(),
            export_id,
            now,
            delivery.format.renderer().extension(),
        )))
    }

    /// Push or retry-push: creates a PENDING export for the org's active connection and wakes
    /// the delivery workers. With an `Idempotency-Key` seen before for this draft, answers that
    /// export again, whatever happened since.
    pub async fn push(
        &self,
        actor: &Actor,
        org_id: Uuid,
        draft_id: Uuid,
        idempotency_key: Option<&str>,
        kind: PushKind,
    ) -> Result<Pushed, ServiceError> {
        let now = crate::store::now();
        let export_id = Uuid::new_v4();
        let file_name = self.file_name(org_id, draft_id, export_id, now).await?;
        let (action_name, from): (_, &[DraftStatus]) = match kind {
            PushKind::Push => (action::EXPORT_CREATED, &[DraftStatus::Approved]),
            PushKind::Retry => (action::EXPORT_CREATED, &[DraftStatus::Error]),
        };
        let audit = NewAuditEntry::export(
            org_id,
            export_id,
            actor.clone(),
            action_name,
            json!({ "draft_order_id": draft_id, "file_name": file_name,
                    "retry": kind == PushKind::Retry }),
        );
        let push = QueuedPush {
            org_id,
            draft_id,
            export_id,
            file_name,
            idempotency_key: idempotency_key.map(str::to_owned),
            now,
            audit,
        };
        // A plain push goes in with whatever else is being pushed now; what that does not
        // create (a refusal, a race) the general path answers.
        let push = match (&self.batcher, kind) {
            (Some(batcher), PushKind::Push) => match batcher.push(push).await {
                Batched::Created(export) => Ok(export),
                Batched::Declined(push) => Err(push),
                Batched::Lost => {
                    return Err(ServiceError::Busy {
                        retry_after_secs: 1,
                    });
                }
            },
            _ => Err(push),
        };
        let outcome = match push {
            Ok(export) => PushOutcome::Created(export),
            Err(push) => {
                let push = push.as_push(from, kind == PushKind::Retry);
                match self.store.push_draft(&push).await {
                    // A concurrent push of the same draft won the race (unique index): report it.
                    Err(StoreError::Conflict(_)) => self.store.push_draft(&push).await?,
                    other => other?,
                }
            }
        };
        self.answer_push(kind, outcome)
    }

    /// What a push answers for what the store did; a created export wakes the workers.
    fn answer_push(&self, kind: PushKind, outcome: PushOutcome) -> Result<Pushed, ServiceError> {
        match outcome {
            PushOutcome::Created(export) => {
                metrics::counter!(metric::EXPORTS, "status" => "PENDING").increment(1);
                for signal in &self.on_push {
                    signal.notify_one();
                }
                Ok(Pushed {
                    export,
                    draft_status: DraftStatus::Pushing,
                    created: true,
                })
            }
            PushOutcome::Replayed {
                export,
                draft_status,
            } => Ok(Pushed {
                export,
                draft_status,
                created: false,
            }),
            PushOutcome::DraftNotFound => Err(Self::draft_not_found()),
            PushOutcome::NoActiveConnection => {
                Err(ServiceError::Conflict(NO_ACTIVE_CONNECTOR.into()))
            }
            PushOutcome::WrongStatus {
                status,
                live_export,
            } => Err(Self::refusal(kind, status, live_export)),
        }
    }

    fn refusal(kind: PushKind, status: DraftStatus, live: Option<Export>) -> ServiceError {
        if let Some(live) = live.filter(|e| e.status != ExportStatus::Failed) {
            return ServiceError::ConflictWith {
                message: format!(
                    "Draft order already has export {} ({}); it is {}",
                    live.id, live.status, status
                ),
                details: json!({ "erp_export_id": live.id, "export_status": live.status,
                                 "status": status }),
            };
        }
        let message = match kind {
            PushKind::Push => {
                format!("Draft order is {status}; only APPROVED drafts can be pushed")
            }
            PushKind::Retry => format!(
                "Draft order is {status}; retry-push needs a draft in ERROR whose latest export FAILED"
            ),
        };
        ServiceError::ConflictWith {
            message,
            details: json!({ "status": status }),
        }
    }

    /// The org's exports, newest first.
    pub async fn list_exports(
        &self,
        org_id: Uuid,
        status: Option<ExportStatus>,
        page: PageRequest,
    ) -> Result<Page<Export>, ServiceError> {
        Ok(self.store.list_exports(org_id, status, page).await?)
    }

    /// One export.
    pub async fn export(&self, org_id: Uuid, id: Uuid) -> Result<Export, ServiceError> {
        self.store
            .export(org_id, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("Export not found".into()))
    }

    /// The archived file of an export; 404 until the worker archived it.
    pub async fn export_file(
        &self,
        org_id: Uuid,
        id: Uuid,
    ) -> Result<(Export, Vec<u8>), ServiceError> {
        let export = self.export(org_id, id).await?;
        let key = export
            .export_storage_key
            .clone()
            .ok_or_else(|| ServiceError::NotFound("The export file is not archived yet".into()))?;
        let bytes = self
            .archive
            .get(&key)
            .await
            .map_err(|e| ServiceError::Dependency(e.to_string()))?;
        Ok((export, bytes))
    }
}
