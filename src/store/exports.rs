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
    /// The draft could be pushed, but the org has no active connection.
    NoActiveConnection,
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
    /// At most this many of a connection not in `allowances`.
    pub per_connection: u32,
    /// Connections to skip (the worker is already busy with as many as it allows).
    pub exclude_connections: &'a [Uuid],
    /// At most this many of these connections.
    pub allowances: &'a [(Uuid, u32)],
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
    /// The connection failed, not the export: back in the queue, due at `next_attempt_at`,
    /// the attempt given back.
    Requeue {
        /// When it may be tried again.
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

/// An archived export file to record.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveRecord<'a> {
    /// The export.
    pub id: Uuid,
    /// Its object storage key.
    pub storage_key: &'a str,
    /// The file's hash.
    pub content_sha256: &'a str,
}

/// One finished delivery attempt to record.
#[derive(Debug, Clone)]
pub struct FinishedAttempt<'a> {
    /// The export as claimed.
    pub export: &'a Export,
    /// What happened.
    pub outcome: AttemptOutcome<'a>,
    /// Its audit row.
    pub audit: &'a NewAuditEntry,
}

/// Finished attempts sorted by the statement that records them.
pub(crate) struct Outcomes<'r, 'a> {
    /// SENT, with the final path.
    pub sent: Vec<(&'r FinishedAttempt<'a>, &'a str)>,
    /// Due again later: when, the error, and 1 when the attempt is given back (a requeue).
    pub retried: Vec<(&'r FinishedAttempt<'a>, DateTime<Utc>, &'a Value, i32)>,
    /// FAILED, with the error.
    pub failed: Vec<(&'r FinishedAttempt<'a>, &'a Value)>,
}

impl<'r, 'a> Outcomes<'r, 'a> {
    /// Sorts a batch of finished attempts.
    pub fn of(attempts: &'r [FinishedAttempt<'a>]) -> Self {
        let mut sorted = Self {
            sent: Vec::new(),
            retried: Vec::new(),
            failed: Vec::new(),
        };
        for a in attempts {
            match a.outcome {
                AttemptOutcome::Sent { dropzone_path } => sorted.sent.push((a, dropzone_path)),
                // Retries count the attempt; requeues give it back (the column is subtracted).
                AttemptOutcome::Retry {
                    next_attempt_at,
                    error,
                } => sorted.retried.push((a, next_attempt_at, error, 0)),
                AttemptOutcome::Requeue {
                    next_attempt_at,
                    error,
                } => sorted.retried.push((a, next_attempt_at, error, 1)),
                AttemptOutcome::Failed { error } => sorted.failed.push((a, error)),
            }
        }
        sorted
    }
}

/// An acknowledgement to apply to a SENT export.
#[derive(Debug, Clone)]
pub struct AckApply<'a> {
    /// The export.
    pub export: &'a Export,
    /// What the ERP said.
    pub outcome: &'a crate::domain::ack::AckOutcome,
    /// The audit row (`EXPORT_ACKED` / `EXPORT_REJECTED`).
    pub audit: &'a NewAuditEntry,
}

/// Exports.
#[async_trait]
pub trait ExportStore: Send + Sync {
    /// Creates a PENDING export through the org's active connection and sets the draft
    /// PUSHING, in one transaction that also writes the audit row (the caller wakes the
    /// workers afterwards); see [`PushOutcome`].
    async fn push_draft(&self, push: &NewPush<'_>) -> Result<PushOutcome, StoreError>;
    /// Plain pushes (from APPROVED, of distinct drafts) in one statement and one commit: the
    /// export created for each, in order, None where [`ExportStore::push_draft`] must answer
    /// (it explains refusals and races). None for the whole call on a backend that records
    /// pushes one at a time.
    async fn push_drafts_together(
        &self,
        pushes: &[NewPush<'_>],
    ) -> Result<Option<Vec<Option<Export>>>, StoreError>;
    /// False on a backend whose [`ExportStore::push_drafts_together`] always answers None, so
    /// callers need not queue pushes for it.
    fn records_pushes_together(&self) -> bool;
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
    /// Records archived objects and their files' hashes before the files are written (one
    /// statement for a batch). Returns the ids the worker still holds.
    async fn record_archives(
        &self,
        worker: Uuid,
        archives: &[ArchiveRecord<'_>],
    ) -> Result<Vec<Uuid>, StoreError>;
    /// Records attempts' outcomes with the drafts' statuses and the audit rows, in one
    /// transaction for the batch, for the exports the worker still holds (another worker may
    /// have taken one over). Returns the ids recorded.
    async fn finish_attempts(
        &self,
        worker: Uuid,
        attempts: &[FinishedAttempt<'_>],
    ) -> Result<Vec<Uuid>, StoreError>;
    /// [`ExportStore::record_archives`] for one export.
    async fn record_archive(
        &self,
        id: Uuid,
        worker: Uuid,
        storage_key: &str,
        content_sha256: &str,
    ) -> Result<bool, StoreError> {
        let record = ArchiveRecord {
            id,
            storage_key,
            content_sha256,
        };
        Ok(!self.record_archives(worker, &[record]).await?.is_empty())
    }
    /// [`ExportStore::finish_attempts`] for one export.
    async fn finish_attempt(
        &self,
        export: &Export,
        worker: Uuid,
        outcome: &AttemptOutcome<'_>,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let attempt = FinishedAttempt {
            export,
            outcome: outcome.clone(),
            audit,
        };
        Ok(!self.finish_attempts(worker, &[attempt]).await?.is_empty())
    }
    /// The org's exports with these file names (acknowledgements match by exact file name).
    async fn exports_by_file_names(
        &self,
        org_id: Uuid,
        names: &[String],
    ) -> Result<Vec<Export>, StoreError>;
    /// Applies acknowledgements in one transaction: ACKED sets `erp_order_id` on the export
    /// and its draft; a rejection sets the export FAILED with the ERP's error and the draft
    /// ERROR; each with its audit row. Only exports still SENT change (so an ack seen twice
    /// changes nothing the second time and writes no second row). Returns the ids changed.
    async fn apply_acks(&self, acks: &[AckApply<'_>]) -> Result<Vec<Uuid>, StoreError>;
    /// Takes a connection's ack-polling lease for `owner` until `until` (free, expired or
    /// already ours); false when another worker holds it.
    async fn acquire_ack_lease(
        &self,
        connection_id: Uuid,
        owner: Uuid,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Gives a lease back.
    async fn release_ack_lease(&self, connection_id: Uuid, owner: Uuid) -> Result<(), StoreError>;
    /// Exports waiting for delivery (all orgs).
    async fn queue_depth(&self) -> Result<i64, StoreError>;
    /// When the earliest PENDING export that no live lease holds falls due, if any. Exports
    /// in flight are left out (finding when their leases run out would take a scan of the
    /// whole queue): a lease that runs out is noticed by the worker's next poll.
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
pub(super) const ACTIVE_CONNECTION_ID: &str =
    "SELECT id FROM erp_connection WHERE org_id = $1 AND status = 'ACTIVE'";
pub(super) const SET_DRAFT_STATUS: &str = "UPDATE draft_order SET status = $3, updated_at = $4 \
    WHERE id = $1 AND status = $2";
pub(super) const ACQUIRE_ACK_LEASE: &str = "INSERT INTO ack_poll_lease (connection_id, owner, \
    expires_at) VALUES ($1, $2, $3) ON CONFLICT (connection_id) DO UPDATE SET owner = $2, \
    expires_at = $3 WHERE ack_poll_lease.expires_at < $4 OR ack_poll_lease.owner = $2 \
    RETURNING connection_id";
pub(super) const RELEASE_ACK_LEASE: &str =
    "DELETE FROM ack_poll_lease WHERE connection_id = $1 AND owner = $2";
pub(super) const QUEUE_DEPTH: &str = "SELECT COUNT(*) FROM erp_export WHERE status = 'PENDING'";
/// The queue index in order, past the exports in flight (at most the workers' slots): one
/// short index walk however long the queue is.
pub(super) const NEXT_DUE: &str = "SELECT next_attempt_at FROM erp_export \
    WHERE status = 'PENDING' AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
    ORDER BY next_attempt_at LIMIT 1";

/// Implements [`ExportStore`] for a [`super::Backend`] whose sqlx database type is `$db`,
/// through the backend's claim, draft lock and fast paths.
macro_rules! impl_export_store {
    ($backend:ty, $db:ty) => {
        impl $backend {
            /// Ends a batch `UPDATE … FROM (VALUES …)` on the exports this worker still
            /// holds. `lease_owner` is set only on a claimed PENDING export and every outcome
            /// clears it, so it alone says the worker still holds the export; a status test
            /// here would match the queue index's predicate and tempt the planner into walking
            /// the whole queue instead of looking the ids up.
            fn held_by(q: &mut sqlx::QueryBuilder<$db>, worker: uuid::Uuid) {
                q.push(") AS v WHERE erp_export.id = v.column1 AND erp_export.lease_owner = ");
                q.push_bind(worker);
                q.push(" RETURNING erp_export.id, erp_export.draft_order_id");
            }

            /// Attempts that failed for good: FAILED with their error; (export, draft) ids.
            async fn record_failed(
                tx: &mut sqlx::Transaction<'static, $db>,
                worker: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
                failed: &[(&$crate::store::FinishedAttempt<'_>, &serde_json::Value)],
            ) -> Result<Vec<(uuid::Uuid, uuid::Uuid)>, $crate::store::StoreError> {
                if failed.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE erp_export SET status = 'FAILED', error_json = v.column2, \
                     lease_owner = NULL, lease_expires_at = NULL, updated_at = ",
                );
                q.push_bind(now).push(" FROM (");
                q.push_values(failed, |mut row, (a, error)| {
                    row.push_bind(a.export.id)
                        .push_bind(sqlx::types::Json($crate::store::storable(error)));
                });
                Self::held_by(&mut q, worker);
                let rows: Vec<(uuid::Uuid, uuid::Uuid)> =
                    q.build_query_as().persistent(false).fetch_all(&mut **tx).await?;
                Ok(rows)
            }

            /// Drafts whose export was just recorded SENT become PUSHED, FAILED ones ERROR.
            async fn settle_pushing_drafts(
                tx: &mut sqlx::Transaction<'static, $db>,
                now: chrono::DateTime<chrono::Utc>,
                pushed_drafts: &[uuid::Uuid],
                errored_drafts: &[uuid::Uuid],
            ) -> Result<(), $crate::store::StoreError> {
                for (drafts, to) in [(pushed_drafts, "PUSHED"), (errored_drafts, "ERROR")] {
                    if drafts.is_empty() {
                        continue;
                    }
                    let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE draft_order SET status = ");
                    q.push_bind(to).push(", updated_at = ").push_bind(now);
                    q.push(" WHERE status = 'PUSHING' AND id IN ");
                    $crate::store::push_list(&mut q, drafts.iter().copied());
                    q.build().persistent(false).execute(&mut **tx).await?;
                }
                Ok(())
            }

            /// Rejected acknowledgements: their SENT exports FAILED, the drafts ERROR; the ids
            /// changed.
            async fn record_rejections(
                tx: &mut sqlx::Transaction<'static, $db>,
                now: chrono::DateTime<chrono::Utc>,
                rejected: &[(&$crate::store::AckApply<'_>, serde_json::Value)],
            ) -> Result<Vec<uuid::Uuid>, $crate::store::StoreError> {
                let mut failed = Vec::new();
                for chunk in rejected.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE erp_export SET status = 'FAILED', error_json = v.column2, updated_at = ",
                    );
                    q.push_bind(now).push(" FROM (");
                    q.push_values(chunk, |mut row, (a, error)| {
                        row.push_bind(a.export.id).push_bind(sqlx::types::Json($crate::store::storable(&error)));
                    });
                    q.push(") AS v WHERE erp_export.id = v.column1 AND erp_export.status = 'SENT' \
                            RETURNING erp_export.id, erp_export.draft_order_id");
                    let rows: Vec<(uuid::Uuid, uuid::Uuid)> =
                        q.build_query_as().fetch_all(&mut **tx).await?;
                    if rows.is_empty() {
                        continue;
                    }
                    let mut d = sqlx::QueryBuilder::<$db>::new("UPDATE draft_order SET status = 'ERROR', updated_at = ");
                    d.push_bind(now).push(" WHERE status = 'PUSHED' AND id IN ");
                    $crate::store::push_list(&mut d, rows.iter().map(|(_, draft)| *draft));
                    d.build().execute(&mut **tx).await?;
                    failed.extend(rows.into_iter().map(|(id, _)| id));
                }
                Ok(failed)
            }

            /// Why a locked draft in `status` cannot be pushed now (its status, or a retry
            /// whose latest export is not FAILED), with the export still live; None when it can.
            async fn push_refusal(
                tx: &mut sqlx::Transaction<'static, $db>,
                push: &$crate::store::NewPush<'_>,
                status: $crate::domain::draft::DraftStatus,
            ) -> Result<Option<$crate::store::PushOutcome>, $crate::store::StoreError> {
                use $crate::store::exports as q;
                let latest_failed = if push.latest_must_be_failed {
                    let latest: Option<$crate::store::rows::ExportRow> =
                        sqlx::query_as(q::LATEST_EXPORT_OF_DRAFT)
                            .bind(push.draft_id)
                            .fetch_optional(&mut **tx)
                            .await?;
                    latest.is_some_and(|l| l.status == "FAILED")
                } else {
                    true
                };
                if push.from.contains(&status) && latest_failed {
                    return Ok(None);
                }
                let live: Option<$crate::store::rows::ExportRow> =
                    sqlx::query_as(q::LIVE_EXPORT_OF_DRAFT)
                        .bind(push.draft_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                Ok(Some($crate::store::PushOutcome::WrongStatus {
                    status,
                    live_export: live.map(TryInto::try_into).transpose()?,
                }))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::ExportStore for $backend {
            fn records_pushes_together(&self) -> bool {
                Self::PUSHES_TOGETHER
            }

            async fn push_drafts_together(
                &self,
                pushes: &[$crate::store::NewPush<'_>],
            ) -> Result<Option<Vec<Option<$crate::domain::export::Export>>>, $crate::store::StoreError>
            {
                if pushes.is_empty() {
                    return Ok(Some(Vec::new()));
                }
                self.push_many(pushes).await
            }

            async fn push_draft(
                &self,
                push: &$crate::store::NewPush<'_>,
            ) -> Result<$crate::store::PushOutcome, $crate::store::StoreError> {
                use $crate::domain::draft::DraftStatus;
                use $crate::store::PushOutcome;
                use $crate::store::exports as q;
                if let Some(export) = self.push_fast(push).await? {
                    return Ok(PushOutcome::Created(export));
                }
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
                let replayed: Option<$crate::store::rows::ExportRow> = match push.idempotency_key {
                    Some(key) => {
                        sqlx::query_as(q::EXPORT_BY_KEY)
                            .bind(push.draft_id)
                            .bind(key)
                            .fetch_optional(&mut *tx)
                            .await?
                    }
                    None => None,
                };
                if let Some(row) = replayed {
                    tx.rollback().await?;
                    return Ok(PushOutcome::Replayed {
                        export: row.try_into()?,
                        draft_status: status,
                    });
                }
                if let Some(refused) = Self::push_refusal(&mut tx, push, status).await? {
                    tx.rollback().await?;
                    return Ok(refused);
                }
                let connection: Option<uuid::Uuid> = sqlx::query_scalar(q::ACTIVE_CONNECTION_ID)
                    .bind(push.org_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(connection) = connection else {
                    tx.rollback().await?;
                    return Ok(PushOutcome::NoActiveConnection);
                };
                let row: $crate::store::rows::ExportRow = sqlx::query_as(q::INSERT_EXPORT)
                    .bind(push.export_id)
                    .bind(push.org_id)
                    .bind(push.draft_id)
                    .bind(connection)
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
                <$db as $crate::store::Queries>::insert_audits(&mut *tx, &[push.audit]).await?;
                tx.commit().await?;
                Ok(PushOutcome::Created(row.try_into()?))
            }

            async fn export(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::domain::export::Export>, $crate::store::StoreError> {
                $crate::store::Queries::find::<$crate::store::rows::ExportRow, _>(
                    &self.pool,
                    $crate::store::exports::EXPORT_BY_ID,
                    &[org_id, id],
                )
                .await
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
                $crate::store::Queries::list_page(
                    &self.pool,
                    $crate::store::exports::LIST_EXPORTS,
                    org_id,
                    status.map(|s| s.as_str()),
                    page,
                    |row: $crate::store::rows::ExportRow| row.try_into(),
                    |e: &$crate::domain::export::Export| e.seq,
                )
                .await
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

            async fn record_archives(
                &self,
                worker: uuid::Uuid,
                archives: &[$crate::store::ArchiveRecord<'_>],
            ) -> Result<Vec<uuid::Uuid>, $crate::store::StoreError> {
                if archives.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "UPDATE erp_export SET export_storage_key = v.column2, \
                     content_sha256 = v.column3, updated_at = ",
                );
                q.push_bind($crate::store::now());
                q.push(" FROM (");
                q.push_values(archives, |mut row, a| {
                    row.push_bind(a.id)
                        .push_bind(a.storage_key.to_owned())
                        .push_bind(a.content_sha256.to_owned());
                });
                q.push(") AS v WHERE erp_export.id = v.column1 AND erp_export.lease_owner = ");
                q.push_bind(worker);
                q.push(" RETURNING erp_export.id");
                Ok(q.build_query_scalar().persistent(false).fetch_all(&self.pool).await?)
            }

            async fn finish_attempts(
                &self,
                worker: uuid::Uuid,
                attempts: &[$crate::store::FinishedAttempt<'_>],
            ) -> Result<Vec<uuid::Uuid>, $crate::store::StoreError> {
                if attempts.is_empty() {
                    return Ok(Vec::new());
                }
                let now = $crate::store::now();
                let $crate::store::exports::Outcomes {
                    sent,
                    retried,
                    failed,
                } = $crate::store::exports::Outcomes::of(attempts);
                let mut tx = self.begin_write().await?;
                let mut recorded: Vec<uuid::Uuid> = Vec::new();
                let mut pushed_drafts = Vec::new();
                let mut errored_drafts = Vec::new();
                // Batch statements are planned for each call (not cached): their best plan
                // depends on the queue's size now.
                if !sent.is_empty() {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE erp_export SET status = 'SENT', dropzone_path = v.column2, \
                         error_json = NULL, lease_owner = NULL, lease_expires_at = NULL, sent_at = ",
                    );
                    q.push_bind(now).push(", updated_at = ").push_bind(now).push(" FROM (");
                    q.push_values(&sent, |mut row, (a, path)| {
                        row.push_bind(a.export.id).push_bind((*path).to_owned());
                    });
                    Self::held_by(&mut q, worker);
                    let rows: Vec<(uuid::Uuid, uuid::Uuid)> =
                        q.build_query_as().persistent(false).fetch_all(&mut *tx).await?;
                    for (id, draft) in rows {
                        recorded.push(id);
                        pushed_drafts.push(draft);
                    }
                }
                if !retried.is_empty() {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE erp_export SET next_attempt_at = v.column2, error_json = v.column3, \
                         attempts = erp_export.attempts - v.column4, \
                         lease_owner = NULL, lease_expires_at = NULL, updated_at = ",
                    );
                    q.push_bind(now).push(" FROM (");
                    q.push_values(&retried, |mut row, (a, next, error, refund)| {
                        row.push_bind(a.export.id)
                            .push_bind(*next)
                            .push_bind(sqlx::types::Json($crate::store::storable(error)))
                            .push_bind(*refund);
                    });
                    Self::held_by(&mut q, worker);
                    let rows: Vec<(uuid::Uuid, uuid::Uuid)> =
                        q.build_query_as().persistent(false).fetch_all(&mut *tx).await?;
                    recorded.extend(rows.into_iter().map(|(id, _)| id));
                }
                for (id, draft) in Self::record_failed(&mut tx, worker, now, &failed).await? {
                    recorded.push(id);
                    errored_drafts.push(draft);
                }
                Self::settle_pushing_drafts(&mut tx, now, &pushed_drafts, &errored_drafts).await?;
                let audits: Vec<_> = attempts
                    .iter()
                    .filter(|a| recorded.contains(&a.export.id))
                    .map(|a| a.audit)
                    .collect();
                <$db as $crate::store::Queries>::insert_audits(&mut *tx, &audits).await?;
                tx.commit().await?;
                Ok(recorded)
            }

            async fn exports_by_file_names(
                &self,
                org_id: uuid::Uuid,
                names: &[String],
            ) -> Result<Vec<$crate::domain::export::Export>, $crate::store::StoreError> {
                let mut out = Vec::with_capacity(names.len());
                for chunk in names.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(concat!(
                        "SELECT ",
                        $crate::store::exports::export_columns!(),
                        " FROM erp_export WHERE org_id = "
                    ));
                    q.push_bind(org_id).push(" AND file_name IN ");
                    $crate::store::push_list(&mut q, chunk.iter().cloned());
                    let rows: Vec<$crate::store::rows::ExportRow> =
                        q.build_query_as().fetch_all(&self.pool).await?;
                    for row in rows {
                        out.push(row.try_into()?);
                    }
                }
                Ok(out)
            }

            async fn apply_acks(
                &self,
                acks: &[$crate::store::AckApply<'_>],
            ) -> Result<Vec<uuid::Uuid>, $crate::store::StoreError> {
                use $crate::domain::ack::AckOutcome;
                if acks.is_empty() {
                    return Ok(Vec::new());
                }
                if let Some(changed) = self.apply_acks_fast(acks).await? {
                    return Ok(changed);
                }
                let now = $crate::store::now();
                let mut tx = self.begin_write().await?;
                let mut changed: Vec<uuid::Uuid> = Vec::new();
                let acked: Vec<_> = acks
                    .iter()
                    .filter_map(|a| match a.outcome {
                        AckOutcome::Acked { erp_order_id, .. } => Some((a, erp_order_id)),
                        _ => None,
                    })
                    .collect();
                let rejected: Vec<_> = acks
                    .iter()
                    .filter_map(|a| a.outcome.error_json().map(|e| (a, e)))
                    .collect();
                for chunk in acked.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE erp_export SET status = 'ACKED', erp_order_id = v.column2, acked_at = ",
                    );
                    q.push_bind(now).push(", updated_at = ").push_bind(now).push(" FROM (");
                    q.push_values(chunk, |mut row, (a, erp)| {
                        row.push_bind(a.export.id).push_bind((*erp).clone());
                    });
                    q.push(") AS v WHERE erp_export.id = v.column1 AND erp_export.status = 'SENT' \
                            RETURNING erp_export.id, erp_export.draft_order_id, erp_export.erp_order_id");
                    let rows: Vec<(uuid::Uuid, uuid::Uuid, Option<String>)> =
                        q.build_query_as().fetch_all(&mut *tx).await?;
                    if rows.is_empty() {
                        continue;
                    }
                    let mut d = sqlx::QueryBuilder::<$db>::new("UPDATE draft_order SET erp_order_id = v.column2, updated_at = ");
                    d.push_bind(now).push(" FROM (");
                    d.push_values(&rows, |mut row, (_, draft, erp)| {
                        row.push_bind(*draft).push_bind(erp.clone());
                    });
                    d.push(") AS v WHERE draft_order.id = v.column1");
                    d.build().execute(&mut *tx).await?;
                    changed.extend(rows.into_iter().map(|(id, _, _)| id));
                }
                changed.extend(Self::record_rejections(&mut tx, now, &rejected).await?);
                let changed_set: std::collections::HashSet<uuid::Uuid> =
                    changed.iter().copied().collect();
                let audits: Vec<_> = acks
                    .iter()
                    .filter(|a| changed_set.contains(&a.export.id))
                    .map(|a| a.audit)
                    .collect();
                for chunk in audits.chunks(500) {
                    <$db as $crate::store::Queries>::insert_audits(&mut *tx, chunk).await?;
                }
                tx.commit().await?;
                Ok(changed)
            }

            async fn acquire_ack_lease(
                &self,
                connection_id: uuid::Uuid,
                owner: uuid::Uuid,
                until: chrono::DateTime<chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let got: Option<uuid::Uuid> =
                    sqlx::query_scalar($crate::store::exports::ACQUIRE_ACK_LEASE)
                        .bind(connection_id)
                        .bind(owner)
                        .bind(until)
                        .bind($crate::store::now())
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(got.is_some())
            }

            async fn release_ack_lease(
                &self,
                connection_id: uuid::Uuid,
                owner: uuid::Uuid,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query($crate::store::exports::RELEASE_ACK_LEASE)
                    .bind(connection_id)
                    .bind(owner)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn queue_depth(&self) -> Result<i64, $crate::store::StoreError> {
                Ok(sqlx::query_scalar($crate::store::exports::QUEUE_DEPTH)
                    .persistent(false)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn next_due_at(
                &self,
            ) -> Result<Option<chrono::DateTime<chrono::Utc>>, $crate::store::StoreError> {
                Ok(sqlx::query_scalar($crate::store::exports::NEXT_DUE)
                    .bind($crate::store::now())
                    .persistent(false)
                    .fetch_optional(&self.pool)
                    .await?)
            }
        }
    };
}
pub(super) use impl_export_store;
