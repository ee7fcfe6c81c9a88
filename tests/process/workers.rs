//! Several `orderflow worker` processes on one PostgreSQL never deliver one export twice
//! (claims are `FOR UPDATE SKIP LOCKED`): three of them over 300 exports.

use std::collections::HashMap;
use std::time::Duration;

use orderflow::app::App;
use orderflow::connectors::Registry;
use orderflow::domain::audit::Actor;
use orderflow::domain::draft::DraftInput;
use orderflow::domain::page::PageRequest;
use orderflow::service::orders::PushKind;
use serde_json::json;

use crate::common::eventually;
use crate::common::{TestDb, test_settings};
use crate::crash::{assert_delivered_once, seed_org};
use crate::harness::{Proc, base_env};

const EXPORTS: usize = 300;

#[tokio::test]
async fn three_worker_processes_deliver_each_export_exactly_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    let settings = test_settings(
        &dir.path().join("dropzones"),
        &[(
            "OBJECT_STORAGE_URL",
            &format!("file://{}", objects.display()),
        )],
    );
    let app = App::assemble(settings, db.store.clone(), Registry::default())
        .await
        .unwrap();
    let (org_id, _) = seed_org(&db, "acme").await;
    let dropzone = dir.path().join("dropzones/acme/import/orders");
    std::fs::create_dir_all(&dropzone).unwrap();
    let actor = Actor::cli();
    let body = json!({"mode": "filesystem", "export_path": "/import/orders"});
    app.connections
        .save(
            &actor,
            org_id,
            "dropzone-json-v1",
            body.as_object().unwrap().clone(),
        )
        .await
        .unwrap();
    for i in 0..EXPORTS {
        let input: DraftInput = serde_json::from_value(json!({
            "external_order_number": format!("PO-{i}"),
            "lines": [{"line_no": 1, "internal_sku": "SKU", "qty": 2, "uom": "PCE"}]
        }))
        .unwrap();
        let draft = app.orders.create(&actor, org_id, input).await.unwrap();
        app.orders
            .approve(&actor, "ops@acme.test", org_id, draft.id)
            .await
            .unwrap();
        app.orders
            .push(&actor, org_id, draft.id, None, PushKind::Push)
            .await
            .unwrap();
    }

    let env: HashMap<String, String> = base_env(&db.url, dir.path());
    let workers: Vec<Proc> = (0..3).map(|_| Proc::start(&["worker"], &env)).collect();
    eventually(Duration::from_secs(120), "every export SENT", || async {
        (db.store.queue_depth().await.unwrap() == 0).then_some(())
    })
    .await;
    drop(workers);

    assert_delivered_once(&db, org_id, &dropzone, &objects, EXPORTS).await;
    let mut page = PageRequest::parse(Some("200"), None).unwrap();
    let mut sent_rows = Vec::new();
    loop {
        let got = db
            .store
            .list_audit(org_id, Some("EXPORT_SENT"), page)
            .await
            .unwrap();
        sent_rows.extend(got.items.into_iter().map(|e| e.entity_id.unwrap()));
        match got.next_seq {
            Some(c) => page = PageRequest::parse(Some("200"), Some(c)).unwrap(),
            None => break,
        }
    }
    assert_eq!(sent_rows.len(), EXPORTS, "one EXPORT_SENT row per export");
    sent_rows.sort();
    sent_rows.dedup();
    assert_eq!(sent_rows.len(), EXPORTS);
    let exports = db
        .store
        .list_exports(org_id, None, PageRequest::parse(Some("200"), None).unwrap())
        .await
        .unwrap();
    assert!(
        exports.items.iter().all(|e| e.attempts == 1),
        "an export was claimed twice"
    );
}
