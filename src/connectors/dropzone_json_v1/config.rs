//! `DROPZONE_JSON_V1` config (SPEC §6): parsing and validation, without I/O.
//!
//! The same parser reads submitted configs (then [`DropzoneConfig::to_config`] stores the
//! normalised form) and stored ones (a stored config that no longer parses is
//! `CONFIG_UNREADABLE`).

use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use crate::connectors::network::{HostLiteral, is_blocked, parse_host};
use crate::connectors::transport::sftp::SftpTarget;
use crate::connectors::{ConnectorConfig, ValidationEnv};
use crate::crypto::SecretString;
use crate::domain::FieldError;

/// Default SFTP port.
pub const DEFAULT_PORT: u16 = 22;
/// Default per-operation timeout.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// Longest allowed timeout.
pub const MAX_TIMEOUT_SECS: u64 = 120;
/// Longest accepted path.
const MAX_PATH_LEN: usize = 1024;

/// Secret fields: never shown, `writeOnly` in the schema.
pub const SECRET_FIELDS: &[&str] = &["password", "private_key", "private_key_passphrase"];
/// Changing one of these requires the secrets to be given again.
pub const IDENTITY_FIELDS: &[&str] = &["mode", "host", "port", "username"];
/// Kept across updates like secrets: a host key recorded on first use must not be forgotten
/// just because an update did not repeat it.
pub const STICKY_FIELDS: &[&str] = &["host_key_fingerprint"];

const COMMON_FIELDS: &[&str] = &[
    "mode",
    "export_path",
    "ack_path",
    "atomic_write",
    "timeout_secs",
];
const SFTP_FIELDS: &[&str] = &[
    "host",
    "port",
    "username",
    "password",
    "private_key",
    "private_key_passphrase",
    "host_key_fingerprint",
];

/// Where the dropzone is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A remote SFTP server.
    Sftp,
    /// A folder under `DROPZONE_FS_ROOT/<org slug>/`.
    Filesystem,
}

/// A validated `DROPZONE_JSON_V1` config.
#[derive(Debug, Clone)]
pub struct DropzoneConfig {
    /// sftp or filesystem.
    pub mode: Mode,
    /// Folder export files are written to.
    pub export_path: String,
    /// Folder the ERP writes acknowledgements to.
    pub ack_path: Option<String>,
    /// Write `<name>.tmp` and rename.
    pub atomic_write: bool,
    /// Per-operation timeout (and the whole connection test's).
    pub timeout_secs: u64,
    /// Present in sftp mode: where and how to connect (its timeout is `timeout_secs`).
    pub sftp: Option<SftpTarget>,
}

fn field_error(field: &str, message: &str) -> FieldError {
    FieldError::new(field, message)
}

/// Reads an optional field; null counts as absent.
fn optional<'a>(config: &'a ConnectorConfig, field: &str) -> Option<&'a Value> {
    config.get(field).filter(|v| !v.is_null())
}

fn string_field(config: &ConnectorConfig, field: &str) -> Result<Option<String>, FieldError> {
    match optional(config, field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(field_error(field, "must be a string")),
    }
}

fn required_string(config: &ConnectorConfig, field: &str) -> Result<String, FieldError> {
    string_field(config, field)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| field_error(field, "is required"))
}

fn secret_field(config: &ConnectorConfig, field: &str) -> Result<Option<SecretString>, FieldError> {
    Ok(string_field(config, field)?
        .filter(|s| !s.is_empty())
        .map(SecretString::new))
}

fn integer_field(
    config: &ConnectorConfig,
    field: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, FieldError> {
    let Some(value) = optional(config, field) else {
        return Ok(None);
    };
    let message = format!(
        "must be an integer from {} to {}",
        range.start(),
        range.end()
    );
    value
        .as_u64()
        .filter(|n| range.contains(n))
        .map(Some)
        .ok_or_else(|| field_error(field, &message))
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Invisible characters that make a path display differently from what it is: bidi overrides
/// and isolates, zero-width characters, line and paragraph separators, the BOM.
fn is_deceptive_format_char(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Normalises and checks a dropzone path. `/` separates segments; empty and `.` segments are
/// dropped; `..`, NUL and other control characters are refused. Filesystem paths may be
/// relative to the org folder (a leading `/` means that folder's root); SFTP paths must be
/// absolute.
pub fn normalize_path(
    field: &str,
    raw: &str,
    must_be_absolute: bool,
) -> Result<String, FieldError> {
    if raw.len() > MAX_PATH_LEN {
        return Err(field_error(field, "is too long (max 1024 bytes)"));
    }
    if has_control(raw) {
        return Err(field_error(
            field,
            "must not contain control characters or NUL",
        ));
    }
    if raw.chars().any(is_deceptive_format_char) {
        return Err(field_error(
            field,
            "must not contain invisible formatting characters (bidi overrides, zero-width, line separators)",
        ));
    }
    if must_be_absolute && !raw.starts_with('/') {
        return Err(field_error(
            field,
            "must be an absolute path starting with /",
        ));
    }
    let mut segments = Vec::new();
    for segment in raw.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(field_error(field, "must not contain '..' segments")),
            s => segments.push(s),
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// A host name or IP literal: no scheme, port, user or path. A literal in a blocked network is
/// refused in every spelling (`[::]`, `::ffff:127.0.0.1`, `127.1`, `0x7f.0.0.1`, …) and stored
/// in its canonical form.
fn validate_host(raw: &str, blocked: &[IpNet]) -> Result<String, FieldError> {
    let bad_name = || {
        field_error(
            "host",
            "must be a plain host name or IP address (no scheme, port or path)",
        )
    };
    let name = match parse_host(raw) {
        HostLiteral::Ip(ip) if is_blocked(ip, blocked) => {
            return Err(field_error(
                "host",
                "is in a blocked network (CONNECTOR_BLOCKED_NETWORKS)",
            ));
        }
        HostLiteral::Ip(ip) => return Ok(ip.to_string()),
        HostLiteral::BadNumeric => return Err(bad_name()),
        HostLiteral::Name(name) => name,
    };
    let valid_name = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if valid_name {
        Ok(name)
    } else {
        Err(bad_name())
    }
}

/// `SHA256:` followed by 43 unpadded base64 characters, as `ssh-keygen -lf` prints.
fn validate_fingerprint(raw: &str) -> Result<String, FieldError> {
    let body = raw.trim().strip_prefix("SHA256:");
    let ok = body.is_some_and(|b| {
        b.len() == 43
            && b.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    });
    match body {
        Some(b) if ok => Ok(format!("SHA256:{b}")),
        _ => Err(field_error(
            "host_key_fingerprint",
            "must look like SHA256:<43 base64 characters>, as `ssh-keygen -lf` prints",
        )),
    }
}

fn validate_private_key(
    key: &SecretString,
    passphrase: Option<&SecretString>,
) -> Result<(), FieldError> {
    let passphrase = passphrase.map(|p| p.expose().as_str());
    match russh::keys::decode_secret_key(key.expose(), passphrase) {
        Ok(_) => Ok(()),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(field_error(
            "private_key_passphrase",
            "is required: the private key is encrypted",
        )),
        Err(_) if passphrase.is_some() => Err(field_error(
            "private_key_passphrase",
            "does not decrypt the private key (or the key is not in OpenSSH format)",
        )),
        Err(_) => Err(field_error(
            "private_key",
            "is not a readable OpenSSH private key",
        )),
    }
}

impl DropzoneConfig {
    /// Parses and validates a config.
    pub fn parse(config: &ConnectorConfig, env: &ValidationEnv) -> Result<Self, FieldError> {
        let mode = match string_field(config, "mode")?.as_deref() {
            Some("sftp") => Mode::Sftp,
            Some("filesystem") => Mode::Filesystem,
            Some(_) => return Err(field_error("mode", "must be \"sftp\" or \"filesystem\"")),
            None => {
                return Err(field_error(
                    "mode",
                    "is required (\"sftp\" or \"filesystem\")",
                ));
            }
        };
        for field in config.fields().keys() {
            let known = COMMON_FIELDS.contains(&field.as_str())
                || (mode == Mode::Sftp && SFTP_FIELDS.contains(&field.as_str()));
            if !known && config.has(field) {
                let why = if SFTP_FIELDS.contains(&field.as_str()) {
                    "is only allowed in sftp mode"
                } else {
                    "is not a DROPZONE_JSON_V1 setting"
                };
                return Err(field_error(field, why));
            }
        }
        let absolute = mode == Mode::Sftp;
        let export_path = normalize_path(
            "export_path",
            &required_string(config, "export_path")?,
            absolute,
        )?;
        let ack_path = string_field(config, "ack_path")?
            .filter(|p| !p.trim().is_empty())
            .map(|p| normalize_path("ack_path", &p, absolute))
            .transpose()?;
        let atomic_write = match optional(config, "atomic_write") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(field_error("atomic_write", "must be true or false")),
        };
        let timeout_secs = integer_field(config, "timeout_secs", 1..=MAX_TIMEOUT_SECS)?
            .unwrap_or(DEFAULT_TIMEOUT_SECS);
        let sftp = match mode {
            Mode::Filesystem => None,
            Mode::Sftp => Some(Self::parse_sftp(config, env, timeout_secs)?),
        };
        Ok(Self {
            mode,
            export_path,
            ack_path,
            atomic_write,
            timeout_secs,
            sftp,
        })
    }

    fn parse_sftp(
        config: &ConnectorConfig,
        env: &ValidationEnv,
        timeout_secs: u64,
    ) -> Result<SftpTarget, FieldError> {
        let host = validate_host(&required_string(config, "host")?, &env.blocked_networks)?;
        let port = integer_field(config, "port", 1..=65535)?
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(DEFAULT_PORT);
        let username = required_string(config, "username")?;
        if has_control(&username) || username.len() > 255 {
            return Err(field_error(
                "username",
                "must be at most 255 printable characters",
            ));
        }
        let password = secret_field(config, "password")?;
        let private_key = secret_field(config, "private_key")?;
        let private_key_passphrase = secret_field(config, "private_key_passphrase")?;
        match (&password, &private_key) {
            (None, None) => {
                return Err(field_error(
                    "password",
                    "sftp needs a password or a private_key",
                ));
            }
            (_, Some(key)) => validate_private_key(key, private_key_passphrase.as_ref())?,
            _ => {}
        }
        let host_key_fingerprint = string_field(config, "host_key_fingerprint")?
            .filter(|f| !f.trim().is_empty())
            .map(|f| validate_fingerprint(&f))
            .transpose()?;
        Ok(SftpTarget {
            host,
            port,
            username,
            password,
            private_key,
            private_key_passphrase,
            host_key_fingerprint,
            timeout: Duration::from_secs(timeout_secs),
        })
    }

    /// The normalised config to store (defaults filled in, absent optionals omitted).
    pub fn to_config(&self) -> ConnectorConfig {
        let mut map = Map::new();
        let mode = match self.mode {
            Mode::Sftp => "sftp",
            Mode::Filesystem => "filesystem",
        };
        map.insert("mode".into(), json!(mode));
        map.insert("export_path".into(), json!(self.export_path));
        if let Some(ack) = &self.ack_path {
            map.insert("ack_path".into(), json!(ack));
        }
        map.insert("atomic_write".into(), json!(self.atomic_write));
        map.insert("timeout_secs".into(), json!(self.timeout_secs));
        if let Some(sftp) = &self.sftp {
            map.insert("host".into(), json!(sftp.host));
            map.insert("port".into(), json!(sftp.port));
            map.insert("username".into(), json!(sftp.username));
            let secrets = [
                ("password", &sftp.password),
                ("private_key", &sftp.private_key),
                ("private_key_passphrase", &sftp.private_key_passphrase),
            ];
            for (name, value) in secrets {
                if let Some(secret) = value {
                    map.insert(name.into(), json!(secret.expose()));
                }
            }
            if let Some(fp) = &sftp.host_key_fingerprint {
                map.insert("host_key_fingerprint".into(), json!(fp));
            }
        }
        ConnectorConfig::new(map)
    }
}

/// The config's JSON Schema (served by `GET /connectors/types`).
pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "DROPZONE_JSON_V1",
        "description": "One JSON file per order in a folder the ERP's import job watches, on SFTP or a local/mounted filesystem.",
        "type": "object",
        "additionalProperties": false,
        "required": ["mode", "export_path"],
        "properties": {
            "mode": { "enum": ["sftp", "filesystem"], "description": "Where the dropzone is." },
            "export_path": { "type": "string", "maxLength": 1024, "description": "Folder for export files. sftp: absolute path on the server. filesystem: path inside the org's folder under DROPZONE_FS_ROOT (a leading / means that folder's root)." },
            "ack_path": { "type": ["string", "null"], "maxLength": 1024, "description": "Folder the ERP writes ack_/error_ files to; polled when set." },
            "atomic_write": { "type": "boolean", "default": true, "description": "Write <name>.tmp, then rename, so the ERP never sees a partial file." },
            "timeout_secs": { "type": "integer", "minimum": 1, "maximum": 120, "default": 10, "description": "Timeout for each network operation and for a whole connection test." },
            "host": { "type": "string", "description": "sftp: host name or IP literal (no scheme, no port)." },
            "port": { "type": "integer", "minimum": 1, "maximum": 65535, "default": 22 },
            "username": { "type": "string" },
            "password": { "type": "string", "writeOnly": true, "description": "sftp: password (and/or private_key)." },
            "private_key": { "type": "string", "writeOnly": true, "description": "sftp: OpenSSH private key (PEM text)." },
            "private_key_passphrase": { "type": "string", "writeOnly": true },
            "host_key_fingerprint": { "type": ["string", "null"], "pattern": "^SHA256:[A-Za-z0-9+/]{43}$", "description": "Pinned server key as `ssh-keygen -lf` prints it. If unset, the first successful connection records it (trust on first use); null resets it." }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(value: Value) -> ConnectorConfig {
        let Value::Object(map) = value else {
            panic!("not an object")
        };
        ConnectorConfig::new(map)
    }

    fn env() -> ValidationEnv {
        ValidationEnv {
            blocked_networks: crate::config::parse_networks(
                crate::config::DEFAULT_BLOCKED_NETWORKS,
            )
            .unwrap(),
        }
    }

    fn field_of(value: Value) -> String {
        DropzoneConfig::parse(&cfg(value), &env())
            .unwrap_err()
            .field
    }

    #[test]
    fn filesystem_defaults_are_filled_in() {
        let parsed = DropzoneConfig::parse(
            &cfg(json!({"mode": "filesystem", "export_path": "import//orders/"})),
            &env(),
        )
        .unwrap();
        assert_eq!(parsed.export_path, "/import/orders");
        assert!(parsed.atomic_write);
        assert_eq!(parsed.timeout_secs, 10);
        let stored = parsed.to_config();
        assert_eq!(stored.get("atomic_write"), Some(&json!(true)));
        assert!(stored.get("host").is_none());
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let sftp = |extra: Value| {
            let mut base = json!({"mode": "sftp", "export_path": "/in", "host": "sftp.example.com", "username": "u", "password": "p"});
            for (k, v) in extra.as_object().unwrap() {
                base[k] = v.clone();
            }
            base
        };
        for (value, field) in [
            (json!({"export_path": "/x"}), "mode"),
            (json!({"mode": "ftp", "export_path": "/x"}), "mode"),
            (json!({"mode": "filesystem"}), "export_path"),
            (
                json!({"mode": "filesystem", "export_path": "/a/../b"}),
                "export_path",
            ),
            (
                json!({"mode": "filesystem", "export_path": "/a\u{0}b"}),
                "export_path",
            ),
            (
                json!({"mode": "filesystem", "export_path": "/a\nb"}),
                "export_path",
            ),
            (
                json!({"mode": "filesystem", "export_path": "/x", "ack_path": ".."}),
                "ack_path",
            ),
            (
                json!({"mode": "filesystem", "export_path": "/in\u{202E}txt.json"}),
                "export_path",
            ),
            (
                json!({"mode": "filesystem", "export_path": "/in", "ack_path": "/a\u{2066}b"}),
                "ack_path",
            ),
            (
                json!({"mode": "filesystem", "export_path": "/in\u{2028}x"}),
                "export_path",
            ),
            (sftp(json!({"export_path": "/in\u{200F}x"})), "export_path"),
            (
                json!({"mode": "filesystem", "export_path": "/x", "timeout_secs": 0}),
                "timeout_secs",
            ),
            (
                json!({"mode": "filesystem", "export_path": "/x", "timeout_secs": 121}),
                "timeout_secs",
            ),
            (
                json!({"mode": "filesystem", "export_path": "/x", "atomic_write": "yes"}),
                "atomic_write",
            ),
            (
                json!({"mode": "filesystem", "export_path": "/x", "host": "h"}),
                "host",
            ),
            (
                json!({"mode": "filesystem", "export_path": "/x", "exportpath": "/y"}),
                "exportpath",
            ),
            (sftp(json!({"export_path": "relative/path"})), "export_path"),
            (sftp(json!({"host": "sftp://example.com"})), "host"),
            (sftp(json!({"host": "example.com:22"})), "host"),
            (sftp(json!({"host": "127.0.0.1"})), "host"),
            (sftp(json!({"host": "::1"})), "host"),
            (sftp(json!({"host": "169.254.169.254"})), "host"),
            (sftp(json!({"port": 0})), "port"),
            (sftp(json!({"port": 70000})), "port"),
            (sftp(json!({"username": ""})), "username"),
            (sftp(json!({"password": null})), "password"),
            (sftp(json!({"private_key": "not a key"})), "private_key"),
            (
                sftp(json!({"host_key_fingerprint": "MD5:aa:bb"})),
                "host_key_fingerprint",
            ),
        ] {
            assert_eq!(field_of(value.clone()), field, "{value}");
        }
    }

    #[test]
    fn blocked_literals_are_refused_at_save_time_in_every_spelling() {
        for host in [
            "::",
            "[::]",
            "::0",
            "0:0:0:0:0:0:0:0",
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]",
            "::ffff:7f00:1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "127.1",
            "0x7f.0.0.1",
            "2130706433",
            "0177.0.0.1",
            "0.0.0.0",
            "fd00:ec2::254",
            "100.100.100.200",
            "999.1.1.1",
        ] {
            let value = json!({"mode": "sftp", "export_path": "/in", "host": host, "username": "u", "password": "p"});
            assert_eq!(field_of(value), "host", "{host} was accepted");
        }
        let parsed = DropzoneConfig::parse(
            &cfg(json!({"mode": "sftp", "export_path": "/in", "host": "0x5d.0xb8.0xd8.0x22", "username": "u", "password": "p"})),
            &env(),
        )
        .unwrap();
        assert_eq!(parsed.sftp.unwrap().host, "93.184.216.34");
    }

    #[test]
    fn sftp_config_normalises_and_keeps_secrets() {
        let fp = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
        let parsed = DropzoneConfig::parse(
            &cfg(json!({"mode": "sftp", "export_path": "/in/", "host": "SFTP.Example.com", "username": "u", "password": "pw", "host_key_fingerprint": fp})),
            &env(),
        )
        .unwrap();
        let sftp = parsed.sftp.as_ref().unwrap();
        assert_eq!((sftp.host.as_str(), sftp.port), ("sftp.example.com", 22));
        assert_eq!(sftp.host_key_fingerprint.as_deref(), Some(fp));
        let stored = parsed.to_config();
        assert_eq!(stored.get("password"), Some(&json!("pw")));
        assert_eq!(stored.get("export_path"), Some(&json!("/in")));
        assert!(!format!("{parsed:?}").contains("\"pw\""));
    }
}
