//! A UN/EDIFACT ORDERS message, directory D.96A, in its own interchange: UNA, UNB, UNH, BGM,
//! DTM, NAD, CUX, then LIN/PIA/IMD/QTY/PRI per line, UNS, UNT, UNZ. No maintained Rust writer
//! exists, so this is a small one: the release character `?` escapes `+ : ' ?` in every value,
//! UNT counts the message's segments, and the interchange and message references are derived
//! from the export's id (fixed at push time), so a retry writes the very same bytes. Values
//! longer than their data element allows are split where the message has room for it (party
//! names over five components, descriptions over repeated IMD segments) and otherwise fail the
//! export: a converter would cut them silently.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ExportFacts, RenderError, Renderer, check_id, sorted_lines, units};
use crate::domain::FieldError;
use crate::domain::order::ApprovedOrder;

/// Who exchanges the interchange, and its character set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdifactOptions {
    /// The sender's id (UNB 0004), e.g. a GLN.
    #[schemars(
        title = "Sender id",
        length(min = 1, max = 35),
        regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")
    )]
    pub sender_id: String,
    /// Its code qualifier (UNB 0007; `14` is GLN).
    #[serde(default = "gln")]
    #[schemars(
        title = "Sender id qualifier",
        length(min = 1, max = 4),
        regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")
    )]
    pub sender_qualifier: String,
    /// The recipient's id (UNB 0010).
    #[schemars(
        title = "Recipient id",
        length(min = 1, max = 35),
        regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")
    )]
    pub recipient_id: String,
    /// Its code qualifier (UNB 0007).
    #[serde(default = "gln")]
    #[schemars(
        title = "Recipient id qualifier",
        length(min = 1, max = 4),
        regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$")
    )]
    pub recipient_qualifier: String,
    /// Syntax identifier: `UNOC` (ISO 8859-1) or `UNOW` (UTF-8). A character the set cannot
    /// hold fails the export (`RENDER_FAILED`).
    #[serde(default)]
    #[schemars(title = "Syntax identifier")]
    pub syntax_identifier: SyntaxIdentifier,
    /// Our units mapped to UN/ECE Recommendation 20 codes for QTY (`{"PCE": "H87"}`); unmapped
    /// units use a built-in table, else are written as they are (at most 3 characters).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(title = "Unit codes", schema_with = "units::schema")]
    pub unit_codes: BTreeMap<String, String>,
}

/// Longest values the ORDERS D.96A data elements hold.
const AN35: usize = 35;
/// Party name components in NAD (C080).
const NAME_PARTS: usize = 5;
/// Description components in one IMD (C273).
const IMD_PARTS: usize = 2;
/// Digits in a quantity or price (n..15; the decimal mark and sign do not count).
const NUMBER_DIGITS: usize = 15;
/// Characters in a unit qualifier (QTY 6411).
const UNIT_LEN: usize = 3;

/// `value` unless it is longer than `max` characters.
fn fit<'a>(what: &str, value: &'a str, max: usize) -> Result<&'a str, RenderError> {
    let len = value.chars().count();
    if len > max {
        return Err(RenderError::Unwritable(format!(
            "{what} is {len} characters; EDIFACT allows {max}"
        )));
    }
    Ok(value)
}

/// `value` in pieces of at most `size` characters.
fn pieces(value: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = value.chars().collect();
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// A decimal number in plain notation, unless it has more digits than EDIFACT allows.
fn number(what: &str, plain: String) -> Result<String, RenderError> {
    let digits = plain.chars().filter(char::is_ascii_digit).count();
    if digits > NUMBER_DIGITS {
        return Err(RenderError::Unwritable(format!(
            "{what} {plain} has {digits} digits; EDIFACT allows {NUMBER_DIGITS}"
        )));
    }
    Ok(plain)
}

fn gln() -> String {
    "14".into()
}

/// The interchange's character set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum SyntaxIdentifier {
    /// ISO 8859-1 (Latin-1).
    #[default]
    #[serde(rename = "UNOC")]
    Unoc,
    /// UTF-8.
    #[serde(rename = "UNOW")]
    Unow,
}

impl SyntaxIdentifier {
    fn code(self) -> &'static str {
        match self {
            SyntaxIdentifier::Unoc => "UNOC",
            SyntaxIdentifier::Unow => "UNOW",
        }
    }
}

/// `+ : ' ?` preceded by the release character `?`.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '+' | ':' | '\'' | '?') {
            out.push('?');
        }
        out.push(c);
    }
    out
}

/// Segments of one message, counted for UNT.
struct Message {
    segments: Vec<String>,
}

impl Message {
    fn push(&mut self, tag: &str, elements: &[&str]) {
        let mut segment = tag.to_owned();
        // Trailing empty elements are left out, as the syntax rules ask.
        let last = elements
            .iter()
            .rposition(|e| !e.is_empty())
            .map_or(0, |i| i + 1);
        for element in &elements[..last] {
            segment.push('+');
            segment.push_str(element);
        }
        self.segments.push(segment);
    }
}

/// A composite's components, escaped, trailing empty ones left out.
fn composite(components: &[&str]) -> String {
    let last = components
        .iter()
        .rposition(|c| !c.is_empty())
        .map_or(0, |i| i + 1);
    components[..last]
        .iter()
        .map(|c| escape(c))
        .collect::<Vec<_>>()
        .join(":")
}

impl EdifactOptions {
    pub(super) fn check(&self) -> Result<(), FieldError> {
        check_id("format.sender_id", &self.sender_id, 35)?;
        check_id("format.sender_qualifier", &self.sender_qualifier, 4)?;
        check_id("format.recipient_id", &self.recipient_id, 35)?;
        check_id("format.recipient_qualifier", &self.recipient_qualifier, 4)?;
        // Ids are in every interchange: one UNOC cannot hold would fail every export.
        if self.syntax_identifier == SyntaxIdentifier::Unoc {
            for (field, value) in [
                ("format.sender_id", &self.sender_id),
                ("format.sender_qualifier", &self.sender_qualifier),
                ("format.recipient_id", &self.recipient_id),
                ("format.recipient_qualifier", &self.recipient_qualifier),
            ] {
                if let Err(RenderError::Unwritable(why)) = latin1(value) {
                    return Err(FieldError::new(field, why));
                }
            }
        }
        units::check(&self.unit_codes)
    }

    /// The Rec 20 code of one of our units, short enough for QTY.
    fn unit_code(&self, uom: &str) -> Result<String, RenderError> {
        let code = units::rec20(&self.unit_codes, uom);
        if code.chars().count() > UNIT_LEN {
            return Err(RenderError::Unwritable(format!(
                "unit {uom:?} has no code of at most {UNIT_LEN} characters; map it in format.unit_codes"
            )));
        }
        Ok(code)
    }

    /// BGM to CUX: what the order is, when, and between whom.
    fn header(&self, m: &mut Message, order: &ApprovedOrder) -> Result<(), RenderError> {
        let h = &order.header;
        let number = h
            .external_order_number
            .clone()
            .unwrap_or_else(|| order.draft_order_id.to_string());
        m.push(
            "BGM",
            &["220", &escape(fit("the order number", &number, AN35)?), "9"],
        );
        let approved = order.approved_at.format("%Y%m%d").to_string();
        m.push("DTM", &[&composite(&["137", &approved, "102"])]);
        if let Some(date) = h.order_date {
            m.push(
                "DTM",
                &[&composite(&[
                    "4",
                    &date.format("%Y%m%d").to_string(),
                    "102",
                ])],
            );
        }
        if let Some(date) = h.requested_delivery_date {
            m.push(
                "DTM",
                &[&composite(&[
                    "2",
                    &date.format("%Y%m%d").to_string(),
                    "102",
                ])],
            );
        }
        let buyer_id = order.customer.erp_customer_number.as_deref().unwrap_or("");
        let buyer = if buyer_id.is_empty() {
            String::new()
        } else {
            composite(&[fit("the ERP customer number", buyer_id, AN35)?, "", "91"])
        };
        let name = order.customer.name.as_deref().unwrap_or("");
        let name_parts = pieces(name, AN35);
        if name_parts.len() > NAME_PARTS {
            return Err(RenderError::Unwritable(format!(
                "the customer name is {} characters; EDIFACT allows {}",
                name.chars().count(),
                AN35 * NAME_PARTS
            )));
        }
        let name_parts: Vec<&str> = name_parts.iter().map(String::as_str).collect();
        m.push("NAD", &["BY", &buyer, "", &composite(&name_parts)]);
        m.push("NAD", &["SU", &composite(&[&self.recipient_id, "", "9"])]);
        if let Some(currency) = &h.currency {
            m.push(
                "CUX",
                &[&composite(&[
                    "2",
                    fit("the currency", currency, UNIT_LEN)?,
                    "9",
                ])],
            );
        }
        Ok(())
    }

    /// LIN, PIA, IMD, QTY and PRI for each line, in line number order.
    fn lines(&self, m: &mut Message, order: &ApprovedOrder) -> Result<(), RenderError> {
        for line in sorted_lines(order) {
            let sku = fit("an SKU", &line.internal_sku, AN35)?;
            m.push(
                "LIN",
                &[&line.line_no.to_string(), "", &composite(&[sku, "SA"])],
            );
            if let Some(theirs) = &line.customer_sku_raw {
                let theirs = fit("a customer SKU", theirs, AN35)?;
                m.push("PIA", &["5", &composite(&[theirs, "BP"])]);
            }
            if let Some(description) = &line.description {
                for parts in pieces(description, AN35).chunks(IMD_PARTS) {
                    let second = parts.get(1).map_or("", String::as_str);
                    m.push(
                        "IMD",
                        &["F", "", &composite(&["", "", "", &parts[0], second])],
                    );
                }
            }
            let qty = number("a quantity", line.qty.to_plain())?;
            m.push(
                "QTY",
                &[&composite(&["21", &qty, &self.unit_code(&line.uom)?])],
            );
            if let Some(price) = &line.unit_price {
                let price = number("a price", price.to_plain())?;
                m.push("PRI", &[&composite(&["AAA", &price])]);
            }
        }
        Ok(())
    }

    fn write(&self, order: &ApprovedOrder, facts: &ExportFacts) -> Result<Vec<u8>, RenderError> {
        // an..14 references: the export id's first 14 hex digits.
        let reference = facts.export_id.simple().to_string()[..14].to_uppercase();
        let mut m = Message {
            segments: Vec::new(),
        };
        m.push("UNH", &[&reference, "ORDERS:D:96A:UN"]);
        self.header(&mut m, order)?;
        self.lines(&mut m, order)?;
        m.push("UNS", &["S"]);
        let count = m.segments.len() + 1;
        m.push("UNT", &[&count.to_string(), &reference]);

        let prepared = facts.pushed_at.format("%y%m%d:%H%M").to_string();
        let mut text = String::from("UNA:+.? '");
        let unb = [
            format!("{}:3", self.syntax_identifier.code()),
            composite(&[&self.sender_id, &self.sender_qualifier]),
            composite(&[&self.recipient_id, &self.recipient_qualifier]),
            prepared,
            reference.clone(),
        ];
        text.push_str(&format!("UNB+{}'", unb.join("+")));
        for segment in &m.segments {
            text.push_str(segment);
            text.push('\'');
        }
        text.push_str(&format!("UNZ+1+{reference}'"));
        match self.syntax_identifier {
            SyntaxIdentifier::Unow => Ok(text.into_bytes()),
            SyntaxIdentifier::Unoc => latin1(&text),
        }
    }
}

impl Renderer for EdifactOptions {
    fn extension(&self) -> &'static str {
        "edi"
    }

    fn content_type(&self) -> &'static str {
        "application/edifact"
    }

    fn render(&self, order: &ApprovedOrder, facts: &ExportFacts) -> Result<Vec<u8>, RenderError> {
        self.write(order, facts)
    }
}

/// ISO 8859-1 bytes, or the first character it cannot hold.
fn latin1(text: &str) -> Result<Vec<u8>, RenderError> {
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c)).map_err(|_| {
                RenderError::Unwritable(format!(
                    "{c:?} (U+{:04X}) cannot be written in UNOC (ISO 8859-1); use UNOW",
                    c as u32
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_character_escapes_the_separators() {
        assert_eq!(escape("a+b:c'd?e"), "a?+b?:c?'d??e");
        assert_eq!(composite(&["21", "2.5", "KGM"]), "21:2.5:KGM");
        assert_eq!(composite(&["a", "", ""]), "a");
        assert!(latin1("Müller").is_ok());
        assert!(latin1("Łódź").is_err());
    }
}
