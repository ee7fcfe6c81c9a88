//! An approved draft order, as the connectors receive it for export.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::org::Slug;

/// A decimal number kept as the exact text of the JSON number it arrived as (`10.000` stays
/// `10.000`, `12345678901234.5678` keeps every digit, `1e3` stays `1e3`): never parsed into a
/// float or a fixed-precision type, so what the ERP receives is exactly what was sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecimalText(String);

impl DecimalText {
    /// Accepts the JSON number grammar: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let mut i = 0;
        let digits = |i: &mut usize| {
            let start = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            *i - start
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return None;
            }
        }
        (i == b.len()).then(|| Self(text.to_owned()))
    }

    /// The text, exactly as it arrived.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the mantissa has a non-zero digit (the exponent cannot make it zero).
    fn non_zero(&self) -> bool {
        self.0
            .split(['e', 'E'])
            .next()
            .is_some_and(|m| m.bytes().any(|c| matches!(c, b'1'..=b'9')))
    }

    /// Greater than zero.
    pub fn is_positive(&self) -> bool {
        !self.0.starts_with('-') && self.non_zero()
    }

    /// Less than zero (`-0` is zero).
    pub fn is_negative(&self) -> bool {
        self.0.starts_with('-') && self.non_zero()
    }

    /// The same number without an exponent (`1.5e3` → `1500`, `2E-3` → `0.002`), digit for
    /// digit: formats whose readers know no exponent (CSV imports, `xs:decimal`, EDIFACT)
    /// get exactly the value that arrived, never through a float. Zero loses its sign.
    pub fn to_plain(&self) -> String {
        let (negative, unsigned) = match self.0.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, self.0.as_str()),
        };
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
            None => (unsigned, 0),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits: String = format!("{int_part}{frac_part}");
        let point = int_part.len() as i64 + exponent;
        let plain = if point <= 0 {
            let zeros = usize::try_from(-point).unwrap_or(0);
            format!("0.{}{digits}", "0".repeat(zeros))
        } else if point as usize >= digits.len() {
            let zeros = point as usize - digits.len();
            format!("{digits}{}", "0".repeat(zeros))
        } else {
            let (i, f) = digits.split_at(point as usize);
            format!("{i}.{f}")
        };
        // Leading zeros the shift produced ("0015" from "0.0015e3"), keeping one before a point.
        let trimmed = plain.trim_start_matches('0');
        let plain = if trimmed.is_empty() || trimmed.starts_with('.') {
            format!("0{trimmed}")
        } else {
            trimmed.to_owned()
        };
        if negative && self.non_zero() {
            format!("-{plain}")
        } else {
            plain
        }
    }

    /// True when the number has at most [`MAX_INTEGER_DIGITS`] digits before the decimal
    /// point and [`MAX_SCALE`] after it, as written (exponent applied): what ERPs' decimal
    /// columns and the export's validator take. `1e-400` or a number with 900,000 digits is
    /// refused at intake instead of failing at delivery.
    pub fn fits(&self) -> bool {
        if self.0.len() > MAX_DECIMAL_TEXT {
            return false;
        }
        let unsigned = self.0.trim_start_matches('-');
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((m, e)) => match e.parse::<i64>() {
                Ok(e) if e.abs() <= 1000 => (m, e),
                _ => return false,
            },
            None => (unsigned, 0),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = int_part.len() as i64 + frac_part.len() as i64;
        let point = int_part.len() as i64 + exponent;
        let leading_zeros = int_part
            .bytes()
            .chain(frac_part.bytes())
            .take_while(|b| *b == b'0')
            .count() as i64;
        if leading_zeros == digits {
            return true;
        }
        let integer_digits = (point - leading_zeros).max(0);
        let scale = (digits - point).max(0);
        integer_digits <= MAX_INTEGER_DIGITS as i64 && scale <= MAX_SCALE as i64
    }
}

/// Most digits before the decimal point of a quantity or price.
pub const MAX_INTEGER_DIGITS: usize = 15;
/// Most digits after the decimal point of a quantity or price.
pub const MAX_SCALE: usize = 10;
/// Longest number text accepted (its value must fit the two limits above anyway).
const MAX_DECIMAL_TEXT: usize = 64;
/// The largest quantity or price (15 nines, 10 decimals).
pub const MAX_DECIMAL: f64 = 999_999_999_999_999.999_999_999_9;

impl fmt::Display for DecimalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for DecimalText {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| format!("{s:?} is not a JSON number"))
    }
}

/// Written as a JSON number with exactly these digits (serde_json's arbitrary precision).
impl Serialize for DecimalText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let number: serde_json::Number = self.0.parse().map_err(S::Error::custom)?;
        number.serialize(serializer)
    }
}

/// Only a JSON number is accepted (a string holding digits is a wrong type).
impl<'de> Deserialize<'de> for DecimalText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Number(n) => Self::parse(&n.to_string())
                .ok_or_else(|| D::Error::custom("must be a decimal number")),
            _ => Err(D::Error::custom("must be a decimal number")),
        }
    }
}

/// The customer an order is for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Customer {
    /// OrderFlow's customer id.
    pub id: Option<Uuid>,
    /// The customer's number in the ERP.
    pub erp_customer_number: Option<String>,
    /// Customer name.
    pub name: Option<String>,
}

/// Order header fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderHeader {
    /// The customer's PO number.
    pub external_order_number: Option<String>,
    /// Order date.
    pub order_date: Option<NaiveDate>,
    /// ISO 4217 currency of the order.
    pub currency: Option<String>,
    /// Requested delivery date.
    pub requested_delivery_date: Option<NaiveDate>,
    /// Free-text notes.
    pub notes: Option<String>,
}

/// One order line. Quantities and prices are exact decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// Line number, unique within the order.
    pub line_no: u32,
    /// Our SKU.
    pub internal_sku: String,
    /// Quantity (> 0).
    pub qty: DecimalText,
    /// Unit of measure.
    pub uom: String,
    /// Unit price.
    pub unit_price: Option<DecimalText>,
    /// Line currency; None means the header's.
    pub currency: Option<String>,
    /// The SKU as the customer wrote it.
    pub customer_sku_raw: Option<String>,
    /// Description.
    pub description: Option<String>,
}

/// The document the order was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDocument {
    /// Document id.
    pub document_id: Option<Uuid>,
    /// Original file name.
    pub file_name: Option<String>,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: Option<String>,
}

/// An approved draft order ready to be exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedOrder {
    /// Draft order id.
    pub draft_order_id: Uuid,
    /// Owning org's slug.
    pub org_slug: Slug,
    /// When it was approved.
    pub approved_at: DateTime<Utc>,
    /// The approver's e-mail.
    pub approved_by: Option<String>,
    /// Customer.
    pub customer: Customer,
    /// Header.
    pub header: OrderHeader,
    /// Lines, in any order (exports sort them by `line_no`).
    pub lines: Vec<OrderLine>,
    /// Source document, if any.
    pub source_document: Option<SourceDocument>,
}

#[cfg(test)]
mod plain_tests {
    use super::DecimalText;

    #[test]
    fn exponents_are_written_out_digit_for_digit() {
        for (text, plain) in [
            ("10.000", "10.000"),
            ("0.1", "0.1"),
            ("1e3", "1000"),
            ("1.5E3", "1500"),
            ("1.25e1", "12.5"),
            ("2E-3", "0.002"),
            ("0.0015e3", "1.5"),
            ("12345678901234.5678", "12345678901234.5678"),
            ("0", "0"),
            ("-0", "0"),
            ("-2.50", "-2.50"),
            ("0e5", "0"),
        ] {
            assert_eq!(
                DecimalText::parse(text).unwrap().to_plain(),
                plain,
                "{text}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_kept_as_spelled_and_signs_are_read_from_the_text() {
        for good in [
            "0",
            "-0",
            "10.000",
            "12345678901234.5678",
            "1e3",
            "2.5E-1",
            "5e-324",
        ] {
            assert_eq!(DecimalText::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "", "01", "1.", ".5", "+1", "1e", "NaN", "1.2.3", "0x10", " 1",
        ] {
            assert!(DecimalText::parse(bad).is_none(), "{bad}");
        }
        let p = |t: &str| DecimalText::parse(t).unwrap();
        assert!(p("0.001").is_positive() && !p("0.000").is_positive());
        assert!(!p("0e10").is_positive() && !p("-0.0").is_negative());
        assert!(p("-0.5").is_negative() && !p("-0.5").is_positive());
        assert_eq!(
            serde_json::to_string(&p("10.000")).unwrap(),
            "10.000",
            "written with its digits"
        );
    }
}
