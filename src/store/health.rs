//! Connection health: each connection's circuit breaker, shared by every worker process, and
//! what the health views and gauges count.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::audit::NewAuditEntry;
use crate::domain::delivery::{Circuit, CircuitState, Health};
use crate::domain::export::Export;

/// A circuit to record for a connection.
#[derive(Debug, Clone, Copy)]
pub struct CircuitWrite<'a> {
    /// The connection's org.
    pub org_id: Uuid,
    /// The connection.
    pub connection_id: Uuid,
    /// Its circuit now.
    pub circuit: &'a Circuit,
    /// What becomes of the connection's waiting exports.
    pub queue: QueueChange,
}

/// What a circuit's change does to its connection's waiting exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueChange {
    /// Nothing.
    Keep,
    /// The circuit opened: none is due before the probe. Exports left due would be walked
    /// past by every claim while the connection cannot be tried.
    DeferTo(DateTime<Utc>),
    /// The circuit closed: every one is due now, so the backlog drains at once.
    DueNow(DateTime<Utc>),
}

/// Circuits and health.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// The stored circuits of these connections (a connection without one is closed and clean).
    async fn circuits(&self, connection_ids: &[Uuid])
    -> Result<HashMap<Uuid, Circuit>, StoreError>;
    /// Records circuits (one statement per circuit, one transaction), with audit rows for
    /// openings and closings.
    async fn save_circuits(
        &self,
        circuits: &[CircuitWrite<'_>],
        audits: &[NewAuditEntry],
    ) -> Result<(), StoreError>;
    /// Open circuits whose probe is due (or whose probe's lease ran out) become half-open for
    /// the caller until `probe_until`; their connection ids. Each is taken by one caller only.
    async fn take_probes(
        &self,
        now: DateTime<Utc>,
        probe_until: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError>;
    /// Leases the connection's next PENDING export for a probe (due or not: the circuit, not
    /// the export's schedule, decides when the connection is tried), counting an attempt.
    async fn claim_probe(
        &self,
        connection_id: Uuid,
        worker: Uuid,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Export>, StoreError>;
    /// Closes a connection's circuit by hand and makes its waiting exports due now, with the
    /// audit row; false when the connection is not the org's.
    async fn reset_circuit(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        now: DateTime<Utc>,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError>;
    /// PENDING exports of a connection.
    async fn queued_exports(&self, connection_id: Uuid) -> Result<i64, StoreError>;
    /// Active connections by health (for the gauges).
    async fn health_counts(&self) -> Result<HashMap<Health, i64>, StoreError>;
}

pub(super) const CIRCUIT_COLUMNS: &str = "connection_id, state, consecutive_failures, openings, \
    since, next_probe_at, last_error_code, last_error_message";
pub(super) const UPSERT_CIRCUIT: &str = "INSERT INTO connection_health (connection_id, org_id, \
    state, consecutive_failures, openings, since, next_probe_at, probe_until, last_error_code, \
    last_error_message, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10) \
    ON CONFLICT (connection_id) DO UPDATE SET state = excluded.state, \
    consecutive_failures = excluded.consecutive_failures, openings = excluded.openings, \
    since = excluded.since, next_probe_at = excluded.next_probe_at, probe_until = NULL, \
    last_error_code = excluded.last_error_code, \
    last_error_message = excluded.last_error_message, updated_at = excluded.updated_at";
/// Whether any probe is due (a read, so the usual "none" costs no write lock on SQLite).
pub(super) const PROBE_DUE: &str = "SELECT EXISTS (SELECT 1 FROM connection_health \
    WHERE (state = 'open' AND next_probe_at <= $1) \
       OR (state = 'half_open' AND probe_until <= $1))";
pub(super) const TAKE_PROBES: &str = "UPDATE connection_health SET state = 'half_open', \
    probe_until = $2, updated_at = $1 \
    WHERE (state = 'open' AND next_probe_at <= $1) \
       OR (state = 'half_open' AND probe_until <= $1) \
    RETURNING connection_id";
pub(super) const RESET_CIRCUIT: &str = "UPDATE connection_health SET state = 'closed', \
    consecutive_failures = 0, openings = 0, since = $3, next_probe_at = NULL, \
    probe_until = NULL, updated_at = $3 WHERE connection_id = $2 AND org_id = $1";
pub(super) const CONNECTION_OF_ORG: &str =
    "SELECT id FROM erp_connection WHERE org_id = $1 AND id = $2";
pub(super) const MAKE_QUEUE_DUE: &str = "UPDATE erp_export SET next_attempt_at = $2 \
    WHERE erp_connection_id = $1 AND status = 'PENDING' AND next_attempt_at > $2";
pub(super) const DEFER_QUEUE: &str = "UPDATE erp_export SET next_attempt_at = $2 \
    WHERE erp_connection_id = $1 AND status = 'PENDING' AND next_attempt_at < $2";
pub(super) const QUEUED_EXPORTS: &str =
    "SELECT COUNT(*) FROM erp_export WHERE erp_connection_id = $1 AND status = 'PENDING'";
pub(super) const HEALTH_COUNTS: &str = "SELECT COALESCE(h.state, 'closed'), \
    COALESCE(h.consecutive_failures, 0) > 0, COUNT(*) \
    FROM erp_connection c LEFT JOIN connection_health h ON h.connection_id = c.id \
    WHERE c.status = 'ACTIVE' GROUP BY 1, 2";

/// A stored circuit's row.
#[derive(sqlx::FromRow)]
pub(super) struct CircuitRow {
    connection_id: Uuid,
    state: String,
    consecutive_failures: i32,
    openings: i32,
    since: DateTime<Utc>,
    next_probe_at: Option<DateTime<Utc>>,
    last_error_code: Option<String>,
    last_error_message: Option<String>,
}

impl CircuitRow {
    pub(super) fn into_circuit(self) -> Result<(Uuid, Circuit), StoreError> {
        let state = CircuitState::parse(&self.state)
            .ok_or_else(|| StoreError::Corrupt(format!("circuit state {}", self.state)))?;
        Ok((
            self.connection_id,
            Circuit {
                state,
                consecutive_failures: u32::try_from(self.consecutive_failures).unwrap_or(0),
                openings: u32::try_from(self.openings).unwrap_or(0),
                since: self.since,
                next_probe_at: self.next_probe_at,
                last_error: self.last_error_code.zip(self.last_error_message),
            },
        ))
    }
}

/// The health a stored (state, failing) pair counts as.
pub(super) fn health_of(state: &str, failing: bool) -> Health {
    match CircuitState::parse(state) {
        Some(CircuitState::Open) => Health::Open,
        Some(CircuitState::HalfOpen) => Health::HalfOpen,
        _ if failing => Health::Degraded,
        _ => Health::Healthy,
    }
}
