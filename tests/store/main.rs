//! The store contract, one generic function per behaviour, run on SQLite and on PostgreSQL.
//! Without `TEST_DATABASE_URL` the PostgreSQL half prints that it is skipped; CI sets it.

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod connections;

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
