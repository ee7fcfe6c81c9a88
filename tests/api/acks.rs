//! `POST /api/v1/connectors/{slug}/poll-acks` and the background poller:
//! who may poll, what the answer says, tenancy, metrics, and acks applied without anyone asking.

use std::path::PathBuf;
use std::time::Duration;

use orderflow::domain::user::Role;
use serde_json::{Value, json};

use crate::common::{TestApp, TestDb, assert_error, eventually, spawn_app_on};

const CONNECTOR: &str = "/api/v1/connectors/dropzone-json-v1";
const POLL: &str = "/api/v1/connectors/dropzone-json-v1/poll-acks";

/// A filesystem dropzone with an ack folder for `slug`; the admin's token and the ack folder.
async fn org_with_acks(app: &TestApp, slug: &str) -> (String, PathBuf) {
    let (_, _, token) = app.org_with(slug, Role::Admin).await;
    let root = app.dropzone_root.path().join(slug);
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::fs::create_dir_all(root.join("acks")).unwrap();
    let resp = app
        .post_json(
            CONNECTOR,
            &token,
            &json!({"mode": "filesystem", "export_path": "/out", "ack_path": "/acks"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    (token, root.join("acks"))
}

/// Pushes and delivers one draft; its export as the API shows it.
async fn sent_export(app: &TestApp, token: &str) -> Value {
    let body = json!({"external_order_number": "PO-1",
        "lines": [{"line_no": 1, "internal_sku": "SKU", "qty": 1, "uom": "PCE"}]});
    let export = app.push_and_deliver(token, &body).await;
    assert_eq!(export["status"], "SENT");
    export
}

fn write_ack(dir: &std::path::Path, export: &Value, erp_order_id: &str) {
    let name = format!("ack_{}", export["file_name"].as_str().unwrap());
    std::fs::write(
        dir.join(name),
        json!({"status": "ACKED", "erp_order_id": erp_order_id}).to_string(),
    )
    .unwrap();
}

async fn poll_acks(db: TestDb) {
    let app = spawn_app_on(db, &[]).await;
    let (admin, acks) = org_with_acks(&app, "acme").await;
    let export = sent_export(&app, &admin).await;
    write_ack(&acks, &export, "SO-77");
    let org = app.org("acme2").await;
    let viewer = app.user(&org, "viewer@acme2.test", Role::Viewer).await;
    let viewer = app.token_for(&viewer);
    assert_error(app.post_empty(POLL, &viewer).await, 403, "FORBIDDEN").await;
    // Another org (with no connection) cannot poll this one's folder.
    let (_, _, stranger) = app.org_with("globex", Role::Ops).await;
    assert_error(app.post_empty(POLL, &stranger).await, 404, "NOT_FOUND").await;
    assert_error(
        app.post_empty("/api/v1/connectors/no-such-type/poll-acks", &admin)
            .await,
        404,
        "NOT_FOUND",
    )
    .await;
    let resp = app.client.post(app.url(POLL)).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    // The acme org's own OPS user polls.
    let acme = app.store().org_by_slug("acme").await.unwrap().unwrap();
    let ops = app.user(&acme, "ops@acme.test", Role::Ops).await;
    let ops = app.token_for(&ops);
    let resp = app.post_empty(POLL, &ops).await;
    assert_eq!(resp.status(), 200);
    let counts: Value = resp.json().await.unwrap();
    assert_eq!(
        counts,
        json!({"processed": 1, "rejected": 0, "malformed": 0, "unmatched": 0, "waiting": 0})
    );
    let now: Value = app
        .get_json(
            &format!("/api/v1/exports/{}", export["id"].as_str().unwrap()),
            &admin,
        )
        .await;
    assert_eq!(now["status"], "ACKED");
    assert_eq!(now["erp_order_id"], "SO-77");
    assert!(now["acked_at"].is_string());
    let draft: Value = app
        .get_json(
            &format!(
                "/api/v1/draft-orders/{}",
                export["draft_order_id"].as_str().unwrap()
            ),
            &admin,
        )
        .await;
    assert_eq!(draft["erp_order_id"], "SO-77");

    // An empty folder: all zero.
    let counts: Value = app.post_empty(POLL, &admin).await.json().await.unwrap();
    assert_eq!(
        counts,
        json!({"processed": 0, "rejected": 0, "malformed": 0, "unmatched": 0, "waiting": 0})
    );

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "orderflow_ack_files_total{outcome=\"processed\"}",
        "orderflow_ack_lag_seconds",
        "orderflow_ack_oldest_successful_poll_timestamp_seconds ",
    ] {
        assert!(metrics.contains(expected), "no {expected} in /metrics");
    }
    // No series names a connection: a callback URL's only secret is its connection id.
    assert!(!metrics.contains("connection_id"), "{metrics}");
}

#[tokio::test]
async fn poll_acks_runs_one_poll_for_the_roles_allowed_sqlite() {
    poll_acks(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn poll_acks_runs_one_poll_for_the_roles_allowed_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    poll_acks(db).await;
}

#[tokio::test]
async fn a_missing_ack_folder_is_a_502_naming_the_problem() {
    let app = spawn_app_on(TestDb::sqlite().await, &[]).await;
    let (admin, acks) = org_with_acks(&app, "acme").await;
    std::fs::remove_dir(&acks).unwrap();
    let body = assert_error(app.post_empty(POLL, &admin).await, 502, "DEPENDENCY_ERROR").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PATH_NOT_FOUND"),
        "{body}"
    );
}

#[tokio::test]
async fn the_background_poller_applies_acks_without_being_asked() {
    let app = spawn_app_on(TestDb::sqlite().await, &[("ACK_POLL_INTERVAL_SECS", "1")]).await;
    let (admin, acks) = org_with_acks(&app, "acme").await;
    let export = sent_export(&app, &admin).await;
    let _workers = app.start_workers();
    write_ack(&acks, &export, "SO-1");
    let path = format!("/api/v1/exports/{}", export["id"].as_str().unwrap());
    let processed = acks
        .join("processed")
        .join(format!("ack_{}", export["file_name"].as_str().unwrap()));
    // The poll commits the ack before it moves the file (so a crash between the two only
    // re-reads a file that changes nothing), so the test waits for both, not for the first.
    let now: Value = eventually(
        Duration::from_secs(20),
        "the export ACKED and its file moved",
        || async {
            let now: Value = app.get_json(&path, &admin).await;
            (now["status"] == "ACKED" && processed.exists()).then_some(now)
        },
    )
    .await;
    assert_eq!(now["erp_order_id"], "SO-1");
}
