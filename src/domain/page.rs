//! Cursor pagination: `limit` 1-200 (default 50) and a position to continue after. The cursor
//! a client sees is this position sealed for its listing (`crypto::cursor`); the domain only
//! knows positions.

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
    /// Where the next page starts (the last item's position), None on the last page.
    pub next_seq: Option<i64>,
}

/// Which listing a cursor belongs to: the org, the list and its filter. A cursor sealed for
/// one listing opens in no other.
pub fn listing(org_id: uuid::Uuid, list: &str, filter: Option<&str>) -> String {
    format!("{org_id}:{list}:{}", filter.unwrap_or(""))
}

impl PageRequest {
    /// Validates the raw `limit` and takes the position an opened cursor stands for.
    pub fn parse(limit: Option<&str>, before_seq: Option<i64>) -> Result<Self, FieldError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(text) => Some(text)
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u32>().ok())
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| FieldError::new("limit", "must be an integer from 1 to 200"))?,
        };
        Ok(Self { limit, before_seq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        let req = PageRequest::parse(Some("10"), Some(42)).unwrap();
        assert_eq!(
            req,
            PageRequest {
                limit: 10,
                before_seq: Some(42)
            }
        );
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 50);
        for limit in ["0", "201", "x", "+5", "", "99999999999"] {
            assert_eq!(
                PageRequest::parse(Some(limit), None).unwrap_err().field,
                "limit"
            );
        }
    }

    #[test]
    fn listings_differ_by_org_list_and_filter() {
        let org = uuid::Uuid::nil();
        assert_ne!(listing(org, "exports", None), listing(org, "drafts", None));
        assert_ne!(
            listing(org, "exports", None),
            listing(org, "exports", Some("FAILED"))
        );
        assert_ne!(
            listing(org, "exports", None),
            listing(uuid::Uuid::max(), "exports", None)
        );
    }
}
