//! Settings read from the environment (and a `.env` file, loaded by `main`).
//!
//! Loading goes through a lookup function so tests can pass a map instead of mutating the
//! process environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::crypto::{KeyError, Keyring, SecretString};

/// Default `CONNECTOR_BLOCKED_NETWORKS`: loopback, unspecified ("this network"),
/// link-local, and the cloud metadata addresses (AWS/GCP/Azure `169.254.169.254`, AWS IPv6
/// `fd00:ec2::254`, Alibaba `100.100.100.200`). IPv6 forms that embed an IPv4 address are judged
/// by that address (`connectors::network::is_blocked`).
pub const DEFAULT_BLOCKED_NETWORKS: &str = "127.0.0.0/8,::1/128,0.0.0.0/8,::/128,\
    169.254.0.0/16,fe80::/10,169.254.169.254/32,fd00:ec2::254/128,100.100.100.200/32";

/// A setting that cannot be used. The message names the variable and never echoes a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A problem with an encryption key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// `JWT_SECRET` missing or too short.
    #[error("JWT_SECRET must be at least 32 bytes long (got {0}); `orderflow init` writes one")]
    JwtSecret(usize),
    /// `JWT_SECRET` long enough but no secret at all (one repeated character, only whitespace).
    #[error(
        "JWT_SECRET is not random (one repeated character or only whitespace); `orderflow init` writes one"
    )]
    JwtSecretWeak,
    /// Any other variable with a bad value; the value is shown (these are not secrets).
    #[error("{name}: {reason}")]
    Invalid {
        /// Variable name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

/// Where encrypted export files are archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectStorage {
    /// `file://DIR`: an object with key K is the file `DIR/K`.
    Filesystem(PathBuf),
    /// `s3://BUCKET` with the usual `AWS_*` settings.
    S3 {
        /// Bucket name.
        bucket: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (default, for production).
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Everything the database-facing commands need; no secrets required.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://…`.
    pub url: String,
}

/// The full service configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Config cipher keys.
    pub keyring: Keyring,
    /// HMAC secret for access tokens.
    pub jwt_secret: SecretString,
    /// Database location.
    pub database: DatabaseSettings,
    /// Object storage for export files.
    pub object_storage: ObjectStorage,
    /// The only tree `filesystem` dropzones may touch.
    pub dropzone_fs_root: PathBuf,
    /// Networks an SFTP host may not resolve to.
    pub blocked_networks: Vec<IpNet>,
    /// `CONNECTOR_ALLOW_PLAIN_HTTP`: HTTP connectors may use `http://` URLs (tests, private
    /// networks); off by default, so an order never leaves unencrypted by mistake.
    pub allow_plain_http: bool,
    /// HTTP listen address.
    pub bind_addr: SocketAddr,
    /// Acknowledgement polling interval.
    pub ack_poll_interval: Duration,
    /// How long a worker's claim on polling one connection lasts unless renewed (a crashed
    /// worker blocks that connection's polling this long at most).
    pub ack_poll_lease: Duration,
    /// Delivery attempts before an export is `FAILED`.
    pub export_max_attempts: u32,
    /// First retry backoff.
    pub export_retry_base: Duration,
    /// How long a claimed export stays reserved.
    pub export_lease: Duration,
    /// Consecutive transient failures that open a connection's circuit.
    pub circuit_failures_to_open: u32,
    /// First cool-down of an open circuit (doubles per reopening).
    pub circuit_cool_down: Duration,
    /// Longest cool-down of an open circuit.
    pub circuit_cool_down_max: Duration,
    /// Whole-request timeout. Above the longest connection test (120 s) so tests can finish.
    pub request_timeout: Duration,
    /// Time a client has to send a request's headers.
    pub http_header_read_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    pub http_idle_timeout: Duration,
    /// Open HTTP connections at most (default: half the descriptor limit, at most 1024).
    pub http_max_connections: usize,
    /// How long shutdown waits for requests in progress.
    pub shutdown_grace: Duration,
    /// Deliveries in flight in one process.
    pub delivery_concurrency: usize,
    /// Deliveries in flight to one connection.
    pub delivery_per_connection: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// The address users reach the service at (`PUBLIC_URL`); when https, the console's cookies
    /// are `Secure`.
    pub public_url: Option<String>,
}

/// Default `HTTP_MAX_CONNECTIONS`: half the process's descriptor limit (the rest is for the
/// database, dropzones and SFTP sessions), at most 1024 and at least 16.
pub fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(4096);
    usize::try_from(soft / 2).unwrap_or(1024).clamp(16, 1024)
}

/// Reads the database URL alone (for commands that must work before secrets exist).
pub fn database_settings(lookup: &dyn Fn(&str) -> Option<String>) -> DatabaseSettings {
    DatabaseSettings {
        url: non_empty(lookup, "DATABASE_URL")
            .unwrap_or_else(|| "sqlite://./data/orderflow.db".to_owned()),
    }
}

/// Reads the log format alone (logging starts before the rest is validated).
pub fn log_format(lookup: &dyn Fn(&str) -> Option<String>) -> LogFormat {
    match non_empty(lookup, "LOG_FORMAT").as_deref() {
        Some("pretty") => LogFormat::Pretty,
        _ => LogFormat::Json,
    }
}

fn non_empty(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn parse_num<T>(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    min: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match non_empty(lookup, name) {
        None => Ok(default),
        Some(text) => {
            let value: T = text
                .parse()
                .map_err(|_| invalid(name, format!("not a number: {text:?}")))?;
            if value < min {
                return Err(invalid(name, format!("must be at least {min}")));
            }
            Ok(value)
        }
    }
}

/// A number of seconds (`default` when unset, at least `min`).
fn secs(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    min: u64,
) -> Result<Duration, ConfigError> {
    parse_num(lookup, name, default, min).map(Duration::from_secs)
}

/// Parses a comma-separated CIDR list.
pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpNet>()
                .map_err(|_| invalid("CONNECTOR_BLOCKED_NETWORKS", format!("not a CIDR: {p:?}")))
        })
        .collect()
}

fn parse_object_storage(url: &str) -> Result<ObjectStorage, ConfigError> {
    if let Some(dir) = url.strip_prefix("file://") {
        if dir.is_empty() {
            return Err(invalid("OBJECT_STORAGE_URL", "file:// needs a directory"));
        }
        Ok(ObjectStorage::Filesystem(PathBuf::from(dir)))
    } else if let Some(bucket) = url.strip_prefix("s3://") {
        let bucket = bucket.trim_end_matches('/');
        if bucket.is_empty() || bucket.contains('/') {
            return Err(invalid("OBJECT_STORAGE_URL", "s3:// needs a bucket name"));
        }
        Ok(ObjectStorage::S3 {
            bucket: bucket.to_owned(),
        })
    } else {
        Err(invalid(
            "OBJECT_STORAGE_URL",
            "must start with file:// or s3://",
        ))
    }
}

impl Settings {
    /// The retry schedule and circuit breaker these settings describe.
    pub fn delivery_policy(&self) -> crate::domain::delivery::DeliveryPolicy {
        crate::domain::delivery::DeliveryPolicy {
            max_attempts: self.export_max_attempts,
            retry_base: self.export_retry_base,
            failures_to_open: self.circuit_failures_to_open,
            cool_down_base: self.circuit_cool_down,
            cool_down_max: self.circuit_cool_down_max.max(self.circuit_cool_down),
            ..Default::default()
        }
    }

    /// Reads the process environment (call `dotenvy` first to include `.env`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, validating every value.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let keyring = Keyring::from_hex(
            &lookup("ENCRYPTION_MASTER_KEY").unwrap_or_default(),
            &lookup("ENCRYPTION_PREVIOUS_KEYS").unwrap_or_default(),
        )?;
        let jwt_secret = jwt_secret(lookup)?;
        let database = database_settings(lookup);
        if !crate::store::is_supported_url(&database.url) {
            return Err(invalid("DATABASE_URL", crate::store::SUPPORTED_URLS));
        }
        // The delivery components own their defaults; a variable left unset means exactly that.
        let policy = crate::domain::delivery::DeliveryPolicy::default();
        let limits = crate::workers::delivery::DeliveryLimits::default();
        let object_storage = parse_object_storage(
            &non_empty(lookup, "OBJECT_STORAGE_URL")
                .unwrap_or_else(|| "file://./data/objects".to_owned()),
        )?;
        let blocked_networks = parse_networks(
            &lookup("CONNECTOR_BLOCKED_NETWORKS")
                .unwrap_or_else(|| DEFAULT_BLOCKED_NETWORKS.to_owned()),
        )?;
        Ok(Self {
            keyring,
            jwt_secret,
            database,
            object_storage,
            dropzone_fs_root: non_empty(lookup, "DROPZONE_FS_ROOT")
                .map_or_else(|| PathBuf::from("./data/dropzones"), PathBuf::from),
            blocked_networks,
            allow_plain_http: flag(lookup, "CONNECTOR_ALLOW_PLAIN_HTTP")?,
            bind_addr: bind_addr(lookup)?,
            ack_poll_interval: secs(lookup, "ACK_POLL_INTERVAL_SECS", 60, 1)?,
            ack_poll_lease: secs(lookup, "ACK_POLL_LEASE_SECS", 30, 3)?,
            export_max_attempts: parse_num(lookup, "EXPORT_MAX_ATTEMPTS", policy.max_attempts, 1)?,
            export_retry_base: secs(
                lookup,
                "EXPORT_RETRY_BASE_SECS",
                policy.retry_base.as_secs(),
                1,
            )?,
            export_lease: secs(lookup, "EXPORT_LEASE_SECS", 60, 5)?,
            circuit_failures_to_open: parse_num(
                lookup,
                "CIRCUIT_FAILURES_TO_OPEN",
                policy.failures_to_open,
                1,
            )?,
            circuit_cool_down: secs(
                lookup,
                "CIRCUIT_COOL_DOWN_SECS",
                policy.cool_down_base.as_secs(),
                1,
            )?,
            circuit_cool_down_max: secs(
                lookup,
                "CIRCUIT_COOL_DOWN_MAX_SECS",
                policy.cool_down_max.as_secs(),
                1,
            )?,
            request_timeout: secs(lookup, "REQUEST_TIMEOUT_SECS", 150, 1)?,
            http_header_read_timeout: secs(lookup, "HTTP_HEADER_READ_TIMEOUT_SECS", 10, 1)?,
            http_idle_timeout: secs(lookup, "HTTP_IDLE_TIMEOUT_SECS", 60, 1)?,
            http_max_connections: parse_num(
                lookup,
                "HTTP_MAX_CONNECTIONS",
                default_max_connections(),
                1,
            )?,
            shutdown_grace: secs(lookup, "SHUTDOWN_GRACE_SECS", 20, 0)?,
            delivery_concurrency: parse_num(lookup, "DELIVERY_CONCURRENCY", limits.concurrency, 1)?,
            delivery_per_connection: parse_num(
                lookup,
                "DELIVERY_PER_CONNECTION",
                limits.per_connection,
                1,
            )?,
            log_format: log_format(lookup),
            public_url: public_url(lookup)?,
        })
    }
}

/// `JWT_SECRET`: long enough, and not one character repeated or only whitespace.
fn jwt_secret(lookup: &dyn Fn(&str) -> Option<String>) -> Result<SecretString, ConfigError> {
    let jwt_secret = SecretString::new(lookup("JWT_SECRET").unwrap_or_default());
    if jwt_secret.expose().len() < 32 {
        return Err(ConfigError::JwtSecret(jwt_secret.expose().len()));
    }
    let mut chars = jwt_secret.expose().chars();
    let first = chars.next();
    if jwt_secret.expose().trim().is_empty() || chars.all(|c| Some(c) == first) {
        return Err(ConfigError::JwtSecretWeak);
    }
    Ok(jwt_secret)
}

/// A true/false variable, false when unset.
fn flag(lookup: &dyn Fn(&str) -> Option<String>, name: &'static str) -> Result<bool, ConfigError> {
    match non_empty(lookup, name).as_deref() {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(invalid(
            name,
            format!("must be true or false, not {other:?}"),
        )),
    }
}

/// `BIND_ADDR`: where the HTTP server listens.
fn bind_addr(lookup: &dyn Fn(&str) -> Option<String>) -> Result<SocketAddr, ConfigError> {
    let text = non_empty(lookup, "BIND_ADDR").unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    text.parse()
        .map_err(|_| invalid("BIND_ADDR", format!("not an address:port: {text:?}")))
}

/// `PUBLIC_URL`, when set: an http(s) URL.
fn public_url(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    match non_empty(lookup, "PUBLIC_URL") {
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => Ok(Some(url)),
        Some(_) => Err(invalid("PUBLIC_URL", "must start with https:// or http://")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const JWT: &str = "0123456789abcdef0123456789abcdef";

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(&|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let s = load(&[("ENCRYPTION_MASTER_KEY", KEY), ("JWT_SECRET", JWT)]).unwrap();
        assert_eq!(s.database.url, "sqlite://./data/orderflow.db");
        assert_eq!(
            s.object_storage,
            ObjectStorage::Filesystem("./data/objects".into())
        );
        assert_eq!(s.bind_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(s.blocked_networks.len(), 9);
        assert_eq!(s.export_max_attempts, 6);
        assert_eq!(s.ack_poll_interval, Duration::from_secs(60));
        assert_eq!(s.log_format, LogFormat::Json);
    }

    /// The rows of README's configuration table: the variables a row names and the defaults
    /// it gives, each in backticks.
    fn readme_rows() -> Vec<(Vec<String>, Vec<String>)> {
        let readme = include_str!("../README.md");
        let section = readme
            .split("## Configuration")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has a Configuration section");
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
                let names = ticked(cells[0]);
                let defaults = ticked(cells.last().copied().unwrap_or_default());
                (names, defaults)
            })
            .collect()
    }

    /// README's table and the code agree: every variable the settings read is in the table,
    /// and setting a variable to the default the table gives changes nothing.
    #[test]
    fn the_readme_table_states_the_codes_defaults() {
        let base = [("ENCRYPTION_MASTER_KEY", KEY), ("JWT_SECRET", JWT)];
        let asked = std::cell::RefCell::new(Vec::<String>::new());
        let map: HashMap<&str, &str> = base.into_iter().collect();
        let recorded = Settings::from_lookup(&|name| {
            asked.borrow_mut().push(name.to_owned());
            map.get(name).map(|v| (*v).to_owned())
        });
        let baseline = format!("{:?}", recorded.unwrap());
        let rows = readme_rows();
        let documented: Vec<&String> = rows.iter().flat_map(|(names, _)| names).collect();
        for name in asked.borrow().iter() {
            assert!(
                documented.contains(&name),
                "{name} is read but not in README's table"
            );
        }
        let mut checked = 0;
        for (names, defaults) in &rows {
            if names.len() != defaults.len() {
                continue;
            }
            for (name, default) in names.iter().zip(defaults) {
                let mut pairs = base.to_vec();
                pairs.push((name, default));
                let with_default = load(&pairs).map(|s| format!("{s:?}"));
                assert_eq!(
                    with_default.as_deref().ok(),
                    Some(baseline.as_str()),
                    "README gives {name} the default {default}, which is not the code's"
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 20,
            "only {checked} defaults found in README's table"
        );
    }

    #[test]
    fn secrets_are_validated_without_echoing_them() {
        let short = "too-short-secret";
        let err = load(&[("ENCRYPTION_MASTER_KEY", KEY), ("JWT_SECRET", short)]).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"));
        assert!(!err.to_string().contains(short));
        for weak in ["a".repeat(40), " ".repeat(40), "\t \n".repeat(12)] {
            let err = load(&[("ENCRYPTION_MASTER_KEY", KEY), ("JWT_SECRET", &weak)]).unwrap_err();
            assert!(err.to_string().starts_with("JWT_SECRET"), "{err}");
            assert!(!err.to_string().contains(&weak));
        }
        let err = load(&[("JWT_SECRET", JWT)]).unwrap_err();
        assert!(err.to_string().contains("ENCRYPTION_MASTER_KEY is not set"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let base = [("ENCRYPTION_MASTER_KEY", KEY), ("JWT_SECRET", JWT)];
        for (name, value) in [
            ("CONNECTOR_BLOCKED_NETWORKS", "10.0.0.0/33"),
            ("BIND_ADDR", "localhost"),
            ("OBJECT_STORAGE_URL", "ftp://x"),
            ("EXPORT_MAX_ATTEMPTS", "zero"),
            ("DATABASE_URL", "mysql://x"),
        ] {
            let mut pairs = base.to_vec();
            pairs.push((name, value));
            let err = load(&pairs).unwrap_err();
            assert!(err.to_string().starts_with(name), "{name}: {err}");
        }
    }
}
