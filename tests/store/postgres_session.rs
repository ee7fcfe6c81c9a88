//! What the PostgreSQL store sets up on each of its connections.

use std::str::FromStr;

use orderflow::store::PostgresStore;
use sqlx::postgres::PgConnectOptions;

async fn random_page_cost(store: &PostgresStore) -> String {
    sqlx::query_scalar("SHOW random_page_cost")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Planned for data in memory (random reads cost 1.1, not a spinning disk's 4), unless the
/// operator chose a figure: theirs is kept.
#[tokio::test]
async fn sessions_plan_for_cached_pages_unless_the_operator_chose() {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("skipped: TEST_DATABASE_URL is not set, PostgreSQL half not run");
        return;
    };
    let store = PostgresStore::connect(&url).await.unwrap();
    assert_eq!(random_page_cost(&store).await, "1.1");
    store.pool().close().await;

    let chosen = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("random_page_cost", "2.5")]);
    let store = PostgresStore::connect_with(chosen).await.unwrap();
    assert_eq!(random_page_cost(&store).await, "2.5");
    store.pool().close().await;
}
