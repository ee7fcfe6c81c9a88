//! Export file names. Without a template: `sales_order_<draft id>_<YYYYMMDDTHHMMSSZ>.<ext>`,
//! the time being the push's. A connection's `file_name_template` may name files its own way
//! from a fixed set of placeholders; it must contain `{draft_id}` or `{export_id}` so names
//! stay unique, values are reduced to a safe character set, and the name is fixed at push.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::FieldError;

/// Longest template.
const MAX_NAME: usize = 200;
/// Longest name a template may produce: file systems and SFTP servers stop at 255 bytes, and a
/// file being written carries a suffix.
const MAX_RENDERED: usize = 240;
/// Longest value a placeholder contributes.
const MAX_VALUE: usize = 64;

/// The facts a file name may use.
#[derive(Debug, Clone)]
pub struct NameFacts<'a> {
    /// The draft order.
    pub draft_id: Uuid,
    /// The export.
    pub export_id: Uuid,
    /// The customer's PO number.
    pub external_order_number: Option<&'a str>,
    /// The customer's number in the ERP.
    pub erp_customer_number: Option<&'a str>,
    /// When the draft was approved.
    pub approved_at: Option<DateTime<Utc>>,
    /// When the export was pushed.
    pub pushed_at: DateTime<Utc>,
    /// The format's extension.
    pub ext: &'a str,
}

impl<'a> NameFacts<'a> {
    /// The facts of a draft pushed now (the draft's own values only when it was read).
    pub fn for_draft(
        draft_id: Uuid,
        draft: Option<&'a crate::domain::draft::DraftOrder>,
        export_id: Uuid,
        pushed_at: DateTime<Utc>,
        ext: &'a str,
    ) -> Self {
        Self {
            draft_id,
            export_id,
            external_order_number: draft.and_then(|d| d.header.external_order_number.as_deref()),
            erp_customer_number: draft.and_then(|d| d.customer.erp_customer_number.as_deref()),
            approved_at: draft.and_then(|d| d.approved_at),
            pushed_at,
            ext,
        }
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    DraftId,
    ExportId,
    ExternalOrderNumber,
    ErpCustomerNumber,
    ApprovedAt(String),
    Ext,
}

/// A validated `file_name_template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNameTemplate {
    text: String,
    parts: Vec<Part>,
}

/// What the template's date format may contain (besides literal `-`, `_` and `T`).
const DATE_SPECIFIERS: &[char] = &['Y', 'm', 'd', 'H', 'M', 'S'];

fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A value reduced to `[A-Za-z0-9._-]` (others become `_`), at most 64 characters, never
/// starting with a dot.
fn sanitised(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(MAX_VALUE)
        .map(|c| if is_safe(c) { c } else { '_' })
        .collect();
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    out
}

impl FileNameTemplate {
    /// Parses a template, naming what is wrong (field `file_name_template`).
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let bad = |why: String| FieldError::new("file_name_template", why);
        if text.is_empty() || text.len() > MAX_NAME {
            return Err(bad(format!("must be 1-{MAX_NAME} characters")));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| bad("a `{` is never closed".into()))?;
                    parts.push(Self::placeholder(&rest[1..end]).map_err(bad)?);
                    rest = &rest[end + 1..];
                }
                found => {
                    let end = found.unwrap_or(rest.len());
                    let literal = &rest[..end];
                    if let Some(c) = literal.chars().find(|c| !is_safe(*c)) {
                        return Err(bad(format!(
                            "{c:?} is not allowed; use letters, digits, `.`, `_` and `-`"
                        )));
                    }
                    parts.push(Part::Literal(literal.to_owned()));
                    rest = &rest[end..];
                }
            }
        }
        if !parts
            .iter()
            .any(|p| matches!(p, Part::DraftId | Part::ExportId))
        {
            return Err(bad(
                "must contain {draft_id} or {export_id}, so that every file name is unique".into(),
            ));
        }
        if text.starts_with('.') || text.ends_with(".tmp") {
            return Err(bad(
                "must not start with a dot or end in .tmp (files being written)".into(),
            ));
        }
        if text.starts_with("ack_") || text.starts_with("error_") {
            return Err(bad(
                "must not start with ack_ or error_ (the ERP's acknowledgement files)".into(),
            ));
        }
        let template = Self {
            text: text.to_owned(),
            parts,
        };
        if template.longest() > MAX_RENDERED {
            return Err(bad(format!(
                "can produce names longer than {MAX_RENDERED} characters (each order or customer \
                 number may be up to {MAX_VALUE})"
            )));
        }
        Ok(template)
    }

    /// The longest name the template can produce.
    fn longest(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(text) => text.len(),
                Part::DraftId | Part::ExportId => 36,
                Part::ExternalOrderNumber | Part::ErpCustomerNumber => MAX_VALUE,
                // %Y is four digits, every other specifier two.
                Part::ApprovedAt(format) => format.len() + format.matches("%Y").count() * 2,
                Part::Ext => 4,
            })
            .sum()
    }

    /// Whether rendering needs the draft (not only ids and the push time).
    pub fn needs_draft(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                Part::ExternalOrderNumber | Part::ErpCustomerNumber | Part::ApprovedAt(_)
            )
        })
    }

    fn placeholder(name: &str) -> Result<Part, String> {
        Ok(match name {
            "draft_id" => Part::DraftId,
            "export_id" => Part::ExportId,
            "external_order_number" => Part::ExternalOrderNumber,
            "erp_customer_number" => Part::ErpCustomerNumber,
            "ext" => Part::Ext,
            other => match other.strip_prefix("approved_at:") {
                Some(format) if Self::date_format_ok(format) => Part::ApprovedAt(format.into()),
                Some(_) => {
                    return Err(
                        "{approved_at:…} takes %Y %m %d %H %M %S with `-`, `_` or `T` between"
                            .into(),
                    );
                }
                None => {
                    return Err(format!(
                        "{{{other}}} is not a placeholder; use {{draft_id}}, {{export_id}}, \
                         {{external_order_number}}, {{erp_customer_number}}, \
                         {{approved_at:%Y%m%d}} or {{ext}}"
                    ));
                }
            },
        })
    }

    fn date_format_ok(format: &str) -> bool {
        let mut chars = format.chars();
        let mut any = false;
        while let Some(c) = chars.next() {
            match c {
                '%' => match chars.next() {
                    Some(s) if DATE_SPECIFIERS.contains(&s) => any = true,
                    _ => return false,
                },
                '-' | '_' | 'T' => {}
                _ => return false,
            }
        }
        any
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The file name for these facts.
    pub fn render(&self, facts: &NameFacts<'_>) -> String {
        let mut name = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => name.push_str(text),
                Part::DraftId => name.push_str(&facts.draft_id.to_string()),
                Part::ExportId => name.push_str(&facts.export_id.to_string()),
                Part::ExternalOrderNumber => {
                    name.push_str(&sanitised(facts.external_order_number.unwrap_or("")))
                }
                Part::ErpCustomerNumber => {
                    name.push_str(&sanitised(facts.erp_customer_number.unwrap_or("")))
                }
                Part::ApprovedAt(format) => {
                    let at = facts.approved_at.unwrap_or(facts.pushed_at);
                    name.push_str(&at.format(format).to_string());
                }
                Part::Ext => name.push_str(facts.ext),
            }
        }
        name
    }
}

/// The file name of an export: the template's, or the default.
pub fn file_name(template: Option<&FileNameTemplate>, facts: &NameFacts<'_>) -> String {
    match template {
        Some(t) => t.render(facts),
        None => format!(
            "sales_order_{}_{}.{}",
            facts.draft_id,
            facts.pushed_at.format("%Y%m%dT%H%M%SZ"),
            facts.ext
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NameFacts<'static> {
        NameFacts {
            draft_id: Uuid::nil(),
            export_id: Uuid::max(),
            external_order_number: Some("PO 4711/ä;..x"),
            erp_customer_number: Some("C-1001"),
            approved_at: DateTime::from_timestamp(1_800_000_000, 0),
            pushed_at: DateTime::from_timestamp(1_800_000_100, 0).unwrap(),
            ext: "csv",
        }
    }

    #[test]
    fn templates_render_sanitised_values() {
        let t = FileNameTemplate::parse(
            "{erp_customer_number}_{external_order_number}_{approved_at:%Y%m%d}_{draft_id}.{ext}",
        )
        .unwrap();
        assert_eq!(
            t.render(&facts()),
            "C-1001_PO_4711___..x_20270115_00000000-0000-0000-0000-000000000000.csv"
        );
        assert_eq!(
            file_name(None, &facts()),
            "sales_order_00000000-0000-0000-0000-000000000000_20270115T080140Z.csv"
        );
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        for bad in [
            "",
            "order.{ext}",
            "{draft_id}/{ext}",
            "{draft_id}{nope}",
            "{draft_id}{approved_at:%s}",
            "{draft_id",
            ".{draft_id}",
            "{draft_id}.tmp",
            "{draft_id} x",
            "ack_{draft_id}",
            "{draft_id}{external_order_number}{external_order_number}{external_order_number}{erp_customer_number}",
        ] {
            let err = FileNameTemplate::parse(bad).unwrap_err();
            assert_eq!(err.field, "file_name_template", "{bad}");
        }
        assert!(FileNameTemplate::parse("{export_id}").is_ok());
    }

    #[test]
    fn the_default_name_is_the_one_json_exports_always_had() {
        let mut f = facts();
        f.draft_id = Uuid::parse_str("5b8f7c1e-3d2a-4f6b-9c0d-1e2f3a4b5c6d").unwrap();
        f.pushed_at = DateTime::parse_from_rfc3339("2026-03-04T05:06:07.890Z")
            .unwrap()
            .to_utc();
        f.ext = "json";
        assert_eq!(
            file_name(None, &f),
            "sales_order_5b8f7c1e-3d2a-4f6b-9c0d-1e2f3a4b5c6d_20260304T050607Z.json"
        );
    }
}
