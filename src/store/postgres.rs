//! PostgreSQL backend: production, and the one several `orderflow` processes share. Claims
//! lock their candidates with `FOR UPDATE SKIP LOCKED`; a push notifies the channel
//! `orderflow_exports` so every worker process wakes at once.

use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener};

use super::exports::{claim_probe, export_columns};
use super::{Backend, ClaimRequest, StoreError};
use crate::domain::export::Export;

/// The channel pushes notify.
const EXPORTS_CHANNEL: &str = "orderflow_exports";

/// The PostgreSQL implementation of [`super::Store`].
pub type PostgresStore = super::SqlStore<sqlx::Postgres>;

/// Reads up to 4×limit due candidates (skipping connections whose circuit is not closed),
/// keeps at most each connection's allowance (`per_connection` for those not listed), and
/// leases the first `limit` of those round-robin across connections, locking only those (`SKIP LOCKED`: a row another
/// worker holds is left to it; one it leased meanwhile fails the re-checked lease test).
/// Locking every candidate instead wrote a lock into up to four times as many rows as a
/// claim takes — most of a claim's cost.
const CLAIM: &str = concat!(
    "WITH candidates AS (
        SELECT id, erp_connection_id, next_attempt_at, seq FROM erp_export
        WHERE status = 'PENDING' AND next_attempt_at <= $1
          AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
          AND NOT (erp_connection_id = ANY($2))
          AND NOT EXISTS (SELECT 1 FROM connection_health h
              WHERE h.connection_id = erp_export.erp_connection_id AND h.state <> 'closed')
        ORDER BY next_attempt_at, seq LIMIT $3
    ), ranked AS (
        SELECT id, erp_connection_id, next_attempt_at, seq, row_number() OVER (
            PARTITION BY erp_connection_id ORDER BY next_attempt_at, seq) AS rn
        FROM candidates
    ), allowed AS (
        SELECT r.id, r.rn, r.next_attempt_at, r.seq FROM ranked r
        LEFT JOIN UNNEST($8::uuid[], $9::int8[]) AS a(connection_id, allowance)
            ON a.connection_id = r.erp_connection_id
        WHERE r.rn <= COALESCE(a.allowance, $4)
    ), locked AS (
        -- An id array, not a join: a join to the chosen rows was planned as a hash join
        -- over a scan of the whole table. Round-robin: every connection's first export
        -- before any connection's second.
        SELECT e.id AS locked_id FROM erp_export e
        WHERE e.id = ANY(ARRAY(
                SELECT id FROM allowed ORDER BY rn, next_attempt_at, seq LIMIT $5))
          AND e.status = 'PENDING'
          AND (e.lease_expires_at IS NULL OR e.lease_expires_at <= $1)
        FOR UPDATE OF e SKIP LOCKED
    )
    UPDATE erp_export SET lease_owner = $6, lease_expires_at = $7,
        attempts = erp_export.attempts + 1, updated_at = $1
    FROM locked WHERE erp_export.id = locked.locked_id
    RETURNING ",
    export_columns!()
);

/// Plain pushes in one statement (no BEGIN/COMMIT round trips, one commit for many): lock
/// the drafts in id order, find each org's active connection, insert each export unless its
/// key was used, set the drafts PUSHING, write the audit rows. A push that creates nothing
/// (wrong status, a race, no connection) is left to the general path, which says why.
const PUSH_MANY: &str = concat!(
    "WITH p AS (
        SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
            $6::timestamptz[], $7::uuid[], $8::uuid[], $9::text[], $10::text[], $11::text[],
            $12::text[], $13::jsonb[])
        AS p(org_id, draft_id, export_id, file_name, idempotency_key, at, audit_id,
            actor_user_id, actor, action, entity_type, entity_id, details)
    ), d AS (
        SELECT p.*, dr.status,
            (SELECT c.id FROM erp_connection c WHERE c.org_id = dr.org_id AND c.status = 'ACTIVE')
                AS connection_id
        FROM p JOIN draft_order dr ON dr.id = p.draft_id AND dr.org_id = p.org_id
        ORDER BY dr.id
        FOR UPDATE OF dr
    ), ins AS (
        INSERT INTO erp_export (id, org_id, draft_order_id, erp_connection_id, status, file_name,
            attempts, idempotency_key, next_attempt_at, created_at, updated_at)
        SELECT d.export_id, d.org_id, d.draft_id, d.connection_id, 'PENDING', d.file_name, 0,
            d.idempotency_key, d.at, d.at, d.at FROM d
        WHERE d.connection_id IS NOT NULL AND d.status = 'APPROVED'
          AND (d.idempotency_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM erp_export k
              WHERE k.draft_order_id = d.draft_id AND k.idempotency_key = d.idempotency_key))
        ON CONFLICT DO NOTHING
        RETURNING ",
    export_columns!(),
    "
    ), upd AS (
        UPDATE draft_order SET status = 'PUSHING', updated_at = ins.created_at
        FROM ins WHERE draft_order.id = ins.draft_order_id
    ), aud AS (
        INSERT INTO audit_log (id, org_id, actor_user_id, actor, action, entity_type, entity_id,
            details, created_at)
        SELECT d.audit_id, d.org_id, d.actor_user_id, d.actor, d.action, d.entity_type,
            d.entity_id, d.details, d.at
        FROM d JOIN ins ON ins.id = d.export_id
    )
    SELECT ",
    export_columns!(),
    " FROM ins"
);

/// Acknowledgements applied in one statement from parallel arrays (no 500-row chunks, one
/// join): SENT exports become ACKED or FAILED, their drafts get the ERP's order number or
/// ERROR, and each changed export gets its audit row; the changed ids come back.
const APPLY_ACKS: &str = "WITH v AS (
        SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::uuid[],
            $6::uuid[], $7::text[], $8::text[], $9::text[], $10::jsonb[])
        AS v(export_id, outcome, erp_order_id, error_json, audit_id, actor_user_id, actor,
            action, entity_type, details)
    ), e AS (
        UPDATE erp_export x SET status = v.outcome,
            erp_order_id = CASE WHEN v.outcome = 'ACKED' THEN v.erp_order_id ELSE x.erp_order_id END,
            acked_at = CASE WHEN v.outcome = 'ACKED' THEN $11 ELSE x.acked_at END,
            error_json = CASE WHEN v.outcome = 'FAILED' THEN v.error_json ELSE x.error_json END,
            updated_at = $11
        FROM v WHERE x.id = v.export_id AND x.status = 'SENT'
        RETURNING x.id, x.org_id, x.draft_order_id, v.outcome, v.erp_order_id
    ), d AS (
        UPDATE draft_order dr SET
            erp_order_id = CASE WHEN e.outcome = 'ACKED' THEN e.erp_order_id ELSE dr.erp_order_id END,
            status = CASE WHEN e.outcome = 'FAILED' AND dr.status = 'PUSHED' THEN 'ERROR'
                ELSE dr.status END,
            updated_at = $11
        FROM e WHERE dr.id = e.draft_order_id
    ), a AS (
        INSERT INTO audit_log (id, org_id, actor_user_id, actor, action, entity_type, entity_id,
            details, created_at)
        SELECT v.audit_id, e.org_id, v.actor_user_id, v.actor, v.action, v.entity_type,
            e.id::text, v.details, $11
        FROM e JOIN v ON v.export_id = e.id
    )
    SELECT id FROM e";

/// Session settings, each applied only where no DBA set one (server, database, role or
/// `options` in `DATABASE_URL`):
///
/// - `random_page_cost` 1.1: the default 4 is a spinning disk's, and our working set (the
///   queue, recent drafts) is in memory. With 4, a batch of 64 updates by id was planned as a
///   scan of the whole table up to ~10,000 rows — a young database's size.
/// - `idle_in_transaction_session_timeout` 60 s: no transaction of ours waits on anything
///   but the database, so one idle that long was abandoned; the server ends the session, so
///   it can never hold locks or swallow later statements however it was abandoned.
const SESSION_SETTINGS: &str = "SELECT set_config(s.name, v.value, false)
    FROM (VALUES ('random_page_cost', '1.1'), ('idle_in_transaction_session_timeout', '60s'))
        AS v(name, value)
    JOIN pg_settings s ON s.name = v.name
    WHERE s.source = 'default'";

impl PostgresStore {
    /// Connects to `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad DATABASE_URL: {e}")))?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options (tests use this to pin a schema via `search_path`).
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = super::pool_options::<sqlx::Postgres>(16)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query(SESSION_SETTINGS).execute(conn).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

impl Backend for PostgresStore {
    type Db = sqlx::Postgres;

    const CLAIM_PROBE: &'static str = claim_probe!("FOR UPDATE SKIP LOCKED");
    const MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");
    /// Plain pushes are recorded together ([`PUSH_MANY`]).
    const PUSHES_TOGETHER: bool = true;
    /// Serialises pushes of one draft (a second waits, then sees the first's export).
    const LOCK_DRAFT: &'static str =
        "SELECT status FROM draft_order WHERE org_id = $1 AND id = $2 FOR UPDATE";

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// One `NOTIFY` on its own, after pushes committed (never inside a push: PostgreSQL
    /// serialises the commits of notifying transactions on one lock, WAL flush included,
    /// which capped pushes at about one per flush; `workers/announce.rs` coalesces).
    async fn announce(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(EXPORTS_CHANNEL)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The common push (from APPROVED) as one statement; None when it created nothing.
    async fn push_fast(&self, push: &super::NewPush<'_>) -> Result<Option<Export>, StoreError> {
        let plain = push.from == [crate::domain::draft::DraftStatus::Approved]
            && !push.latest_must_be_failed;
        if !plain {
            return Ok(None);
        }
        Ok(self
            .push_many(std::slice::from_ref(push))
            .await?
            .and_then(|mut created| created.pop().flatten()))
    }

    /// Plain pushes of distinct drafts in one statement ([`PUSH_MANY`]): the export created
    /// for each push, in order (None where the general path must answer).
    async fn push_many(
        &self,
        pushes: &[super::NewPush<'_>],
    ) -> Result<Option<Vec<Option<Export>>>, StoreError> {
        let n = pushes.len();
        let mut orgs = Vec::with_capacity(n);
        let mut drafts = Vec::with_capacity(n);
        let mut exports = Vec::with_capacity(n);
        let mut files = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let mut ats = Vec::with_capacity(n);
        let mut audit_ids = Vec::with_capacity(n);
        let mut actor_ids = Vec::with_capacity(n);
        let mut actors = Vec::with_capacity(n);
        let mut actions = Vec::with_capacity(n);
        let mut entity_types = Vec::with_capacity(n);
        let mut entity_ids = Vec::with_capacity(n);
        let mut details = Vec::with_capacity(n);
        for p in pushes {
            orgs.push(p.org_id);
            drafts.push(p.draft_id);
            exports.push(p.export_id);
            files.push(p.file_name);
            keys.push(p.idempotency_key);
            ats.push(p.now);
            audit_ids.push(uuid::Uuid::new_v4());
            actor_ids.push(p.audit.actor.user_id);
            actors.push(p.audit.actor.label.as_str());
            actions.push(p.audit.action);
            entity_types.push(p.audit.entity_type);
            entity_ids.push(p.audit.entity_id.as_deref());
            details.push(super::storable(&p.audit.details));
        }
        let rows: Vec<super::rows::ExportRow> = sqlx::query_as(PUSH_MANY)
            .bind(orgs)
            .bind(drafts)
            .bind(exports)
            .bind(files)
            .bind(keys)
            .bind(ats)
            .bind(audit_ids)
            .bind(actor_ids)
            .bind(actors)
            .bind(actions)
            .bind(entity_types)
            .bind(entity_ids)
            .bind(details)
            .fetch_all(&self.pool)
            .await?;
        let mut created: std::collections::HashMap<uuid::Uuid, Export> = rows
            .into_iter()
            .map(|row| Export::try_from(row).map(|e| (e.id, e)))
            .collect::<Result<_, _>>()?;
        Ok(Some(
            pushes
                .iter()
                .map(|p| created.remove(&p.export_id))
                .collect(),
        ))
    }

    /// Acknowledgements in one statement (see [`APPLY_ACKS`]).
    async fn apply_acks_fast(
        &self,
        acks: &[super::AckApply<'_>],
    ) -> Result<Option<Vec<uuid::Uuid>>, StoreError> {
        use crate::domain::ack::AckOutcome;
        let n = acks.len();
        let mut export_ids = Vec::with_capacity(n);
        let mut outcomes = Vec::with_capacity(n);
        let mut erp_ids: Vec<Option<String>> = Vec::with_capacity(n);
        let mut errors: Vec<Option<serde_json::Value>> = Vec::with_capacity(n);
        let mut audit_ids = Vec::with_capacity(n);
        let mut actor_ids: Vec<Option<uuid::Uuid>> = Vec::with_capacity(n);
        let mut actors = Vec::with_capacity(n);
        let mut actions = Vec::with_capacity(n);
        let mut entity_types = Vec::with_capacity(n);
        let mut details = Vec::with_capacity(n);
        for a in acks {
            export_ids.push(a.export.id);
            match a.outcome {
                AckOutcome::Acked { erp_order_id, .. } => {
                    outcomes.push("ACKED");
                    erp_ids.push(erp_order_id.clone());
                    errors.push(None);
                }
                AckOutcome::Rejected { .. } => {
                    outcomes.push("FAILED");
                    erp_ids.push(None);
                    errors.push(a.outcome.error_json().as_ref().map(super::storable));
                }
            }
            audit_ids.push(uuid::Uuid::new_v4());
            actor_ids.push(a.audit.actor.user_id);
            actors.push(a.audit.actor.label.as_str());
            actions.push(a.audit.action);
            entity_types.push(a.audit.entity_type);
            details.push(super::storable(&a.audit.details));
        }
        let changed: Vec<uuid::Uuid> = sqlx::query_scalar(APPLY_ACKS)
            .bind(export_ids)
            .bind(outcomes)
            .bind(erp_ids)
            .bind(errors)
            .bind(audit_ids)
            .bind(actor_ids)
            .bind(actors)
            .bind(actions)
            .bind(entity_types)
            .bind(details)
            .bind(super::now())
            .fetch_all(&self.pool)
            .await?;
        Ok(Some(changed))
    }

    async fn listen_exports(
        &self,
    ) -> Result<Option<futures::stream::BoxStream<'static, ()>>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(EXPORTS_CHANNEL).await?;
        // A lost connection reconnects inside the listener; an error item just means "look".
        Ok(Some(listener.into_stream().map(|_| ()).boxed()))
    }

    async fn claim(&self, claim: &ClaimRequest<'_>) -> Result<Vec<Export>, StoreError> {
        let rows: Vec<super::rows::ExportRow> = sqlx::query_as(CLAIM)
            .bind(claim.now)
            .bind(claim.exclude_connections)
            .bind(i64::from(claim.limit) * 4)
            .bind(i64::from(claim.per_connection))
            .bind(i64::from(claim.limit))
            .bind(claim.worker)
            .bind(claim.lease_until)
            .bind(
                claim
                    .allowances
                    .iter()
                    .map(|(id, _)| *id)
                    .collect::<Vec<_>>(),
            )
            .bind(
                claim
                    .allowances
                    .iter()
                    .map(|(_, n)| i64::from(*n))
                    .collect::<Vec<_>>(),
            )
            // Planned for each claim: a plan cached while the queue was short would keep
            // scanning however long it grows.
            .persistent(false)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}

/// The sqlx database the shared implementations in `sql/` are compiled for here.
type Db = sqlx::Postgres;

#[path = "sql/mod.rs"]
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend on purpose, as a generic impl would be"
)]
mod sql;
