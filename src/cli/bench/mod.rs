//! `orderflow bench …`: measurements we compare between runs (never run in CI). Each prints
//! human lines on stderr and, last, one JSON object on stdout.

mod acks;
mod crypto;
mod fairness;
mod harness;
mod openssh;
mod pipeline;
mod sftp;

use clap::Subcommand;

use crate::connectors::transport::sftp::SftpTarget;
use crate::crypto::SecretString;

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
    Sftp(sftp::SftpBench),
    /// The whole pipeline through the real API and worker: N drafts created and approved, all
    /// pushed (or pushed at `--rate` per second), timed until the last is SENT.
    Pipeline(pipeline::PipelineBench),
    /// Acknowledgement polling: N SENT exports and their ack files in one folder, one
    /// `poll_once` timed over all of them.
    Acks(acks::AcksBench),
    /// Many orgs, some of whose ERPs hang: healthy push→SENT latency without and with them,
    /// and how fast the hanging ERPs' backlog drains once they answer again.
    Fairness(fairness::FairnessBench),
}

/// How to reach an SFTP server (shared by the SFTP benchmarks). The host may be on loopback:
/// benchmarks ignore CONNECTOR_BLOCKED_NETWORKS, which protects the server from tenants, not
/// from its operator.
#[derive(Debug, Clone, clap::Args)]
pub struct SftpArgs {
    /// Server host.
    #[arg(long)]
    host: Option<String>,
    /// Server port.
    #[arg(long, default_value_t = 22)]
    port: u16,
    /// User name.
    #[arg(long)]
    username: Option<String>,
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
    path: Option<String>,
    /// Per-operation timeout.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

impl SftpArgs {
    fn required<'a>(value: &'a Option<String>, flag: &str) -> anyhow::Result<&'a str> {
        value
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--{flag} is required for SFTP"))
    }

    fn password(&self) -> anyhow::Result<Option<SecretString>> {
        match &self.password_env {
            Some(var) => Ok(Some(SecretString::new(std::env::var(var).map_err(
                |_| anyhow::anyhow!("environment variable {var} is not set"),
            )?))),
            None => Ok(None),
        }
    }

    fn private_key(&self) -> anyhow::Result<Option<SecretString>> {
        match &self.private_key_file {
            Some(path) => Ok(Some(SecretString::new(std::fs::read_to_string(path)?))),
            None => Ok(None),
        }
    }

    /// The transport target these flags describe.
    fn target(&self) -> anyhow::Result<SftpTarget> {
        let password = self.password()?;
        let private_key = self.private_key()?;
        anyhow::ensure!(
            password.is_some() || private_key.is_some(),
            "give --password-env or --private-key-file"
        );
        Ok(SftpTarget {
            host: Self::required(&self.host, "host")?.to_owned(),
            port: self.port,
            username: Self::required(&self.username, "username")?.to_owned(),
            password,
            private_key,
            private_key_passphrase: None,
            host_key_fingerprint: self.host_key_fingerprint.clone(),
            timeout: std::time::Duration::from_secs(self.timeout_secs),
        })
    }

    /// Creates a new folder `<path>/<prefix>_<random>` on the server; its path. A run that
    /// writes into a folder of its own does not depend on what earlier runs left there, and
    /// compares fairly with the `sftp -b` yardstick, which copies into a new folder too.
    async fn fresh_folder(&self, prefix: &str) -> anyhow::Result<String> {
        use crate::connectors::transport::Transport;
        use crate::connectors::transport::sftp::{SftpTransport, pool::SessionPool};

        let folder = crate::connectors::transport::join(
            Self::required(&self.path, "path")?,
            &format!(
                "{prefix}_{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
        );
        let pool = std::sync::Arc::new(SessionPool::default());
        SftpTransport::new(self.target()?, pool, None, Vec::new())
            .create_dir(&folder)
            .await?;
        Ok(folder)
    }

    /// A `DROPZONE_JSON_V1` sftp config with these flags (secrets included), delivering into
    /// `export_path`.
    fn connector_config(
        &self,
        export_path: &str,
    ) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        let mut config = serde_json::json!({
            "mode": "sftp",
            "host": Self::required(&self.host, "host")?,
            "port": self.port,
            "username": Self::required(&self.username, "username")?,
            "export_path": export_path,
            "timeout_secs": self.timeout_secs.min(120),
        });
        if let Some(p) = self.password()? {
            config["password"] = serde_json::json!(p.expose());
        }
        if let Some(k) = self.private_key()? {
            config["private_key"] = serde_json::json!(k.expose());
        }
        if let Some(fp) = &self.host_key_fingerprint {
            config["host_key_fingerprint"] = serde_json::json!(fp);
        }
        match config {
            serde_json::Value::Object(map) => Ok(map),
            _ => anyhow::bail!("config is not an object"),
        }
    }
}

/// Runs a benchmark.
pub(super) async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Crypto { size, iterations } => crypto::run(size, iterations),
        BenchCommand::Sftp(options) => sftp::run(options).await,
        BenchCommand::Pipeline(options) => pipeline::run(options).await,
        BenchCommand::Acks(options) => acks::run(options).await,
        BenchCommand::Fairness(options) => fairness::run(options).await,
    }
}

/// The `p`th percentile of sorted values (nearest rank).
fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted_ms.len() - 1) as f64).round() as usize;
    sorted_ms[rank.min(sorted_ms.len() - 1)]
}

/// `size` bytes of letters: the content of the SFTP benches' files.
fn filler(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Rounds to two decimals for the JSON line.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
