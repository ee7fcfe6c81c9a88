//! The delivery pipeline over SFTP while the server cuts connections in the middle of writes:
//! every export still ends SENT, once, byte for byte the archived file, with no `.tmp` left;
//! and a host key learned on first use during an export is recorded in the config.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use orderflow::domain::export::ExportStatus;
use orderflow::domain::page::PageRequest;
use orderflow::domain::user::Role;
use orderflow::workers::delivery::Step;
use serde_json::{Value, json};

use crate::common::{TestDb, spawn_app_on};
use crate::sftp_server::{PASSWORD, TestSftpServer, USER};

const DRAFTS: usize = 30;

#[tokio::test]
async fn cut_connections_mid_write_still_deliver_every_export_once() {
    let server = TestSftpServer::start().await;
    let inbox = server.dir("/in");
    let app = spawn_app_on(
        TestDb::sqlite().await,
        &[("CONNECTOR_BLOCKED_NETWORKS", "")],
    )
    .await;
    let (org, _, token) = app.org_with("acme", Role::Admin).await;
    let config = json!({"mode": "sftp", "host": "127.0.0.1", "port": server.port,
        "username": USER, "password": PASSWORD, "export_path": "/in", "timeout_secs": 5});
    let resp = app
        .post_json("/api/v1/connectors/dropzone-json-v1", &token, &config)
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    for i in 0..DRAFTS {
        let body = json!({"external_order_number": format!("PO-{i}"), "notes": "n".repeat(4000),
            "lines": [{"line_no": 1, "internal_sku": "SKU", "qty": 1, "uom": "PCE"}]});
        let draft: Value = app
            .post_json("/api/v1/draft-orders", &token, &body)
            .await
            .json()
            .await
            .unwrap();
        let id = draft["id"].as_str().unwrap();
        app.post_empty(&format!("/api/v1/draft-orders/{id}/approve"), &token)
            .await;
        let resp = app
            .post_empty(&format!("/api/v1/draft-orders/{id}/push"), &token)
            .await;
        assert_eq!(resp.status(), 202);
    }

    // Cut the connection a few bytes into a write, again and again while delivering.
    let start = Instant::now();
    let mut cuts = 0;
    let mut sent = 0;
    while sent < DRAFTS {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "stuck at {sent} sent"
        );
        if cuts < 5 && server.switches.cut_after_bytes.load(Ordering::SeqCst) == 0 {
            server
                .switches
                .cut_after_bytes
                .store(1500, Ordering::SeqCst);
            cuts += 1;
        }
        for step in app.deliver_all().await {
            match step {
                Step::Sent(_) => sent += 1,
                Step::Retrying(_, code) => assert_eq!(code.as_str(), "CONNECTION_LOST"),
                other => panic!("{other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(cuts >= 2, "the server never cut a write");

    let exports = app
        .store()
        .list_exports(org.id, None, PageRequest::parse(Some("200"), None).unwrap())
        .await
        .unwrap()
        .items;
    assert_eq!(exports.len(), DRAFTS);
    let mut names = HashSet::new();
    for export in &exports {
        assert_eq!(export.status, ExportStatus::Sent);
        let written = std::fs::read(inbox.join(&export.file_name)).unwrap();
        let key = export.export_storage_key.as_ref().unwrap();
        let archived = std::fs::read(app.dropzone_root.path().join(".objects").join(key)).unwrap();
        assert_eq!(written, archived);
        names.insert(export.file_name.clone());
    }
    let on_server: HashSet<String> = std::fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(on_server, names, "a .tmp or a duplicate is left");
    assert!(
        exports.iter().any(|e| e.attempts > 1),
        "no export was retried"
    );

    // The host key seen during the first export was recorded (trust on first use).
    let details: Value = app
        .get_json("/api/v1/connectors/dropzone-json-v1", &token)
        .await;
    assert_eq!(
        details["config"]["host_key_fingerprint"],
        server.fingerprint()
    );
}

/// Each format over SFTP, a write cut in the middle: every file arrives once under its
/// templated name, byte for byte what was archived and (where nothing depends on the export
/// id) what the preview showed.
#[tokio::test]
async fn every_format_arrives_over_sftp_as_previewed_once_despite_cuts() {
    let server = TestSftpServer::start().await;
    let inbox = server.dir("/in");
    let app = spawn_app_on(
        TestDb::sqlite().await,
        &[("CONNECTOR_BLOCKED_NETWORKS", "")],
    )
    .await;
    let (org, _, token) = app.org_with("acme", Role::Admin).await;
    let formats = [
        (
            json!({"type": "csv", "delimiter": ";", "decimal_separator": ",",
                "encoding": "windows-1252"}),
            true,
        ),
        (
            json!({"type": "ubl_order_2_1", "unit_codes": {"PCE": "H87"}}),
            true,
        ),
        (
            json!({"type": "edifact_orders_d96a", "sender_id": "S", "recipient_id": "R"}),
            false,
        ),
        (json!({"type": "json_v1"}), true),
    ];
    for (format, previewable) in formats {
        let config = json!({"mode": "sftp", "host": "127.0.0.1", "port": server.port,
            "username": USER, "password": PASSWORD, "export_path": "/in", "timeout_secs": 5,
            "format": format, "file_name_template": "PO_{external_order_number}_{draft_id}.{ext}"});
        let resp = app
            .post_json("/api/v1/connectors/dropzone-json-v1", &token, &config)
            .await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        // Twenty long lines, so that every format's file is cut in the middle.
        let lines: Vec<Value> = (1..=20)
            .map(|n| {
                json!({"line_no": n, "internal_sku": format!("SKU-{n}"), "qty": 1.25,
                "uom": "PCE", "unit_price": 2.5, "description": "Öl + Mehl: 'fein'? ".repeat(10)})
            })
            .collect();
        let body = json!({"external_order_number": "PO-ÄÖ;1", "currency": "EUR", "lines": lines});
        let draft: Value = app
            .post_json("/api/v1/draft-orders", &token, &body)
            .await
            .json()
            .await
            .unwrap();
        let id = draft["id"].as_str().unwrap();
        app.post_empty(&format!("/api/v1/draft-orders/{id}/approve"), &token)
            .await;
        let preview = app
            .post_empty(&format!("/api/v1/draft-orders/{id}/preview"), &token)
            .await;
        if preview.status() != 200 {
            panic!("{format}: {}", preview.text().await.unwrap());
        }
        let name = preview.headers()["x-file-name"]
            .to_str()
            .unwrap()
            .to_owned();
        let previewed = preview.bytes().await.unwrap().to_vec();
        let resp = app
            .post_empty(&format!("/api/v1/draft-orders/{id}/push"), &token)
            .await;
        assert_eq!(resp.status(), 202);
        server.switches.cut_after_bytes.store(400, Ordering::SeqCst);
        let start = Instant::now();
        let mut steps = Vec::new();
        while !steps.iter().any(|s| matches!(s, Step::Sent(_))) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{format}: {steps:?}"
            );
            steps.extend(app.deliver_all().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            steps.len() > 1,
            "{format}: the write was never cut: {steps:?}"
        );
        let export = app
            .store()
            .list_exports(org.id, None, PageRequest::parse(Some("1"), None).unwrap())
            .await
            .unwrap()
            .items
            .remove(0);
        assert_eq!(export.status, ExportStatus::Sent);
        assert_eq!(export.file_name, name, "{format}");
        let written = std::fs::read(inbox.join(&name)).unwrap();
        let key = export.export_storage_key.as_ref().unwrap();
        let archived = std::fs::read(app.dropzone_root.path().join(".objects").join(key)).unwrap();
        assert_eq!(written, archived, "{format}");
        if previewable {
            assert_eq!(written, previewed, "{format}");
        }
    }
    let on_server = std::fs::read_dir(&inbox).unwrap().count();
    assert_eq!(on_server, 4, "a .tmp or a duplicate is left");
}
