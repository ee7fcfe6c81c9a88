//! `DROPZONE_JSON_V1` config: parsing and validation, without I/O.
//!
//! The same parser reads submitted configs (then [`DropzoneConfig::to_config`] stores the
//! normalised form) and stored ones (a stored config that no longer parses is
//! `CONFIG_UNREADABLE`).

use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use crate::connectors::fields::{
    integer_field, nullable, optional, required_string, secret_field, string_field, timeout_schema,
    timeout_secs, titled,
};
use crate::connectors::network::{HostLiteral, embedded_ipv4, is_blocked, parse_host};
use crate::connectors::transport::sftp::SftpTarget;
use crate::connectors::{ConnectorConfig, ConnectorInfo, ValidationEnv};
use crate::crypto::SecretString;
use crate::domain::FieldError;

/// Default SFTP port.
pub const DEFAULT_PORT: u16 = 22;
/// Longest accepted path.
const MAX_PATH_LEN: usize = 1024;

/// The type's names and field classes.
pub static INFO: ConnectorInfo = ConnectorInfo {
    connector_type: "DROPZONE_JSON_V1",
    slug: "dropzone-json-v1",
    display_name: "JSON files in a dropzone folder (SFTP or filesystem)",
    // Never shown, `writeOnly` in the schema.
    secret_fields: &["password", "private_key", "private_key_passphrase"],
    // Changing one of these requires the secrets to be given again.
    identity_fields: &["mode", "host", "port", "username"],
    // A host key recorded on first use must not be forgotten just because an update did not
    // repeat it.
    sticky_fields: &["host_key_fingerprint"],
    schema,
    validate: |config, env| DropzoneConfig::parse(config, env).map(|c| c.to_config()),
};

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
    if raw.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if raw.chars().count() > MAX_PATH_LEN {
        return Err(FieldError::new(field, "is too long (max 1024 characters)"));
    }
    if has_control(raw) {
        return Err(FieldError::new(
            field,
            "must not contain control characters or NUL",
        ));
    }
    if raw.chars().any(is_deceptive_format_char) {
        return Err(FieldError::new(
            field,
            "must not contain invisible formatting characters (bidi overrides, zero-width, line separators)",
        ));
    }
    if must_be_absolute && !raw.starts_with('/') {
        return Err(FieldError::new(
            field,
            "must be an absolute path starting with /",
        ));
    }
    let mut segments = Vec::new();
    for segment in raw.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(FieldError::new(field, "must not contain '..' segments")),
            s => segments.push(s),
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// A host name or IP literal: no scheme, port, user, path or brackets. A literal in a blocked
/// network is refused in every spelling (`::`, `::ffff:127.0.0.1`, `127.1`, `0x7f.0.0.1`, …).
/// Accepted literals are plain dotted-quad IPv4 or IPv6 that embeds no IPv4 address: other
/// spellings of an address are refused rather than guessed at, so what is stored is what the
/// document describes.
fn validate_host(raw: &str, blocked: &[IpNet]) -> Result<String, FieldError> {
    let bad_name = || {
        FieldError::new(
            "host",
            "must be a plain host name or IP address (no scheme, port, path or brackets)",
        )
    };
    let blocked_error = || {
        FieldError::new(
            "host",
            "is in a blocked network (CONNECTOR_BLOCKED_NETWORKS)",
        )
    };
    if raw.is_empty() || raw.chars().count() > 253 {
        return Err(bad_name());
    }
    let name = match parse_host(raw) {
        HostLiteral::Ip(ip) if is_blocked(ip, blocked) => return Err(blocked_error()),
        HostLiteral::Ip(ip) => {
            let canonical = raw.parse::<std::net::IpAddr>().ok() == Some(ip);
            let embeds_v4 = matches!(ip, std::net::IpAddr::V6(v6) if embedded_ipv4(v6).is_some());
            if !canonical {
                return Err(FieldError::new(
                    "host",
                    "write IPv4 addresses as four decimal numbers (a.b.c.d) and IPv6 without brackets",
                ));
            }
            if embeds_v4 {
                return Err(FieldError::new(
                    "host",
                    "is an IPv6 form of an IPv4 address; give the IPv4 address itself",
                ));
            }
            return Ok(ip.to_string());
        }
        HostLiteral::BadNumeric => return Err(bad_name()),
        HostLiteral::Name(name) => name,
    };
    let labels = raw.strip_suffix('.').unwrap_or(raw);
    let valid_name = !labels.is_empty()
        && labels.split('.').all(|label| {
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
    let body = raw.strip_prefix("SHA256:");
    let ok = body.is_some_and(|b| {
        b.len() == 43
            && b.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    });
    match body {
        Some(b) if ok => Ok(format!("SHA256:{b}")),
        _ => Err(FieldError::new(
            "host_key_fingerprint",
            "must look like SHA256:<43 base64 characters>, as `ssh-keygen -lf` prints",
        )),
    }
}

const KEY_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const KEY_END: &str = "-----END OPENSSH PRIVATE KEY-----";

/// The OpenSSH armor: BEGIN line, base64 body, END line (the document's pattern).
fn is_openssh_armored(key: &str) -> bool {
    let Some(body) = key
        .strip_prefix(KEY_BEGIN)
        .and_then(|rest| rest.trim_end().strip_suffix(KEY_END))
    else {
        return false;
    };
    body.starts_with(['\n', '\r'])
        && body.chars().any(|c| c.is_ascii_alphanumeric())
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '\r' | '\n'))
}

/// The key must be an armored OpenSSH private key; an encrypted one needs the passphrase
/// that opens it. A body that does not decode is left to the connection test (AUTH_FAILED
/// "the private key cannot be read"): the save-time rule is the armor the document states.
fn validate_private_key(
    key: &SecretString,
    passphrase: Option<&SecretString>,
) -> Result<(), FieldError> {
    if !is_openssh_armored(key.expose()) {
        return Err(FieldError::new(
            "private_key",
            "is not an OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----)",
        ));
    }
    match russh::keys::decode_secret_key(key.expose(), None) {
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let Some(passphrase) = passphrase else {
                return Err(FieldError::new(
                    "private_key_passphrase",
                    "is required: the private key is encrypted",
                ));
            };
            russh::keys::decode_secret_key(key.expose(), Some(passphrase.expose()))
                .map(|_| ())
                .map_err(|_| {
                    FieldError::new("private_key_passphrase", "does not decrypt the private key")
                })
        }
        _ => Ok(()),
    }
}

impl DropzoneConfig {
    /// Parses and validates a config.
    pub fn parse(config: &ConnectorConfig, env: &ValidationEnv) -> Result<Self, FieldError> {
        let mode = match string_field(config, "mode")?.as_deref() {
            Some("sftp") => Mode::Sftp,
            Some("filesystem") => Mode::Filesystem,
            Some(_) => {
                return Err(FieldError::new(
                    "mode",
                    "must be \"sftp\" or \"filesystem\"",
                ));
            }
            None => {
                return Err(FieldError::new(
                    "mode",
                    "is required (\"sftp\" or \"filesystem\")",
                ));
            }
        };
        for field in config.fields().keys() {
            let known = COMMON_FIELDS.contains(&field.as_str())
                || (mode == Mode::Sftp && SFTP_FIELDS.contains(&field.as_str()));
            // An sftp setting set to null in filesystem mode says "none"; anything else unknown
            // is refused even when null, so a typo never passes unnoticed.
            let harmless = SFTP_FIELDS.contains(&field.as_str()) && !config.has(field);
            if !known && !harmless {
                let why = if SFTP_FIELDS.contains(&field.as_str()) {
                    "is only allowed in sftp mode"
                } else {
                    "is not a DROPZONE_JSON_V1 setting"
                };
                return Err(FieldError::new(field, why));
            }
        }
        let absolute = mode == Mode::Sftp;
        let export_path = normalize_path(
            "export_path",
            &string_field(config, "export_path")?.unwrap_or_default(),
            absolute,
        )?;
        let ack_path = string_field(config, "ack_path")?
            .map(|p| normalize_path("ack_path", &p, absolute))
            .transpose()?;
        let atomic_write = match optional(config, "atomic_write") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(FieldError::new("atomic_write", "must be true or false")),
        };
        let timeout_secs = timeout_secs(config)?;
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
        let host = validate_host(
            &string_field(config, "host")?.unwrap_or_default(),
            &env.blocked_networks,
        )?;
        let port = integer_field(config, "port", 1..=65535)?
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(DEFAULT_PORT);
        let username = required_string(config, "username")?;
        if has_control(&username) || username.chars().count() > 255 {
            return Err(FieldError::new(
                "username",
                "must be at most 255 printable characters",
            ));
        }
        let password = secret_field(config, "password")?;
        let private_key = secret_field(config, "private_key")?;
        let private_key_passphrase = secret_field(config, "private_key_passphrase")?;
        match (&password, &private_key) {
            (None, None) => {
                return Err(FieldError::new(
                    "password",
                    "sftp needs a password or a private_key",
                ));
            }
            (_, Some(key)) => validate_private_key(key, private_key_passphrase.as_ref())?,
            _ => {}
        }
        let host_key_fingerprint = string_field(config, "host_key_fingerprint")?
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

/// A character allowed in a path segment: no `/`, no control character, no invisible
/// formatting character (the same set [`normalize_path`] refuses).
const PATH_CHAR: &str =
    r"[^/\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]";
const PATH_CHAR_NO_DOT: &str =
    r"[^./\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]";

/// A path as [`normalize_path`] accepts it: segments between slashes, none of them `..`.
fn path_pattern(absolute: bool) -> String {
    let segment = format!(
        r"(?:\.|\.\.{c}+|\.{d}{c}*|{d}{c}*)",
        c = PATH_CHAR,
        d = PATH_CHAR_NO_DOT
    );
    let lead = if absolute { "/+" } else { "/*" };
    format!("^{lead}(?:{segment}/+)*(?:{segment})?$")
}

/// A DNS name with at least one label that does not start with a digit (all-numeric names are
/// read as addresses, as resolvers do).
const NAME_PATTERN: &str = r"^(?:[A-Za-z0-9_][A-Za-z0-9_-]{0,62}\.)*[A-Za-z_][A-Za-z0-9_-]{0,62}(?:\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?$";
/// A dotted-quad IPv4 address without leading zeros.
const IPV4_PATTERN: &str = r"^(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$";
/// The default blocked IPv4 networks (loopback, this network, link-local, Alibaba metadata).
const BLOCKED_V4_PATTERN: &str = r"^(?:0|127)\.|^169\.254\.|^100\.100\.100\.200$";
/// The default blocked IPv6 addresses, and the forms that embed an IPv4 address (refused as
/// literals: give the IPv4 address itself).
const BLOCKED_V6_PATTERN: &str =
    r"^::|^[fF][eE][89aAbB]|^64:[fF][fF]9[bB]:|^2002:|^[fF][dD]00:[eE][cC]2::254$";

/// The config's JSON Schema (served by `GET /connectors/types`, and the request body of
/// `POST /connectors/dropzone-json-v1` in the OpenAPI document). It states every rule the
/// validation applies, save the ones that depend on this server: the configured blocked
/// networks (the patterns exclude the defaults) and symlinks on disk.
pub fn schema() -> Value {
    let path = json!({ "type": "string", "minLength": 1, "maxLength": 1024, "pattern": path_pattern(false) });
    let sftp_path = json!({ "type": "string", "minLength": 1, "maxLength": 1024, "pattern": path_pattern(true) });
    let host = json!({
        "type": "string",
        "minLength": 1,
        "maxLength": 253,
        "description": "sftp: host name or IP literal (no scheme, port or brackets). An address in CONNECTOR_BLOCKED_NETWORKS is refused.",
        "anyOf": [
            { "pattern": NAME_PATTERN },
            { "pattern": IPV4_PATTERN, "not": { "pattern": BLOCKED_V4_PATTERN } },
            { "format": "ipv6", "pattern": "^[0-9A-Fa-f:]+$", "not": { "pattern": BLOCKED_V6_PATTERN } }
        ]
    });
    let secret = |description: &str| {
        json!({ "anyOf": [
            { "type": "string", "minLength": 1, "writeOnly": true },
            { "type": "null" }
        ], "writeOnly": true, "description": description })
    };
    let private_key = json!({ "anyOf": [
        { "type": "string", "writeOnly": true,
          "pattern": r"^-----BEGIN OPENSSH PRIVATE KEY-----[\r\n][A-Za-z0-9+/=\r\n]*[A-Za-z0-9][A-Za-z0-9+/=\r\n]*-----END OPENSSH PRIVATE KEY-----\s*$" },
        { "type": "null" }
    ], "writeOnly": true, "description": "sftp: OpenSSH private key (PEM text); an encrypted key needs private_key_passphrase." });
    let none = json!({ "type": "null" });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "DROPZONE_JSON_V1",
        "description": "One JSON file per order in a folder the ERP's import job watches, on SFTP or a local/mounted filesystem.",
        "type": "object",
        "additionalProperties": false,
        "required": ["mode", "export_path"],
        "properties": {
            "mode": { "title": "Where the dropzone is", "propertyOrder": 1, "enum": ["sftp", "filesystem"], "description": "sftp: a folder on the ERP's SFTP server. filesystem: a folder under DROPZONE_FS_ROOT/<org>/ on this server (local or mounted)." },
            "export_path": { "title": "Export folder", "propertyOrder": 2, "allOf": [path], "description": "Folder for export files. sftp: absolute path on the server. filesystem: path inside the org's folder under DROPZONE_FS_ROOT (a leading / means that folder's root). No '..' segments, control or invisible formatting characters." },
            "ack_path": { "title": "Acknowledgement folder", "propertyOrder": 3, "anyOf": [path, none], "description": "Folder the ERP writes ack_/error_ files to; polled when set." },
            "atomic_write": { "title": "Write atomically", "propertyOrder": 6, "type": ["boolean", "null"], "default": true, "description": "Write <name>.tmp, then rename, so the ERP never sees a partial file." },
            "timeout_secs": timeout_schema("Timeout for each network operation and for a whole connection test."),
            "host": titled(nullable(host.clone()), "SFTP host", 10),
            "port": { "title": "SFTP port", "propertyOrder": 11, "type": ["integer", "null"], "minimum": 1, "maximum": 65535, "default": 22 },
            "username": titled(nullable(json!({ "type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[^\u0000-\u001f\u007f-\u009f]+$" })), "SFTP user name", 12),
            "password": titled(secret("sftp: password (and/or private_key)."), "Password", 20),
            "private_key": titled(private_key, "Private key", 21),
            "private_key_passphrase": titled(secret("sftp: passphrase of an encrypted private_key."), "Private key passphrase", 22),
            "host_key_fingerprint": { "title": "Host key fingerprint", "propertyOrder": 13, "type": ["string", "null"], "pattern": "^SHA256:[A-Za-z0-9+/]{43}$", "description": "Pinned server key as `ssh-keygen -lf` prints it. If unset, the first successful connection records it (trust on first use); null resets it." }
        },
        // One variant per mode, each stating its own rules (no if/then: generators that read
        // this document, such as Schemathesis, handle oneOf but not conditionals).
        "oneOf": [
            {
                "properties": {
                    "mode": { "const": "filesystem" },
                    "host": none, "port": none, "username": none, "password": none,
                    "private_key": none, "private_key_passphrase": none, "host_key_fingerprint": none
                }
            },
            {
                "required": ["host", "username"],
                "properties": {
                    "mode": { "const": "sftp" },
                    "export_path": sftp_path,
                    "ack_path": { "anyOf": [sftp_path, none] },
                    "host": host,
                    "username": { "type": "string" }
                },
                "anyOf": [
                    { "required": ["password"], "properties": { "password": { "type": "string" } } },
                    { "required": ["private_key"], "properties": { "private_key": { "type": "string" } } }
                ]
            }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::connectors::testing::cfg;

    fn env() -> ValidationEnv {
        crate::connectors::testing::env(false)
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

    /// Configs on both sides of every rule, for the schema/validation agreement test.
    fn agreement_cases() -> Vec<Value> {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        let sftp = |extra: Value| {
            let mut base = json!({"mode": "sftp", "export_path": "/in", "host": "sftp.example.com", "username": "u", "password": "p"});
            for (k, v) in extra.as_object().unwrap() {
                base[k] = v.clone();
            }
            base
        };
        let fs = |extra: Value| {
            let mut base = json!({"mode": "filesystem", "export_path": "/in"});
            for (k, v) in extra.as_object().unwrap() {
                base[k] = v.clone();
            }
            base
        };
        vec![
            fs(json!({})),
            fs(json!({"export_path": "in/orders"})),
            fs(json!({"export_path": "   "})),
            fs(json!({"export_path": ""})),
            fs(json!({"export_path": "/a/../b"})),
            fs(json!({"export_path": ".."})),
            fs(json!({"export_path": "/..a/b../.c/."})),
            fs(json!({"export_path": "/a\u{202E}b"})),
            fs(json!({"export_path": "/a\u{85}b"})),
            fs(json!({"export_path": "x".repeat(1025)})),
            fs(json!({"export_path": "é".repeat(1024)})),
            fs(json!({"ack_path": null})),
            fs(json!({"ack_path": ""})),
            fs(json!({"host": null, "password": null})),
            fs(json!({"host": "h"})),
            fs(json!({"colour": null})),
            fs(json!({"timeout_secs": 0})),
            fs(json!({"timeout_secs": 120})),
            fs(json!({"timeout_secs": 10.0})),
            fs(json!({"timeout_secs": 10.5})),
            fs(json!({"atomic_write": null})),
            sftp(json!({})),
            sftp(json!({"export_path": "in"})),
            sftp(json!({"host": "93.184.216.34"})),
            sftp(json!({"host": "127.0.0.1"})),
            sftp(json!({"host": "169.254.1.1"})),
            sftp(json!({"host": "01.2.3.4"})),
            sftp(json!({"host": "12345678"})),
            sftp(json!({"host": "0"})),
            sftp(json!({"host": "1e2.example"})),
            sftp(json!({"host": "2606:2800:220:1::1"})),
            sftp(json!({"host": "::1"})),
            sftp(json!({"host": "::ffff:8.8.8.8"})),
            sftp(json!({"host": "[2606:2800:220:1::1]"})),
            sftp(json!({"host": "fe80::1"})),
            sftp(json!({"host": "-bad.example"})),
            sftp(json!({"host": "a..b"})),
            sftp(json!({"host": " sftp.example.com"})),
            sftp(json!({"host": "Example.COM."})),
            sftp(json!({"username": ""})),
            sftp(json!({"username": "   "})),
            sftp(json!({"username": "a\tb"})),
            sftp(json!({"password": ""})),
            sftp(json!({"password": null})),
            sftp(json!({"password": null, "private_key": key})),
            sftp(json!({"private_key": "not a key"})),
            sftp(
                json!({"host_key_fingerprint": " SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"}),
            ),
            sftp(
                json!({"host_key_fingerprint": "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"}),
            ),
            sftp(json!({"port": 0})),
            sftp(json!({"port": 22.0})),
            sftp(json!({"private_key_passphrase": ""})),
        ]
    }

    /// The JSON Schema (and so the OpenAPI document) and the validation agree, both ways.
    #[test]
    fn the_schema_and_the_validation_agree() {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema())
            .unwrap();
        for case in agreement_cases() {
            let by_schema = validator.is_valid(&case);
            let by_code = DropzoneConfig::parse(&cfg(case.clone()), &env()).is_ok();
            assert_eq!(
                by_schema, by_code,
                "schema {by_schema}, validation {by_code}: {case}"
            );
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
        // An address not blocked but spelled unusually is refused too, not guessed at.
        let odd = json!({"mode": "sftp", "export_path": "/in", "host": "0x5d.0xb8.0xd8.0x22", "username": "u", "password": "p"});
        assert_eq!(field_of(odd), "host");
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
