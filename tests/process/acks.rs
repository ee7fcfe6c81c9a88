//! A worker killed with SIGKILL between committing acknowledgements and moving their files:
//! the restarted worker sees the files again, changes nothing, writes no second
//! audit row, and moves them to `processed/`. The binary pauses at that exact point through a
//! debug-build failpoint (`ORDERFLOW_FAILPOINT=ack_after_commit`), and the test kills it there.

use std::time::Duration;

use orderflow::domain::export::ExportStatus;
use orderflow::domain::page::PageRequest;
use serde_json::json;

use crate::common::TestDb;
use crate::common::eventually;
use crate::crash::{approved_drafts, push_all, seed_org};
use crate::harness::{Proc, base_env};

const ACKS: usize = 3;

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap())
                .filter(|e| e.file_type().unwrap().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn kill_between_commit_and_move(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&db.url, dir.path());
    env.insert("ACK_POLL_INTERVAL_SECS".into(), "1".into());
    env.insert("ACK_POLL_LEASE_SECS".into(), "3".into());
    let (org_id, token) = seed_org(&db, "acme").await;
    let root = dir.path().join("dropzones/acme");
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::fs::create_dir_all(root.join("acks")).unwrap();

    let mut paused = env.clone();
    paused.insert("ORDERFLOW_FAILPOINT".into(), "ack_after_commit".into());
    let mut server = Proc::start(&["serve"], &paused);
    let base = server.base().to_owned();
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/api/v1/connectors/dropzone-json-v1"))
        .bearer_auth(&token)
        .json(&json!({"mode": "filesystem", "export_path": "/out", "ack_path": "/acks"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ids = approved_drafts(&client, &base, &token, ACKS).await;
    push_all(&client, &base, &token, &ids).await;
    eventually(Duration::from_secs(30), "every export SENT", || async {
        (db.store.queue_depth().await.unwrap() == 0).then_some(())
    })
    .await;
    let exports = db
        .store
        .list_exports(org_id, None, PageRequest::parse(None, None).unwrap())
        .await
        .unwrap()
        .items;
    assert_eq!(exports.len(), ACKS);
    let mut names = Vec::new();
    for (i, export) in exports.iter().enumerate() {
        assert_eq!(export.status, ExportStatus::Sent);
        let name = format!("ack_{}", export.file_name);
        std::fs::write(
            root.join("acks").join(&name),
            json!({"status": "ACKED", "erp_order_id": format!("SO-{i}")}).to_string(),
        )
        .unwrap();
        names.push(name);
    }
    names.sort();

    eventually(Duration::from_secs(30), "the failpoint", || async {
        server
            .stderr()
            .iter()
            .any(|l| l.contains("failpoint reached"))
            .then_some(())
    })
    .await;
    // Committed, not moved: then killed.
    for export in &exports {
        let now = db.store.export(org_id, export.id).await.unwrap().unwrap();
        assert_eq!(now.status, ExportStatus::Acked);
    }
    assert_eq!(files(&root.join("acks")), names);
    server.kill();

    let _worker = Proc::start(&["worker"], &env);
    eventually(Duration::from_secs(30), "the files moved", || async {
        (files(&root.join("processed")).is_empty()
            && files(&root.join("acks/processed")) == names
            && files(&root.join("acks")).is_empty())
        .then_some(())
    })
    .await;
    let audit = db
        .store
        .list_audit(
            org_id,
            Some("EXPORT_ACKED"),
            PageRequest::parse(None, None).unwrap(),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(
        audit.len(),
        ACKS,
        "a file seen twice wrote a second audit row"
    );
    for (i, export) in exports.iter().enumerate() {
        let now = db.store.export(org_id, export.id).await.unwrap().unwrap();
        assert_eq!(now.status, ExportStatus::Acked);
        assert_eq!(now.erp_order_id, Some(format!("SO-{i}")));
    }
}

#[tokio::test]
async fn killed_between_commit_and_move_the_restart_changes_nothing_sqlite() {
    kill_between_commit_and_move(TestDb::sqlite().await).await;
}

#[tokio::test]
async fn killed_between_commit_and_move_the_restart_changes_nothing_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    kill_between_commit_and_move(db).await;
}
