//! Each connection's circuit and queue figures: [`HealthStore`] for the backend whose sqlx database
//! is `Db`, compiled once per backend (see the parent module).

use uuid::Uuid;

use super::Db;
use crate::domain::audit::NewAuditEntry;
use crate::domain::delivery::{Circuit, Health};
use crate::domain::export::Export;
use crate::store::{
    Backend, CircuitWrite, HealthStore, Queries, QueueChange, SqlStore, StoreError, health, now,
    push_list, rows,
};

#[async_trait::async_trait]
impl HealthStore for SqlStore<Db> {
    async fn circuits(
        &self,
        connection_ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, Circuit>, StoreError> {
        use health as h;
        let mut out = std::collections::HashMap::new();
        for chunk in connection_ids.chunks(500) {
            let mut q = sqlx::QueryBuilder::<Db>::new("SELECT ");
            q.push(h::CIRCUIT_COLUMNS)
                .push(" FROM connection_health WHERE connection_id IN ");
            push_list(&mut q, chunk.iter().copied());
            let rows: Vec<h::CircuitRow> = q.build_query_as().fetch_all(&self.pool).await?;
            for row in rows {
                let (id, circuit) = row.into_circuit()?;
                out.insert(id, circuit);
            }
        }
        Ok(out)
    }

    async fn save_circuits(
        &self,
        circuits: &[CircuitWrite<'_>],
        audits: &[NewAuditEntry],
    ) -> Result<(), StoreError> {
        if circuits.is_empty() {
            return Ok(());
        }
        let now = now();
        let mut tx = self.begin_write().await?;
        for w in circuits {
            let c = w.circuit;
            let (code, message) = match &c.last_error {
                Some((code, message)) => (Some(code.as_str()), Some(message.as_str())),
                None => (None, None),
            };
            sqlx::query(health::UPSERT_CIRCUIT)
                .bind(w.connection_id)
                .bind(w.org_id)
                .bind(c.state.as_str())
                .bind(i32::try_from(c.consecutive_failures).unwrap_or(i32::MAX))
                .bind(i32::try_from(c.openings).unwrap_or(i32::MAX))
                .bind(c.since)
                .bind(c.next_probe_at)
                .bind(code)
                .bind(message)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let (sql, at) = match w.queue {
                QueueChange::Keep => continue,
                QueueChange::DeferTo(at) => (health::DEFER_QUEUE, at),
                QueueChange::DueNow(at) => (health::MAKE_QUEUE_DUE, at),
            };
            sqlx::query(sql)
                .bind(w.connection_id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        let audits: Vec<_> = audits.iter().collect();
        Db::insert_audits(&mut *tx, &audits).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_probes(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        probe_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let due: bool = sqlx::query_scalar(health::PROBE_DUE)
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        if !due {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(health::TAKE_PROBES)
            .bind(now)
            .bind(probe_until)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn claim_probe(
        &self,
        connection_id: Uuid,
        worker: Uuid,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Export>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: Option<rows::ExportRow> = sqlx::query_as(Self::CLAIM_PROBE)
            .bind(connection_id)
            .bind(worker)
            .bind(lease_until)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn reset_circuit(
        &self,
        org_id: Uuid,
        connection_id: Uuid,
        now: chrono::DateTime<chrono::Utc>,
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        use health as h;
        let mut tx = self.begin_write().await?;
        let ours: Option<Uuid> = sqlx::query_scalar(h::CONNECTION_OF_ORG)
            .bind(org_id)
            .bind(connection_id)
            .fetch_optional(&mut *tx)
            .await?;
        if ours.is_none() {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(h::RESET_CIRCUIT)
            .bind(org_id)
            .bind(connection_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(h::MAKE_QUEUE_DUE)
            .bind(connection_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        Db::insert_audits(&mut *tx, &[audit]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn queued_exports(&self, connection_id: Uuid) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(health::QUEUED_EXPORTS)
            .bind(connection_id)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn health_counts(&self) -> Result<std::collections::HashMap<Health, i64>, StoreError> {
        let rows: Vec<(String, bool, i64)> = sqlx::query_as(health::HEALTH_COUNTS)
            .fetch_all(&self.pool)
            .await?;
        let mut out = std::collections::HashMap::new();
        for (state, failing, n) in rows {
            *out.entry(health::health_of(&state, failing)).or_insert(0) += n;
        }
        Ok(out)
    }
}
