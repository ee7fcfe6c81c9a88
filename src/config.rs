//! Settings read from the environment (and a `.env` file, loaded by `main`).
//!
//! Loading goes through a lookup function so tests can pass a map instead of mutating the
//! process environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::api::ServerLimits;
use crate::crypto::{KeyError, Keyring, SecretString};
use crate::domain::delivery::DeliveryPolicy;
use crate::workers::delivery::DeliveryLimits;

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default, for production).
    #[default]
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

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://./data/orderflow.db".to_owned(),
        }
    }
}

impl Default for ObjectStorage {
    fn default() -> Self {
        ObjectStorage::Filesystem(PathBuf::from("./data/objects"))
    }
}

/// Where connectors may reach: the folder tree of `filesystem` dropzones and the networks
/// no connector may be pointed at.
#[derive(Debug, Clone)]
pub struct ConnectorSettings {
    /// The only tree `filesystem` dropzones may touch.
    pub dropzone_fs_root: PathBuf,
    /// Networks an SFTP host or HTTP endpoint may not be in.
    pub blocked_networks: Vec<IpNet>,
    /// `CONNECTOR_ALLOW_PLAIN_HTTP`: HTTP connectors may use `http://` URLs (tests, private
    /// networks); off by default, so an order never leaves unencrypted by mistake.
    pub allow_plain_http: bool,
}

impl Default for ConnectorSettings {
    fn default() -> Self {
        Self {
            dropzone_fs_root: PathBuf::from("./data/dropzones"),
            // The constant is checked by a test; it cannot fail to parse at run time.
            blocked_networks: parse_networks(DEFAULT_BLOCKED_NETWORKS).unwrap_or_default(),
            allow_plain_http: false,
        }
    }
}

/// The HTTP server.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Listen address.
    pub bind_addr: SocketAddr,
    /// Whole-request timeout. Above the longest connection test (120 s) so tests can finish.
    pub request_timeout: Duration,
    /// Connection handling limits, and how long shutdown waits for requests in progress.
    pub limits: ServerLimits,
    /// The address users reach the service at (`PUBLIC_URL`); when https, the console's cookies
    /// are `Secure`.
    pub public_url: Option<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            request_timeout: Duration::from_secs(150),
            limits: ServerLimits::default(),
            public_url: None,
        }
    }
}

/// Delivery: the retry schedule and circuit breaker, the worker's limits, and leases.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Retries and circuit breaking.
    pub policy: DeliveryPolicy,
    /// Deliveries in flight, in the process and per connection.
    pub limits: DeliveryLimits,
    /// How long a claimed export stays reserved.
    pub lease: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            policy: DeliveryPolicy::default(),
            limits: DeliveryLimits::default(),
            lease: Duration::from_secs(60),
        }
    }
}

/// Acknowledgement polling.
#[derive(Debug, Clone)]
pub struct AckPollSettings {
    /// How often every connection with an ack folder is polled.
    pub interval: Duration,
    /// How long a worker's claim on polling one connection lasts unless renewed (a crashed
    /// worker blocks that connection's polling this long at most).
    pub lease: Duration,
}

impl Default for AckPollSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            lease: Duration::from_secs(30),
        }
    }
}

/// The full service configuration: one part per component. Each part's `Default` is the one
/// place its defaults are written; a variable left unset means exactly that default.
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
    /// What connectors may reach.
    pub connectors: ConnectorSettings,
    /// The HTTP server.
    pub http: HttpSettings,
    /// Delivery.
    pub delivery: DeliverySettings,
    /// Acknowledgement polling.
    pub ack_poll: AckPollSettings,
    /// Log format.
    pub log_format: LogFormat,
}

/// The signature of a variable lookup: the environment, or a map in tests.
type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the database URL alone (for commands that must work before secrets exist).
pub fn database_settings(lookup: Lookup<'_>) -> DatabaseSettings {
    non_empty(lookup, "DATABASE_URL")
        .map_or_else(DatabaseSettings::default, |url| DatabaseSettings { url })
}

/// Reads the log format alone (logging starts before the rest is validated).
pub fn log_format(lookup: Lookup<'_>) -> LogFormat {
    match non_empty(lookup, "LOG_FORMAT").as_deref() {
        Some("pretty") => LogFormat::Pretty,
        _ => LogFormat::default(),
    }
}

fn non_empty(lookup: Lookup<'_>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn parse_num<T>(
    lookup: Lookup<'_>,
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

/// A number of seconds (`default` when unset, at least `min` seconds).
fn secs(
    lookup: Lookup<'_>,
    name: &'static str,
    default: Duration,
    min: u64,
) -> Result<Duration, ConfigError> {
    parse_num(lookup, name, default.as_secs(), min).map(Duration::from_secs)
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

fn object_storage(lookup: Lookup<'_>) -> Result<ObjectStorage, ConfigError> {
    let Some(url) = non_empty(lookup, "OBJECT_STORAGE_URL") else {
        return Ok(ObjectStorage::default());
    };
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

fn connectors(lookup: Lookup<'_>) -> Result<ConnectorSettings, ConfigError> {
    let default = ConnectorSettings::default();
    Ok(ConnectorSettings {
        dropzone_fs_root: non_empty(lookup, "DROPZONE_FS_ROOT")
            .map_or(default.dropzone_fs_root, PathBuf::from),
        // Set but empty means "block nothing", unlike unset.
        blocked_networks: match lookup("CONNECTOR_BLOCKED_NETWORKS") {
            Some(text) => parse_networks(&text)?,
            None => default.blocked_networks,
        },
        allow_plain_http: flag(
            lookup,
            "CONNECTOR_ALLOW_PLAIN_HTTP",
            default.allow_plain_http,
        )?,
    })
}

fn http(lookup: Lookup<'_>) -> Result<HttpSettings, ConfigError> {
    let default = HttpSettings::default();
    let limits = default.limits;
    Ok(HttpSettings {
        bind_addr: bind_addr(lookup, default.bind_addr)?,
        request_timeout: secs(lookup, "REQUEST_TIMEOUT_SECS", default.request_timeout, 1)?,
        limits: ServerLimits {
            header_read_timeout: secs(
                lookup,
                "HTTP_HEADER_READ_TIMEOUT_SECS",
                limits.header_read_timeout,
                1,
            )?,
            idle_timeout: secs(lookup, "HTTP_IDLE_TIMEOUT_SECS", limits.idle_timeout, 1)?,
            max_connections: parse_num(lookup, "HTTP_MAX_CONNECTIONS", limits.max_connections, 1)?,
            shutdown_grace: secs(lookup, "SHUTDOWN_GRACE_SECS", limits.shutdown_grace, 0)?,
        },
        public_url: public_url(lookup)?,
    })
}

fn delivery(lookup: Lookup<'_>) -> Result<DeliverySettings, ConfigError> {
    let default = DeliverySettings::default();
    let (policy, limits) = (default.policy, default.limits);
    let cool_down_base = secs(lookup, "CIRCUIT_COOL_DOWN_SECS", policy.cool_down_base, 1)?;
    Ok(DeliverySettings {
        policy: DeliveryPolicy {
            max_attempts: parse_num(lookup, "EXPORT_MAX_ATTEMPTS", policy.max_attempts, 1)?,
            retry_base: secs(lookup, "EXPORT_RETRY_BASE_SECS", policy.retry_base, 1)?,
            failures_to_open: parse_num(
                lookup,
                "CIRCUIT_FAILURES_TO_OPEN",
                policy.failures_to_open,
                1,
            )?,
            cool_down_base,
            // A cap below the first cool-down would shorten it; the first one wins.
            cool_down_max: secs(
                lookup,
                "CIRCUIT_COOL_DOWN_MAX_SECS",
                policy.cool_down_max,
                1,
            )?
            .max(cool_down_base),
            ..policy
        },
        limits: DeliveryLimits {
            concurrency: parse_num(lookup, "DELIVERY_CONCURRENCY", limits.concurrency, 1)?,
            per_connection: parse_num(lookup, "DELIVERY_PER_CONNECTION", limits.per_connection, 1)?,
            ..limits
        },
        lease: secs(lookup, "EXPORT_LEASE_SECS", default.lease, 5)?,
    })
}

fn ack_poll(lookup: Lookup<'_>) -> Result<AckPollSettings, ConfigError> {
    let default = AckPollSettings::default();
    Ok(AckPollSettings {
        interval: secs(lookup, "ACK_POLL_INTERVAL_SECS", default.interval, 1)?,
        lease: secs(lookup, "ACK_POLL_LEASE_SECS", default.lease, 3)?,
    })
}

impl Settings {
    /// Reads the process environment (call `dotenvy` first to include `.env`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, validating every value.
    pub fn from_lookup(lookup: Lookup<'_>) -> Result<Self, ConfigError> {
        let keyring = Keyring::from_hex(
            &lookup("ENCRYPTION_MASTER_KEY").unwrap_or_default(),
            &lookup("ENCRYPTION_PREVIOUS_KEYS").unwrap_or_default(),
        )?;
        let jwt_secret = jwt_secret(lookup)?;
        let database = database_settings(lookup);
        if !crate::store::is_supported_url(&database.url) {
            return Err(invalid("DATABASE_URL", crate::store::SUPPORTED_URLS));
        }
        Ok(Self {
            keyring,
            jwt_secret,
            database,
            object_storage: object_storage(lookup)?,
            connectors: connectors(lookup)?,
            http: http(lookup)?,
            delivery: delivery(lookup)?,
            ack_poll: ack_poll(lookup)?,
            log_format: log_format(lookup),
        })
    }
}

/// `JWT_SECRET`: long enough, and not one character repeated or only whitespace.
fn jwt_secret(lookup: Lookup<'_>) -> Result<SecretString, ConfigError> {
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

/// A true/false variable, `default` when unset.
fn flag(lookup: Lookup<'_>, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match non_empty(lookup, name).as_deref() {
        None => Ok(default),
        Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(invalid(
            name,
            format!("must be true or false, not {other:?}"),
        )),
    }
}

/// `BIND_ADDR`: where the HTTP server listens.
fn bind_addr(lookup: Lookup<'_>, default: SocketAddr) -> Result<SocketAddr, ConfigError> {
    let Some(text) = non_empty(lookup, "BIND_ADDR") else {
        return Ok(default);
    };
    text.parse()
        .map_err(|_| invalid("BIND_ADDR", format!("not an address:port: {text:?}")))
}

/// `PUBLIC_URL`, when set: an http(s) URL.
fn public_url(lookup: Lookup<'_>) -> Result<Option<String>, ConfigError> {
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
        assert_eq!(s.http.bind_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(s.connectors.blocked_networks.len(), 9);
        assert_eq!(
            parse_networks(DEFAULT_BLOCKED_NETWORKS).unwrap(),
            s.connectors.blocked_networks
        );
        assert_eq!(s.delivery.policy.max_attempts, 6);
        assert_eq!(s.ack_poll.interval, Duration::from_secs(60));
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
