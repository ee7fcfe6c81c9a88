//! Exports: pushing (creating one, idempotently and race-free), claiming due ones with a lease,
//! and recording each delivery outcome together with the draft's status and an audit row.
//!
//! Claiming is the one place the backends differ: PostgreSQL locks candidates with
//! `FOR UPDATE SKIP LOCKED` so concurrent workers never see the same row; SQLite runs the same
//! statement inside one `BEGIN IMMEDIATE` transaction, which already excludes other writers.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::StoreError;
use crate::domain::audit::NewAuditEntry;
use crate::domain::draft::DraftStatus;
use crate::domain::export::{Export, ExportStatus};
use crate::domain::page::{Page, PageRequest};

/// A push (or retry-push) to record.
#[derive(Debug, Clone)]
pub struct NewPush<'a> {
    /// Owning org.
    pub org_id: Uuid,
    /// The draft.
    pub draft_id: Uuid,
    /// The connection the export goes through.
    pub connection_id: Uuid,
    /// The new export's id (chosen by the caller so the audit row can name it).
    pub export_id: Uuid,
    /// The export file name, fixed now.
    pub file_name: &'a str,
    /// The request's `Idempotency-Key`.
    pub idempotency_key: Option<&'a str>,
    /// Statuses the draft may be in (push: APPROVED; retry-push: ERROR).
    pub from: &'a [DraftStatus],
    /// Retry-push: the draft's latest export must be FAILED.
    pub latest_must_be_failed: bool,
    /// The push time (the export's creation, and when it is first due).
    pub now: DateTime<Utc>,
    /// The audit row for the push.
    pub audit: &'a NewAuditEntry,
}

/// How a push ended.
#[derive(Debug, Clone)]
pub enum PushOutcome {
    /// A new PENDING export; the draft is PUSHING.
    Created(Export),
    /// The same `Idempotency-Key` was used before for this draft: that export, unchanged.
    Replayed {
        /// The earlier export.
        export: Export,
        /// The draft's status now.
        draft_status: DraftStatus,
    },
    /// No such draft in this org.
    DraftNotFound,
    /// The draft is not in a status the push starts from.
    WrongStatus {
        /// Its status.
        status: DraftStatus,
        /// The export still pending, sent or acknowledged, if there is one.
        live_export: Option<Export>,
    },
}

/// What a worker asks for when claiming.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// The worker (lease owner).
    pub worker: Uuid,
    /// Now.
    pub now: DateTime<Utc>,
    /// Until when the claimed exports are reserved.
    pub lease_until: DateTime<Utc>,
    /// At most this many exports.
    pub limit: u32,
    /// At most this many of one connection.
    pub per_connection: u32,
    /// Connections to skip (the worker is already busy with as many as it allows).
    pub exclude_connections: &'a [Uuid],
}

/// What one delivery attempt ended with.
#[derive(Debug, Clone)]
pub enum AttemptOutcome<'a> {
    /// Written to the dropzone: SENT, the draft PUSHED.
    Sent {
        /// The final path.
        dropzone_path: &'a str,
    },
    /// A transient failure: due again at `next_attempt_at`.
    Retry {
        /// When to try again.
        next_attempt_at: DateTime<Utc>,
        /// The error (`{code, message, at, attempt}`).
        error: &'a Value,
    },
    /// A permanent failure or the last attempt: FAILED, the draft ERROR.
    Failed {
        /// The error.
        error: &'a Value,
    },
}

/// Exports.
#[async_trait]
pub trait ExportStore: Send + Sync {
    /// Creates a PENDING export for a draft and sets the draft PUSHING, in one transaction
    /// that also writes the audit row and wakes waiting workers; see [`PushOutcome`].
    async fn push_draft(&self, push: &NewPush<'_>) -> Result<PushOutcome, StoreError>;
    /// One of the org's exports.
    async fn export(&self, org_id: Uuid, id: Uuid) -> Result<Option<Export>, StoreError>;
    /// The org's exports, newest first.
    async fn list_exports(
        &self,
        org_id: Uuid,
        status: Option<ExportStatus>,
        page: PageRequest,
    ) -> Result<Page<Export>, StoreError>;
    /// A draft's exports, newest first.
    async fn exports_of_draft(
        &self,
        org_id: Uuid,
        draft_id: Uuid,
    ) -> Result<Vec<Export>, StoreError>;
    /// Reserves due PENDING exports for a worker (counting an attempt for each).
    async fn claim_exports(&self, claim: &ClaimRequest<'_>) -> Result<Vec<Export>, StoreError>;
    /// Records the archived object and the file's hash before the file is written. False if
    /// the worker no longer holds the export.
    async fn record_archive(
        &self,
        id: Uuid,
        worker: Uuid,
        storage_key: &str,
        content_sha256: &str,
    ) -> Result<bool, StoreError>;
    /// Records an attempt's outcome with the draft's status and the audit row, if the worker
    /// still holds the export. False otherwise (another worker took it over).
    async fn finish_attempt(
        &self,
        export: &Export,
        worker: Uuid,
        outcome: &AttemptOutcome<'_>,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError>;
    /// Exports waiting for delivery (all orgs).
    async fn queue_depth(&self) -> Result<i64, StoreError>;
    /// When the earliest PENDING export can next be claimed (due and not leased), if any.
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// The columns every export query returns, in [`super::rows::ExportRow`]'s order.
macro_rules! export_columns {
    () => {
        "seq, id, org_id, draft_order_id, erp_connection_id, status, file_name, dropzone_path, \
         export_storage_key, content_sha256, erp_order_id, error_json, attempts, idempotency_key, \
         next_attempt_at, sent_at, acked_at, created_at, updated_at"
    };
}
pub(super) use export_columns;

pub(super) const EXPORT_BY_ID: &str = concat!(
    "SELECT ",
    export_columns!(),
    " FROM erp_export WHERE org_id = $1 AND id = $2"
);
pub(super) const EXPORT_BY_KEY: &str = concat!(
    "SELECT ",
    export_columns!(),
    " FROM erp_export WHERE draft_order_id = $1 AND idempotency_key = $2"
);
pub(super) const LATEST_EXPORT_OF_DRAFT: &str = concat!(
    "SELECT ",
    export_columns!(),
    " FROM erp_export WHERE draft_order_id = $1 ORDER BY seq DESC LIMIT 1"
);
pub(super) const LIVE_EXPORT_OF_DRAFT: &str = concat!(
    "SELECT ",
    export_columns!(),
    " FROM erp_export WHERE draft_order_id = $1 AND status IN ('PENDING', 'SENT', 'ACKED') \
     ORDER BY seq DESC LIMIT 1"
);
pub(super) const EXPORTS_OF_DRAFT: &str = concat!(
    "SELECT ",
    export_columns!(),
    " FROM erp_export WHERE org_id = $1 AND draft_order_id = $2 ORDER BY seq DESC"
);
pub(super) const LIST_EXPORTS: &str = concat!(
    "SELECT ",
    export_columns!(),
    " FROM erp_export WHERE org_id = $1 AND ($2 IS NULL OR seq < $2) \
     AND ($3 IS NULL OR status = $3) ORDER BY seq DESC LIMIT $4"
);
pub(super) const INSERT_EXPORT: &str = concat!(
    "INSERT INTO erp_export (id, org_id, draft_order_id, erp_connection_id, status, file_name, \
     attempts, idempotency_key, next_attempt_at, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, 'PENDING', $5, 0, $6, $7, $7, $7) RETURNING ",
    export_columns!()
);
pub(super) const SET_DRAFT_STATUS: &str = "UPDATE draft_order SET status = $3, updated_at = $4 \
    WHERE id = $1 AND status = $2";
pub(super) const RECORD_ARCHIVE: &str = "UPDATE erp_export SET export_storage_key = $3, \
    content_sha256 = $4, updated_at = $5 \
    WHERE id = $1 AND lease_owner = $2 AND status = 'PENDING'";
pub(super) const MARK_SENT: &str = "UPDATE erp_export SET status = 'SENT', dropzone_path = $3, \
    sent_at = $4, error_json = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = $4 \
    WHERE id = $1 AND lease_owner = $2 AND status = 'PENDING'";
pub(super) const SCHEDULE_RETRY: &str = "UPDATE erp_export SET next_attempt_at = $3, \
    error_json = $4, lease_owner = NULL, lease_expires_at = NULL, updated_at = $5 \
    WHERE id = $1 AND lease_owner = $2 AND status = 'PENDING'";
pub(super) const MARK_FAILED: &str = "UPDATE erp_export SET status = 'FAILED', error_json = $3, \
    lease_owner = NULL, lease_expires_at = NULL, updated_at = $4 \
    WHERE id = $1 AND lease_owner = $2 AND status = 'PENDING'";
pub(super) const QUEUE_DEPTH: &str = "SELECT COUNT(*) FROM erp_export WHERE status = 'PENDING'";
/// An export another worker holds is due when its lease runs out, not before.
pub(super) const NEXT_DUE: &str = "SELECT MIN(CASE WHEN lease_expires_at IS NOT NULL \
    AND lease_expires_at > next_attempt_at THEN lease_expires_at ELSE next_attempt_at END) \
    FROM erp_export WHERE status = 'PENDING'";

/// Implements [`ExportStore`] for a backend whose sqlx database type is `$db`. The backend
/// supplies `LOCK_DRAFT` (its draft-locking SELECT), `notify_exports` and `claim`.
macro_rules! impl_export_store {
    ($backend:ty, $db:ty) => {
        impl $backend {
            async fn export_row<'e, E>(
                executor: E,
                sql: &'static str,
                a: uuid::Uuid,
                b: impl sqlx::Encode<'e, $db> + sqlx::Type<$db> + Send + 'e,
            ) -> Result<Option<$crate::domain::export::Export>, $crate::store::StoreError>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                let row: Option<$crate::store::rows::ExportRow> = sqlx::query_as(sql)
                    .bind(a)
                    .bind(b)
                    .fetch_optional(executor)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ExportStore for $backend {
            async fn push_draft(
                &self,
                push: &$crate::store::NewPush<'_>,
            ) -> Result<$crate::store::PushOutcome, $crate::store::StoreError> {
                use $crate::domain::draft::DraftStatus;
                use $crate::store::PushOutcome;
                use $crate::store::exports as q;
                let mut tx = self.begin_write().await?;
                let status: Option<String> = sqlx::query_scalar(Self::LOCK_DRAFT)
                    .bind(push.org_id)
                    .bind(push.draft_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(status) = status else {
                    tx.rollback().await?;
                    return Ok(PushOutcome::DraftNotFound);
                };
                let status: DraftStatus =
                    status.parse().map_err(|e: $crate::domain::FieldError| {
                        $crate::store::StoreError::Corrupt(e.to_string())
                    })?;
                if let Some(key) = push.idempotency_key
                    && let Some(export) =
                        Self::export_row(&mut *tx, q::EXPORT_BY_KEY, push.draft_id, key).await?
                {
                    tx.rollback().await?;
                    return Ok(PushOutcome::Replayed {
                        export,
                        draft_status: status,
                    });
                }
                let latest_failed = if push.latest_must_be_failed {
                    let latest: Option<$crate::store::rows::ExportRow> =
                        sqlx::query_as(q::LATEST_EXPORT_OF_DRAFT)
                            .bind(push.draft_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    latest.is_some_and(|l| l.status == "FAILED")
                } else {
                    true
                };
                if !push.from.contains(&status) || !latest_failed {
                    let live: Option<$crate::store::rows::ExportRow> =
                        sqlx::query_as(q::LIVE_EXPORT_OF_DRAFT)
                            .bind(push.draft_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    tx.rollback().await?;
                    return Ok(PushOutcome::WrongStatus {
                        status,
                        live_export: live.map(TryInto::try_into).transpose()?,
                    });
                }
                let row: $crate::store::rows::ExportRow = sqlx::query_as(q::INSERT_EXPORT)
                    .bind(push.export_id)
                    .bind(push.org_id)
                    .bind(push.draft_id)
                    .bind(push.connection_id)
                    .bind(push.file_name)
                    .bind(push.idempotency_key)
                    .bind(push.now)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(q::SET_DRAFT_STATUS)
                    .bind(push.draft_id)
                    .bind(status.as_str())
                    .bind(DraftStatus::Pushing.as_str())
                    .bind(push.now)
                    .execute(&mut *tx)
                    .await?;
                $crate::store::audit::insert_audit!(&mut *tx, push.audit)?;
                Self::notify_exports(&mut tx).await?;
                tx.commit().await?;
                Ok(PushOutcome::Created(row.try_into()?))
            }

            async fn export(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::domain::export::Export>, $crate::store::StoreError> {
                Self::export_row(&self.pool, $crate::store::exports::EXPORT_BY_ID, org_id, id).await
            }

            async fn list_exports(
                &self,
                org_id: uuid::Uuid,
                status: Option<$crate::domain::export::ExportStatus>,
                page: $crate::domain::page::PageRequest,
            ) -> Result<
                $crate::domain::page::Page<$crate::domain::export::Export>,
                $crate::store::StoreError,
            > {
                let rows: Vec<$crate::store::rows::ExportRow> =
                    sqlx::query_as($crate::store::exports::LIST_EXPORTS)
                        .bind(org_id)
                        .bind(page.before_seq)
                        .bind(status.map(|s| s.as_str()))
                        .bind(i64::from(page.limit) + 1)
                        .fetch_all(&self.pool)
                        .await?;
                let exports = rows
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect::<Result<Vec<$crate::domain::export::Export>, _>>()?;
                Ok($crate::store::paginate(exports, page, |e| e.seq))
            }

            async fn exports_of_draft(
                &self,
                org_id: uuid::Uuid,
                draft_id: uuid::Uuid,
            ) -> Result<Vec<$crate::domain::export::Export>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::rows::ExportRow> =
                    sqlx::query_as($crate::store::exports::EXPORTS_OF_DRAFT)
                        .bind(org_id)
                        .bind(draft_id)
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn claim_exports(
                &self,
                claim: &$crate::store::ClaimRequest<'_>,
            ) -> Result<Vec<$crate::domain::export::Export>, $crate::store::StoreError> {
                self.claim(claim).await
            }

            async fn record_archive(
                &self,
                id: uuid::Uuid,
                worker: uuid::Uuid,
                storage_key: &str,
                content_sha256: &str,
            ) -> Result<bool, $crate::store::StoreError> {
                let done = sqlx::query($crate::store::exports::RECORD_ARCHIVE)
                    .bind(id)
                    .bind(worker)
                    .bind(storage_key)
                    .bind(content_sha256)
                    .bind($crate::store::now())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_attempt(
                &self,
                export: &$crate::domain::export::Export,
                worker: uuid::Uuid,
                outcome: &$crate::store::AttemptOutcome<'_>,
                audit: &$crate::domain::audit::NewAuditEntry,
            ) -> Result<bool, $crate::store::StoreError> {
                use $crate::domain::draft::DraftStatus;
                use $crate::store::AttemptOutcome;
                use $crate::store::exports as q;
                let now = $crate::store::now();
                let mut tx = self.begin_write().await?;
                let (done, draft_to) = match outcome {
                    AttemptOutcome::Sent { dropzone_path } => (
                        sqlx::query(q::MARK_SENT)
                            .bind(export.id)
                            .bind(worker)
                            .bind(*dropzone_path)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?,
                        Some(DraftStatus::Pushed),
                    ),
                    AttemptOutcome::Retry {
                        next_attempt_at,
                        error,
                    } => (
                        sqlx::query(q::SCHEDULE_RETRY)
                            .bind(export.id)
                            .bind(worker)
                            .bind(*next_attempt_at)
                            .bind(sqlx::types::Json(*error))
                            .bind(now)
                            .execute(&mut *tx)
                            .await?,
                        None,
                    ),
                    AttemptOutcome::Failed { error } => (
                        sqlx::query(q::MARK_FAILED)
                            .bind(export.id)
                            .bind(worker)
                            .bind(sqlx::types::Json(*error))
                            .bind(now)
                            .execute(&mut *tx)
                            .await?,
                        Some(DraftStatus::Error),
                    ),
                };
                if done.rows_affected() != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                if let Some(to) = draft_to {
                    sqlx::query(q::SET_DRAFT_STATUS)
                        .bind(export.draft_order_id)
                        .bind(DraftStatus::Pushing.as_str())
                        .bind(to.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                $crate::store::audit::insert_audit!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn queue_depth(&self) -> Result<i64, $crate::store::StoreError> {
                Ok(sqlx::query_scalar($crate::store::exports::QUEUE_DEPTH)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn next_due_at(
                &self,
            ) -> Result<Option<chrono::DateTime<chrono::Utc>>, $crate::store::StoreError> {
                Ok(sqlx::query_scalar($crate::store::exports::NEXT_DUE)
                    .fetch_one(&self.pool)
                    .await?)
            }
        }
    };
}
pub(super) use impl_export_store;
