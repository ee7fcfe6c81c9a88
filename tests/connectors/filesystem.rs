//! DROPZONE_JSON_V1 over the local filesystem: publishing exactly once, atomically.

use orderflow::connectors::dropzone_json_v1::DropzoneJsonV1;
use orderflow::connectors::dropzone_json_v1::dropzone::publish;
use orderflow::connectors::transport::Transport;
use orderflow::connectors::transport::filesystem::FilesystemTransport;
use orderflow::connectors::{Connector, ExportRequest};
use serde_json::json;

use crate::common::sample;

#[tokio::test]
async fn export_writes_the_file_once_and_a_redelivery_is_recognised() {
    let (ctx, root) = sample::context("acme");
    let dir = root.path().join("acme/import/orders");
    std::fs::create_dir_all(&dir).unwrap();
    let config = sample::config(json!({"mode": "filesystem", "export_path": "/import/orders"}));
    let config = DropzoneJsonV1
        .validate(&config, &ctx.env.validation())
        .unwrap();
    let request = ExportRequest {
        order: sample::order("acme"),
        file_name: "sales_order_a_20260101T000000Z.json".into(),
    };

    let first = DropzoneJsonV1
        .export(&ctx, &request, &config)
        .await
        .unwrap();
    assert!(!first.already_present);
    assert_eq!(
        first.dropzone_path,
        "/import/orders/sales_order_a_20260101T000000Z.json"
    );
    let on_disk = std::fs::read(dir.join(&request.file_name)).unwrap();
    assert_eq!(on_disk, first.content);
    assert_eq!(first.content_sha256, sha256_hex(&on_disk));

    let again = DropzoneJsonV1
        .export(&ctx, &request, &config)
        .await
        .unwrap();
    assert!(
        again.already_present,
        "a retry must not write a second file"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no .tmp or duplicate left"
    );

    std::fs::write(dir.join(&request.file_name), b"{\"someone\": \"else\"}").unwrap();
    let err = DropzoneJsonV1
        .export(&ctx, &request, &config)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "FILE_EXISTS_DIFFERENT");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn non_atomic_mode_writes_the_final_name_directly_and_failures_leave_no_tmp() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("acme/out")).unwrap();
    let fs = FilesystemTransport::open(root.path(), "acme")
        .await
        .unwrap();
    let published = publish(&fs, "/out", "a.json", b"{}", false).await.unwrap();
    assert_eq!(published.path, "/out/a.json");
    assert_eq!(
        std::fs::read(root.path().join("acme/out/a.json")).unwrap(),
        b"{}"
    );

    let err = publish(&fs, "/missing", "b.json", b"{}", true)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "PATH_NOT_FOUND");
    let names: Vec<_> = std::fs::read_dir(root.path().join("acme/out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["a.json"]);
}

#[tokio::test]
async fn transport_operations_stay_inside_the_org_folder() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), b"top secret").unwrap();
    std::fs::create_dir_all(root.path().join("acme")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("acme/link")).unwrap();
    let fs = FilesystemTransport::open(root.path(), "acme")
        .await
        .unwrap();

    assert!(fs.read("/link/secret.txt").await.is_err());
    assert!(fs.read("/../../etc/passwd").await.is_err());
    assert!(fs.write_file("/link/new.json", b"x").await.is_err());
    assert!(!outside.path().join("new.json").exists());
    assert!(fs.list("/link").await.is_err());

    fs.create_dir("/in").await.unwrap();
    fs.create_dir("/in").await.unwrap();
    fs.write_file("/in/a.json", b"1").await.unwrap();
    fs.create_dir("/in/processed").await.unwrap();
    fs.move_no_replace("/in/a.json", "/in/processed/a.json")
        .await
        .unwrap();
    fs.write_file("/in/a.json", b"2").await.unwrap();
    let err = fs
        .move_no_replace("/in/a.json", "/in/processed/a.json")
        .await
        .unwrap_err();
    assert_eq!(
        fs.read("/in/processed/a.json").await.unwrap(),
        b"1",
        "{err}"
    );
    assert_eq!(fs.list("/in").await.unwrap(), ["a.json"]);
}
