//! ERP acknowledgements: what an ack or error file says, and the rules for reading
//! one. No I/O: the poller lists, reads and moves files; this decides what they mean.

use serde_json::{Map, Value};

/// Largest ack file read; anything bigger is malformed without being read whole.
pub const MAX_ACK_FILE_BYTES: usize = 1024 * 1024;
/// Longest ERP order number or error code kept.
pub const MAX_IDENTIFIER_CHARS: usize = 255;
/// Longest ERP message kept (longer ones are cut).
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// Which kind of file, from its name's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// `ack_<export file name>`: the ERP booked the order.
    Acked,
    /// `error_<export file name>`: the ERP rejected it.
    Rejected,
}

/// An ack file's name read: its kind and the export file it answers. None for names the
/// poller ignores (other files, `.tmp` files still being written, and names with control
/// characters, which no export file has and no query should carry).
pub fn classify_name(name: &str) -> Option<(AckKind, &str)> {
    if name.ends_with(".tmp") || !super::text::is_clean_identifier(name) {
        return None;
    }
    if let Some(export) = name.strip_prefix("ack_") {
        return (!export.is_empty()).then_some((AckKind::Acked, export));
    }
    if let Some(export) = name.strip_prefix("error_") {
        return (!export.is_empty()).then_some((AckKind::Rejected, export));
    }
    None
}

/// What the ERP said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// Booked under this order number.
    Acked {
        /// The ERP's order number (None when the ERP wrote none).
        erp_order_id: Option<String>,
        /// When the ERP processed it, as the ERP wrote it.
        processed_at: Option<String>,
    },
    /// Rejected.
    Rejected {
        /// The ERP's error code.
        error_code: Option<String>,
        /// The ERP's message.
        message: Option<String>,
        /// When the ERP processed it, as the ERP wrote it.
        processed_at: Option<String>,
    },
}

impl AckOutcome {
    /// `error_json` for a rejection: `{"code": "ERP_REJECTED", "error_code",
    /// "message", "processed_at"}`.
    pub fn error_json(&self) -> Option<Value> {
        match self {
            AckOutcome::Rejected {
                error_code,
                message,
                processed_at,
            } => Some(serde_json::json!({
                "code": "ERP_REJECTED",
                "error_code": error_code,
                "message": message,
                "processed_at": processed_at,
            })),
            AckOutcome::Acked { .. } => None,
        }
    }
}

/// Why a file is malformed (moved to `error/`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// A field naming something (the ERP's order number, its error code): a string, or a number
/// kept as the text it was written as; absent or null is None. Anything else, text too long to
/// be an identifier, or text with a control character in it (NUL included) is malformed:
/// storing it cut short or cleaned would be storing a wrong value.
fn identifier(body: &Map<String, Value>, field: &str) -> Result<Option<String>, Malformed> {
    match body.get(field) {
        None => Ok(None),
        Some(value) => identifier_value(value).map_err(|why| Malformed(format!("{field} {why}"))),
    }
}

/// An identifier's text from a JSON value, by the rules of [`identifier`]; the error says
/// what is wrong with it.
pub fn identifier_value(value: &Value) -> Result<Option<String>, &'static str> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return Err("must be a string"),
    };
    if text.chars().count() > MAX_IDENTIFIER_CHARS {
        return Err("is longer than 255 characters");
    }
    if !super::text::is_clean_identifier(&text) {
        return Err("contains control characters");
    }
    Ok((!text.is_empty()).then_some(text))
}

/// Free text (the ERP's message, its timestamp): kept, cut to `max` characters; other JSON
/// types are kept as their JSON text.
fn free_text(body: &Map<String, Value>, field: &str, max: usize) -> Option<String> {
    let text = match body.get(field)? {
        Value::Null => return None,
        Value::String(s) => super::text::clean(s, max),
        other => super::text::clean(&other.to_string(), max),
    };
    Some(text)
}

/// Reads a file's body: a JSON object whose `status` matches the name's prefix.
///
/// Malformed means: not JSON, not an object, `status` missing
/// or unknown, a prefix contradicting the body, over 1 MiB — plus an identifier that is not a
/// string or number or is absurdly long. Missing `erp_order_id`, `error_code`, `message` or
/// `processed_at` is not malformed: the ERP's verdict is the information that matters, and
/// refusing it would leave the export SENT while the ERP has decided.
pub fn parse_body(kind: AckKind, bytes: &[u8]) -> Result<AckOutcome, Malformed> {
    if bytes.len() > MAX_ACK_FILE_BYTES {
        return Err(Malformed("larger than 1 MiB".into()));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| Malformed(format!("not JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(Malformed("not a JSON object".into()));
    };
    let status = match body.get("status") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Malformed("status must be a string".into())),
        None => return Err(Malformed("status is missing".into())),
    };
    let processed_at = free_text(&body, "processed_at", 64);
    match (status, kind) {
        ("ACKED", AckKind::Acked) => Ok(AckOutcome::Acked {
            erp_order_id: identifier(&body, "erp_order_id")?,
            processed_at,
        }),
        ("FAILED", AckKind::Rejected) => Ok(AckOutcome::Rejected {
            error_code: identifier(&body, "error_code")?,
            message: free_text(&body, "message", MAX_MESSAGE_CHARS),
            processed_at,
        }),
        ("ACKED" | "FAILED", _) => Err(Malformed(format!(
            "status {status} contradicts the file name's prefix"
        ))),
        (other, _) => Err(Malformed(format!(
            "unknown status {:?}",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// Which export a callback acknowledgement answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportRef {
    /// By the export's id.
    Id(uuid::Uuid),
    /// By its file name (as an ack file would name it).
    FileName(String),
}

/// A callback acknowledgement (`POST /hooks/{connection_id}/acks`): the same verdict an ack or
/// error file carries, naming its export in the body instead of the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAck {
    /// The export answered.
    pub export: ExportRef,
    /// What the ERP said.
    pub outcome: AckOutcome,
}

/// Reads a callback body: `{"export_id" | "file_name", "status": "ACKED" | "FAILED",
/// "erp_order_id", "error_code", "message", "processed_at"}`, with the same leniency as ack
/// files (the status decides which of the other fields count).
pub fn parse_callback(bytes: &[u8]) -> Result<CallbackAck, Malformed> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| Malformed(format!("not JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(Malformed("not a JSON object".into()));
    };
    let export = match (body.get("export_id"), body.get("file_name")) {
        (Some(Value::String(id)), _) => ExportRef::Id(
            id.parse()
                .map_err(|_| Malformed("export_id must be a UUID".into()))?,
        ),
        (Some(v), _) if !v.is_null() => return Err(Malformed("export_id must be a UUID".into())),
        (_, Some(Value::String(name)))
            if !name.is_empty() && name.len() <= 255 && super::text::is_clean_identifier(name) =>
        {
            ExportRef::FileName(name.clone())
        }
        _ => return Err(Malformed("export_id or file_name is required".into())),
    };
    let kind = match body.get("status") {
        Some(Value::String(s)) if s == "ACKED" => AckKind::Acked,
        Some(Value::String(s)) if s == "FAILED" => AckKind::Rejected,
        _ => return Err(Malformed("status must be ACKED or FAILED".into())),
    };
    let outcome = parse_body(kind, bytes)?;
    Ok(CallbackAck { export, outcome })
}

/// The name a settled file gets in `processed/` or `error/` when `name` is taken there:
/// `name.1`, `name.2`, … (an earlier file is never overwritten).
pub fn suffixed(name: &str, attempt: u32) -> String {
    if attempt == 0 {
        name.to_owned()
    } else {
        format!("{name}.{attempt}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_by_prefix_and_tmp_files_ignored() {
        assert_eq!(
            classify_name("ack_sales_order_x.json"),
            Some((AckKind::Acked, "sales_order_x.json"))
        );
        assert_eq!(
            classify_name("error_sales_order_x.json"),
            Some((AckKind::Rejected, "sales_order_x.json"))
        );
        for ignored in [
            "ack_x.json.tmp",
            "readme.txt",
            "ack_",
            "sales_order_x.json",
            "ack_x\0.json",
            "error_x\n.json",
        ] {
            assert_eq!(classify_name(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn bodies_must_agree_with_their_prefix_and_carry_their_fields() {
        let ack = br#"{"status": "ACKED", "erp_order_id": "SO-1", "processed_at": "2026-12-01T10:00:00Z"}"#;
        assert_eq!(
            parse_body(AckKind::Acked, ack).unwrap(),
            AckOutcome::Acked {
                erp_order_id: Some("SO-1".into()),
                processed_at: Some("2026-12-01T10:00:00Z".into())
            }
        );
        let err = br#"{"status": "FAILED", "error_code": "E42", "message": "unknown customer", "processed_at": null}"#;
        let outcome = parse_body(AckKind::Rejected, err).unwrap();
        assert_eq!(outcome.error_json().unwrap()["code"], "ERP_REJECTED");
        assert_eq!(outcome.error_json().unwrap()["error_code"], "E42");
        for (kind, body) in [
            (AckKind::Acked, &b"not json"[..]),
            (AckKind::Acked, b"[1]"),
            (AckKind::Acked, br#"{"erp_order_id": "x"}"#),
            (
                AckKind::Acked,
                br#"{"status": "DONE", "erp_order_id": "x"}"#,
            ),
            (
                AckKind::Acked,
                br#"{"status": "FAILED", "error_code": "E", "message": "m"}"#,
            ),
            (
                AckKind::Rejected,
                br#"{"status": "ACKED", "erp_order_id": "x"}"#,
            ),
            (
                AckKind::Acked,
                br#"{"status": "ACKED", "erp_order_id": {"n": 1}}"#,
            ),
            (AckKind::Acked, br#"{"status": 1}"#),
        ] {
            assert!(
                parse_body(kind, body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!(
            r#"{{"status": "ACKED", "erp_order_id": "{}"}}"#,
            "9".repeat(256)
        );
        assert!(parse_body(AckKind::Acked, long.as_bytes()).is_err());
        // The verdict counts even without the details.
        assert_eq!(
            parse_body(
                AckKind::Acked,
                br#"{"status": "ACKED", "erp_order_id": 5017}"#
            )
            .unwrap(),
            AckOutcome::Acked {
                erp_order_id: Some("5017".into()),
                processed_at: None
            }
        );
        assert_eq!(
            parse_body(AckKind::Acked, br#"{"status": "ACKED"}"#).unwrap(),
            AckOutcome::Acked {
                erp_order_id: None,
                processed_at: None
            }
        );
        let bare = parse_body(AckKind::Rejected, br#"{"status": "FAILED"}"#).unwrap();
        assert_eq!(bare.error_json().unwrap()["message"], Value::Null);
        assert!(parse_body(AckKind::Acked, &vec![b' '; MAX_ACK_FILE_BYTES + 1]).is_err());
        assert_eq!(suffixed("ack_a.json", 0), "ack_a.json");
    }

    #[test]
    fn text_from_the_erp_is_made_storable() {
        // A NUL in an identifier makes the file malformed; in free text it is replaced.
        let nul_id = br#"{"status": "ACKED", "erp_order_id": "SO\u00001"}"#;
        assert!(parse_body(AckKind::Acked, nul_id).is_err());
        let nul_code = br#"{"status": "FAILED", "error_code": "E\u0000"}"#;
        assert!(parse_body(AckKind::Rejected, nul_code).is_err());
        let nul_text =
            br#"{"status": "FAILED", "message": "bad\u0000thing", "processed_at": "x\u0000"}"#;
        let outcome = parse_body(AckKind::Rejected, nul_text).unwrap();
        let error = outcome.error_json().unwrap();
        assert_eq!(error["message"], "bad\u{FFFD}thing");
        assert_eq!(error["processed_at"], "x\u{FFFD}");
        let callback = br#"{"file_name": "a\u0000.json", "status": "ACKED"}"#;
        assert!(parse_callback(callback).is_err());
        assert_eq!(suffixed("ack_a.json", 2), "ack_a.json.2");
    }
}
