//! The audit log, newest first, filterable by action (ADMIN and INTEGRATOR, as in the API).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use maud::html;

use super::{Fields, page_request};
use crate::api::console::session::ConsoleUser;
use crate::api::console::views::{Html, OrPage, PageError, page, pager, time};
use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::domain::page::listing;
use crate::domain::user::Role;

/// `GET /ui/audit?action=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<Fields>,
) -> Result<Html, PageError> {
    let action = query
        .get("action")
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty());
    let listing = listing(user.auth.org_id(), "audit", action.as_deref());
    let found = async {
        user.auth.require(Role::CONNECTOR_MANAGERS)?;
        let page = page_request(&state, &listing, &query)?;
        Ok::<_, ApiError>(
            state
                .audit
                .list(user.auth.org_id(), action.as_deref(), page)
                .await?,
        )
    };
    let entries = found.await.or_page(&state, &user)?;
    let filter = action.clone().unwrap_or_default();
    let content = html! {
        form.filter method="get" action="/ui/audit" {
            label for="action" { "Action" }
            input id="action" name="action" value=(filter) placeholder="e.g. EXPORT_SENT";
            button type="submit" { "Filter" }
        }
        @if entries.items.is_empty() { p { "No entries." } } @else {
            table {
                caption { "Audit log, newest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" } th scope="col" { "Object" } th scope="col" { "Details" } } }
                tbody {
                    @for e in &entries.items {
                        tr {
                            td { (time(Some(e.created_at))) }
                            td { (e.actor) }
                            td { (e.action) }
                            td { (e.entity_type) " " (e.entity_id.as_deref().unwrap_or_default()) }
                            td { code { (e.details.to_string()) } }
                        }
                    }
                }
            }
        }
        (pager("/ui/audit", &format!("action={}", urlencode(&filter)), entries.next_seq.map(|s| state.cursors.seal(&listing, s)).as_deref()))
    };
    Ok(Html(
        StatusCode::OK,
        page(&state, Some(&user), "Audit log", content),
    ))
}

/// Percent-encodes a query value (actions are visible ASCII; this keeps `&`, `#` and spaces
/// from breaking the link).
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
