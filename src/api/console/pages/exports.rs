//! Exports: the list, one export with its delivery facts and `error_json` in words, its
//! archived file (view and download), a live status while it is PENDING, and "check
//! acknowledgements now".

use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::Value;

use super::{Fields, page_request, status_filter};
use crate::api::console::session::{CSRF_FIELD, ConsoleUser, SignedForm};
use crate::api::console::views::{
    Html, Notice, OrPage, PageError, health_banner, notice, outside, page, pager, refreshing,
    status, status_filter_form, time,
};
use crate::api::error::ApiError;
use crate::api::extract::parse_uuid;
use crate::api::state::AppState;
use crate::domain::export::{Export, ExportStatus};
use crate::domain::page::listing;
use crate::domain::user::Role;

async fn list_page(
    state: &AppState,
    user: &ConsoleUser,
    query: &Fields,
    code: StatusCode,
    message: Option<&Notice>,
) -> Result<Html, PageError> {
    let render = async {
        let filter: Option<ExportStatus> = status_filter(query.get("status"))?;
        let listing = listing(
            user.auth.org_id(),
            "exports",
            filter.map(ExportStatus::as_str),
        );
        let exports = state
            .orders
            .list_exports(
                user.auth.org_id(),
                filter,
                page_request(state, &listing, query)?,
            )
            .await?;
        let next = exports.next_seq.map(|s| state.cursors.seal(&listing, s));
        let health = state.connections.active_health(user.auth.org_id()).await?;
        Ok::<_, ApiError>((filter, exports, next, health))
    };
    let (filter, exports, next, health) = render.await.or_page(state, user)?;
    let filter_text = filter.map(ExportStatus::as_str).unwrap_or_default();
    let self_url = match query.get("cursor") {
        Some(c) => format!("/ui/exports?status={filter_text}&cursor={c}"),
        None => format!("/ui/exports?status={filter_text}"),
    };
    let content = html! {
        (health_banner(state, user, health.as_ref().map(|(_, h)| h)))
        (notice(message))
        @if Role::DRAFT_WRITERS.contains(&user.auth.user.role) {
            form.inline method="post" action="/ui/acks/poll" {
                input type="hidden" name=(CSRF_FIELD) value=(user.csrf(state));
                button type="submit" { "Check acknowledgements now" }
            }
        }
        (status_filter_form("/ui/exports", &ExportStatus::ALL.map(ExportStatus::as_str), filter_text))
        @if exports.items.is_empty() {
            p { "No exports" @if filter.is_some() { " with this status" } "." }
        } @else {
            (refreshing("rows", &self_url, exports.items.iter().any(|e| e.status == ExportStatus::Pending), html! {
            table {
                caption { "Exports, newest first" }
                thead { tr { th scope="col" { "File" } th scope="col" { "Status" } th scope="col" { "Attempts" } th scope="col" { "ERP order" } th scope="col" { "Created" } } }
                tbody {
                    @for e in &exports.items {
                        tr {
                            td { a href={ "/ui/exports/" (e.id) } { (e.file_name) } }
                            td { (status(e.status.as_str())) }
                            td { (e.attempts) }
                            td { (outside(e.erp_order_id.as_deref())) }
                            td { (time(Some(e.created_at))) }
                        }
                    }
                }
            }
            }))
        }
        (pager("/ui/exports", &format!("status={filter_text}"), next.as_deref()))
    };
    Ok(Html(code, page(state, Some(user), "Exports", content)))
}

/// `GET /ui/exports?status=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<Fields>,
) -> Result<Html, PageError> {
    list_page(&state, &user, &query, StatusCode::OK, None).await
}

/// `POST /ui/acks/poll`: one acknowledgement poll of the org's active connection.
pub async fn poll_acks(
    State(state): State<AppState>,
    SignedForm { user, .. }: SignedForm,
) -> Result<Html, PageError> {
    let outcome = async {
        user.auth.require(Role::DRAFT_WRITERS)?;
        Ok::<_, ApiError>(state.ack_polls.poll_active(user.auth.org_id()).await?)
    };
    let (code, n) = match outcome.await {
        Ok(c) => (
            StatusCode::OK,
            Notice::Done(format!(
                "Acknowledgements checked: {} booked, {} rejected, {} unreadable, {} unmatched, {} waiting for delivery.",
                c.processed, c.rejected, c.malformed, c.unmatched, c.waiting
            )),
        ),
        Err(err) => Notice::from_error(err),
    };
    list_page(&state, &user, &Fields::new(), code, Some(&n)).await
}

/// `error_json` in words.
fn error_words(error: &Value) -> String {
    let text = |k: &str| error.get(k).and_then(Value::as_str);
    match text("code") {
        Some("ERP_REJECTED") => format!(
            "The ERP rejected the order{}: {}{}",
            text("error_code")
                .map(|c| format!(" with code {c}"))
                .unwrap_or_default(),
            text("message").unwrap_or("no reason given"),
            text("processed_at")
                .map(|t| format!(" (processed {t})"))
                .unwrap_or_default(),
        ),
        Some(code) => format!(
            "Delivery failed with {code}: {}{}",
            text("message").unwrap_or("no message"),
            error
                .get("attempt")
                .and_then(Value::as_u64)
                .map(|a| format!(" (attempt {a})"))
                .unwrap_or_default(),
        ),
        None => "An error without a code was recorded.".into(),
    }
}

/// The part of an export page that changes while it is delivered; refreshes itself every two
/// seconds while PENDING.
fn live(e: &Export) -> Markup {
    let pending = e.status == ExportStatus::Pending;
    let url = format!("/ui/exports/{}/live", e.id);
    html! {
        div id="live" aria-live="polite"
            hx-get=[pending.then_some(url.as_str())]
            hx-trigger=[pending.then_some("every 2s")]
            hx-swap=[pending.then_some("outerHTML")] {
            dl.facts {
                dt { "Status" } dd { (status(e.status.as_str())) @if pending { " (updates by itself)" } }
                dt { "Attempts" } dd { (e.attempts) }
                dt { "Dropzone path" } dd { (e.dropzone_path.as_deref().unwrap_or("—")) }
                dt { "Sent" } dd { (time(e.sent_at)) }
                dt { "Acknowledged" } dd { (time(e.acked_at)) }
                dt { "ERP order" } dd { (outside(e.erp_order_id.as_deref())) }
                @if pending { dt { "Next attempt" } dd { (time(Some(e.next_attempt_at))) } }
            }
            @if e.export_storage_key.is_some() {
                p {
                    a href={ "/ui/exports/" (e.id) "/file" } { "View file" }
                    " · "
                    a href={ "/ui/exports/" (e.id) "/file?download=1" } download=(e.file_name) { "Download file" }
                }
            } @else {
                p { "The file is archived when the first delivery attempt starts." }
            }
            @if let Some(error) = &e.error_json {
                p.notice.error role="alert" { (outside(Some(&error_words(error)))) }
                details { summary { "Error as recorded" } pre { (crate::domain::text::reveal_bidi(&serde_json::to_string_pretty(error).unwrap_or_default())) } }
            }
        }
    }
}

async fn find(state: &AppState, user: &ConsoleUser, id: &str) -> Result<Export, ApiError> {
    let id = parse_uuid("id", id)?;
    Ok(state.orders.export(user.auth.org_id(), id).await?)
}

/// `GET /ui/exports/{id}`.
pub async fn details(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Result<Html, PageError> {
    let e = find(&state, &user, &id).await.or_page(&state, &user)?;
    let content = html! {
        (live(&e))
        dl.facts {
            dt { "Draft order" } dd { a href={ "/ui/drafts/" (e.draft_order_id) } { (e.draft_order_id) } }
            dt { "SHA-256" } dd { code { (e.content_sha256.as_deref().unwrap_or("—")) } }
            dt { "Created" } dd { (time(Some(e.created_at))) }
        }
    };
    let title = format!("Export {}", e.file_name);
    Ok(Html(
        StatusCode::OK,
        page(&state, Some(&user), &title, content),
    ))
}

/// `GET /ui/exports/{id}/live`: the live part alone (htmx).
pub async fn live_part(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
) -> Response {
    match find(&state, &user, &id).await {
        Ok(e) => Html(StatusCode::OK, live(&e)).into_response(),
        Err(err) => {
            let (code, n) = Notice::from_error(err);
            Html(code, notice(Some(&n))).into_response()
        }
    }
}

/// `GET /ui/exports/{id}/file[?download=1]`: the archived bytes, as JSON text to view or as an
/// attachment.
pub async fn file(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Query(query): Query<Fields>,
) -> Result<Response, PageError> {
    let found = async {
        let id = parse_uuid("id", &id)?;
        Ok::<_, ApiError>(state.orders.export_file(user.auth.org_id(), id).await?)
    };
    let (e, bytes) = found.await.or_page(&state, &user)?;
    let media_type = crate::formats::media_type_of(&bytes);
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    if query.contains_key("download") {
        // File names are ASCII: templates and the values in them are reduced to
        // letters, digits, `.`, `_` and `-`.
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", e.file_name)) {
            headers.insert(CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}
