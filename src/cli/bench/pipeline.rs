//! `orderflow bench pipeline`: the real API and the real delivery worker, on whatever
//! `DATABASE_URL`, `DROPZONE_FS_ROOT` and `OBJECT_STORAGE_URL` say. It makes a throwaway org,
//! user and connection, creates and approves N drafts (untimed), then either pushes them all
//! and reports drafts/s from the first push to the last SENT, or (`--rate R`) pushes R per
//! second and reports push→SENT percentiles. For a filesystem dropzone it also times, in the
//! same run, a bare loop of N durable writes (tmp + fsync + rename + folder fsync, one thread)
//! as the yardstick.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{SftpArgs, percentile, round2};
use crate::api::{AppState, Application, ServerLimits};
use crate::app::App;
use crate::cli::admin::load_settings;
use crate::crypto::SecretString;
use crate::domain::audit::Actor;
use crate::domain::export::{Export, ExportStatus};
use crate::domain::page::PageRequest;
use crate::domain::user::Role;
use crate::service::accounts;
use crate::workers::Workers;

/// Where the bench delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A folder under `DROPZONE_FS_ROOT`.
    Filesystem,
    /// An SFTP server (the SFTP flags).
    Sftp,
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
    /// HTTP requests in flight while creating, approving and pushing.
    #[arg(long, default_value_t = 32)]
    http_concurrency: usize,
    #[command(flatten)]
    sftp: SftpArgs,
}

fn draft_body(i: usize) -> Value {
    json!({
        "external_order_number": format!("BENCH-{i}"),
        "order_date": "2026-11-30",
        "currency": "EUR",
        "customer": {"erp_customer_number": "C-1001", "name": "Bench Customer GmbH"},
        "lines": [
            {"line_no": 1, "internal_sku": "SKU-1", "qty": 12.5, "uom": "KG", "unit_price": 3.99},
            {"line_no": 2, "internal_sku": "SKU-2", "qty": 3, "uom": "PCE", "unit_price": 19.90},
            {"line_no": 3, "internal_sku": "SKU-3", "qty": 1, "uom": "PCE", "unit_price": 250}
        ]
    })
}

/// A bare loop of durable writes, one thread: the filesystem yardstick.
fn durable_writes(dir: &std::path::Path, n: usize, size: usize) -> anyhow::Result<f64> {
    let body = vec![b'x'; size];
    let folder = std::fs::File::open(dir)?;
    let start = Instant::now();
    for i in 0..n {
        let tmp = dir.join(format!("baseline_{i:06}.json.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(format!("baseline_{i:06}.json")))?;
        folder.sync_all()?;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    for i in 0..n {
        let _ = std::fs::remove_file(dir.join(format!("baseline_{i:06}.json")));
    }
    Ok(rate)
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn post(
        &self,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok(body)
    }
}

async fn all_exports(app: &App, org_id: Uuid) -> anyhow::Result<Vec<Export>> {
    let mut out = Vec::new();
    let mut page = PageRequest::parse(Some("200"), None)?;
    loop {
        let got = app.store.list_exports(org_id, None, page).await?;
        out.extend(got.items);
        match got.next_cursor {
            Some(c) => page = PageRequest::parse(Some("200"), Some(&c))?,
            None => return Ok(out),
        }
    }
}

pub(super) async fn run(o: PipelineBench) -> anyhow::Result<()> {
    let mut settings = load_settings()?;
    crate::telemetry::init_logging(settings.log_format);
    // The bench's peers are the operator's own (often on loopback).
    settings.blocked_networks.clear();
    settings.bind_addr = "127.0.0.1:0".parse()?;
    let database = if settings.database.url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let app = App::build(settings)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let slug = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let org = accounts::create_org(app.store.as_ref(), &slug, "Benchmark").await?;
    let password = SecretString::new(Uuid::new_v4().to_string());
    let email = format!("bench@{slug}.local");
    accounts::create_user(
        app.store.as_ref(),
        &org,
        &email,
        Role::Admin,
        password,
        Actor::cli(),
    )
    .await?;
    let token =
        accounts::issue_token(app.store.as_ref(), &app.tokens, &org, &email, 24 * 3600).await?;

    let server = Application::bind(
        app.settings.bind_addr,
        AppState::from(app.clone()),
        app.settings.request_timeout,
        ServerLimits::from_settings(&app.settings),
    )
    .await?;
    let base = format!("http://{}", server.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async move {
        let _ = stopped.await;
    }));
    let workers = Workers::spawn(app.clone());
    let api = Arc::new(Api {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(o.http_concurrency)
            .build()?,
        base,
        token,
    });

    let config = match o.target {
        Target::Filesystem => {
            let dir = app.settings.dropzone_fs_root.join(&slug).join("orders");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            json!({"mode": "filesystem", "export_path": "/orders"})
        }
        Target::Sftp => Value::Object(o.sftp.connector_config()?),
    };
    api.post("/api/v1/connectors/dropzone-json-v1", Some(&config), None)
        .await?;

    eprintln!("creating and approving {} drafts…", o.drafts);
    let ids: Vec<String> = futures::stream::iter(0..o.drafts)
        .map(|i| {
            let api = api.clone();
            async move {
                let draft = api
                    .post("/api/v1/draft-orders", Some(&draft_body(i)), None)
                    .await?;
                let id = draft["id"].as_str().unwrap_or_default().to_owned();
                api.post(&format!("/api/v1/draft-orders/{id}/approve"), None, None)
                    .await?;
                anyhow::Ok(id)
            }
        })
        .buffer_unordered(o.http_concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    eprintln!("pushing…");
    let first_push = chrono::Utc::now();
    let push = |id: String| {
        let api = api.clone();
        async move {
            api.post(&format!("/api/v1/draft-orders/{id}/push"), None, Some(&id))
                .await
        }
    };
    match o.rate {
        None => {
            futures::stream::iter(ids)
                .map(push)
                .buffer_unordered(o.http_concurrency.max(1))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
        }
        Some(rate) => {
            anyhow::ensure!(rate > 0.0, "--rate must be positive");
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut pushes = Vec::with_capacity(ids.len());
            for id in ids {
                tick.tick().await;
                pushes.push(tokio::spawn(push(id)));
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
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let exports = all_exports(&app, org.id).await?;
        let done = exports
            .iter()
            .filter(|e| e.status != ExportStatus::Pending)
            .count();
        if done == o.drafts {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {} delivered after 10 minutes",
            o.drafts
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exports = all_exports(&app, org.id).await?;
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

    let _ = stop.send(());
    workers.shutdown(Duration::from_secs(10)).await;
    let _ = serving.await;

    let baseline = match o.target {
        Target::Filesystem => {
            let dir = app.settings.dropzone_fs_root.join(&slug).join("orders");
            let size = exports
                .first()
                .and_then(|e| std::fs::metadata(dir.join(&e.file_name)).ok())
                .map_or(1024, |m| m.len() as usize);
            Some(durable_writes(&dir, o.drafts, size)?)
        }
        Target::Sftp => None,
    };
    app.store.close().await;

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
    if let Some(b) = baseline {
        eprintln!(
            "bare durable-write loop in the same folder: {b:.0} files/s (pipeline at {:.0}% of it)",
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
            "baseline_durable_writes_per_sec": baseline.map(round2),
        })
    );
    Ok(())
}
