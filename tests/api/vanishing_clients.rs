//! Clients that hang up mid-request: whatever a request started in the database runs to
//! completion or rolls back, and no pooled connection goes back into the pool inside a
//! transaction (on PostgreSQL that would make later callers' statements run inside it, never
//! committed, its locks held). Run on both backends.

use std::time::{Duration, Instant};

use futures::StreamExt;
use orderflow::domain::user::Role;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::common::{Backend, TestApp, TestDb, spawn_app_on};

/// Requests whose clients vanish.
const VANISHING: usize = 3000;

fn draft(n: usize) -> Value {
    json!({
        "external_order_number": format!("PO-{n}"),
        "customer": {"id": null, "erp_customer_number": "C-1", "name": "Acme"},
        "lines": [
            {"line_no": 1, "internal_sku": "A", "qty": 1, "uom": "PCE"},
            {"line_no": 2, "internal_sku": "B", "qty": 2.5, "uom": "KG"}
        ]
    })
}

/// Sends a whole request and resets the connection after `wait_us`, before (or while) the
/// server answers.
async fn vanish(addr: &str, token: &str, n: usize, wait_us: u64) {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let body = draft(n).to_string();
    let request = format!(
        "POST /api/v1/draft-orders HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    tokio::time::sleep(Duration::from_micros(wait_us)).await;
    // RST rather than FIN: the server learns at once that nobody waits for the answer.
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Drafts as a fresh connection (outside the app's pool) sees them: id and number of lines.
async fn committed_drafts(app: &TestApp) -> Vec<(uuid::Uuid, i64)> {
    let sql = "SELECT d.id, (SELECT COUNT(*) FROM draft_order_line l \
               WHERE l.draft_order_id = d.id) FROM draft_order d";
    match app.db.backend {
        Backend::Postgres => {
            let fresh = orderflow::store::PostgresStore::connect(&app.db.url)
                .await
                .unwrap();
            let rows = sqlx::query_as(sql).fetch_all(fresh.pool()).await.unwrap();
            fresh.pool().close().await;
            rows
        }
        Backend::Sqlite => {
            let pool = app.db.sqlite.as_ref().unwrap().pool().clone();
            let mut conn = pool.acquire().await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut *conn).await.unwrap()
        }
    }
}

/// How often PostgreSQL has warned that a BEGIN found a transaction already open (logged by
/// sqlx from the server's notices).
fn leak_warnings() -> usize {
    crate::common::captured_logs()
        .matches("already a transaction in progress")
        .count()
}

async fn sessions_in_transaction(app: &TestApp) -> i64 {
    let Some(schema) = app.db.pg_schema() else {
        return 0;
    };
    let admin = orderflow::store::PostgresStore::connect(&app.db.url)
        .await
        .unwrap();
    let n = sqlx::query_scalar(
        // Idle inside a transaction for seconds: a leaked one. The workers' own transactions
        // pass through that state for moments between statements (longer on a loaded
        // machine), and must not count.
        "SELECT COUNT(*) FROM pg_stat_activity \
         WHERE application_name = $1 AND state LIKE 'idle in transaction%' \
         AND state_change < now() - interval '3 seconds'",
    )
    .bind(schema)
    .fetch_one(admin.pool())
    .await
    .unwrap();
    admin.pool().close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_mid_request_leave_no_transaction_open_and_no_half_row() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend).await else {
            continue;
        };
        let app = spawn_app_on(db, &[]).await;
        let (_, _, token) = app.org_with("acme", Role::Ops).await;
        let addr = app.base.trim_start_matches("http://").to_owned();
        let leaks_before = leak_warnings();

        // Arrange/Act: thousands of clients reset their connection 0-10 ms after sending
        // (about as long as a request takes here), so cancellations land at every point of
        // the request, BEGIN and COMMIT included.
        futures::stream::iter(0..VANISHING)
            .for_each_concurrent(12, |n| {
                let (addr, token) = (addr.clone(), token.clone());
                async move { vanish(&addr, &token, n, rand::random_range(0..10_000)).await }
            })
            .await;
        // Work the vanished clients started runs on to its end (the server is seconds behind
        // such a storm, more on a busy machine); once it is done, no session may be left
        // inside a transaction. This is looked at before any other traffic could end a leaked
        // transaction by chance, and well before PostgreSQL's own idle-in-transaction timeout
        // (60 s, our backstop) would end it.
        let deadline = Instant::now() + Duration::from_secs(45);
        while sessions_in_transaction(&app).await > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(sessions_in_transaction(&app).await, 0, "{backend:?}");
        // A transaction left open is usually closed by the next BEGIN on its connection, which
        // PostgreSQL answers with this warning (and the statements in between ran inside it).
        assert_eq!(
            leak_warnings(),
            leaks_before,
            "{backend:?}: a BEGIN found a transaction open"
        );
        // Then ordinary clients that wait for their answers.
        let mut answered = Vec::new();
        for n in 0..40 {
            let resp = app
                .post_json("/api/v1/draft-orders", &token, &draft(VANISHING + n))
                .await;
            assert_eq!(resp.status(), 201, "{backend:?}");
            let body: Value = resp.json().await.unwrap();
            answered.push(body["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
        }

        // Assert: nothing sits inside a transaction, every answered draft is committed (seen
        // from outside the pool), and every stored draft has both its lines.
        assert_eq!(sessions_in_transaction(&app).await, 0, "{backend:?}");
        let committed = committed_drafts(&app).await;
        for id in &answered {
            assert!(
                committed.iter().any(|(c, _)| c == id),
                "{backend:?}: an answered draft is not committed"
            );
        }
        let half = committed.iter().filter(|(_, lines)| *lines != 2).count();
        assert_eq!(half, 0, "{backend:?}: drafts stored without their lines");
        assert!(committed.len() >= answered.len());
    }
}
