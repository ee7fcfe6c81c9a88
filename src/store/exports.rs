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

/// A probe's lease (connection, owner, until, now): the connection's next PENDING export, due
/// or not (the circuit decides when the connection is tried), whose lease is free. `$lock` is
/// how the backend keeps two workers from picking the same row: PostgreSQL locks it (`FOR
/// UPDATE SKIP LOCKED`); SQLite's one writer needs nothing.
macro_rules! claim_probe {
    ($lock:literal) => {
        concat!(
            "UPDATE erp_export SET lease_owner = $2, lease_expires_at = $3, attempts = attempts + 1,
        updated_at = $4
    WHERE id = (SELECT id FROM erp_export
        WHERE erp_connection_id = $1 AND status = 'PENDING'
          AND (lease_expires_at IS NULL OR lease_expires_at <= $4)
        ORDER BY next_attempt_at, seq LIMIT 1 ",
            $lock,
            ")
    RETURNING ",
            export_columns!()
        )
    };
}
pub(super) use claim_probe;

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
