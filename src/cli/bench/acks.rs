//! `orderflow bench acks`: acknowledgement polling on the usual environment. It makes its own
//! org and connection (with an `ack_path`), N exports delivered by the real worker (untimed),
//! then N ack files in one folder as an ERP would write them (untimed), and times one
//! `poll_once` over all of them: list, read, apply in the database, move to `processed/`.
//! On a filesystem target it also times the bare durable-write loop in the same folder.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use super::harness::{Bench, durable_writes};
use super::{SftpArgs, round2};
use crate::connectors::ConnectionKey;
use crate::connectors::dropzone_json_v1::dropzone::publish;
use crate::connectors::transport::Transport;
use crate::connectors::transport::sftp::SftpTransport;
use crate::connectors::transport::sftp::pool::SessionPool;
use crate::domain::export::ExportStatus;

/// `bench acks` options.
/// Where the ack files are (HTTP connections take callbacks, not files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A folder under `DROPZONE_FS_ROOT`.
    Filesystem,
    /// An SFTP server (the SFTP flags).
    Sftp,
}

#[derive(Debug, clap::Args)]
pub struct AcksBench {
    /// Ack files (and exports) to make.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Where the ack folder is.
    #[arg(long, value_enum, default_value_t = Target::Filesystem)]
    target: Target,
    #[command(flatten)]
    sftp: SftpArgs,
}

fn ack_body(i: usize) -> Vec<u8> {
    json!({"status": "ACKED", "erp_order_id": format!("SO-{i:08}"),
           "processed_at": "2026-12-01T10:00:00Z"})
    .to_string()
    .into_bytes()
}

pub(super) async fn run(o: AcksBench) -> anyhow::Result<()> {
    let mut bench = Bench::start().await?;
    let database = bench.database;
    // Where the ERP writes: a local folder, or a fresh folder on the SFTP server.
    let (config, ack_path) = match o.target {
        Target::Filesystem => {
            for dir in ["orders", "acks"] {
                let dir = bench.org_folder().join(dir);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            (
                json!({"mode": "filesystem", "export_path": "/orders", "ack_path": "/acks"}),
                "/acks".to_owned(),
            )
        }
        Target::Sftp => {
            let folder = o.sftp.fresh_folder("orderflow_acks_bench").await?;
            let mut config = o.sftp.connector_config(&folder)?;
            let ack_path = format!("{folder}/acks");
            config.insert("ack_path".into(), json!(ack_path));
            (Value::Object(config), ack_path)
        }
    };
    let erp = match o.target {
        Target::Sftp => {
            let erp = SftpTransport::new(
                o.sftp.target()?,
                Arc::new(SessionPool::default()),
                Some(ConnectionKey {
                    id: Uuid::new_v4(),
                    version: 1,
                }),
                Vec::new(),
            );
            erp.create_dir(&ack_path).await?;
            Some(erp)
        }
        Target::Filesystem => None,
    };
    bench.connect("dropzone-json-v1", &config).await?;

    eprintln!("delivering {} exports…", o.files);
    let ids = bench.approved_drafts(o.files, 32).await?;
    bench.push_all(ids, 32).await?;
    let exports = bench.wait_delivered(o.files).await?;
    anyhow::ensure!(
        exports.iter().all(|e| e.status == ExportStatus::Sent),
        "not every export was SENT"
    );
    // The background poller must not take the files before the timed poll does.
    bench.stop_workers().await;

    eprintln!("writing {} ack files…", o.files);
    let local_acks = bench.org_folder().join("acks");
    match &erp {
        Some(erp) => {
            futures::stream::iter(exports.iter().enumerate())
                .map(|(i, e)| {
                    let name = format!("ack_{}", e.file_name);
                    let ack_path = &ack_path;
                    async move { publish(erp, ack_path, &name, &ack_body(i), true).await }
                })
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
        }
        None => {
            for (i, e) in exports.iter().enumerate() {
                let name = format!("ack_{}", e.file_name);
                let tmp = local_acks.join(format!("{name}.tmp"));
                std::fs::write(&tmp, ack_body(i))?;
                std::fs::rename(&tmp, local_acks.join(&name))?;
            }
        }
    }

    let connection = bench
        .app
        .store
        .active_connection(bench.org.id)
        .await?
        .context("the connection disappeared")?;
    eprintln!("polling…");
    let start = Instant::now();
    let counts = bench.app.ack_polls.poll_once(&connection).await?;
    let elapsed = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        counts.processed == o.files as u64,
        "the poll processed {} of {} files: {counts:?}",
        counts.processed,
        o.files
    );
    let acked = bench
        .exports()
        .await?
        .iter()
        .filter(|e| e.status == ExportStatus::Acked)
        .count();
    anyhow::ensure!(acked == o.files, "{acked} of {} exports ACKED", o.files);
    bench.shutdown().await;

    let baseline = match o.target {
        Target::Filesystem => Some(durable_writes(&local_acks, o.files, ack_body(0).len())?),
        Target::Sftp => None,
    };
    let files_per_sec = o.files as f64 / elapsed.max(1e-9);
    eprintln!(
        "{} ack files on {database} via {:?}: one poll in {elapsed:.2} s, {files_per_sec:.0} files/s",
        o.files, o.target
    );
    if let Some(b) = baseline {
        eprintln!(
            "bare durable-write loop in the same folder: {b:.0} files/s (polling at {:.0}% of it)",
            100.0 * files_per_sec / b
        );
    }
    println!(
        "{}",
        json!({
            "target": format!("{:?}", o.target).to_lowercase(),
            "database": database,
            "files": o.files,
            "elapsed_s": round2(elapsed),
            "files_per_sec": round2(files_per_sec),
            "baseline_durable_writes_per_sec": baseline.map(round2),
        })
    );
    Ok(())
}
