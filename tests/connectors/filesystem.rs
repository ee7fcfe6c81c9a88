//! DROPZONE_JSON_V1 over the local filesystem: publishing exactly once, atomically.

use orderflow::connectors::dropzone_json_v1::DropzoneJsonV1;
use orderflow::connectors::dropzone_json_v1::dropzone::publish;
use orderflow::connectors::transport::Transport;
use orderflow::connectors::transport::filesystem::FilesystemTransport;
use orderflow::connectors::{Connector, ExportRequest};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderflow::connectors::transport::filesystem::LANE_THREADS;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::common::sample;

async fn open_fs(root: &Path, slug: &str) -> FilesystemTransport {
    let lane = Arc::new(Semaphore::new(LANE_THREADS));
    FilesystemTransport::open(root, slug, lane, Duration::from_secs(2))
        .await
        .unwrap()
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

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
    let fs = open_fs(root.path(), "acme").await;
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
    let fs = open_fs(root.path(), "acme").await;

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

#[tokio::test]
async fn named_pipes_and_folders_are_refused_at_once_wherever_a_file_is_expected() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("acme/out");
    std::fs::create_dir_all(out.join("a_folder.json")).unwrap();
    mkfifo(&out.join("final.json"));
    mkfifo(&out.join("tmp.json.tmp"));
    mkfifo(&out.join("ack_x.json"));
    // A FIFO with a reader attached: a non-blocking write-only open would succeed, so only
    // the type check on the handle refuses it.
    mkfifo(&out.join("held.json"));
    let held = out.join("held.json");
    let reader = std::thread::spawn(move || std::fs::File::open(held));
    let fs = open_fs(root.path(), "acme").await;
    std::thread::sleep(Duration::from_millis(50));

    let started = Instant::now();
    // A final name that is a FIFO: hashing it must not wait for a writer.
    let err = publish(&fs, "/out", "final.json", b"{}", true)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "IO_ERROR", "{err}");
    // A .tmp name that is a FIFO: the write must not wait for a reader.
    let err = publish(&fs, "/out", "tmp.json", b"{}", true)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "IO_ERROR", "{err}");
    assert!(fs.write_file("/out/held.json", b"{}").await.is_err());
    assert!(fs.write_file("/out/a_folder.json", b"{}").await.is_err());
    // Ack files that are FIFOs (or were swapped for one after the listing).
    assert!(fs.read("/out/ack_x.json").await.is_err());
    assert!(fs.read_limited("/out/ack_x.json", 1024).await.is_err());
    assert!(fs.read("/out/a_folder.json").await.is_err());
    assert!(fs.sha256_if_exists("/out/ack_x.json").await.is_err());
    // Listing shows regular files only.
    assert!(fs.list("/out").await.unwrap().is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refusing took {:?}",
        started.elapsed()
    );
    // The reader never got a writer: nothing was written into the pipe.
    let pipe = out.join("held.json");
    std::thread::spawn(move || drop(std::fs::OpenOptions::new().write(true).open(pipe)));
    let _ = reader.join();
}

#[tokio::test]
async fn a_hung_operation_holds_its_own_lane_only_and_retries_do_not_pile_up_threads() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("slow/out")).unwrap();
    std::fs::create_dir_all(root.path().join("other/out")).unwrap();
    let slow_lane = Arc::new(Semaphore::new(1));
    let slow = FilesystemTransport::open(
        root.path(),
        "slow",
        slow_lane.clone(),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    // Stand in for a hung operation: the lane's only place is taken.
    let hung = slow_lane.clone().acquire_owned().await.unwrap();
    for _ in 0..5 {
        let started = Instant::now();
        let err = slow.write_file("/out/a.json", b"{}").await.unwrap_err();
        assert_eq!(err.code.as_str(), "CONNECTION_TIMEOUT", "{err}");
        assert!(err.is_transient());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert!(!root.path().join("slow/out/a.json").exists());
    // Another org's folder is unaffected.
    let other = open_fs(root.path(), "other").await;
    other.write_file("/out/a.json", b"{}").await.unwrap();
    drop(hung);
    // The lane is free again. A durable write is given a real timeout here: 300 ms is what a
    // loaded CI machine's fsync can take, and this step checks the lane, not the clock.
    let again = FilesystemTransport::open(root.path(), "slow", slow_lane, Duration::from_secs(10))
        .await
        .unwrap();
    again.write_file("/out/a.json", b"{}").await.unwrap();
}
