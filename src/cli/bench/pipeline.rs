//! `orderflow bench pipeline`: the real API and the real delivery worker, on whatever
//! `DATABASE_URL`, `DROPZONE_FS_ROOT` and `OBJECT_STORAGE_URL` say. It makes a throwaway org,
//! user and connection, creates and approves N drafts (untimed), then either pushes them all
//! and reports drafts/s from the first push to the last SENT, or (`--rate R`) pushes R per
//! second and reports push→SENT percentiles. For a filesystem dropzone it also times, in the
//! same run, a bare loop of N durable writes (tmp + fsync + rename + folder fsync, one thread)
//! as the yardstick; for SFTP, OpenSSH's own `sftp -b` copying as many files of the same size
//! to the same server (see `openssh`).

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use super::harness::{Bench, durable_writes};
use super::openssh;
use super::{SftpArgs, percentile, round2};
use crate::domain::export::ExportStatus;

/// Where the bench delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A folder under `DROPZONE_FS_ROOT`.
    Filesystem,
    /// An SFTP server (the SFTP flags).
    Sftp,
    /// `HTTP_JSON_V1` to a local receiver the bench starts (plain HTTP on loopback, keep-alive,
    /// answering 200 at once), so the figure is the pipeline's, not an ERP's.
    Http,
}

/// `bench pipeline` options.
#[derive(Debug, clap::Args)]
pub struct PipelineBench {
    /// Drafts to push.
    #[arg(long, default_value_t = 5000)]
    drafts: usize,
    /// Where to deliver.
    #[arg(long, value_enum, default_value_t = Target::Filesystem)]
    target: Target,
    /// Push this many drafts per second (steady) and report push→SENT latency percentiles.
    #[arg(long)]
    rate: Option<f64>,
    /// HTTP requests in flight while creating, approving and pushing. "Push them all" is a
    /// burst: 64 clients at once is where the figure stops rising (concurrent pushes share
    /// one statement and commit; 32 measured ~8% lower, 128 the same as 64).
    #[arg(long, default_value_t = 64)]
    http_concurrency: usize,
    #[command(flatten)]
    sftp: SftpArgs,
}

pub(super) async fn run(o: PipelineBench) -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let database = bench.database;
    let config = match o.target {
        Target::Filesystem => {
            let dir = bench.org_folder().join("orders");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            json!({"mode": "filesystem", "export_path": "/orders"})
        }
        Target::Sftp => {
            let folder = o.sftp.fresh_folder("orderflow_bench").await?;
            eprintln!("delivering into {folder} (left there)");
            Value::Object(o.sftp.connector_config(&folder)?)
        }
        Target::Http => {
            let addr = http_receiver().await?;
            json!({"url": format!("http://{addr}/orders"), "ack_mode": "none"})
        }
    };
    let slug = match o.target {
        Target::Http => "http-json-v1",
        Target::Filesystem | Target::Sftp => "dropzone-json-v1",
    };
    bench.connect(slug, &config).await?;

    eprintln!("creating and approving {} drafts…", o.drafts);
    let ids = bench.approved_drafts(o.drafts, o.http_concurrency).await?;

    // The yardsticks copy as many files of the size the exports have, for a burst (a steady
    // rate has nothing to compare with). `sftp -b` runs before the pushes and again after the
    // last SENT, and the faster run counts: whatever the database does after a burst
    // (autovacuum, checkpoints) must not slow only the yardstick.
    let size = rendered_size(&bench, slug, &ids).await?;
    let yardsticks = o.rate.is_none();
    let sftp_b_before = match o.target {
        Target::Sftp if yardsticks => openssh::sftp_batch(&o.sftp, o.drafts, size).await?,
        _ => None,
    };

    eprintln!("pushing…");
    let first_push = chrono::Utc::now();
    match o.rate {
        None => bench.push_all(ids, o.http_concurrency).await?,
        Some(rate) => {
            anyhow::ensure!(rate > 0.0, "--rate must be positive");
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut pushes = Vec::with_capacity(ids.len());
            for id in ids {
                tick.tick().await;
                let api = bench.api.clone();
                pushes.push(tokio::spawn(async move {
                    api.post(&format!("/api/v1/draft-orders/{id}/push"), None, Some(&id))
                        .await
                }));
            }
            for p in pushes {
                p.await??;
            }
        }
    }

    eprintln!(
        "all pushes answered after {:.2} s",
        (chrono::Utc::now() - first_push).num_milliseconds() as f64 / 1000.0
    );
    let exports = bench.wait_delivered(o.drafts).await?;
    let failed = exports
        .iter()
        .filter(|e| e.status != ExportStatus::Sent)
        .count();
    let last_sent = exports
        .iter()
        .filter_map(|e| e.sent_at)
        .max()
        .unwrap_or(first_push);
    let elapsed = (last_sent - first_push)
        .to_std()
        .unwrap_or_default()
        .as_secs_f64();
    let mut latencies: Vec<f64> = exports
        .iter()
        .filter_map(|e| Some((e.sent_at? - e.created_at).num_microseconds()? as f64 / 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);

    let drafts_per_sec = o.drafts as f64 / elapsed.max(1e-9);
    eprintln!(
        "{} drafts on {database} to {:?}: {drafts_per_sec:.0} drafts/s (first push to last SENT in {elapsed:.2} s); \
         push→SENT p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms; {failed} not SENT",
        o.drafts,
        o.target,
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
        percentile(&latencies, 99.0),
    );
    let folder = bench.org_folder().join("orders");
    bench.shutdown().await;

    let (durable_writes_per_sec, sftp_b_files_per_sec) = match o.target {
        _ if !yardsticks => (None, None),
        Target::Filesystem => (Some(durable_writes(&folder, o.drafts, size)?), None),
        Target::Sftp => {
            let after = openssh::sftp_batch(&o.sftp, o.drafts, size).await?;
            (
                None,
                sftp_b_before.into_iter().chain(after).reduce(f64::max),
            )
        }
        Target::Http => (None, None),
    };
    if let Some(b) = durable_writes_per_sec {
        eprintln!(
            "bare durable-write loop in the same folder: {b:.0} files/s (pipeline at {:.0}% of it)",
            100.0 * drafts_per_sec / b
        );
    }
    if let Some(b) = sftp_b_files_per_sec {
        eprintln!(
            "OpenSSH sftp -b, {} files of {size} bytes to the same server (the faster run): {b:.0} files/s (pipeline at {:.0}% of it)",
            o.drafts,
            100.0 * drafts_per_sec / b
        );
    }
    println!(
        "{}",
        json!({
            "target": format!("{:?}", o.target).to_lowercase(),
            "database": database,
            "drafts": o.drafts,
            "rate": o.rate,
            "elapsed_s": round2(elapsed),
            "drafts_per_sec": round2(drafts_per_sec),
            "p50_ms": round2(percentile(&latencies, 50.0)),
            "p95_ms": round2(percentile(&latencies, 95.0)),
            "p99_ms": round2(percentile(&latencies, 99.0)),
            "not_sent": failed,
            "baseline_durable_writes_per_sec": durable_writes_per_sec.map(round2),
            "baseline_sftp_b_files_per_sec": sftp_b_files_per_sec.map(round2),
        })
    );
    Ok(())
}

/// The size of the file the first draft renders to.
async fn rendered_size(bench: &Bench, slug: &str, ids: &[String]) -> anyhow::Result<usize> {
    let id: uuid::Uuid = ids.first().context("no drafts")?.parse()?;
    let draft = bench
        .app
        .store
        .draft(bench.org.id, id)
        .await?
        .context("the draft is gone")?;
    let order = draft
        .to_approved(&bench.org.slug)
        .context("the draft is not approved")?;
    let connector = bench
        .app
        .registry
        .by_slug(slug)
        .context("no such connector")?;
    Ok(connector.render(&order)?.bytes.len())
}

/// A local ERP endpoint: accepts every POST with 200 and an order number.
async fn http_receiver() -> anyhow::Result<std::net::SocketAddr> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(br#"{"order": {"number": "SO-1"}}"#),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
