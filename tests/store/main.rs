//! The store contract, one generic function per behaviour, run on SQLite and on PostgreSQL.
//! Without `TEST_DATABASE_URL` the PostgreSQL half prints that it is skipped; CI sets it.

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod connections;
mod orders;
mod postgres_session;

/// Generates `<name>_sqlite` and `<name>_postgres` tests around `async fn name(db: &TestDb)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = crate::common::TestDb::sqlite().await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = crate::common::TestDb::postgres().await else { return };
                    super::$name(&db).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// Shorthands over the store for tests: each write comes with a plain audit row.
pub(crate) mod fx {
    use orderflow::domain::audit::{Actor, NewAuditEntry};
    use orderflow::domain::connection::{Connection, ConnectionStatus};
    use orderflow::domain::org::Org;
    use orderflow::domain::user::{Email, Role, User};
    use orderflow::store::{ConfigUpdate, NewConnection, NewUser, Store, StoreError};
    use uuid::Uuid;

    /// The key check value the fixtures record.
    pub const KEY_CHECK: &str = "test-key-check";

    pub fn audit(org_id: Uuid, action: &'static str) -> NewAuditEntry {
        NewAuditEntry {
            org_id,
            actor: Actor::cli(),
            action,
            entity_type: "test",
            entity_id: None,
            details: serde_json::json!({}),
        }
    }

    pub async fn org(store: &dyn Store, slug: &str, name: &str) -> Result<Org, StoreError> {
        store.create_org(Uuid::new_v4(), slug, name).await
    }

    pub async fn user(
        store: &dyn Store,
        org_id: Uuid,
        email: &Email,
        hash: &str,
        role: Role,
    ) -> Result<User, StoreError> {
        let new = NewUser {
            id: Uuid::new_v4(),
            org_id,
            email,
            password_hash: hash,
            role,
        };
        store
            .create_user(&new, &audit(org_id, "user.created"))
            .await
    }

    pub async fn connection(
        store: &dyn Store,
        new: &NewConnection,
    ) -> Result<Connection, StoreError> {
        store
            .insert_connection(new, KEY_CHECK, &audit(new.org_id, "connection.created"))
            .await
    }

    pub async fn update_config(
        store: &dyn Store,
        org_id: Uuid,
        id: Uuid,
        expected_version: i64,
        blob: &[u8],
        last_test_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Option<Connection>, StoreError> {
        let update = ConfigUpdate {
            org_id,
            id,
            expected_version,
            config_encrypted: blob,
            last_test_at,
            key_check: KEY_CHECK,
        };
        store
            .update_connection_config(&update, Some(&audit(org_id, "connection.updated")))
            .await
    }

    pub async fn set_status(
        store: &dyn Store,
        org_id: Uuid,
        id: Uuid,
        status: ConnectionStatus,
    ) -> Result<Connection, StoreError> {
        store
            .set_connection_status(org_id, id, status, &audit(org_id, "connection.status"))
            .await
    }
}
