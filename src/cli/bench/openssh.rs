//! The SFTP yardstick: OpenSSH's own `sftp -b` copying the same number of files of the same
//! size to the same server, one `put` after another, timed in the same run as the bench.
//!
//! `sftp -b` runs in batch mode, which never asks for a password, so the yardstick needs
//! `--private-key-file`; with a password alone it is skipped and the bench says so. The host
//! key is not checked (the operator names their own server; our side pins or learns it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::Context;

use super::{SftpArgs, filler};

/// Copies `files` files of `size` bytes with `sftp -b` into a new folder under the bench's
/// remote path, and leaves them there (deleting thousands of files at once slows file
/// creation on a journal-less ext4 for minutes). The time of a batch that only creates the
/// folder (connect, authenticate, one request) is subtracted, so the figure is the copy rate,
/// as the bench's own figures exclude connecting. Files per second, or None when it cannot
/// run here (the bench says why).
pub(super) async fn sftp_batch(
    args: &SftpArgs,
    files: usize,
    size: usize,
) -> anyhow::Result<Option<f64>> {
    Ok(match measure(args, files, size).await? {
        Ok(rate) => {
            eprintln!("OpenSSH sftp -b: {rate:.0} files/s");
            Some(rate)
        }
        Err(why) => {
            eprintln!("sftp -b yardstick skipped: {why}");
            None
        }
    })
}

/// Files per second, or why `sftp -b` could not run.
async fn measure(
    args: &SftpArgs,
    files: usize,
    size: usize,
) -> anyhow::Result<Result<f64, String>> {
    let Some(key) = &args.private_key_file else {
        return Ok(Err(
            "needs --private-key-file (sftp -b never sends a password)".into(),
        ));
    };
    let remote = SftpArgs::required(&args.path, "path")?.trim_end_matches('/');
    let local = std::env::temp_dir().join(format!("orderflow-sftp-b-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir(&local).with_context(|| format!("cannot create {}", local.display()))?;
    let result = copy(args, key, &local, remote, files, size).await;
    let _ = std::fs::remove_dir_all(&local);
    result
}

async fn copy(
    args: &SftpArgs,
    key: &Path,
    local: &Path,
    remote: &str,
    files: usize,
    size: usize,
) -> anyhow::Result<Result<f64, String>> {
    // One file under many names (hard links): removing the folder afterwards then frees one
    // inode, not thousands. Without a journal, ext4 skips inodes freed in the last minutes
    // when it allocates, which made file creation (ours, sshd's, PostgreSQL's) on this
    // machine up to twice as dear for the next runs.
    let source = local.join("source");
    std::fs::write(&source, filler(size))?;
    for i in 0..files {
        std::fs::hard_link(&source, local.join(name(i)))?;
    }
    let folder = format!(
        "{remote}/sftp_b_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut puts = format!("cd \"{folder}\"\nlcd \"{}\"\n", local.display());
    for i in 0..files {
        puts.push_str(&format!("put {}\n", name(i)));
    }

    let connect = match run(args, key, local, &format!("mkdir \"{folder}\"\n")).await? {
        Ok(elapsed) => elapsed,
        Err(why) => return Ok(Err(why)),
    };
    let copying = match run(args, key, local, &puts).await? {
        Ok(elapsed) => elapsed,
        Err(why) => return Ok(Err(why)),
    };
    eprintln!("sftp -b copied into {folder} (left there)");
    Ok(Ok(files as f64 / (copying - connect).max(1e-9)))
}

fn name(i: usize) -> String {
    format!("f_{i:06}.json")
}

/// Runs one batch: its wall time in seconds, or why `sftp` could not run it.
async fn run(
    args: &SftpArgs,
    key: &Path,
    local: &Path,
    batch: &str,
) -> anyhow::Result<Result<f64, String>> {
    let file: PathBuf = local.join("batch.txt");
    std::fs::write(&file, batch)?;
    let host = SftpArgs::required(&args.host, "host")?;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let user = SftpArgs::required(&args.username, "username")?;
    let start = Instant::now();
    let out = tokio::process::Command::new("sftp")
        .arg("-b")
        .arg(&file)
        .arg("-i")
        .arg(key)
        .args(["-P", &args.port.to_string()])
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "LogLevel=ERROR"])
        .arg(format!("{user}@{host}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    Ok(match out {
        Err(err) => Err(format!("cannot run sftp: {err}")),
        Ok(out) if !out.status.success() => Err(format!(
            "sftp -b failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => Ok(elapsed),
    })
}
