//! Orgs, users and revoked tokens: [`AccountStore`] for the backend whose sqlx database is `Db`,
//! compiled once per backend (see the parent module).

use uuid::Uuid;

use super::Db;
use crate::domain::audit::NewAuditEntry;
use crate::domain::org::Org;
use crate::domain::user::{Email, User};
use crate::store::{
    AccountStore, Backend, NewUser, Queries, SqlStore, StoreError, UserWithHash, accounts, now,
    push_list, rows,
};

#[async_trait::async_trait]
impl AccountStore for SqlStore<Db> {
    async fn create_org(&self, id: Uuid, slug: &str, name: &str) -> Result<Org, StoreError> {
        let row: rows::OrgRow = sqlx::query_as(accounts::INSERT_ORG)
            .bind(id)
            .bind(slug)
            .bind(name)
            .bind(now())
            .fetch_one(&self.pool)
            .await?;
        row.try_into()
    }

    async fn org_by_slug(&self, slug: &str) -> Result<Option<Org>, StoreError> {
        let row: Option<rows::OrgRow> = sqlx::query_as(accounts::ORG_BY_SLUG)
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn org_by_id(&self, org_id: Uuid) -> Result<Option<Org>, StoreError> {
        Db::find::<rows::OrgRow, _>(&self.pool, accounts::ORG_BY_ID, &[org_id]).await
    }

    async fn orgs_by_ids(&self, ids: &[Uuid]) -> Result<Vec<Org>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q =
            sqlx::QueryBuilder::new("SELECT id, slug, name, created_at FROM org WHERE id IN ");
        push_list(&mut q, ids.iter().copied());
        let rows: Vec<rows::OrgRow> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn create_user(
        &self,
        new: &NewUser<'_>,
        audit: &NewAuditEntry,
    ) -> Result<User, StoreError> {
        let mut tx = self.begin_write().await?;
        let row: rows::UserRow = sqlx::query_as(accounts::INSERT_USER)
            .bind(new.id)
            .bind(new.org_id)
            .bind(new.email.as_str())
            .bind(new.password_hash)
            .bind(new.role.as_str())
            .bind(now())
            .fetch_one(&mut *tx)
            .await?;
        Db::insert_audits(&mut *tx, &[audit]).await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn user_by_email(
        &self,
        org_id: Uuid,
        email: &Email,
    ) -> Result<Option<UserWithHash>, StoreError> {
        let row: Option<rows::UserRow> = sqlx::query_as(accounts::USER_BY_EMAIL)
            .bind(org_id)
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn user_by_id(&self, org_id: Uuid, user_id: Uuid) -> Result<Option<User>, StoreError> {
        Db::find::<rows::UserRow, _>(&self.pool, accounts::USER_BY_ID, &[org_id, user_id]).await
    }

    async fn user_for_token(
        &self,
        org_id: Uuid,
        user_id: Uuid,
        token_id: Option<Uuid>,
    ) -> Result<Option<(User, bool)>, StoreError> {
        let row: Option<rows::TokenUserRow> = sqlx::query_as(accounts::USER_FOR_TOKEN)
            .bind(org_id)
            .bind(user_id)
            .bind(token_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.user.try_into()?, r.revoked))).transpose()
    }

    async fn revoke_token(
        &self,
        token_id: Uuid,
        org_id: Uuid,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(accounts::REVOKE_TOKEN)
            .bind(token_id)
            .bind(org_id)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn purge_revoked_tokens(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(accounts::PURGE_REVOKED_TOKENS)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn set_user_disabled(
        &self,
        org_id: Uuid,
        user_id: Uuid,
        disabled: bool,
        audit: &NewAuditEntry,
    ) -> Result<User, StoreError> {
        let update = sqlx::query_as::<_, rows::UserRow>(accounts::SET_USER_DISABLED)
            .bind(org_id)
            .bind(user_id)
            .bind(disabled);
        self.update_one_audited(update, audit).await
    }
}
