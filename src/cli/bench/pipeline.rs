//! `orderflow bench pipeline`: the real API and the real delivery worker, on whatever
//! `DATABASE_URL`, `DROPZONE_FS_ROOT` and `OBJECT_STORAGE_URL` say. It makes a throwaway org,
//! user and connection, creates and approves N drafts (untimed), then either pushes them all
//! and reports drafts/s from the first push to the last SENT, or (`--rate R`) pushes R per
//! second and reports push→SENT percentiles. For a filesystem dropzone it also times, in the
//! same run, a bare loop of N durable writes (tmp + fsync + rename + folder fsync, one thread)
//! as the yardstick; for SFTP, OpenSSH's own `sftp -b` copying as many files of the same size
//! to the same server (see `openssh`). With `--format` other than `json`, rounds alternate
//! between JSON v1 and that format on fresh drafts, so both figures come from the same run and
//! their ratio is what the format costs.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use super::harness::{Bench, durable_writes};
use super::openssh;
use super::{SftpArgs, percentile, round2};
use crate::domain::audit::Actor;
use crate::domain::export::ExportStatus;
use crate::service::preview::PreviewWith;

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

/// The format the bench's connection delivers in (with the options a German ERP's import
/// would typically use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// OrderFlow JSON v1.
    Json,
    /// CSV, `;` and decimal commas in Windows-1252.
    Csv,
    /// UBL 2.1 Order (Peppol BIS Order 3).
    Ubl,
    /// EDIFACT ORDERS D.96A.
    Edifact,
}

impl Format {
    /// The connection's `format` value (None: the default).
    fn config(self) -> Option<Value> {
        match self {
            Format::Json => None,
            Format::Csv => Some(
                json!({"type": "csv", "delimiter": ";", "decimal_separator": ",",
                                       "encoding": "windows-1252"}),
            ),
            Format::Ubl => Some(
                json!({"type": "ubl_order_2_1", "seller_endpoint_id": "4000001000005",
                                       "seller_endpoint_scheme": "0088"}),
            ),
            Format::Edifact => Some(json!({"type": "edifact_orders_d96a",
                                           "sender_id": "4000001000005", "recipient_id": "4000002000002"})),
        }
    }
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
    /// The connection's file format. Other than `json`, the run alternates four rounds of
    /// `--drafts` each (JSON v1, the format, JSON v1, the format) and compares their means.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    #[command(flatten)]
    sftp: SftpArgs,
}

pub(super) async fn run(o: PipelineBench) -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let database = bench.database;
    let transport = match o.target {
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
    // Another format is compared with JSON v1 in the same run: after an uncounted warm-up
    // round (a cold database and page cache slow the first round most), JSON, the format, the
    // format, JSON, so that a drift over the run weighs on both alike.
    let rounds = if o.format == Format::Json {
        vec![(Format::Json, o.drafts, true)]
    } else {
        let warm_up = o.drafts.min(1000);
        vec![
            (Format::Json, warm_up, false),
            (Format::Json, o.drafts, true),
            (o.format, o.drafts, true),
            (o.format, o.drafts, true),
            (Format::Json, o.drafts, true),
        ]
    };
    let yardsticks = o.rate.is_none();
    let mut results = Vec::new();
    let mut sftp_b_before = None;
    let mut size = 0;
    let mut total = 0;
    for (i, (format, drafts, counted)) in rounds.iter().enumerate() {
        let mut config = transport.clone();
        if let (Some(fields), Some(value)) = (config.as_object_mut(), format.config()) {
            fields.insert("format".into(), value);
        }
        bench.connect(slug, &config).await?;
        eprintln!("round {}: creating and approving {drafts} drafts…", i + 1);
        let ids = bench.approved_drafts(*drafts, o.http_concurrency).await?;
        if i == 0 {
            // The yardsticks copy as many files of the size the exports have, for a burst (a
            // steady rate has nothing to compare with). `sftp -b` runs before the pushes and
            // again after the last SENT, and the faster run counts: whatever the database
            // does after a burst (autovacuum, checkpoints) must not slow only the yardstick.
            size = rendered_size(&bench, &ids).await?;
            if let (Target::Sftp, true) = (o.target, yardsticks) {
                sftp_b_before = openssh::sftp_batch(&o.sftp, o.drafts, size).await?;
            }
        }
        total += drafts;
        let round = push_round(&bench, &o, ids, total).await?;
        eprintln!(
            "{drafts} drafts on {database} to {:?} as {format:?}{}: {:.0} drafts/s (first push to last SENT in {:.2} s); \
             push→SENT p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms; {} not SENT",
            o.target,
            if *counted {
                ""
            } else {
                " (warm-up, not counted)"
            },
            round.drafts_per_sec,
            round.elapsed,
            percentile(&round.latencies, 50.0),
            percentile(&round.latencies, 95.0),
            percentile(&round.latencies, 99.0),
            round.failed,
        );
        if *counted {
            results.push((*format, round));
        }
    }
    let folder = bench.org_folder().join("orders");
    bench.shutdown().await;

    let mean = |f: Format| {
        let of: Vec<f64> = results
            .iter()
            .filter(|(g, _)| *g == f)
            .map(|(_, r)| r.drafts_per_sec)
            .collect();
        of.iter().sum::<f64>() / of.len().max(1) as f64
    };
    let (json_rate, format_rate) = (mean(Format::Json), mean(o.format));
    if o.format != Format::Json {
        eprintln!(
            "{:?}: {format_rate:.0} drafts/s against JSON v1's {json_rate:.0} in the same run ({:+.1} %)",
            o.format,
            100.0 * (format_rate / json_rate.max(1e-9) - 1.0)
        );
    }
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
            100.0 * json_rate / b
        );
    }
    if let Some(b) = sftp_b_files_per_sec {
        eprintln!(
            "OpenSSH sftp -b, {} files of {size} bytes to the same server (the faster run): {b:.0} files/s (pipeline at {:.0}% of it)",
            o.drafts,
            100.0 * json_rate / b
        );
    }
    let (_, last) = results
        .iter()
        .rev()
        .find(|(f, _)| *f == o.format)
        .context("no round ran")?;
    println!(
        "{}",
        json!({
            "target": format!("{:?}", o.target).to_lowercase(),
            "database": database,
            "drafts": o.drafts,
            "rate": o.rate,
            "format": format!("{:?}", o.format).to_lowercase(),
            "elapsed_s": round2(last.elapsed),
            "drafts_per_sec": round2(format_rate),
            "json_v1_drafts_per_sec": round2(json_rate),
            "rounds": results.iter().map(|(f, r)| json!({
                "format": format!("{f:?}").to_lowercase(),
                "drafts_per_sec": round2(r.drafts_per_sec),
                "p50_ms": round2(percentile(&r.latencies, 50.0)),
                "p95_ms": round2(percentile(&r.latencies, 95.0)),
            })).collect::<Vec<_>>(),
            "p50_ms": round2(percentile(&last.latencies, 50.0)),
            "p95_ms": round2(percentile(&last.latencies, 95.0)),
            "p99_ms": round2(percentile(&last.latencies, 99.0)),
            "not_sent": results.iter().map(|(_, r)| r.failed).sum::<usize>(),
            "baseline_durable_writes_per_sec": durable_writes_per_sec.map(round2),
            "baseline_sftp_b_files_per_sec": sftp_b_files_per_sec.map(round2),
        })
    );
    Ok(())
}

/// One round's figures.
struct Round {
    elapsed: f64,
    drafts_per_sec: f64,
    latencies: Vec<f64>,
    failed: usize,
}

/// Pushes `ids` (all at once, or at `--rate`) and waits until the org has `total` exports
/// done; the figures are this round's exports'.
async fn push_round(
    bench: &Bench,
    o: &PipelineBench,
    ids: Vec<String>,
    total: usize,
) -> anyhow::Result<Round> {
    let wanted: std::collections::HashSet<String> = ids.iter().cloned().collect();
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
    let exports: Vec<_> = bench
        .wait_delivered(total)
        .await?
        .into_iter()
        .filter(|e| wanted.contains(&e.draft_order_id.to_string()))
        .collect();
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
    Ok(Round {
        elapsed,
        drafts_per_sec: exports.len() as f64 / elapsed.max(1e-9),
        latencies,
        failed,
    })
}

/// The size of the file the first draft renders to, as a push would deliver it.
async fn rendered_size(bench: &Bench, ids: &[String]) -> anyhow::Result<usize> {
    let id: uuid::Uuid = ids.first().context("no drafts")?.parse()?;
    let preview = bench
        .app
        .previews
        .draft(&Actor::cli(), bench.org.id, id, PreviewWith::Active)
        .await?;
    Ok(preview.bytes.len())
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
