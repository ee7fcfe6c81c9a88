//! The validated parts of a `DROPZONE_JSON_V1` config: folder paths, the SFTP host, port, user
//! name, host key fingerprint and private key. Each reads itself from JSON and states its JSON
//! Schema beside the rules it checks.

use std::net::IpAddr;
use std::ops::Deref;

use ipnet::IpNet;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::connectors::fields::{Text, TextRule, text, whole_number};
use crate::connectors::network::{HostLiteral, embedded_ipv4, is_blocked, parse_host};
use crate::crypto::SecretString;
use crate::domain::FieldError;

/// Longest accepted path.
const MAX_PATH_LEN: usize = 1024;
/// Default SFTP port.
pub const DEFAULT_PORT: u16 = 22;

/// A dropzone folder, normalised: `/` separates segments; empty and `.` segments are dropped;
/// `..`, NUL and other control characters are refused. Filesystem paths may be relative to the
/// org folder (a leading `/` means that folder's root); SFTP paths must be absolute, which the
/// config checks once it knows the mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "Value", into = "String")]
#[schemars(inline, schema_with = "relative_path_schema")]
pub struct DropzonePath {
    normalised: String,
    /// Whether it was given starting with `/`.
    absolute: bool,
}

impl DropzonePath {
    /// The normalised path (always starting with `/`).
    pub fn as_str(&self) -> &str {
        &self.normalised
    }

    /// Refuses a path not given as absolute (SFTP has no folder it would be relative to).
    pub fn require_absolute(&self, field: &str) -> Result<(), FieldError> {
        if self.absolute {
            Ok(())
        } else {
            Err(FieldError::new(
                field,
                "must be an absolute path starting with /",
            ))
        }
    }
}

impl Deref for DropzonePath {
    type Target = str;

    fn deref(&self) -> &str {
        &self.normalised
    }
}

impl From<DropzonePath> for String {
    fn from(path: DropzonePath) -> String {
        path.normalised
    }
}

impl TryFrom<Value> for DropzonePath {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, String> {
        let raw = text(value)?;
        normalise_path(&raw).map(|normalised| Self {
            normalised,
            absolute: raw.starts_with('/'),
        })
    }
}

/// Invisible characters that make a path display differently from what it is: bidi overrides
/// and isolates, zero-width characters, line and paragraph separators, the BOM.
fn is_deceptive_format_char(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

fn normalise_path(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("is required".into());
    }
    if raw.chars().count() > MAX_PATH_LEN {
        return Err("is too long (max 1024 characters)".into());
    }
    if raw.chars().any(char::is_control) {
        return Err("must not contain control characters or NUL".into());
    }
    if raw.chars().any(is_deceptive_format_char) {
        return Err("must not contain invisible formatting characters (bidi overrides, zero-width, line separators)".into());
    }
    let mut segments = Vec::new();
    for segment in raw.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err("must not contain '..' segments".into()),
            s => segments.push(s),
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// A character allowed in a path segment: no `/`, no control character, no invisible
/// formatting character (the same sets the reader refuses).
const PATH_CHAR: &str =
    r"[^/\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]";
const PATH_CHAR_NO_DOT: &str =
    r"[^./\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]";

/// A path as the reader accepts it: segments between slashes, none of them `..`; `absolute`:
/// starting with `/`.
pub fn path_schema(absolute: bool) -> Value {
    let segment = format!(
        r"(?:\.|\.\.{c}+|\.{d}{c}*|{d}{c}*)",
        c = PATH_CHAR,
        d = PATH_CHAR_NO_DOT
    );
    let lead = if absolute { "/+" } else { "/*" };
    let pattern = format!("^{lead}(?:{segment}/+)*(?:{segment})?$");
    serde_json::json!({ "type": "string", "minLength": 1, "maxLength": MAX_PATH_LEN, "pattern": pattern })
}

fn relative_path_schema(_: &mut SchemaGenerator) -> Schema {
    Schema::try_from(path_schema(false)).unwrap_or_default()
}

/// An SFTP host name or IP literal: no scheme, port, user, path or brackets. Accepted literals
/// are plain dotted-quad IPv4 or IPv6 that embeds no IPv4 address: other spellings of an
/// address (`127.1`, `0x7f.0.0.1`, `::ffff:127.0.0.1`, …) are refused rather than guessed at,
/// so what is stored is what the document describes, and no spelling slips past the blocked
/// networks. Stored with names in lowercase.
pub struct HostName;

/// An SFTP host.
pub type Host = Text<HostName>;

impl Host {
    /// Refuses an address literal in a blocked network (the server's policy, so checked when a
    /// config is saved rather than whenever one is read).
    pub fn require_allowed(&self, blocked: &[IpNet]) -> Result<(), FieldError> {
        match self.as_str().parse::<IpAddr>() {
            Ok(ip) if is_blocked(ip, blocked) => Err(FieldError::new(
                "host",
                "is in a blocked network (CONNECTOR_BLOCKED_NETWORKS)",
            )),
            _ => Ok(()),
        }
    }
}

impl TextRule for HostName {
    fn check(raw: String) -> Result<String, String> {
        let bad_name = || {
            "must be a plain host name or IP address (no scheme, port, path or brackets)".to_owned()
        };
        if raw.is_empty() || raw.chars().count() > 253 {
            return Err(bad_name());
        }
        let name = match parse_host(&raw) {
            HostLiteral::Ip(ip) => {
                if raw.parse::<IpAddr>().ok() != Some(ip) {
                    return Err("write IPv4 addresses as four decimal numbers (a.b.c.d) and IPv6 without brackets".into());
                }
                if matches!(ip, IpAddr::V6(v6) if embedded_ipv4(v6).is_some()) {
                    return Err(
                        "is an IPv6 form of an IPv4 address; give the IPv4 address itself".into(),
                    );
                }
                return Ok(ip.to_string());
            }
            HostLiteral::BadNumeric => return Err(bad_name()),
            HostLiteral::Name(name) => name,
        };
        let labels = raw.strip_suffix('.').unwrap_or(&raw);
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

    fn schema() -> Value {
        host_schema()
    }
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

/// A host as the reader accepts it; the patterns also exclude the default blocked networks (a
/// server configured otherwise refuses more when saving).
pub fn host_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": 253,
        "anyOf": [
            { "pattern": NAME_PATTERN },
            { "pattern": IPV4_PATTERN, "not": { "pattern": BLOCKED_V4_PATTERN } },
            { "format": "ipv6", "pattern": "^[0-9A-Fa-f:]+$", "not": { "pattern": BLOCKED_V6_PATTERN } }
        ]
    })
}

/// An SFTP port, 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "Value", into = "u16")]
#[schemars(inline, schema_with = "port_schema")]
pub struct Port(u16);

impl Port {
    /// The port number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for Port {
    fn default() -> Self {
        Self(DEFAULT_PORT)
    }
}

impl From<Port> for u16 {
    fn from(port: Port) -> u16 {
        port.0
    }
}

impl TryFrom<Value> for Port {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, String> {
        let port = whole_number(&value, 1..=u64::from(u16::MAX))?;
        u16::try_from(port).map(Self).map_err(|e| e.to_string())
    }
}

fn port_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "minimum": 1, "maximum": u16::MAX, "default": DEFAULT_PORT })
}

/// An SFTP user name: 1 to 255 printable characters.
pub struct UserName;

/// An SFTP user name.
pub type Username = Text<UserName>;

impl TextRule for UserName {
    fn check(name: String) -> Result<String, String> {
        if name.is_empty() {
            return Err("is required".into());
        }
        if name.chars().any(char::is_control) || name.chars().count() > 255 {
            return Err("must be at most 255 printable characters".into());
        }
        Ok(name)
    }

    fn schema() -> Value {
        json!({ "type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[^\u0000-\u001f\u007f-\u009f]+$" })
    }
}

/// A pinned SSH host key: `SHA256:` and 43 unpadded base64 characters, as `ssh-keygen -lf`
/// prints it.
pub struct HostKeyFingerprint;

/// A pinned SSH host key.
pub type Fingerprint = Text<HostKeyFingerprint>;

impl TextRule for HostKeyFingerprint {
    fn check(raw: String) -> Result<String, String> {
        let well_formed = raw.strip_prefix("SHA256:").is_some_and(|b| {
            b.len() == 43
                && b.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        });
        if well_formed {
            Ok(raw)
        } else {
            Err("must look like SHA256:<43 base64 characters>, as `ssh-keygen -lf` prints".into())
        }
    }

    fn schema() -> Value {
        json!({ "type": "string", "pattern": "^SHA256:[A-Za-z0-9+/]{43}$" })
    }
}

const KEY_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const KEY_END: &str = "-----END OPENSSH PRIVATE KEY-----";

/// An OpenSSH private key in its armor: BEGIN line, base64 body, END line. A body that does not
/// decode is left to the connection test (AUTH_FAILED "the private key cannot be read"): the
/// rule when saving is the armor the document states, and that a passphrase opens it.
pub struct OpenSshKey;

/// An OpenSSH private key.
pub type PrivateKey = Text<OpenSshKey>;

impl PrivateKey {
    /// An encrypted key needs the passphrase that opens it. This runs the key derivation, so
    /// it is checked when a config is saved, not whenever one is read.
    pub fn require_opens(&self, passphrase: Option<&SecretString>) -> Result<(), FieldError> {
        let key = self.as_str();
        match russh::keys::decode_secret_key(key, None) {
            Err(russh::keys::Error::KeyIsEncrypted) => {
                let Some(passphrase) = passphrase else {
                    return Err(FieldError::new(
                        "private_key_passphrase",
                        "is required: the private key is encrypted",
                    ));
                };
                russh::keys::decode_secret_key(key, Some(passphrase.expose()))
                    .map(|_| ())
                    .map_err(|_| {
                        FieldError::new(
                            "private_key_passphrase",
                            "does not decrypt the private key",
                        )
                    })
            }
            _ => Ok(()),
        }
    }
}

impl TextRule for OpenSshKey {
    const SECRET: bool = true;

    fn check(key: String) -> Result<String, String> {
        if is_openssh_armored(&key) {
            Ok(key)
        } else {
            Err("is not an OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----)".into())
        }
    }

    fn schema() -> Value {
        json!({
            "type": "string",
            "pattern": r"^-----BEGIN OPENSSH PRIVATE KEY-----[\r\n][A-Za-z0-9+/=\r\n]*[A-Za-z0-9][A-Za-z0-9+/=\r\n]*-----END OPENSSH PRIVATE KEY-----\s*$"
        })
    }
}

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
