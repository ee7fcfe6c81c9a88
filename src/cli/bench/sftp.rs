//! `orderflow bench sftp`: the SFTP transport alone, as exports use it, beside OpenSSH's own
//! `sftp -b` copying the same files (see `openssh`).

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use super::{SftpArgs, filler, openssh, percentile, round2};
use crate::connectors::ConnectionKey;
use crate::connectors::dropzone_json_v1::dropzone::publish;
use crate::connectors::transport::Transport;
use crate::connectors::transport::sftp::SftpTransport;
use crate::connectors::transport::sftp::pool::SessionPool;

/// `bench sftp` options.
#[derive(Debug, clap::Args)]
pub struct SftpBench {
    #[command(flatten)]
    conn: SftpArgs,
    /// Number of files.
    #[arg(long, default_value_t = 2000)]
    files: usize,
    /// Bytes per file.
    #[arg(long, default_value_t = 2048)]
    size: usize,
    /// Files in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Leave the files on the server.
    #[arg(long)]
    keep: bool,
}

pub(super) async fn run(o: SftpBench) -> anyhow::Result<()> {
    let target = o.conn.target()?;
    let path = SftpArgs::required(&o.conn.path, "path")?;
    let pool = Arc::new(SessionPool::default());
    let key = Some(ConnectionKey {
        id: Uuid::new_v4(),
        version: 1,
    });
    let run_id = &Uuid::new_v4().simple().to_string()[..8];
    let body = filler(o.size);

    // Connect once up front so the figures measure delivery, not the first handshake.
    let warmup = SftpTransport::new(target.clone(), pool.clone(), key, Vec::new());
    warmup.list(path).await?;
    if o.conn.host_key_fingerprint.is_none() {
        eprintln!(
            "host key (trusted on first use): {}",
            warmup.learned_fingerprint().unwrap_or_default()
        );
    }
    drop(warmup);

    let start = Instant::now();
    let latencies: Vec<Result<f64, crate::connectors::ConnectorError>> =
        futures::stream::iter(0..o.files)
            .map(|i| {
                let transport = SftpTransport::new(target.clone(), pool.clone(), key, Vec::new());
                let body = &body;
                let name = format!("bench_{run_id}_{i:06}.json");
                async move {
                    let t = Instant::now();
                    publish(&transport, path, &name, body, true).await?;
                    Ok(t.elapsed().as_secs_f64() * 1000.0)
                }
            })
            .buffer_unordered(o.concurrency.max(1))
            .collect()
            .await;
    let elapsed = start.elapsed().as_secs_f64();
    let mut ms: Vec<f64> = latencies.into_iter().collect::<Result<_, _>>()?;
    ms.sort_by(f64::total_cmp);

    let files_per_sec = o.files as f64 / elapsed;
    let mib_per_sec = (o.files * o.size) as f64 / (1024.0 * 1024.0) / elapsed;
    eprintln!(
        "{} files of {} bytes in {:.2} s over {} SSH connection(s): {:.0} files/s, {:.1} MiB/s",
        o.files,
        o.size,
        elapsed,
        pool.connects(),
        files_per_sec,
        mib_per_sec
    );
    let sftp_b = openssh::sftp_batch(&o.conn, o.files, o.size).await?;
    if let Some(rate) = sftp_b {
        eprintln!(
            "orderflow at {:.0}% of sftp -b copying the same files",
            100.0 * files_per_sec / rate
        );
    }
    if !o.keep {
        let cleanup = SftpTransport::new(target.clone(), pool.clone(), key, Vec::new());
        for i in 0..o.files {
            let _ = cleanup
                .delete(&format!(
                    "{}/bench_{run_id}_{i:06}.json",
                    path.trim_end_matches('/')
                ))
                .await;
        }
    }
    println!(
        "{}",
        json!({
            "files": o.files,
            "size": o.size,
            "concurrency": o.concurrency,
            "connections": pool.connects(),
            "elapsed_s": round2(elapsed),
            "files_per_sec": round2(files_per_sec),
            "mib_per_sec": round2(mib_per_sec),
            "p50_ms": round2(percentile(&ms, 50.0)),
            "p95_ms": round2(percentile(&ms, 95.0)),
            "baseline_sftp_b_files_per_sec": sftp_b.map(round2),
        })
    );
    Ok(())
}
