//! `orderflow bench …`: measurements we compare between runs. Each prints human lines on
//! stderr and, last, one JSON object on stdout.

use std::hint::black_box;
use std::time::Instant;

use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use crate::connectors::Registry;
use crate::crypto::{Keyring, connection_aad, generate_key_hex};

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Config cipher: encrypt+decrypt of a config of `--size` bytes, and registry lookups.
    Crypto {
        /// Plaintext size in bytes.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Iterations.
        #[arg(long, default_value_t = 100_000)]
        iterations: u32,
    },
    /// SFTP delivery: writes `--files` files of `--size` bytes through the real transport
    /// (`.tmp` + rename, the code exports use), then deletes them (untimed).
    Sftp(SftpBench),
}

/// `bench sftp` options. The host may be on loopback: the bench ignores
/// CONNECTOR_BLOCKED_NETWORKS, which protects the server from tenants, not from its operator.
#[derive(Debug, clap::Args)]
pub struct SftpBench {
    /// Server host.
    #[arg(long)]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 22)]
    port: u16,
    /// User name.
    #[arg(long)]
    username: String,
    /// Name of the environment variable holding the password (never on the command line).
    #[arg(long)]
    password_env: Option<String>,
    /// OpenSSH private key file, instead of or besides the password.
    #[arg(long)]
    private_key_file: Option<std::path::PathBuf>,
    /// Expected host key (`SHA256:…`); without it the first key seen is trusted and printed.
    #[arg(long)]
    host_key_fingerprint: Option<String>,
    /// Remote folder (must exist).
    #[arg(long)]
    path: String,
    /// Number of files.
    #[arg(long, default_value_t = 2000)]
    files: usize,
    /// Bytes per file.
    #[arg(long, default_value_t = 2048)]
    size: usize,
    /// Files in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Per-operation timeout.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Leave the files on the server.
    #[arg(long)]
    keep: bool,
}

/// Runs a benchmark.
pub(super) async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Crypto { size, iterations } => crypto(size, iterations),
        BenchCommand::Sftp(options) => sftp(options).await,
    }
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted_ms.len() - 1) as f64).round() as usize;
    sorted_ms[rank.min(sorted_ms.len() - 1)]
}

async fn sftp(o: SftpBench) -> anyhow::Result<()> {
    use std::sync::Arc;

    use futures::StreamExt;

    use crate::connectors::ConnectionKey;
    use crate::connectors::dropzone_json_v1::dropzone::publish;
    use crate::connectors::transport::Transport;
    use crate::connectors::transport::sftp::pool::SessionPool;
    use crate::connectors::transport::sftp::{SftpTarget, SftpTransport};
    use crate::crypto::SecretString;

    let password = match &o.password_env {
        Some(var) => {
            Some(SecretString::new(std::env::var(var).map_err(|_| {
                anyhow::anyhow!("environment variable {var} is not set")
            })?))
        }
        None => None,
    };
    let private_key = match &o.private_key_file {
        Some(path) => Some(SecretString::new(std::fs::read_to_string(path)?)),
        None => None,
    };
    anyhow::ensure!(
        password.is_some() || private_key.is_some(),
        "give --password-env or --private-key-file"
    );
    let target = SftpTarget {
        host: o.host.clone(),
        port: o.port,
        username: o.username.clone(),
        password,
        private_key,
        private_key_passphrase: None,
        host_key_fingerprint: o.host_key_fingerprint.clone(),
        timeout: std::time::Duration::from_secs(o.timeout_secs),
    };
    let pool = Arc::new(SessionPool::default());
    let key = Some(ConnectionKey {
        id: Uuid::new_v4(),
        version: 1,
    });
    let run_id = &Uuid::new_v4().simple().to_string()[..8];
    let body: Vec<u8> = (0..o.size).map(|i| b'a' + (i % 26) as u8).collect();

    // Connect once up front so the figures measure delivery, not the first handshake.
    let warmup = SftpTransport::new(target.clone(), pool.clone(), key, Vec::new());
    warmup.list(&o.path).await?;
    if o.host_key_fingerprint.is_none() {
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
                let (body, path) = (&body, &o.path);
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
    if !o.keep {
        let cleanup = SftpTransport::new(target.clone(), pool.clone(), key, Vec::new());
        for i in 0..o.files {
            let _ = cleanup
                .delete(&format!(
                    "{}/bench_{run_id}_{i:06}.json",
                    o.path.trim_end_matches('/')
                ))
                .await;
        }
    }
    let round = |x: f64| (x * 100.0).round() / 100.0;
    println!(
        "{}",
        json!({
            "files": o.files,
            "size": o.size,
            "concurrency": o.concurrency,
            "connections": pool.connects(),
            "elapsed_s": round(elapsed),
            "files_per_sec": round(files_per_sec),
            "mib_per_sec": round(mib_per_sec),
            "p50_ms": round(percentile(&ms, 50.0)),
            "p95_ms": round(percentile(&ms, 95.0)),
        })
    );
    Ok(())
}

fn per_op_ns(start: Instant, n: u32) -> f64 {
    start.elapsed().as_nanos() as f64 / f64::from(n.max(1))
}

fn crypto(size: usize, iterations: u32) -> anyhow::Result<()> {
    let keyring = Keyring::from_hex(&generate_key_hex(), "")?;
    let aad = connection_aad(Uuid::new_v4(), Uuid::new_v4());
    // A JSON object padded to `size` bytes, like a config with a long private key.
    let filler = "x".repeat(size.saturating_sub(r#"{"k":""}"#.len()));
    let plaintext = serde_json::to_vec(&json!({ "k": filler }))?;

    let start = Instant::now();
    for _ in 0..iterations {
        let blob = keyring.encrypt(aad.as_bytes(), black_box(&plaintext))?;
        black_box(keyring.decrypt(aad.as_bytes(), &blob)?);
    }
    let roundtrip_ns = per_op_ns(start, iterations);

    let registry = Registry::default();
    let lookups = iterations.saturating_mul(10);
    let start = Instant::now();
    for _ in 0..lookups {
        black_box(registry.by_slug(black_box("dropzone-json-v1")));
        black_box(registry.by_type(black_box("DROPZONE_JSON_V1")));
    }
    let lookup_ns = per_op_ns(start, lookups.saturating_mul(2));

    eprintln!(
        "encrypt+decrypt of {} bytes: {:.2} µs; registry lookup: {:.1} ns",
        plaintext.len(),
        roundtrip_ns / 1000.0,
        lookup_ns
    );
    println!(
        "{}",
        json!({
            "plaintext_bytes": plaintext.len(),
            "iterations": iterations,
            "encrypt_decrypt_us": (roundtrip_ns / 10.0).round() / 100.0,
            "registry_lookup_ns": (lookup_ns * 10.0).round() / 10.0,
        })
    );
    Ok(())
}
