//! `OBJECT_STORAGE_URL=s3://BUCKET` against a real S3-compatible server started here (moto in
//! server mode, from PyPI; `.ci/run` installs it). Without it the test says it is skipped,
//! unless `ORDERFLOW_REQUIRE_S3=1` (CI), where a missing server fails.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::TestDb;
use crate::common::eventually;
use crate::crash::{approved_drafts, seed_org};
use crate::harness::{Proc, base_env};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> Option<(Moto, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(child) => Some((Moto(child), port)),
        Err(_) if std::env::var("ORDERFLOW_REQUIRE_S3").as_deref() == Ok("1") => {
            panic!("moto_server is required (ORDERFLOW_REQUIRE_S3=1) but cannot be started")
        }
        Err(_) => {
            eprintln!("skipped: moto_server not found (pip install 'moto[server]')");
            None
        }
    }
}

#[tokio::test]
async fn exports_are_archived_in_s3_and_served_back() {
    let Some((_moto, port)) = start_moto() else {
        return;
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(30), "moto to answer", || async {
        client
            .put(format!("{endpoint}/orderflow-archive"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;

    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let (org_id, token) = seed_org(&db, "acme").await;
    let dropzone = dir.path().join("dropzones/acme/import/orders");
    std::fs::create_dir_all(&dropzone).unwrap();
    let mut env = base_env(&db.url, dir.path());
    for (k, v) in [
        ("OBJECT_STORAGE_URL", "s3://orderflow-archive"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        env.insert(k.into(), v.into());
    }
    let server = Proc::start(&["serve"], &env);
    let base = server.base().to_owned();
    let resp = client
        .post(format!("{base}/api/v1/connectors/dropzone-json-v1"))
        .bearer_auth(&token)
        .json(&json!({"mode": "filesystem", "export_path": "/import/orders"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ids = approved_drafts(&client, &base, &token, 1).await;
    let pushed: Value = client
        .post(format!("{base}/api/v1/draft-orders/{}/push", ids[0]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let export_id = pushed["erp_export_id"].as_str().unwrap().to_owned();
    let export: Value = eventually(Duration::from_secs(30), "SENT", || async {
        let export: Value = client
            .get(format!("{base}/api/v1/exports/{export_id}"))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (export["status"] == "SENT").then_some(export)
    })
    .await;
    let key = export["export_storage_key"].as_str().unwrap();
    assert_eq!(
        key,
        format!("exports/{org_id}/{}", export["file_name"].as_str().unwrap())
    );
    let written = std::fs::read(dropzone.join(export["file_name"].as_str().unwrap())).unwrap();
    let bucket = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_bucket_name("orderflow-archive")
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    use object_store::ObjectStoreExt;
    let in_bucket = bucket
        .get(&object_store::path::Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(in_bucket.as_ref(), written.as_slice());
    let served = client
        .get(format!("{base}/api/v1/exports/{export_id}/file"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(served.as_ref(), written.as_slice());
}
