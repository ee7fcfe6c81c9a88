//! Cursor pagination: `limit` 1-200 (default 50) and an opaque cursor.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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

const CURSOR_PREFIX: &str = "s:";

/// Encodes a sequence number as an opaque cursor.
pub fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{seq}"))
}

impl PageRequest {
    /// Validates the raw query values.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, FieldError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| FieldError::new("limit", "must be an integer from 1 to 200"))?,
        };
        let before_seq = match cursor {
            None | Some("") => None,
            Some(text) => Some(decode_cursor(text)?),
        };
        Ok(Self { limit, before_seq })
    }
}

fn decode_cursor(text: &str) -> Result<i64, FieldError> {
    let bad = || FieldError::new("cursor", "not a cursor returned by this endpoint");
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix(CURSOR_PREFIX)
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .ok_or_else(bad)
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
            (None, Some("%%%"), "cursor"),
            (None, Some("eDox"), "cursor"),
        ] {
            assert_eq!(PageRequest::parse(limit, cursor).unwrap_err().field, field);
        }
    }
}
