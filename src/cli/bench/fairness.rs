//! `orderflow bench fairness`: many orgs on one service, some of whose ERPs hang. It makes
//! `--orgs` throwaway orgs, each with its own connection to a local receiver the bench starts
//! (HTTP) or to the given SFTP server, and measures healthy orgs' push→SENT latency at a
//! steady `--rate`: first with no ERP hanging, then with `--hanging-share` of the ERPs
//! accepting connections and never answering while `--queued-per-hanging` exports each wait
//! for them, and finally how long the hanging ERPs' backlog takes to be delivered once they
//! answer again. Pushes go through the service (the figure is delivery's, not HTTP's).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

use super::harness::Bench;
use super::{SftpArgs, percentile, round2};
use crate::domain::audit::Actor;
use crate::domain::draft::DraftInput;
use crate::domain::export::{Export, ExportStatus};
use crate::service::accounts;
use crate::service::orders::PushKind;

/// Where the bench delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// `HTTP_JSON_V1` to a local receiver (plain HTTP on loopback, answering 200 at once).
    Http,
    /// `DROPZONE_JSON_V1` over SFTP to the server the SFTP flags name.
    Sftp,
}

/// `bench fairness` options.
#[derive(Debug, clap::Args)]
pub struct FairnessBench {
    /// Orgs, each with its own connection.
    #[arg(long, default_value_t = 1000)]
    orgs: usize,
    /// Share of the orgs whose ERP hangs in the second phase.
    #[arg(long, default_value_t = 0.05)]
    hanging_share: f64,
    /// Healthy pushes per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of pushing per phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Exports queued for each hanging ERP.
    #[arg(long, default_value_t = 20)]
    queued_per_hanging: usize,
    /// Where to deliver.
    #[arg(long, value_enum, default_value_t = Target::Http)]
    target: Target,
    /// The connections' `timeout_secs` (how long a hanging ERP holds an attempt).
    #[arg(long, default_value_t = 10)]
    erp_timeout_secs: u64,
    #[command(flatten)]
    sftp: SftpArgs,
}

/// A TCP gate in front of a real server: while closed it accepts connections and says
/// nothing (a hanging ERP); once open it passes new connections through.
struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
}

impl Gate {
    async fn start(upstream: std::net::SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let open = Arc::new(AtomicBool::new(true));
        let is_open = open.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut client, _)) = listener.accept().await {
                if !is_open.load(Ordering::SeqCst) {
                    held.push(client);
                    continue;
                }
                held.clear();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Self { port, open })
    }

    fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }
}

/// One org of the bench.
struct Tenant {
    org_id: Uuid,
    /// Approved drafts not pushed yet.
    drafts: Mutex<Vec<Uuid>>,
}

pub(super) async fn run(o: FairnessBench) -> anyhow::Result<()> {
    anyhow::ensure!(o.rate > 0.0, "--rate must be positive");
    anyhow::ensure!(
        (0.0..1.0).contains(&o.hanging_share),
        "--hanging-share must be at least 0 and below 1"
    );
    let bench = Bench::start().await?;
    let app = bench.app.clone();
    let actor = Actor::cli();
    let hanging_n = ((o.orgs as f64) * o.hanging_share).round() as usize;
    let healthy_n = o.orgs - hanging_n;
    let per_phase = (o.rate * o.seconds as f64).ceil() as usize;
    let per_healthy = (2 * per_phase).div_ceil(healthy_n.max(1));

    let (receiver, received) = match o.target {
        Target::Http => {
            let (addr, received) = http_receiver().await?;
            (addr, Some(received))
        }
        Target::Sftp => {
            let host = o.sftp.host.clone().context("--host is required for SFTP")?;
            let addr = tokio::net::lookup_host((host.as_str(), o.sftp.port))
                .await?
                .next()
                .context("the SFTP host does not resolve")?;
            (addr, None)
        }
    };
    let gate = Gate::start(receiver).await?;
    let folder = match o.target {
        Target::Sftp => Some(o.sftp.fresh_folder("orderflow_fairness").await?),
        Target::Http => None,
    };

    eprintln!(
        "making {} orgs ({hanging_n} to hang) with {per_healthy} drafts per healthy org…",
        o.orgs
    );
    let started = Instant::now();
    let mut healthy = Vec::with_capacity(healthy_n);
    let mut hanging = Vec::with_capacity(hanging_n);
    for n in 0..o.orgs {
        let is_hanging = n < hanging_n;
        let slug = format!("fair-{}-{n}", &Uuid::new_v4().simple().to_string()[..6]);
        let org = accounts::create_org(app.store.as_ref(), &slug, "Fairness").await?;
        let port = if is_hanging {
            gate.port
        } else {
            receiver.port()
        };
        let (connector, config) = match o.target {
            Target::Http => (
                "http-json-v1",
                json!({"url": format!("http://127.0.0.1:{port}/orders/{slug}"),
                       "timeout_secs": o.erp_timeout_secs}),
            ),
            Target::Sftp => {
                let mut config = o.sftp.connector_config(folder.as_deref().unwrap_or("/"))?;
                config.insert("host".into(), json!("127.0.0.1"));
                config.insert("port".into(), json!(port));
                config.insert("timeout_secs".into(), json!(o.erp_timeout_secs));
                ("dropzone-json-v1", Value::Object(config))
            }
        };
        app.connections
            .save(
                &actor,
                org.id,
                connector,
                config.as_object().cloned().unwrap_or_default(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("saving a connection: {e}"))?;
        let wanted = if is_hanging {
            o.queued_per_hanging
        } else {
            per_healthy
        };
        let mut drafts = Vec::with_capacity(wanted);
        for i in 0..wanted {
            let input: DraftInput = serde_json::from_value(json!({
                "external_order_number": format!("FAIR-{n}-{i}"),
                "lines": [{"line_no": 1, "internal_sku": "SKU", "qty": 1, "uom": "PCE"}]
            }))?;
            let draft = app.orders.create(&actor, org.id, input).await?;
            app.orders
                .approve(&actor, "bench@fairness.local", org.id, draft.id)
                .await?;
            drafts.push(draft.id);
        }
        let tenant = Tenant {
            org_id: org.id,
            drafts: Mutex::new(drafts),
        };
        if is_hanging {
            hanging.push(tenant);
        } else {
            healthy.push(tenant);
        }
    }
    app.store.refresh_statistics().await?;
    eprintln!("set up in {:.1} s", started.elapsed().as_secs_f64());

    eprintln!(
        "phase 1: {per_phase} healthy pushes at {}/s, no ERP hanging…",
        o.rate
    );
    let calm = push_at_rate(&app, &healthy, per_phase, o.rate).await?;
    let calm_latency = latencies(&wait_sent(&app, &calm).await?);

    eprintln!(
        "phase 2: {hanging_n} ERPs hang with {} exports each; {per_phase} healthy pushes at {}/s…",
        o.queued_per_hanging, o.rate
    );
    gate.set_open(false);
    let mut backlog = Vec::new();
    for tenant in &hanging {
        let drafts = std::mem::take(&mut *lock(&tenant.drafts));
        for draft in drafts {
            let pushed = app
                .orders
                .push(&actor, tenant.org_id, draft, None, PushKind::Push)
                .await?;
            backlog.push((tenant.org_id, pushed.export.id));
        }
    }
    let stormy = push_at_rate(&app, &healthy, per_phase, o.rate).await?;
    let stormy_exports = wait_sent(&app, &stormy).await?;
    if std::env::var("FAIRNESS_TIMELINE").is_ok() {
        let start = stormy_exports.iter().map(|e| e.created_at).min();
        let mut by_second: std::collections::BTreeMap<i64, (usize, f64)> = Default::default();
        for e in &stormy_exports {
            if let (Some(start), Some(sent)) = (start, e.sent_at) {
                let second = (e.created_at - start).num_seconds();
                let ms = (sent - e.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                let entry = by_second.entry(second).or_default();
                entry.0 += 1;
                entry.1 = entry.1.max(ms);
            }
        }
        for (second, (n, max)) in by_second {
            eprintln!("second {second}: {n} pushes, slowest {max:.0} ms");
        }
    }
    let stormy_latency = latencies(&stormy_exports);

    eprintln!("the hanging ERPs answer again…");
    gate.set_open(true);
    let back = Instant::now();
    let recovered = wait_sent(&app, &backlog).await?;
    let recovery_s = back.elapsed().as_secs_f64();
    let not_sent = recovered
        .iter()
        .filter(|e| e.status != ExportStatus::Sent)
        .count();
    let duplicates = match &received {
        Some(received) => {
            let keys = lock(received);
            keys.len() - keys.iter().collect::<HashSet<_>>().len()
        }
        None => 0,
    };
    let peak_rss_mib = peak_rss_mib();
    let database = bench.database;
    bench.shutdown().await;

    let summary = |l: &[f64]| {
        json!({"p50_ms": round2(percentile(l, 50.0)), "p95_ms": round2(percentile(l, 95.0)),
               "p99_ms": round2(percentile(l, 99.0))})
    };
    eprintln!(
        "healthy push→SENT with no ERP hanging: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        percentile(&calm_latency, 50.0),
        percentile(&calm_latency, 95.0),
        percentile(&calm_latency, 99.0)
    );
    eprintln!(
        "healthy push→SENT with {hanging_n} of {} ERPs hanging: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        o.orgs,
        percentile(&stormy_latency, 50.0),
        percentile(&stormy_latency, 95.0),
        percentile(&stormy_latency, 99.0)
    );
    eprintln!(
        "backlog of {} exports delivered {recovery_s:.1} s after the ERPs came back; {not_sent} not SENT, {duplicates} sent twice; peak RSS {peak_rss_mib:.0} MiB",
        backlog.len()
    );
    println!(
        "{}",
        json!({
            "target": format!("{:?}", o.target).to_lowercase(),
            "database": database,
            "orgs": o.orgs,
            "hanging": hanging_n,
            "rate": o.rate,
            "timeout_secs": o.erp_timeout_secs,
            "healthy_no_hanging": summary(&calm_latency),
            "healthy_with_hanging": summary(&stormy_latency),
            "backlog": backlog.len(),
            "recovery_s": round2(recovery_s),
            "not_sent": not_sent,
            "sent_twice": duplicates,
            "peak_rss_mib": round2(peak_rss_mib),
        })
    );
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Pushes `n` drafts of healthy orgs, round-robin, at `rate` per second; the exports made.
async fn push_at_rate(
    app: &Arc<crate::app::App>,
    tenants: &[Tenant],
    n: usize,
    rate: f64,
) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pushes = Vec::with_capacity(n);
    let mut next = 0;
    for _ in 0..n {
        let (org_id, draft) = loop {
            anyhow::ensure!(!tenants.is_empty(), "no healthy orgs");
            let tenant = &tenants[next % tenants.len()];
            next += 1;
            if let Some(d) = lock(&tenant.drafts).pop() {
                break (tenant.org_id, d);
            }
        };
        tick.tick().await;
        let app = app.clone();
        pushes.push(tokio::spawn(async move {
            let pushed = app
                .orders
                .push(&Actor::cli(), org_id, draft, None, PushKind::Push)
                .await?;
            anyhow::Ok((org_id, pushed.export.id))
        }));
    }
    let mut made = Vec::with_capacity(n);
    for p in pushes {
        made.push(p.await??);
    }
    Ok(made)
}

/// Waits (up to 10 minutes) until none of these exports is PENDING; them, as stored.
async fn wait_sent(app: &crate::app::App, exports: &[(Uuid, Uuid)]) -> anyhow::Result<Vec<Export>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut remaining: Vec<(Uuid, Uuid)> = exports.to_vec();
    let mut done = Vec::with_capacity(exports.len());
    while !remaining.is_empty() {
        let mut still = Vec::new();
        for (org, id) in remaining {
            match app.store.export(org, id).await? {
                Some(e) if e.status != ExportStatus::Pending => done.push(e),
                _ => still.push((org, id)),
            }
        }
        remaining = still;
        if remaining.is_empty() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} exports still pending after 10 minutes",
            remaining.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(done)
}

/// Push→SENT latencies in ms, sorted.
fn latencies(exports: &[Export]) -> Vec<f64> {
    let mut l: Vec<f64> = exports
        .iter()
        .filter_map(|e| Some((e.sent_at? - e.created_at).num_microseconds()? as f64 / 1000.0))
        .collect();
    l.sort_by(f64::total_cmp);
    l
}

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A local ERP endpoint answering every POST with 200; it records each request's
/// `Idempotency-Key` (the export id), so a delivery made twice shows.
async fn http_receiver() -> anyhow::Result<(std::net::SocketAddr, Arc<Mutex<Vec<String>>>)> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let keys = received.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let keys = keys.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let keys = keys.clone();
                        async move {
                            if let Some(key) = req
                                .headers()
                                .get("idempotency-key")
                                .and_then(|v| v.to_str().ok())
                            {
                                lock(&keys).push(key.to_owned());
                            }
                            let _ = req.into_body().collect().await;
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(br#"{"order": {"number": "SO-1"}}"#),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok((addr, received))
}
