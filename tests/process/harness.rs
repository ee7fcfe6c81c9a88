//! Runs `orderflow` as a child process with a clean environment and reads its address from
//! its own "listening" log line.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{TEST_JWT_SECRET, TEST_KEY};

pub const BIN: &str = env!("CARGO_BIN_EXE_orderflow");

/// A running `orderflow` process.
pub struct Proc {
    pub child: Child,
    /// Every stderr line so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// `http://127.0.0.1:PORT` once it listens (serve only).
    pub base: Option<String>,
}

/// The environment every child gets: test secrets, the given database and folders, quiet logs.
pub fn base_env(db_url: &str, dir: &Path) -> HashMap<String, String> {
    HashMap::from([
        ("ENCRYPTION_MASTER_KEY".into(), TEST_KEY.into()),
        ("JWT_SECRET".into(), TEST_JWT_SECRET.into()),
        ("DATABASE_URL".into(), db_url.into()),
        ("BIND_ADDR".into(), "127.0.0.1:0".into()),
        (
            "DROPZONE_FS_ROOT".into(),
            dir.join("dropzones").display().to_string(),
        ),
        (
            "OBJECT_STORAGE_URL".into(),
            format!("file://{}", dir.join("objects").display()),
        ),
        ("LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "info,sqlx=warn".into()),
    ])
}

impl Proc {
    /// Starts `orderflow <args>`; for `serve`, waits until it listens.
    pub fn start(args: &[&str], env: &HashMap<String, String>) -> Proc {
        Self::launch(args, env, args.first() == Some(&"serve"))
    }

    /// Starts `orderflow <args>` without waiting for anything (a start expected to fail).
    pub fn spawn(args: &[&str], env: &HashMap<String, String>) -> Proc {
        Self::launch(args, env, false)
    }

    fn launch(args: &[&str], env: &HashMap<String, String>, wait_listen: bool) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot start orderflow");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("\"listening\"") || line.contains("listening") {
                    let _ = tx.send(line.clone());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut proc = Proc {
            child,
            stderr,
            base: None,
        };
        if wait_listen {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("never listened: {:?}", proc.stderr()));
            // JSON logs carry "addr":"…"; the human format `addr=…`.
            let addr = match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(value) => value["addr"].as_str().unwrap().to_owned(),
                Err(_) => line
                    .split("addr=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .unwrap()
                    .to_owned(),
            };
            proc.base = Some(format!("http://{addr}"));
        }
        proc
    }

    pub fn base(&self) -> &str {
        self.base.as_deref().unwrap()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: a graceful shutdown.
    pub fn terminate(&self) {
        let pid = rustix::process::Pid::from_raw(self.pid()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    }

    /// Waits up to `limit` for the process to exit; its status, or None if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
