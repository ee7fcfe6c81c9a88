//! Our units of measure as UN/ECE Recommendation 20 codes, which UBL's `unitCode` and
//! EDIFACT's QTY expect: a connection's own map first, then a table of common units, else the
//! unit as it is (upper-cased).

use std::collections::BTreeMap;

use super::check_id;
use crate::domain::FieldError;

/// Common units and their Rec 20 codes.
pub(super) const DEFAULT_UNIT_CODES: &[(&str, &str)] = &[
    ("PCE", "C62"),
    ("PC", "C62"),
    ("PCS", "C62"),
    ("EA", "EA"),
    ("KG", "KGM"),
    ("G", "GRM"),
    ("T", "TNE"),
    ("L", "LTR"),
    ("ML", "MLT"),
    ("M", "MTR"),
    ("CM", "CMT"),
    ("MM", "MMT"),
    ("M2", "MTK"),
    ("M3", "MTQ"),
    ("H", "HUR"),
    ("BOX", "BX"),
    ("PAL", "PF"),
    ("SET", "SET"),
];

/// The code of one of our units.
pub(super) fn rec20(map: &BTreeMap<String, String>, uom: &str) -> String {
    if let Some(code) = map.get(uom) {
        return code.clone();
    }
    let upper = uom.to_uppercase();
    DEFAULT_UNIT_CODES
        .iter()
        .find(|(ours, _)| *ours == upper)
        .map_or(upper, |(_, code)| (*code).to_owned())
}

/// Checks a connection's `unit_codes` (field `format.unit_codes`).
pub(super) fn check(map: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if map.len() > 200 {
        return Err(FieldError::new(
            "format.unit_codes",
            "may map at most 200 units",
        ));
    }
    for (ours, code) in map {
        check_id("format.unit_codes", ours, 16)?;
        if code.is_empty()
            || code.len() > 3
            || !code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(FieldError::new(
                "format.unit_codes",
                format!("{ours}: a Rec 20 code is 1-3 capital letters or digits"),
            ));
        }
    }
    Ok(())
}

/// The JSON Schema of a `unit_codes` map.
pub(super) fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Our units mapped to UN/ECE Recommendation 20 codes, e.g. {\"PCE\": \"H87\"}; unmapped units use a built-in table (PCE→C62, KG→KGM, L→LTR, …), else are written as they are.",
        "maxProperties": 200,
        "propertyNames": { "minLength": 1, "maxLength": 16, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$" },
        "additionalProperties": { "type": "string", "pattern": "^[A-Z0-9]{1,3}$" },
        "default": {}
    })
}
