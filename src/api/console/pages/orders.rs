//! Draft orders: the list, one draft with its lines, history and exports, and the approve,
//! push and retry-push actions where the role and the status allow them.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use uuid::Uuid;

use super::{Fields, page_request, status_filter};
use crate::api::console::session::{CSRF_FIELD, ConsoleUser, SignedForm};
use crate::api::console::views::{
    Html, Notice, OrPage, PageError, health_banner, notice, outside, page, pager, preview,
    refreshing, status, status_filter_form, time,
};
use crate::api::error::ApiError;
use crate::api::extract::parse_uuid;
use crate::api::state::AppState;
use crate::domain::draft::{DraftOrder, DraftStatus};
use crate::domain::export::Export;
use crate::domain::page::listing;
use crate::domain::user::Role;
use crate::service::ServiceError;
use crate::service::orders::PushKind;
use crate::service::preview::{Preview, PreviewWith};

/// `GET /ui/drafts?status=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<Fields>,
) -> Result<Html, PageError> {
    let render = async {
        let filter: Option<DraftStatus> = status_filter(query.get("status"))?;
        let listing = listing(
            user.auth.org_id(),
            "drafts",
            filter.map(DraftStatus::as_str),
        );
        let page_req = page_request(&state, &listing, &query)?;
        let drafts = state
            .orders
            .list(user.auth.org_id(), filter, page_req)
            .await?;
        let next = drafts.next_seq.map(|s| state.cursors.seal(&listing, s));
        let health = state.connections.active_health(user.auth.org_id()).await?;
        Ok::<_, ApiError>((filter, drafts, next, health))
    };
    let (filter, drafts, next, health) = render.await.or_page(&state, &user)?;
    let filter_text = filter.map(DraftStatus::as_str).unwrap_or_default();
    let self_url = match query.get("cursor") {
        Some(c) => format!("/ui/drafts?status={filter_text}&cursor={c}"),
        None => format!("/ui/drafts?status={filter_text}"),
    };
    let content = html! {
        (health_banner(&state, &user, health.as_ref().map(|(_, h)| h)))
        (status_filter_form("/ui/drafts", &DraftStatus::ALL.map(DraftStatus::as_str), filter_text))
        @if drafts.items.is_empty() {
            p { "No draft orders" @if filter.is_some() { " with this status" } "." }
        } @else {
            (refreshing("rows", &self_url, drafts.items.iter().any(|d| d.status == DraftStatus::Pushing), html! {
            table {
                caption { "Draft orders, newest first" }
                thead { tr { th scope="col" { "Order" } th scope="col" { "Customer" } th scope="col" { "Status" } th scope="col" { "ERP order" } th scope="col" { "Created" } } }
                tbody {
                    @for d in &drafts.items {
                        tr {
                            td { a href={ "/ui/drafts/" (d.id) } { (crate::domain::text::reveal_bidi(&label(d))) } }
                            td { (outside(d.customer.name.as_deref())) }
                            td { (status(d.status.as_str())) }
                            td { (outside(d.erp_order_id.as_deref())) }
                            td { (time(Some(d.created_at))) }
                        }
                    }
                }
            }
            }))
        }
        (pager("/ui/drafts", &format!("status={filter_text}"), next.as_deref()))
    };
    Ok(Html(
        StatusCode::OK,
        page(&state, Some(&user), "Orders", content),
    ))
}

fn label(d: &DraftOrder) -> String {
    d.header
        .external_order_number
        .clone()
        .unwrap_or_else(|| d.id.to_string())
}

/// What each action is called and which statuses allow it.
fn actions(d: &DraftOrder) -> Vec<(&'static str, &'static str)> {
    match d.status {
        DraftStatus::Ready => vec![("approve", "Approve")],
        DraftStatus::Approved => vec![("push", "Push to ERP")],
        DraftStatus::Error => vec![("retry-push", "Retry push")],
        DraftStatus::Pushing | DraftStatus::Pushed => vec![],
    }
}

fn history(d: &DraftOrder, exports: &[Export]) -> Markup {
    let mut events: Vec<(chrono::DateTime<chrono::Utc>, String)> =
        vec![(d.created_at, "Created (READY)".into())];
    if let Some(at) = d.approved_at {
        let by = d.approved_by.as_deref().unwrap_or("unknown");
        events.push((at, format!("Approved by {by} (APPROVED)")));
    }
    for e in exports {
        events.push((e.created_at, format!("Pushed as {} (PUSHING)", e.file_name)));
        if let Some(at) = e.sent_at {
            events.push((at, format!("Delivered {} (PUSHED)", e.file_name)));
        }
        if let Some(at) = e.acked_at {
            let id = e.erp_order_id.as_deref().unwrap_or("no number");
            let id = crate::domain::text::reveal_bidi(id);
            events.push((at, format!("Acknowledged by the ERP as {id}")));
        }
        if e.status == crate::domain::export::ExportStatus::Failed {
            events.push((e.updated_at, format!("{} failed (ERROR)", e.file_name)));
        }
    }
    events.sort_by_key(|(at, _)| *at);
    html! {
        ol.history {
            @for (at, what) in &events { li { (time(Some(*at))) " — " (what) } }
        }
    }
}

/// A draft's exports, each linking to its page.
fn exports_table(exports: &[Export]) -> Markup {
    html! {
        @if exports.is_empty() { p { "Not pushed yet." } } @else {
            table {
                thead { tr { th scope="col" { "File" } th scope="col" { "Status" } th scope="col" { "Attempts" } th scope="col" { "Created" } } }
                tbody {
                    @for e in exports {
                        tr {
                            td { a href={ "/ui/exports/" (e.id) } { (e.file_name) } }
                            td { (status(e.status.as_str())) }
                            td { (e.attempts) }
                            td { (time(Some(e.created_at))) }
                        }
                    }
                }
            }
        }
    }
}

/// A draft's lines as entered.
fn lines_table(d: &DraftOrder) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "#" } th scope="col" { "SKU" } th scope="col" { "Description" } th scope="col" { "Quantity" } th scope="col" { "Unit" } th scope="col" { "Unit price" } } }
            tbody {
                @for l in &d.lines {
                    tr {
                        td { (l.line_no) }
                        td { (outside(Some(&l.internal_sku))) }
                        td { (outside(l.description.as_deref())) }
                        td.num { (l.qty.as_str()) }
                        td { (outside(Some(&l.uom))) }
                        td.num { (l.unit_price.as_ref().map(|p| p.as_str()).unwrap_or("—")) " " (l.currency.as_deref().unwrap_or_default()) }
                    }
                }
            }
        }
    }
}

fn draft_page(
    state: &AppState,
    user: &ConsoleUser,
    d: &DraftOrder,
    exports: &[Export],
    status_code: StatusCode,
    message: Option<&Notice>,
    previewed: &Result<Preview, String>,
) -> Html {
    let may_act = Role::ORDER_OPERATORS.contains(&user.auth.user.role);
    let pending = d.status == DraftStatus::Pushing
        || exports
            .iter()
            .any(|e| e.status == crate::domain::export::ExportStatus::Pending);
    let content = html! {
        (notice(message))
        (refreshing("live", &format!("/ui/drafts/{}", d.id), pending, html! {
        dl.facts {
            dt { "Status" } dd { (status(d.status.as_str())) @if pending { " (updates by itself)" } }
            dt { "Order number" } dd { (outside(d.header.external_order_number.as_deref())) }
            dt { "Customer" } dd { (outside(d.customer.name.as_deref())) " " (d.customer.erp_customer_number.as_deref().map(|n| crate::domain::text::reveal_bidi(n).into_owned()).map(|n| format!("({n})")).unwrap_or_default()) }
            dt { "Order date" } dd { (d.header.order_date.map(|x| x.to_string()).unwrap_or_else(|| "—".into())) }
            dt { "Currency" } dd { (d.header.currency.as_deref().unwrap_or("—")) }
            dt { "ERP order" } dd { (outside(d.erp_order_id.as_deref())) }
            dt { "Id" } dd { code { (d.id) } }
        }
        @if may_act && !actions(d).is_empty() {
            section aria-labelledby="actions" {
                h2 id="actions" { "Actions" }
                @for (action, text) in actions(d) {
                    form.inline method="post" action={ "/ui/drafts/" (d.id) "/" (action) } {
                        input type="hidden" name=(CSRF_FIELD) value=(user.csrf(state));
                        // A double submit answers the same export instead of a conflict.
                        input type="hidden" name="idempotency_key" value=(Uuid::new_v4());
                        button type="submit" { (text) }
                    }
                }
            }
        }
        h2 { "History" }
        (history(d, exports))
        h2 { "Exports" }
        (exports_table(exports))
        }))
        h2 { "Lines" }
        (lines_table(d))
    };
    let content = html! {
        (content)
        section aria-labelledby="preview" {
            h2 id="preview" { "What the ERP would receive" }
            p { "The file a push now would deliver, in the active connection's format." }
            (preview(previewed))
        }
    };
    let title = format!("Order {}", crate::domain::text::reveal_bidi(&label(d)));
    Html(status_code, page(state, Some(user), &title, content))
}

/// The draft as a push now would deliver it, or why nothing can be shown.
async fn previewed(
    state: &AppState,
    user: &ConsoleUser,
    d: &DraftOrder,
) -> Result<Preview, String> {
    state
        .previews
        .draft(
            &user.auth.actor(),
            user.auth.org_id(),
            d.id,
            PreviewWith::Active,
        )
        .await
        .map_err(|err| match err {
            ServiceError::Conflict(_) => {
                "No active connection: a push would be refused.".to_owned()
            }
            ServiceError::Invalid(e) => format!("A push would fail: {}", e.message),
            other => ApiError::from(other).public().message,
        })
}

/// `GET /ui/drafts/{id}`.
pub async fn details(
    State(state): State<AppState>,
    user: ConsoleUser,
    Path(id): Path<String>,
    Query(query): Query<Fields>,
) -> Result<Html, PageError> {
    let found = async {
        let id = parse_uuid("id", &id)?;
        Ok::<_, ApiError>(state.orders.get(user.auth.org_id(), id).await?)
    };
    let (d, exports) = found.await.or_page(&state, &user)?;
    let done = query.get("done").and_then(|d| match d.as_str() {
        "approve" => Some("Approved."),
        "push" => Some("Pushed; the export is on its way."),
        "retry-push" => Some("Pushed again; the export is on its way."),
        _ => None,
    });
    let n = done.map(|t| Notice::Done(t.into()));
    let previewed = previewed(&state, &user, &d).await;
    Ok(draft_page(
        &state,
        &user,
        &d,
        &exports,
        StatusCode::OK,
        n.as_ref(),
        &previewed,
    ))
}

/// `POST /ui/drafts/{id}/{approve|push|retry-push}`.
pub async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    SignedForm { user, fields }: SignedForm,
) -> Result<Response, PageError> {
    let org_id = user.auth.org_id();
    let outcome = async {
        let id = parse_uuid("id", &id)?;
        user.auth.require(Role::ORDER_OPERATORS)?;
        let actor = user.auth.actor();
        let key = fields
            .get("idempotency_key")
            .map(|k| crate::domain::export::parse_idempotency_key(k))
            .transpose()?;
        match action.as_str() {
            "approve" => {
                state
                    .orders
                    .approve(&actor, user.auth.user.email.as_str(), org_id, id)
                    .await?;
            }
            "push" | "retry-push" => {
                let kind = if action == "push" {
                    PushKind::Push
                } else {
                    PushKind::Retry
                };
                state
                    .orders
                    .push(&actor, org_id, id, key.as_deref(), kind)
                    .await?;
            }
            _ => return Err(ApiError::NotFound("No such action".into())),
        }
        Ok::<_, ApiError>(id)
    };
    let err = match outcome.await {
        Ok(id) => {
            return Ok(Redirect::to(&format!("/ui/drafts/{id}?done={action}")).into_response());
        }
        Err(err) => err,
    };
    let (code, n) = Notice::from_error(err);
    // Show the refusal on the draft's own page when there is one to show.
    let Ok(id) = Uuid::parse_str(&id) else {
        return Ok(Html(
            code,
            page(&state, Some(&user), "Not found", notice(Some(&n))),
        )
        .into_response());
    };
    let (d, exports) = state.orders.get(org_id, id).await.or_page(&state, &user)?;
    let previewed = previewed(&state, &user, &d).await;
    Ok(draft_page(&state, &user, &d, &exports, code, Some(&n), &previewed).into_response())
}
