//! A killed process loses nothing and duplicates nothing: 200 drafts pushed through the real
//! binary, SIGKILL mid-delivery, restart, and every export ends SENT with exactly one final file
//! whose bytes are the archived object, no `.tmp` left, no draft stuck PUSHING. JSON v1 on
//! SQLite; on PostgreSQL EDIFACT with a file-name template and CSV in Windows-1252, whose
//! rendering must give the same bytes again when the restarted process retries.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use orderflow::auth::TokenIssuer;
use orderflow::crypto::SecretString;
use orderflow::domain::audit::Actor;
use orderflow::domain::export::ExportStatus;
use orderflow::domain::page::PageRequest;
use orderflow::domain::user::Role;
use orderflow::service::accounts;
use serde_json::{Value, json};

use crate::common::eventually;
use crate::common::{TEST_JWT_SECRET, TEST_PASSWORD, TestDb};
use crate::harness::{Proc, base_env};

const DRAFTS: usize = 200;

/// An org with an admin; the admin's token.
pub async fn seed_org(db: &TestDb, slug: &str) -> (uuid::Uuid, String) {
    let org = accounts::create_org(db.store.as_ref(), slug, slug)
        .await
        .unwrap();
    let user = accounts::create_user(
        db.store.as_ref(),
        &org,
        &format!("admin@{slug}.test"),
        Role::Admin,
        SecretString::new(TEST_PASSWORD.into()),
        Actor::cli(),
    )
    .await
    .unwrap();
    let tokens = TokenIssuer::new(&SecretString::new(TEST_JWT_SECRET.into()));
    (org.id, tokens.issue(&user, 3600).unwrap())
}

/// Creates and approves `n` drafts through the API; their ids.
pub async fn approved_drafts(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    n: usize,
) -> Vec<String> {
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let body = json!({"external_order_number": format!("PO-{i}"), "currency": "EUR",
                    "lines": [{"line_no": 1, "internal_sku": "SKU", "qty": 1, "uom": "PCE"}]});
                let draft: Value = client
                    .post(format!("{base}/api/v1/draft-orders"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let id = draft["id"].as_str().unwrap().to_owned();
                let resp = client
                    .post(format!("{base}/api/v1/draft-orders/{id}/approve"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                id
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

pub async fn push_all(client: &reqwest::Client, base: &str, token: &str, ids: &[String]) {
    futures::stream::iter(ids)
        .map(|id| {
            let client = client.clone();
            async move {
                let resp = client
                    .post(format!("{base}/api/v1/draft-orders/{id}/push"))
                    .bearer_auth(token)
                    .header("Idempotency-Key", format!("push-{id}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202);
            }
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;
}

/// Every export of the org: all SENT, one file each equal to the archive, nothing else left.
pub async fn assert_delivered_once(
    db: &TestDb,
    org_id: uuid::Uuid,
    dropzone: &Path,
    objects: &Path,
    n: usize,
) {
    let mut exports = Vec::new();
    let mut page = PageRequest::parse(Some("200"), None).unwrap();
    loop {
        let got = db.store.list_exports(org_id, None, page).await.unwrap();
        exports.extend(got.items);
        match got.next_seq {
            Some(c) => page = PageRequest::parse(Some("200"), Some(c)).unwrap(),
            None => break,
        }
    }
    assert_eq!(exports.len(), n);
    let mut names = HashSet::new();
    for export in &exports {
        assert_eq!(export.status, ExportStatus::Sent, "{export:?}");
        let written = std::fs::read(dropzone.join(&export.file_name)).unwrap();
        let archived =
            std::fs::read(objects.join(export.export_storage_key.as_ref().unwrap())).unwrap();
        assert_eq!(written, archived, "{}", export.file_name);
        names.insert(export.file_name.clone());
    }
    let on_disk: HashSet<String> = std::fs::read_dir(dropzone)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        on_disk, names,
        "extra or missing files (a .tmp, a duplicate)"
    );
    for status in ["PUSHING", "APPROVED", "READY", "ERROR"] {
        let stuck = db
            .store
            .list_drafts(
                org_id,
                Some(status.parse().unwrap()),
                PageRequest::parse(None, None).unwrap(),
            )
            .await
            .unwrap();
        assert!(stuck.items.is_empty(), "drafts left {status}");
    }
}

async fn kill_mid_delivery_and_restart(db: TestDb, delivery: Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&db.url, dir.path());
    // Slow enough to kill mid-way; a short lease so the restart takes over quickly.
    env.insert("DELIVERY_CONCURRENCY".into(), "2".into());
    env.insert("EXPORT_LEASE_SECS".into(), "5".into());
    let (org_id, token) = seed_org(&db, "acme").await;
    let dropzone = dir.path().join("dropzones/acme/import/orders");
    std::fs::create_dir_all(&dropzone).unwrap();

    let mut config = json!({"mode": "filesystem", "export_path": "/import/orders"});
    if let (Some(c), Value::Object(d)) = (config.as_object_mut(), delivery) {
        c.extend(d);
    }
    let mut server = Proc::start(&["serve"], &env);
    let base = server.base().to_owned();
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/api/v1/connectors/dropzone-json-v1"))
        .bearer_auth(&token)
        .json(&config)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ids = approved_drafts(&client, &base, &token, DRAFTS).await;
    push_all(&client, &base, &token, &ids).await;

    let pending_at_kill = eventually(Duration::from_secs(60), "some deliveries", || async {
        let pending = db.store.queue_depth().await.unwrap();
        (pending <= (DRAFTS as i64) - 20).then_some(pending)
    })
    .await;
    server.kill();
    assert!(
        pending_at_kill > 0,
        "everything was delivered before the kill"
    );

    let server = Proc::start(&["serve"], &env);
    eventually(Duration::from_secs(90), "every export SENT", || async {
        (db.store.queue_depth().await.unwrap() == 0).then_some(())
    })
    .await;
    drop(server);
    assert_delivered_once(&db, org_id, &dropzone, &dir.path().join("objects"), DRAFTS).await;
}

#[tokio::test]
async fn a_killed_server_loses_and_duplicates_nothing_sqlite() {
    kill_mid_delivery_and_restart(TestDb::sqlite().await, json!({})).await;
}

#[tokio::test]
async fn a_killed_server_loses_and_duplicates_nothing_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    kill_mid_delivery_and_restart(db, json!({})).await;
}

#[tokio::test]
async fn a_killed_server_delivers_edifact_under_templated_names_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let delivery = json!({
        "format": {"type": "edifact_orders_d96a", "sender_id": "4000001000005",
                   "recipient_id": "4000002000002"},
        "file_name_template": "ORDERS_{external_order_number}_{export_id}.{ext}"
    });
    kill_mid_delivery_and_restart(db, delivery).await;
}

#[tokio::test]
async fn a_killed_server_delivers_windows_1252_csv_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let delivery = json!({
        "format": {"type": "csv", "delimiter": ";", "decimal_separator": ",",
                   "encoding": "windows-1252"}
    });
    kill_mid_delivery_and_restart(db, delivery).await;
}
