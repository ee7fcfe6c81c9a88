//! What an export file says, in the language the ERP imports: our own JSON v1 (the default),
//! CSV in the layout an import job was set up for, a UBL 2.1 `Order` (Peppol BIS Order 3) or
//! a UN/EDIFACT ORDERS D.96A message. One renderer per format, chosen by the connection's
//! `format`; connector types deliver bytes and never know which format they carry.
//!
//! Rendering is deterministic: the same export renders to the same bytes every time (dates,
//! references and numbers come from the order and from facts fixed when the export was
//! pushed), so a delivery retried after a crash is still recognised by its hash.

pub mod csv;
pub mod edifact;
pub mod json_v1;
pub mod naming;
pub mod sample;
pub mod ubl;
mod units;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::FieldError;
use crate::domain::order::ApprovedOrder;

pub use self::naming::FileNameTemplate;

/// The format a connection delivers in, with its options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[schemars(
    title = "File format",
    description = "What the ERP receives for each order."
)]
pub enum FormatConfig {
    /// OrderFlow's own JSON export (`orderflow_export_json_v1`).
    #[default]
    #[schemars(title = "OrderFlow JSON v1")]
    JsonV1,
    /// One CSV row per order line.
    #[schemars(title = "CSV")]
    Csv(csv::CsvOptions),
    /// A UBL 2.1 Order following Peppol BIS Order 3.
    #[serde(rename = "ubl_order_2_1")]
    #[schemars(title = "UBL 2.1 Order (Peppol BIS Order 3)")]
    UblOrder21(ubl::UblOptions),
    /// A UN/EDIFACT ORDERS message, directory D.96A.
    #[serde(rename = "edifact_orders_d96a")]
    #[schemars(title = "EDIFACT ORDERS D.96A")]
    EdifactOrdersD96a(edifact::EdifactOptions),
}

/// Every media type an export file may have (parameters left out).
pub const MEDIA_TYPES: &[&str] = &[
    "application/json",
    "text/csv",
    "application/xml",
    "application/edifact",
];

/// The media type of an archived export file, told from its first bytes (the export keeps no
/// record of its format, and the connection's may have changed since): JSON, XML and EDIFACT
/// announce themselves; anything else is one of our CSV files, UTF-8 when it decodes as such.
pub fn media_type_of(bytes: &[u8]) -> &'static str {
    let start = bytes.trim_ascii_start();
    if start.starts_with(b"{") && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        "application/json"
    } else if start.starts_with(b"<?xml") {
        "application/xml"
    } else if start.starts_with(b"UNA") || start.starts_with(b"UNB") {
        "application/edifact"
    } else if std::str::from_utf8(bytes).is_ok() {
        "text/csv; charset=utf-8"
    } else {
        "text/csv; charset=windows-1252"
    }
}

/// The config fields every connector type shares, whatever its transport: the file format and
/// the file-name template. The service keeps them apart from the type's own fields.
pub const DELIVERY_FIELDS: &[&str] = &["format", "file_name_template"];

/// How a connection's exports are written and named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryFormat {
    /// The file format.
    pub format: FormatConfig,
    /// The file-name template, if the connection names files its own way.
    pub template: Option<FileNameTemplate>,
}

impl DeliveryFormat {
    /// Reads the shared fields of a config (absent: JSON v1, default names), naming the field
    /// at fault.
    pub fn parse(config: &serde_json::Map<String, serde_json::Value>) -> Result<Self, FieldError> {
        let format = FormatConfig::parse(config.get("format"))?;
        let template = match config.get("file_name_template") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(text)) => Some(FileNameTemplate::parse(text)?),
            Some(_) => {
                return Err(FieldError::new(
                    "file_name_template",
                    "must be a string or null",
                ));
            }
        };
        Ok(Self { format, template })
    }

    /// Writes the fields back into a config in their normal form (defaults left out).
    pub fn store_into(&self, config: &mut serde_json::Map<String, serde_json::Value>) {
        if self.format != FormatConfig::JsonV1
            && let Ok(value) = serde_json::to_value(&self.format)
        {
            config.insert("format".into(), value);
        }
        if let Some(t) = &self.template {
            config.insert("file_name_template".into(), t.as_str().into());
        }
    }

    /// The file name of an export with these facts.
    pub fn file_name(&self, facts: &naming::NameFacts<'_>) -> String {
        naming::file_name(self.template.as_ref(), facts)
    }

    /// The JSON Schema properties of the shared fields, for every connector type's schema.
    pub fn schema_properties() -> serde_json::Map<String, serde_json::Value> {
        let mut props = serde_json::Map::new();
        props.insert(
            "format".into(),
            crate::connectors::fields::titled(FormatConfig::schema(), "File format", 4),
        );
        props.insert(
            "file_name_template".into(),
            serde_json::json!({
                "title": "File name template",
                "propertyOrder": 5,
                "description": "How export files are named. Placeholders: {draft_id}, {export_id}, \
                    {external_order_number}, {erp_customer_number}, {approved_at:%Y%m%d}, {ext}; \
                    must contain {draft_id} or {export_id}; other characters: letters, digits, \
                    `.`, `_`, `-`. Default: sales_order_{draft_id}_<push time>.{ext}",
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": 200,
                "pattern": "^[A-Za-z0-9._{}:%-]*(\\{draft_id\\}|\\{export_id\\})[A-Za-z0-9._{}:%-]*$"
            }),
        );
        props
    }
}

/// A connector type's config schema with the fields every type shares added: what a connection
/// of that type takes.
pub fn connection_schema(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(props) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        props.extend(DeliveryFormat::schema_properties());
    }
    schema
}

/// Facts about the export (not the order) a format may write, all fixed at push time.
#[derive(Debug, Clone, Copy)]
pub struct ExportFacts {
    /// The export's id (EDIFACT references are derived from it).
    pub export_id: Uuid,
    /// When it was pushed.
    pub pushed_at: DateTime<Utc>,
}

impl ExportFacts {
    /// The facts of a stored export.
    pub fn of(export: &crate::domain::export::Export) -> Self {
        Self {
            export_id: export.id,
            pushed_at: export.created_at,
        }
    }
}

/// Why an order cannot be written in the chosen format (a permanent failure: the same order
/// would fail the same way again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The order holds something the format or its encoding cannot carry.
    #[error("{0}")]
    Unwritable(String),
    /// The JSON document does not match the export schema.
    #[error("{0}")]
    SchemaInvalid(String),
}

/// One export format: how an approved order becomes a file. Connector types only see the
/// bytes and the content type.
pub trait Renderer: Send + Sync {
    /// The file name extension (without the dot).
    fn extension(&self) -> &'static str;
    /// The media type of the files (and of HTTP deliveries).
    fn content_type(&self) -> &'static str;
    /// The order as this format's file: exact bytes, the same for the same order and facts.
    fn render(&self, order: &ApprovedOrder, facts: &ExportFacts) -> Result<Vec<u8>, RenderError>;
}

impl FormatConfig {
    /// Parses a stored or submitted `format` value (absent: JSON v1), naming the field at
    /// fault.
    pub fn parse(value: Option<&serde_json::Value>) -> Result<Self, FieldError> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(Self::default());
        };
        let Some(fields) = value.as_object() else {
            return Err(FieldError::new("format", "must be an object with a type"));
        };
        // The options are read apart from their tag, so an error names the option at fault
        // (serde's tagged enums only name the whole value).
        let mut options = fields.clone();
        let kind = match options.remove("type") {
            Some(serde_json::Value::String(kind)) => kind,
            _ => return Err(FieldError::new("format.type", TYPES)),
        };
        let options = serde_json::Value::Object(options);
        let format = match kind.as_str() {
            "json_v1" => match options.as_object().and_then(|o| o.keys().next()) {
                Some(field) => {
                    return Err(FieldError::new(
                        format!("format.{field}"),
                        "json_v1 takes no options",
                    ));
                }
                None => Self::JsonV1,
            },
            "csv" => Self::Csv(read_options(options)?),
            "ubl_order_2_1" => Self::UblOrder21(read_options(options)?),
            "edifact_orders_d96a" => Self::EdifactOrdersD96a(read_options(options)?),
            _ => return Err(FieldError::new("format.type", TYPES)),
        };
        format.check()?;
        Ok(format)
    }

    /// Rules serde cannot state (lengths, character sets).
    fn check(&self) -> Result<(), FieldError> {
        match self {
            Self::JsonV1 => Ok(()),
            Self::Csv(o) => o.check(),
            Self::UblOrder21(o) => o.check(),
            Self::EdifactOrdersD96a(o) => o.check(),
        }
    }

    /// The renderer of this format, with its options.
    pub fn renderer(&self) -> &dyn Renderer {
        match self {
            Self::JsonV1 => &json_v1::JsonV1,
            Self::Csv(o) => o,
            Self::UblOrder21(o) => o,
            Self::EdifactOrdersD96a(o) => o,
        }
    }

    /// The JSON Schema of a `format` value (2020-12), for the connector types' config schemas.
    pub fn schema() -> serde_json::Value {
        // Inlined: the value is embedded in each connector type's schema, where a `$ref` to
        // this document's `$defs` would point nowhere.
        let mut schema = crate::connectors::fields::schema_of::<Self>();
        if let Some(root) = schema.as_object_mut() {
            root.remove("$schema");
        }
        // Null is accepted like an absent field (JSON v1), as for every other optional field.
        if let Some(alternatives) = schema
            .get_mut("oneOf")
            .and_then(serde_json::Value::as_array_mut)
        {
            alternatives.push(serde_json::json!({ "type": "null" }));
        }
        schema
    }
}

/// What a `format.type` may be.
const TYPES: &str = "must be json_v1, csv, ubl_order_2_1 or edifact_orders_d96a";

/// A format's options, an error naming the option at fault (`format.delimiter`).
fn read_options<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // An unknown option is reported at the top: name it.
        let field = match inner.strip_prefix("unknown field `") {
            Some(rest) if path == "." => format!("format.{}", rest.split('`').next().unwrap_or("")),
            _ if path == "." => "format".to_owned(),
            _ => format!("format.{path}"),
        };
        FieldError::new(field, inner)
    })
}

/// Lines by `line_no`, the order every format writes them in.
pub(crate) fn sorted_lines(order: &ApprovedOrder) -> Vec<&crate::domain::order::OrderLine> {
    let mut lines: Vec<_> = order.lines.iter().collect();
    lines.sort_by_key(|l| l.line_no);
    lines
}

/// Text an ERP identifier field may hold: no control characters, at most `max` characters.
pub(crate) fn check_id(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("must be 1-{max} characters without control characters"),
        ));
    }
    Ok(())
}
