//! The SQL both backends share. sqlx accepts `$n` placeholders on SQLite too, and every type we
//! bind (UUID, timestamps, JSON, bytes) has an encoding on both, so each query is written once.
//! [`impl_store!`] expands the same method bodies for each backend's pool type; a backend only
//! supplies its pool, its migrations and anything genuinely different.

pub(super) const INSERT_ORG: &str = "INSERT INTO org (id, slug, name, created_at) VALUES ($1, $2, $3, $4) \
     RETURNING id, slug, name, created_at";
pub(super) const ORG_BY_SLUG: &str = "SELECT id, slug, name, created_at FROM org WHERE slug = $1";
pub(super) const ORG_BY_ID: &str = "SELECT id, slug, name, created_at FROM org WHERE id = $1";

pub(super) const INSERT_USER: &str = "INSERT INTO app_user \
    (id, org_id, email, password_hash, role, disabled, created_at) \
    VALUES ($1, $2, $3, $4, $5, FALSE, $6) \
    RETURNING id, org_id, email, password_hash, role, disabled, created_at";
pub(super) const USER_BY_EMAIL: &str = "SELECT id, org_id, email, password_hash, role, disabled, \
    created_at FROM app_user WHERE org_id = $1 AND email = $2";
pub(super) const USER_BY_ID: &str = "SELECT id, org_id, email, password_hash, role, disabled, \
    created_at FROM app_user WHERE org_id = $1 AND id = $2";
pub(super) const SET_USER_DISABLED: &str = "UPDATE app_user SET disabled = $3 \
    WHERE org_id = $1 AND email = $2 \
    RETURNING id, org_id, email, password_hash, role, disabled, created_at";

pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit_log \
    (id, org_id, actor_user_id, actor, action, entity_type, entity_id, details, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub(super) const LIST_AUDIT: &str = "SELECT seq, id, org_id, actor_user_id, actor, action, \
    entity_type, entity_id, details, created_at FROM audit_log \
    WHERE org_id = $1 AND ($2 IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3";

pub(super) const INSERT_CONNECTION: &str = "INSERT INTO erp_connection \
    (id, org_id, connector_type, config_encrypted, config_version, status, last_test_at, \
    created_at, updated_at) VALUES ($1, $2, $3, $4, 1, 'ACTIVE', $5, $6, $6) \
    RETURNING id, org_id, connector_type, config_encrypted, config_version, status, \
    last_test_at, created_at, updated_at";
pub(super) const ACTIVE_CONNECTION: &str = "SELECT id, org_id, connector_type, \
    config_encrypted, config_version, status, last_test_at, created_at, updated_at \
    FROM erp_connection WHERE org_id = $1 AND status = 'ACTIVE'";
pub(super) const CONNECTION_BY_ID: &str = "SELECT id, org_id, connector_type, \
    config_encrypted, config_version, status, last_test_at, created_at, updated_at \
    FROM erp_connection WHERE org_id = $1 AND id = $2";
pub(super) const LIST_CONNECTIONS: &str = "SELECT id, org_id, connector_type, \
    config_encrypted, config_version, status, last_test_at, created_at, updated_at \
    FROM erp_connection WHERE org_id = $1 ORDER BY created_at, id";
pub(super) const UPDATE_CONNECTION_CONFIG: &str = "UPDATE erp_connection \
    SET config_encrypted = $4, config_version = config_version + 1, \
    last_test_at = COALESCE($5, last_test_at), updated_at = $6 \
    WHERE org_id = $1 AND id = $2 AND config_version = $3 AND status = 'ACTIVE' \
    RETURNING id, org_id, connector_type, config_encrypted, config_version, status, \
    last_test_at, created_at, updated_at";
pub(super) const RECORD_CONNECTION_TEST: &str =
    "UPDATE erp_connection SET last_test_at = $3 WHERE org_id = $1 AND id = $2";
pub(super) const SET_CONNECTION_STATUS: &str = "UPDATE erp_connection \
    SET status = $3, updated_at = $4 WHERE org_id = $1 AND id = $2 \
    RETURNING id, org_id, connector_type, config_encrypted, config_version, status, \
    last_test_at, created_at, updated_at";
pub(super) const ALL_CONNECTION_IDS: &str = "SELECT id FROM erp_connection ORDER BY created_at, id";
pub(super) const CONNECTION_BY_ID_ANY_ORG: &str = "SELECT id, org_id, connector_type, \
    config_encrypted, config_version, status, last_test_at, created_at, updated_at \
    FROM erp_connection WHERE id = $1";
pub(super) const REPLACE_CONNECTION_BLOB: &str = "UPDATE erp_connection \
    SET config_encrypted = $3 WHERE id = $1 AND config_encrypted = $2";

pub(super) const COUNT_APPLIED_MIGRATIONS: &str =
    "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";

/// Implements [`super::Store`] for a backend type with a `pool` field and a `MIGRATOR` const.
macro_rules! impl_store {
    ($backend:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $backend {
            async fn migrate(&self) -> Result<(), StoreError> {
                Self::MIGRATOR.run(&self.pool).await?;
                Ok(())
            }

            async fn is_ready(&self) -> Result<bool, StoreError> {
                let applied: Result<i64, sqlx::Error> =
                    sqlx::query_scalar(sql::COUNT_APPLIED_MIGRATIONS)
                        .fetch_one(&self.pool)
                        .await;
                match applied {
                    Ok(n) => Ok(n >= Self::MIGRATOR.iter().count() as i64),
                    // No migrations table yet: reachable but not migrated.
                    Err(sqlx::Error::Database(_)) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }

            async fn close(&self) {
                self.pool.close().await;
            }

            async fn create_org(&self, slug: &str, name: &str) -> Result<Org, StoreError> {
                let row: OrgRow = sqlx::query_as(sql::INSERT_ORG)
                    .bind(Uuid::new_v4())
                    .bind(slug)
                    .bind(name)
                    .bind(store::now())
                    .fetch_one(&self.pool)
                    .await?;
                row.try_into()
            }

            async fn org_by_slug(&self, slug: &str) -> Result<Option<Org>, StoreError> {
                let row: Option<OrgRow> = sqlx::query_as(sql::ORG_BY_SLUG)
                    .bind(slug)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn org_by_id(&self, org_id: Uuid) -> Result<Option<Org>, StoreError> {
                let row: Option<OrgRow> = sqlx::query_as(sql::ORG_BY_ID)
                    .bind(org_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn create_user(
                &self,
                org_id: Uuid,
                email: &Email,
                password_hash: &str,
                role: Role,
            ) -> Result<User, StoreError> {
                let row: UserRow = sqlx::query_as(sql::INSERT_USER)
                    .bind(Uuid::new_v4())
                    .bind(org_id)
                    .bind(email.as_str())
                    .bind(password_hash)
                    .bind(role.as_str())
                    .bind(store::now())
                    .fetch_one(&self.pool)
                    .await?;
                row.try_into()
            }

            async fn user_by_email(
                &self,
                org_id: Uuid,
                email: &Email,
            ) -> Result<Option<UserWithHash>, StoreError> {
                let row: Option<UserRow> = sqlx::query_as(sql::USER_BY_EMAIL)
                    .bind(org_id)
                    .bind(email.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn user_by_id(
                &self,
                org_id: Uuid,
                user_id: Uuid,
            ) -> Result<Option<User>, StoreError> {
                let row: Option<UserRow> = sqlx::query_as(sql::USER_BY_ID)
                    .bind(org_id)
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn set_user_disabled(
                &self,
                org_id: Uuid,
                email: &Email,
                disabled: bool,
            ) -> Result<User, StoreError> {
                let row: UserRow = sqlx::query_as(sql::SET_USER_DISABLED)
                    .bind(org_id)
                    .bind(email.as_str())
                    .bind(disabled)
                    .fetch_one(&self.pool)
                    .await?;
                row.try_into()
            }

            async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
                sqlx::query(sql::INSERT_AUDIT)
                    .bind(Uuid::new_v4())
                    .bind(entry.org_id)
                    .bind(entry.actor.user_id)
                    .bind(&entry.actor.label)
                    .bind(entry.action)
                    .bind(entry.entity_type)
                    .bind(entry.entity_id.as_deref())
                    .bind(sqlx::types::Json(&entry.details))
                    .bind(store::now())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_audit(
                &self,
                org_id: Uuid,
                page: PageRequest,
            ) -> Result<Page<AuditEntry>, StoreError> {
                // One extra row tells whether another page follows.
                let rows: Vec<AuditRow> = sqlx::query_as(sql::LIST_AUDIT)
                    .bind(org_id)
                    .bind(page.before_seq)
                    .bind(i64::from(page.limit) + 1)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(store::paginate(
                    rows.into_iter().map(AuditEntry::from).collect(),
                    page,
                    |e| e.seq,
                ))
            }

            async fn insert_connection(
                &self,
                new: &NewConnection,
            ) -> Result<Connection, StoreError> {
                let row: ConnectionRow = sqlx::query_as(sql::INSERT_CONNECTION)
                    .bind(new.id)
                    .bind(new.org_id)
                    .bind(&new.connector_type)
                    .bind(&new.config_encrypted)
                    .bind(new.last_test_at)
                    .bind(store::now())
                    .fetch_one(&self.pool)
                    .await?;
                row.try_into()
            }

            async fn active_connection(
                &self,
                org_id: Uuid,
            ) -> Result<Option<Connection>, StoreError> {
                let row: Option<ConnectionRow> = sqlx::query_as(sql::ACTIVE_CONNECTION)
                    .bind(org_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn connection_by_id(
                &self,
                org_id: Uuid,
                id: Uuid,
            ) -> Result<Option<Connection>, StoreError> {
                let row: Option<ConnectionRow> = sqlx::query_as(sql::CONNECTION_BY_ID)
                    .bind(org_id)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn list_connections(&self, org_id: Uuid) -> Result<Vec<Connection>, StoreError> {
                let rows: Vec<ConnectionRow> = sqlx::query_as(sql::LIST_CONNECTIONS)
                    .bind(org_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn update_connection_config(
                &self,
                org_id: Uuid,
                id: Uuid,
                expected_version: i64,
                config_encrypted: &[u8],
                last_test_at: Option<DateTime<Utc>>,
            ) -> Result<Option<Connection>, StoreError> {
                let row: Option<ConnectionRow> = sqlx::query_as(sql::UPDATE_CONNECTION_CONFIG)
                    .bind(org_id)
                    .bind(id)
                    .bind(expected_version)
                    .bind(config_encrypted)
                    .bind(last_test_at)
                    .bind(store::now())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn record_connection_test(
                &self,
                org_id: Uuid,
                id: Uuid,
                at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(sql::RECORD_CONNECTION_TEST)
                    .bind(org_id)
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn set_connection_status(
                &self,
                org_id: Uuid,
                id: Uuid,
                status: ConnectionStatus,
            ) -> Result<Connection, StoreError> {
                let row: ConnectionRow = sqlx::query_as(sql::SET_CONNECTION_STATUS)
                    .bind(org_id)
                    .bind(id)
                    .bind(status.as_str())
                    .bind(store::now())
                    .fetch_one(&self.pool)
                    .await?;
                row.try_into()
            }

            async fn all_connection_ids(&self) -> Result<Vec<Uuid>, StoreError> {
                Ok(sqlx::query_scalar(sql::ALL_CONNECTION_IDS)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn connection_by_id_any_org(
                &self,
                id: Uuid,
            ) -> Result<Option<Connection>, StoreError> {
                let row: Option<ConnectionRow> = sqlx::query_as(sql::CONNECTION_BY_ID_ANY_ORG)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn replace_connection_blob(
                &self,
                id: Uuid,
                old: &[u8],
                new: &[u8],
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(sql::REPLACE_CONNECTION_BLOB)
                    .bind(id)
                    .bind(old)
                    .bind(new)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(super) use impl_store;
