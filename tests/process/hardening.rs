//! What an anonymous or hostile client can do to a running `orderflow serve`:
//! memory under concurrent logins, idle and half-sent connections, shutdown, log injection,
//! and a wrong encryption key at start.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use orderflow::app::App;
use orderflow::connectors::Registry;
use orderflow::domain::audit::Actor;
use serde_json::{Value, json};

use crate::common::{TEST_KEY, TestDb, test_settings};
use crate::crash::seed_org;
use crate::harness::{Proc, base_env};

fn addr(proc: &Proc) -> String {
    proc.base().trim_start_matches("http://").to_owned()
}

/// True when the server closed the socket within `limit` (a read returns 0 or fails).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

#[tokio::test]
async fn two_hundred_concurrent_logins_stay_under_300_mib_and_answer_401_or_503() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    seed_org(&db, "acme").await;
    let server = Proc::start(&["serve"], &base_env(&db.url, dir.path()));
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/auth/login", server.base());
    let answers = futures::future::join_all((0..200).map(|i| {
        let client = client.clone();
        let url = url.clone();
        async move {
            // Half for an unknown org (no account needed), half for a real one.
            let org = if i % 2 == 0 { "no-such-org" } else { "acme" };
            let resp = client
                .post(&url)
                .json(&json!({"org_slug": org, "email": format!("u{i}@acme.test"), "password": "wrong-password-123"}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            if status == 503 {
                assert!(resp.headers().contains_key("retry-after"));
            }
            status
        }
    }))
    .await;
    assert!(
        answers.iter().all(|s| *s == 401 || *s == 503),
        "{answers:?}"
    );
    assert!(answers.contains(&401));
    let peak = server.peak_rss_kib();
    assert!(peak < 300 * 1024, "peak RSS {} MiB", peak / 1024);
}

#[tokio::test]
async fn idle_sockets_cannot_lock_out_real_clients() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&db.url, dir.path());
    env.insert("HTTP_MAX_CONNECTIONS".into(), "50".into());
    let server = Proc::start(&["serve"], &env);
    let target = addr(&server);
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(&target).unwrap())
        .collect();
    let start = Instant::now();
    let resp = reqwest::Client::new()
        .get(format!("{}/healthz", server.base()))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "healthz took {:?}",
        start.elapsed()
    );
    drop(idle);
}

#[tokio::test]
async fn half_sent_requests_and_idle_keep_alives_are_closed() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&db.url, dir.path());
    env.insert("HTTP_HEADER_READ_TIMEOUT_SECS".into(), "1".into());
    env.insert("HTTP_IDLE_TIMEOUT_SECS".into(), "2".into());
    let server = Proc::start(&["serve"], &env);

    let mut half = TcpStream::connect(addr(&server)).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert!(
        closed_within(&mut half, Duration::from_secs(4)),
        "a half-sent request kept its connection"
    );

    let mut kept = TcpStream::connect(addr(&server)).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut kept, Duration::from_secs(6)),
        "an idle keep-alive connection stayed open"
    );
}

#[tokio::test]
async fn shutdown_finishes_requests_in_progress_then_exits_despite_half_sent_ones() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, token) = seed_org(&db, "acme").await;
    let mut env = base_env(&db.url, dir.path());
    env.insert("CONNECTOR_BLOCKED_NETWORKS".into(), String::new());
    env.insert("SHUTDOWN_GRACE_SECS".into(), "10".into());
    let mut server = Proc::start(&["serve"], &env);

    // A peer that accepts and never speaks SSH: the connection test waits for its 2 s timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut half = TcpStream::connect(addr(&server)).unwrap();
    half.write_all(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-")
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/connectors/dropzone-json-v1/test", server.base());
    let slow = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(token)
            .json(
                &json!({"mode": "sftp", "host": "127.0.0.1", "port": port, "username": "u",
                          "password": "p", "export_path": "/in", "timeout_secs": 2}),
            )
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    server.terminate();
    let resp = slow
        .await
        .unwrap()
        .expect("the request in progress was cut");
    assert_eq!(resp.status(), 400);
    let result: Value = resp.json().await.unwrap();
    assert_eq!(result["error_code"], "CONNECTION_TIMEOUT");
    let status = server
        .wait_exit(Duration::from_secs(8))
        .expect("still running after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(asked.elapsed() < Duration::from_secs(8));
    drop(silent);
}

#[tokio::test]
async fn client_strings_cannot_flood_or_forge_log_lines() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    for format in ["pretty", "json"] {
        let mut env = base_env(&db.url, dir.path());
        env.insert("LOG_FORMAT".into(), format.into());
        let mut server = Proc::start(&["serve"], &env);
        let slug = format!(
            "evil\nFORGED-LINE level=ERROR \u{1b}[31m{}",
            "x".repeat(200_000)
        );
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/login", server.base()))
            .json(&json!({"org_slug": slug, "email": "a@b.c", "password": "whatever-123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.kill();
        let lines = server.stderr();
        assert!(
            lines.iter().any(|l| l.contains("login failed")),
            "{format}: {lines:?}"
        );
        for line in &lines {
            assert!(
                line.len() < 4096,
                "{format}: a {} byte log line",
                line.len()
            );
            assert!(!line.starts_with("FORGED-LINE"), "{format}: forged line");
            assert!(!line.contains('\u{1b}'), "{format}: raw ESC in a log line");
        }
    }
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_at_start_and_a_previous_key_is_accepted() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(&dir.path().join("dropzones"), &[]);
    let app = App::assemble(settings, db.store.clone(), Registry::default())
        .await
        .unwrap();
    let (org_id, _) = seed_org(&db, "acme").await;
    let body = json!({"mode": "sftp", "host": "sftp.example.com", "username": "u",
                      "password": "pw-123", "export_path": "/in"});
    app.connections
        .save(
            &Actor::cli(),
            org_id,
            "dropzone-json-v1",
            body.as_object().unwrap().clone(),
        )
        .await
        .unwrap();

    let other = orderflow::crypto::generate_key_hex();
    let mut env = base_env(&db.url, dir.path());
    env.insert("ENCRYPTION_MASTER_KEY".into(), other.clone());
    let mut wrong = Proc::spawn(&["serve"], &env);
    let status = wrong
        .wait_exit(Duration::from_secs(30))
        .expect("started with a wrong key");
    assert!(!status.success());
    let lines = wrong.stderr();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("ENCRYPTION_MASTER_KEY"), "{lines:?}");
    assert!(!lines[0].contains(&other) && !lines[0].contains(TEST_KEY));

    env.insert("ENCRYPTION_PREVIOUS_KEYS".into(), TEST_KEY.into());
    let server = Proc::start(&["serve"], &env);
    let ready = reqwest::get(format!("{}/readyz", server.base()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}
