//! DROPZONE_JSON_V1 against OpenSSH's `sshd`, the server our customers run. A private sshd is
//! started on a free loopback port with its own config, host key and PidFile, and stopped by
//! its PID. Password auth needs a real local user, so (as root) a test user is created.
//!
//! Runs whenever `/usr/sbin/sshd` exists and we are root; `.ci/run` installs it and sets
//! `ORDERFLOW_REQUIRE_SSHD=1`, which turns a missing sshd into a failure instead of a skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use orderflow::connectors::dropzone_json_v1::DropzoneJsonV1;
use orderflow::connectors::dropzone_json_v1::dropzone::publish;
use orderflow::connectors::transport::Transport;
use orderflow::connectors::transport::sftp::pool::SessionPool;
use orderflow::connectors::transport::sftp::{SftpTarget, SftpTransport};
use orderflow::connectors::{
    ConnectionKey, Connector, ConnectorContext, ExportRequest, TestResult, run_test,
};
use orderflow::crypto::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::common::sample;

const SSHD: &str = "/usr/sbin/sshd";
pub(crate) const USER: &str = "ofsftp";
pub(crate) const PASSWORD: &str = "ofsftp-Test-pw-8842";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}

/// None (with a note) when sshd cannot run here; a failure instead when CI requires it.
pub(crate) fn usable() -> bool {
    let why = if !Path::new(SSHD).exists() {
        "OpenSSH sshd is not installed"
    } else if !is_root() {
        "not root (cannot create the test user)"
    } else {
        return true;
    };
    assert!(
        std::env::var_os("ORDERFLOW_REQUIRE_SSHD").is_none(),
        "ORDERFLOW_REQUIRE_SSHD is set but {why}"
    );
    eprintln!("skipped: {why}; the OpenSSH tests did not run");
    false
}

/// The test user (created once per machine) and its uid/gid.
pub(crate) fn user() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        if !Command::new("id")
            .arg(USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
        {
            run(Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", USER]));
        }
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(
            chpasswd.stdin.as_mut().unwrap(),
            format!("{USER}:{PASSWORD}\n").as_bytes(),
        )
        .unwrap();
        assert!(chpasswd.wait().unwrap().success());
        let uid = run(Command::new("id").args(["-u", USER]))
            .trim()
            .parse()
            .unwrap();
        let gid = run(Command::new("id").args(["-g", USER]))
            .trim()
            .parse()
            .unwrap();
        (uid, gid)
    })
}

fn keygen(path: &Path, kind: &str, passphrase: &str) {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args([
        "-q",
        "-t",
        kind,
        "-N",
        passphrase,
        "-C",
        "orderflow-test",
        "-f",
    ])
    .arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "3072"]);
    }
    run(&mut cmd);
}

pub(crate) struct Sshd {
    child: Child,
    pub(crate) port: u16,
    dir: TempDir,
}

impl Sshd {
    pub(crate) fn start() -> Self {
        user();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        // sshd reads authorized_keys as the user, so the folder must be traversable.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        keygen(&dir.path().join("host_ed25519"), "ed25519", "");
        for (name, kind, passphrase) in [
            ("id_ed25519", "ed25519", ""),
            ("id_rsa", "rsa", ""),
            ("id_locked", "ed25519", "key-passphrase-1"),
        ] {
            keygen(&dir.path().join(name), kind, passphrase);
        }
        let authorized: String = ["id_ed25519", "id_rsa", "id_locked"]
            .iter()
            .map(|k| std::fs::read_to_string(dir.path().join(format!("{k}.pub"))).unwrap())
            .collect();
        std::fs::write(dir.path().join("authorized_keys"), authorized).unwrap();
        std::fs::set_permissions(
            dir.path().join("authorized_keys"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
             PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\nPermitRootLogin no\n\
             AllowUsers {USER}\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, dir }
    }

    fn key(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }

    /// What `ssh-keygen -lf` prints for the host key: "256 SHA256:… comment (ED25519)".
    fn fingerprint(&self) -> String {
        let out = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join("host_ed25519.pub")));
        out.split_whitespace().nth(1).unwrap().to_owned()
    }

    /// A fresh folder in the user's home, owned by the user.
    pub(crate) fn folder(&self, mode: u32) -> (String, PathBuf) {
        let (uid, gid) = user();
        let path = PathBuf::from(format!("/home/{USER}/t-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (path.display().to_string(), path)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Stop it by the PID it wrote, as an operator would; fall back to the child handle.
        let pid = std::fs::read_to_string(self.dir.path().join("sshd.pid")).unwrap_or_default();
        let pid = pid.trim();
        if pid.is_empty()
            || !Command::new("kill")
                .arg(pid)
                .status()
                .is_ok_and(|s| s.success())
        {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub(crate) struct Folder(pub(crate) PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(sshd: &Sshd, path: &str, extra: Value) -> Value {
    let mut c = json!({"mode": "sftp", "host": "127.0.0.1", "port": sshd.port, "username": USER,
                       "password": PASSWORD, "export_path": path, "timeout_secs": 10});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

async fn test_with(ctx: &ConnectorContext, config: Value) -> TestResult {
    let config = DropzoneJsonV1
        .validate(&sample::config(config), &ctx.env.validation())
        .unwrap();
    run_test(&DropzoneJsonV1, ctx, &config).await
}

fn code(r: &TestResult) -> &'static str {
    r.error_code.map_or("none", |c| c.as_str())
}

#[tokio::test]
async fn password_and_key_auth_and_host_keys_as_ssh_keygen_prints_them() {
    if !usable() {
        return;
    }
    let sshd = Sshd::start();
    let (path, dir) = sshd.folder(0o755);
    let _cleanup = Folder(dir.clone());
    let (ctx, _root) = sample::context("acme");

    let result = test_with(&ctx, config(&sshd, &path, json!({}))).await;
    assert!(result.success, "{result:?}");
    assert_eq!(
        result.learned.host_key_fingerprint,
        Some(sshd.fingerprint())
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "test left files behind"
    );

    for (key, passphrase) in [
        ("id_ed25519", None),
        ("id_rsa", None),
        ("id_locked", Some("key-passphrase-1")),
    ] {
        let mut extra = json!({"password": null, "private_key": sshd.key(key), "host_key_fingerprint": sshd.fingerprint()});
        if let Some(p) = passphrase {
            extra["private_key_passphrase"] = json!(p);
        }
        let result = test_with(&ctx, config(&sshd, &path, extra)).await;
        assert!(result.success, "{key}: {result:?}");
    }

    let result = test_with(
        &ctx,
        config(&sshd, &path, json!({"password": "wrong-password"})),
    )
    .await;
    assert_eq!(code(&result), "AUTH_FAILED");
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let result = test_with(
        &ctx,
        config(&sshd, &path, json!({"host_key_fingerprint": wrong})),
    )
    .await;
    assert_eq!(code(&result), "HOST_KEY_MISMATCH");
}

#[tokio::test]
async fn read_only_and_missing_folders_on_openssh() {
    if !usable() {
        return;
    }
    let sshd = Sshd::start();
    let (path, dir) = sshd.folder(0o555);
    let _cleanup = Folder(dir);
    let (ctx, _root) = sample::context("acme");
    let result = test_with(&ctx, config(&sshd, &path, json!({}))).await;
    assert_eq!(code(&result), "PERMISSION_DENIED", "{result:?}");
    let result = test_with(&ctx, config(&sshd, &format!("{path}/missing"), json!({}))).await;
    assert_eq!(code(&result), "PATH_NOT_FOUND", "{result:?}");
}

#[tokio::test]
async fn exports_publish_atomically_once_and_large_files_arrive_intact() {
    if !usable() {
        return;
    }
    let sshd = Sshd::start();
    let (path, dir) = sshd.folder(0o755);
    let _cleanup = Folder(dir.clone());
    let (ctx, _root) = sample::context("acme");
    let mut ctx = ctx;
    ctx.connection = Some(ConnectionKey {
        id: uuid::Uuid::new_v4(),
        version: 1,
    });
    let cfg = DropzoneJsonV1
        .validate(
            &sample::config(config(&sshd, &path, json!({}))),
            &ctx.env.validation(),
        )
        .unwrap();
    let request = ExportRequest {
        order: sample::order("acme"),
        file_name: "sales_order_x_20261126T000000Z.json".into(),
    };
    let first = DropzoneJsonV1.export(&ctx, &request, &cfg).await.unwrap();
    assert!(!first.already_present);
    assert_eq!(
        first.dropzone_path,
        format!("{path}/sales_order_x_20261126T000000Z.json")
    );
    assert_eq!(
        std::fs::read(dir.join(&request.file_name)).unwrap(),
        first.content
    );
    let again = DropzoneJsonV1.export(&ctx, &request, &cfg).await.unwrap();
    assert!(again.already_present);
    assert_eq!(
        ctx.env.sftp_pool.connects(),
        1,
        "the second export should reuse the session"
    );

    // 8 MiB through the same publish path exports use: pipelined writes, hash-checked.
    let target = SftpTarget {
        host: "127.0.0.1".into(),
        port: sshd.port,
        username: USER.into(),
        password: Some(SecretString::new(PASSWORD.into())),
        private_key: None,
        private_key_passphrase: None,
        host_key_fingerprint: Some(sshd.fingerprint()),
        timeout: Duration::from_secs(10),
    };
    let transport = SftpTransport::new(
        target,
        std::sync::Arc::new(SessionPool::default()),
        None,
        vec![],
    );
    let big: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    publish(&transport, &path, "big.bin", &big, true)
        .await
        .unwrap();
    assert!(
        std::fs::read(dir.join("big.bin")).unwrap() == big,
        "big file corrupted"
    );
    let digest: [u8; 32] =
        sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), &big)).into();
    assert_eq!(
        transport
            .sha256_if_exists(&format!("{path}/big.bin"))
            .await
            .unwrap(),
        Some(digest)
    );
    assert_eq!(
        transport.list(&path).await.unwrap(),
        ["big.bin", "sales_order_x_20261126T000000Z.json"]
    );
}
