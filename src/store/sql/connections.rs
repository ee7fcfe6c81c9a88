//! ERP connections and their config versions: [`ConnectionStore`] for the backend whose sqlx
//! database is `Db`, compiled once per backend (see the parent module).

use uuid::Uuid;

use super::Db;
use crate::domain::audit::NewAuditEntry;
use crate::domain::connection::{Connection, ConnectionStatus};
use crate::store::{
    Backend, ConfigUpdate, ConnectionStore, NewConnection, Queries, SqlStore, StoreError,
    connections, now, push_list, rows,
};

#[async_trait::async_trait]
impl ConnectionStore for SqlStore<Db> {
    async fn insert_connection(
        &self,
        new: &NewConnection,
        key_check: &str,
        audit: &NewAuditEntry,
    ) -> Result<Connection, StoreError> {
        use connections as q;
        let now = now();
        let mut tx = self.begin_write().await?;
        sqlx::query(q::RECORD_KEY_CHECK_IF_ABSENT)
            .bind(key_check)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let row: rows::ConnectionRow = sqlx::query_as(q::INSERT_CONNECTION)
            .bind(new.id)
            .bind(new.org_id)
            .bind(&new.connector_type)
            .bind(&new.config_encrypted)
            .bind(new.last_test_at)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        Db::insert_audits(&mut *tx, &[audit]).await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn active_connection(&self, org_id: Uuid) -> Result<Option<Connection>, StoreError> {
        Db::find::<rows::ConnectionRow, _>(&self.pool, connections::ACTIVE_CONNECTION, &[org_id])
            .await
    }

    async fn connection_by_id(
        &self,
        org_id: Uuid,
        id: Uuid,
    ) -> Result<Option<Connection>, StoreError> {
        Db::find::<rows::ConnectionRow, _>(&self.pool, connections::CONNECTION_BY_ID, &[org_id, id])
            .await
    }

    async fn list_connections(&self, org_id: Uuid) -> Result<Vec<Connection>, StoreError> {
        let rows: Vec<rows::ConnectionRow> = sqlx::query_as(connections::LIST_CONNECTIONS)
            .bind(org_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn connections_by_ids(&self, ids: &[Uuid]) -> Result<Vec<Connection>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = sqlx::QueryBuilder::new(
            "SELECT id, org_id, connector_type, config_encrypted, config_version, status, \
             last_test_at, created_at, updated_at FROM erp_connection WHERE id IN ",
        );
        push_list(&mut q, ids.iter().copied());
        let rows: Vec<rows::ConnectionRow> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn active_connections(&self) -> Result<Vec<Connection>, StoreError> {
        let rows: Vec<rows::ConnectionRow> = sqlx::query_as(connections::ACTIVE_CONNECTIONS)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn update_connection_config(
        &self,
        update: &ConfigUpdate<'_>,
        audit: Option<&NewAuditEntry>,
    ) -> Result<Option<Connection>, StoreError> {
        use connections as q;
        let now = now();
        let mut tx = self.begin_write().await?;
        let row: Option<rows::ConnectionRow> = sqlx::query_as(q::UPDATE_CONNECTION_CONFIG)
            .bind(update.org_id)
            .bind(update.id)
            .bind(update.expected_version)
            .bind(update.config_encrypted)
            .bind(update.last_test_at)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query(q::RECORD_KEY_CHECK_IF_ABSENT)
            .bind(update.key_check)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if let Some(audit) = audit {
            Db::insert_audits(&mut *tx, &[audit]).await?;
        }
        tx.commit().await?;
        row.try_into().map(Some)
    }

    async fn record_connection_test(
        &self,
        org_id: Uuid,
        id: Option<Uuid>,
        passed_at: Option<chrono::DateTime<chrono::Utc>>,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if let (Some(id), Some(at)) = (id, passed_at) {
            sqlx::query(connections::RECORD_CONNECTION_TEST)
                .bind(org_id)
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        Db::insert_audits(&mut *tx, &[audit]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_connection_status(
        &self,
        org_id: Uuid,
        id: Uuid,
        status: ConnectionStatus,
        audit: &NewAuditEntry,
    ) -> Result<Connection, StoreError> {
        let update = sqlx::query_as::<_, rows::ConnectionRow>(connections::SET_CONNECTION_STATUS)
            .bind(org_id)
            .bind(id)
            .bind(status.as_str())
            .bind(now());
        self.update_one_audited(update, audit).await
    }

    async fn all_connection_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(connections::ALL_CONNECTION_IDS)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn connection_by_id_any_org(&self, id: Uuid) -> Result<Option<Connection>, StoreError> {
        Db::find::<rows::ConnectionRow, _>(&self.pool, connections::CONNECTION_BY_ID_ANY_ORG, &[id])
            .await
    }

    async fn replace_connection_blob(
        &self,
        id: Uuid,
        old: &[u8],
        new: &[u8],
        audit: &NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(connections::REPLACE_CONNECTION_BLOB)
            .bind(id)
            .bind(old)
            .bind(new)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        Db::insert_audits(&mut *tx, &[audit]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn key_check(&self) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(connections::KEY_CHECK)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn set_key_check(&self, value: &str) -> Result<(), StoreError> {
        sqlx::query(connections::SET_KEY_CHECK)
            .bind(value)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
