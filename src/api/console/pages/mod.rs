//! One module per area of the console, each calling the same services, with the same role
//! rules, as the API endpoints for that area.

pub mod audit;
pub mod auth;
pub mod connector;
pub mod exports;
pub mod orders;

use std::collections::HashMap;

use crate::api::error::ApiError;

/// A submitted form.
pub type Fields = HashMap<String, String>;

/// `status=` as a filter, empty meaning all.
pub fn status_filter<T>(raw: Option<&String>) -> Result<Option<T>, ApiError>
where
    T: std::str::FromStr<Err = crate::domain::FieldError>,
{
    match raw.map(String::as_str) {
        None | Some("") => Ok(None),
        Some(s) => Ok(Some(s.parse()?)),
    }
}

/// The page request from `limit` and `cursor` (sealed for `listing`).
pub fn page_request(
    state: &crate::api::state::AppState,
    listing: &str,
    query: &Fields,
) -> Result<crate::domain::page::PageRequest, ApiError> {
    crate::api::extract::page_request(
        &state.cursors,
        listing,
        query.get("limit").map(String::as_str),
        query
            .get("cursor")
            .map(String::as_str)
            .filter(|c| !c.is_empty()),
    )
}
