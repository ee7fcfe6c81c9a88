//! Cursor pagination: `limit` 1-200 (default 50) and an opaque cursor.

use super::FieldError;

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIMIT: u32 = 200;

/// A validated page request: return items strictly older than `before_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Page size.
    pub limit: u32,
    /// Exclusive upper bound on the sequence number (None: start at the newest).
    pub before_seq: Option<i64>,
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Cursor for the next page, None on the last page.
    pub next_cursor: Option<String>,
}

/// What a cursor looks like (clients treat it as opaque; the document states its shape so a
/// generated one is either refused or valid).
pub const CURSOR_PATTERN: &str = "^[1-9][0-9]{0,17}$";

/// Encodes a sequence number as an opaque cursor.
pub fn encode_cursor(seq: i64) -> String {
    seq.to_string()
}

impl PageRequest {
    /// Validates the raw query values.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, FieldError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(text) => Some(text)
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u32>().ok())
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| FieldError::new("limit", "must be an integer from 1 to 200"))?,
        };
        let before_seq = match cursor {
            None => None,
            Some(text) => Some(decode_cursor(text)?),
        };
        Ok(Self { limit, before_seq })
    }
}

/// Exactly [`CURSOR_PATTERN`]: no sign, no leading zero, at most 18 digits.
fn decode_cursor(text: &str) -> Result<i64, FieldError> {
    let bad = || FieldError::new("cursor", "not a cursor returned by this endpoint");
    let shaped = (1..=18).contains(&text.len())
        && !text.starts_with('0')
        && text.bytes().all(|b| b.is_ascii_digit());
    if !shaped {
        return Err(bad());
    }
    text.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_garbage_is_rejected() {
        let req = PageRequest::parse(Some("10"), Some(&encode_cursor(42))).unwrap();
        assert_eq!(
            req,
            PageRequest {
                limit: 10,
                before_seq: Some(42)
            }
        );
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 50);
        for (limit, cursor, field) in [
            (Some("0"), None, "limit"),
            (Some("201"), None, "limit"),
            (Some("x"), None, "limit"),
            (Some("+5"), None, "limit"),
            (Some(""), None, "limit"),
            (None, Some("%%%"), "cursor"),
            (None, Some("eDox"), "cursor"),
            (None, Some(""), "cursor"),
            (None, Some("0"), "cursor"),
            (None, Some("012"), "cursor"),
            (None, Some("-5"), "cursor"),
            (None, Some("9999999999999999999"), "cursor"),
        ] {
            assert_eq!(PageRequest::parse(limit, cursor).unwrap_err().field, field);
        }
    }
}
