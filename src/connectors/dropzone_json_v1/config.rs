//! `DROPZONE_JSON_V1` config: one typed struct, from which both the validation and the JSON
//! Schema served to clients are derived; no I/O.

use std::time::Duration;

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::parts::{
    DropzonePath, Fingerprint, Host, Port, PrivateKey, Username, host_schema, path_schema,
};
use crate::connectors::fields::{self, SecretText, TimeoutSecs};
use crate::connectors::transport::sftp::SftpTarget;
use crate::connectors::{ConnectorConfig, ConnectorInfo, ValidationEnv};
use crate::domain::FieldError;

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
    schema: fields::schema_of::<DropzoneConfig>,
    validate: |config, env| DropzoneConfig::validate(config, env).map(|c| c.to_config()),
};

/// The fields only sftp mode takes; in filesystem mode they may only be null.
const SFTP_FIELDS: [&str; 7] = [
    "host",
    "port",
    "username",
    "password",
    "private_key",
    "private_key_passphrase",
    "host_key_fingerprint",
];

/// Where the dropzone is: `sftp`, a remote SFTP server; `filesystem`, a folder under
/// `DROPZONE_FS_ROOT/<org slug>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Sftp,
    Filesystem,
}

/// A `DROPZONE_JSON_V1` config: what a client sends, what is stored (normalised, defaults
/// filled in) and what the connector reads. Field docs are the schema's descriptions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "DROPZONE_JSON_V1",
    description = "One JSON file per order in a folder the ERP's import job watches, on SFTP or a local/mounted filesystem.",
    transform = one_variant_per_mode
)]
pub struct DropzoneConfig {
    /// sftp: a folder on the ERP's SFTP server. filesystem: a folder under
    /// DROPZONE_FS_ROOT/<org>/ on this server (local or mounted).
    #[schemars(title = "Where the dropzone is", extend("propertyOrder" = 1))]
    pub mode: Mode,
    /// Folder for export files. sftp: absolute path on the server. filesystem: path inside the
    /// org's folder under DROPZONE_FS_ROOT (a leading / means that folder's root). No '..'
    /// segments, control or invisible formatting characters.
    #[schemars(title = "Export folder", extend("propertyOrder" = 2))]
    pub export_path: DropzonePath,
    /// Folder the ERP writes ack_/error_ files to; polled when set.
    #[schemars(title = "Acknowledgement folder", extend("propertyOrder" = 3))]
    pub ack_path: Option<DropzonePath>,
    /// Write <name>.tmp, then rename, so the ERP never sees a partial file.
    #[schemars(title = "Write atomically", extend("propertyOrder" = 6, "default" = true))]
    pub atomic_write: Option<bool>,
    /// Timeout for each network operation and for a whole connection test.
    #[serde(default)]
    #[schemars(title = "Timeout (seconds)", extend("propertyOrder" = 7))]
    pub timeout_secs: TimeoutSecs,
    /// sftp: host name or IP literal (no scheme, port or brackets). An address in
    /// CONNECTOR_BLOCKED_NETWORKS is refused.
    #[schemars(title = "SFTP host", extend("propertyOrder" = 10))]
    pub host: Option<Host>,
    /// sftp: the server's port.
    #[schemars(title = "SFTP port", extend("propertyOrder" = 11))]
    pub port: Option<Port>,
    /// sftp: the user to log in as.
    #[schemars(title = "SFTP user name", extend("propertyOrder" = 12))]
    pub username: Option<Username>,
    /// Pinned server key as `ssh-keygen -lf` prints it. If unset, the first successful
    /// connection records it (trust on first use); null resets it.
    #[schemars(title = "Host key fingerprint", extend("propertyOrder" = 13))]
    pub host_key_fingerprint: Option<Fingerprint>,
    /// sftp: password (and/or private_key).
    #[schemars(title = "Password", extend("propertyOrder" = 20))]
    pub password: Option<SecretText>,
    /// sftp: OpenSSH private key (PEM text); an encrypted key needs private_key_passphrase.
    #[schemars(title = "Private key", extend("propertyOrder" = 21))]
    pub private_key: Option<PrivateKey>,
    /// sftp: passphrase of an encrypted private_key.
    #[schemars(title = "Private key passphrase", extend("propertyOrder" = 22))]
    pub private_key_passphrase: Option<SecretText>,
}

impl DropzoneConfig {
    /// Reads a stored config: its fields and the rules of its mode. What depends on this
    /// server's network policy applies when connecting; a key's passphrase was checked when
    /// the config was saved (running the key derivation for every read would cost each export
    /// a runtime thread's worth of hashing).
    pub fn read(config: &ConnectorConfig) -> Result<Self, FieldError> {
        let mut typed: Self = fields::read(config)?;
        match typed.mode {
            Mode::Filesystem => {
                if let Some(field) = SFTP_FIELDS.into_iter().find(|f| config.has(f)) {
                    return Err(FieldError::new(field, "is only allowed in sftp mode"));
                }
            }
            Mode::Sftp => typed.read_sftp()?,
        }
        typed.atomic_write.get_or_insert(true);
        Ok(typed)
    }

    fn read_sftp(&mut self) -> Result<(), FieldError> {
        self.export_path.require_absolute("export_path")?;
        if let Some(ack_path) = &self.ack_path {
            ack_path.require_absolute("ack_path")?;
        }
        if self.host.is_none() {
            return Err(FieldError::new("host", "is required"));
        }
        if self.username.is_none() {
            return Err(FieldError::new("username", "is required"));
        }
        if self.password.is_none() && self.private_key.is_none() {
            return Err(FieldError::new(
                "password",
                "sftp needs a password or a private_key",
            ));
        }
        self.port.get_or_insert_default();
        Ok(())
    }

    /// Checks a submitted config and returns it normalised: also that an address literal is
    /// not in a blocked network and that the passphrase opens an encrypted key.
    pub fn validate(config: &ConnectorConfig, env: &ValidationEnv) -> Result<Self, FieldError> {
        let typed = Self::read(config)?;
        if let Some(host) = &typed.host {
            host.require_allowed(&env.blocked_networks)?;
        }
        if let Some(key) = &typed.private_key {
            key.require_opens(
                typed
                    .private_key_passphrase
                    .as_ref()
                    .map(SecretText::secret),
            )?;
        }
        Ok(typed)
    }

    /// The normalised config to store (defaults filled in, absent optionals left out).
    pub fn to_config(&self) -> ConnectorConfig {
        ConnectorConfig::from_typed(self)
    }

    /// Whether files are written under a temporary name and renamed.
    pub fn atomic_write(&self) -> bool {
        self.atomic_write.unwrap_or(true)
    }

    /// The per-operation timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout_secs.duration()
    }

    /// Where and how to connect, in sftp mode.
    pub fn sftp_target(&self) -> Option<SftpTarget> {
        if self.mode != Mode::Sftp {
            return None;
        }
        Some(SftpTarget {
            host: self.host.as_ref()?.as_str().to_owned(),
            port: self.port.unwrap_or_default().get(),
            username: self.username.as_ref()?.as_str().to_owned(),
            password: self.password.as_ref().map(|p| p.secret().clone()),
            private_key: self.private_key.as_ref().map(|k| k.secret().clone()),
            private_key_passphrase: self
                .private_key_passphrase
                .as_ref()
                .map(|p| p.secret().clone()),
            host_key_fingerprint: self
                .host_key_fingerprint
                .as_ref()
                .map(|f| f.as_str().to_owned()),
            timeout: self.timeout(),
        })
    }
}

/// One variant per mode, each stating its own rules (no if/then: generators that read the
/// schema, such as Schemathesis, handle oneOf but not conditionals): in filesystem mode the
/// sftp fields are null; in sftp mode the host and user are required, with a password or a
/// key, and paths are absolute.
fn one_variant_per_mode(schema: &mut Schema) {
    let none = json!({ "type": "null" });
    let filesystem: serde_json::Map<_, _> = SFTP_FIELDS
        .iter()
        .map(|f| ((*f).to_owned(), none.clone()))
        .chain([("mode".to_owned(), json!({ "const": "filesystem" }))])
        .collect();
    let sftp_path = path_schema(true);
    schema.insert(
        "oneOf".into(),
        json!([
            { "properties": filesystem },
            {
                "required": ["host", "username"],
                "properties": {
                    "mode": { "const": "sftp" },
                    "export_path": sftp_path,
                    "ack_path": { "anyOf": [sftp_path, none] },
                    "host": host_schema(),
                    "username": { "type": "string" }
                },
                "anyOf": [
                    { "required": ["password"], "properties": { "password": { "type": "string" } } },
                    { "required": ["private_key"], "properties": { "private_key": { "type": "string" } } }
                ]
            }
        ]),
    );
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::connectors::testing::cfg;

    fn env() -> ValidationEnv {
        crate::connectors::testing::env(false)
    }

    fn field_of(value: Value) -> String {
        DropzoneConfig::validate(&cfg(value), &env())
            .unwrap_err()
            .field
    }

    #[test]
    fn filesystem_defaults_are_filled_in() {
        let parsed = DropzoneConfig::validate(
            &cfg(json!({"mode": "filesystem", "export_path": "import//orders/"})),
            &env(),
        )
        .unwrap();
        assert_eq!(parsed.export_path.as_str(), "/import/orders");
        assert!(parsed.atomic_write());
        assert_eq!(parsed.timeout(), Duration::from_secs(10));
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
            .build(&fields::schema_of::<DropzoneConfig>())
            .unwrap();
        for case in agreement_cases() {
            let by_schema = validator.is_valid(&case);
            let by_code = DropzoneConfig::validate(&cfg(case.clone()), &env()).is_ok();
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

    /// Saving checks that the passphrase opens an encrypted key; reading a stored config does
    /// not run the key derivation again (each export reads its config).
    #[test]
    fn the_passphrase_is_checked_when_saving_and_not_on_every_read() {
        // A throwaway ed25519 key made for this test with
        // `ssh-keygen -t ed25519 -N "right passphrase"`; it opens nothing anywhere.
        let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABAEdZYabA\ncHvwcTCgveq9yZAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAICVlqPcAC6SFWHPC\nxTOKYM/5HiEipqArTNPd3ABC6jK3AAAAkKN0pM1w8I/139Kg+5Eqbep6rJ8e0RBcw34kYR\nlAtALLaO88yXIcmAvoKmruOGYovIfIYzRuFSBjj8AR4atZH2chbNlxd1IK7zfeRrbMNz8t\n30oFgkbNeGzmqSrIKhGaPQ9MLfmmwugWZCYOUqpW7Agnusl/8Cg3LTUxOwa4fbDi4nyIHe\nBobeViS9PmDOn9pw==\n-----END OPENSSH PRIVATE KEY-----\n";
        let with = |passphrase: Value| {
            cfg(
                json!({"mode": "sftp", "export_path": "/in", "host": "sftp.example.com",
                       "username": "u", "private_key": pem, "private_key_passphrase": passphrase}),
            )
        };
        assert!(DropzoneConfig::validate(&with(json!("right passphrase")), &env()).is_ok());
        for wrong in [json!("wrong"), Value::Null] {
            let config = with(wrong);
            let err = DropzoneConfig::validate(&config, &env()).unwrap_err();
            assert_eq!(err.field, "private_key_passphrase");
            assert!(DropzoneConfig::read(&config).is_ok());
        }
    }

    #[test]
    fn sftp_config_normalises_and_keeps_secrets() {
        let fp = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
        let parsed = DropzoneConfig::validate(
            &cfg(json!({"mode": "sftp", "export_path": "/in/", "host": "SFTP.Example.com", "username": "u", "password": "pw", "host_key_fingerprint": fp})),
            &env(),
        )
        .unwrap();
        let sftp = parsed.sftp_target().unwrap();
        assert_eq!((sftp.host.as_str(), sftp.port), ("sftp.example.com", 22));
        assert_eq!(sftp.host_key_fingerprint.as_deref(), Some(fp));
        let stored = parsed.to_config();
        assert_eq!(stored.get("password"), Some(&json!("pw")));
        assert_eq!(stored.get("export_path"), Some(&json!("/in")));
        assert!(!format!("{parsed:?}").contains("\"pw\""));
    }
}
