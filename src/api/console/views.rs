//! The console's page frame and the small pieces every page uses. `maud` escapes everything
//! interpolated, so no client or ERP string can become markup.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::session::{CSRF_FIELD, ConsoleUser};
use crate::api::error::{ApiError, PublicError};
use crate::api::state::AppState;
use crate::domain::user::Role;

/// A message shown at the top of a page or beside the action that caused it.
#[derive(Debug, Clone)]
pub enum Notice {
    /// Something worked.
    Done(String),
    /// Something was refused or failed, in words.
    Error(String),
}

impl Notice {
    /// The readable form of an API error (what the API would have answered).
    pub fn from_error(err: ApiError) -> (StatusCode, Notice) {
        Self::from_public(err.public())
    }

    /// [`Notice::from_error`] for an error already made public.
    pub fn from_public(public: PublicError) -> (StatusCode, Notice) {
        let mut message = public.message;
        if let Some(secs) = public.retry_after_secs {
            message = format!("{message} (try again in {secs} s)");
        }
        (public.status, Notice::Error(message))
    }
}

/// Renders a notice; errors are announced to screen readers.
pub fn notice(n: Option<&Notice>) -> Markup {
    html! {
        @match n {
            Some(Notice::Done(text)) => p.notice.done role="status" { "✓ " (text) },
            Some(Notice::Error(text)) => p.notice.error role="alert" { "Error: " (text) },
            None => {},
        }
    }
}

/// A status shown as text (colour only repeats what the word says).
pub fn status(text: &str) -> Markup {
    html! { span class={ "status status-" (text.to_lowercase()) } { (text) } }
}

/// Text from outside (a customer's order, an ERP's answer), or a dash. Unicode direction
/// controls are shown as visible markers: invisible, they could make the page show an order
/// number or message other than the one stored ("Trojan Source").
pub fn outside(text: Option<&str>) -> Markup {
    html! {
        @match text {
            Some(t) => (crate::domain::text::reveal_bidi(t)),
            None => "—",
        }
    }
}

/// A part of a page that reloads itself every two seconds while `pending` (a status that is
/// about to change): htmx fetches `url` and swaps in its element with the same `id`. Without
/// htmx the page still works; it just does not update by itself.
pub fn refreshing(id: &str, url: &str, pending: bool, content: Markup) -> Markup {
    let select = format!("#{id}");
    html! {
        div id=(id) aria-live="polite"
            hx-get=[pending.then_some(url)]
            hx-trigger=[pending.then_some("every 2s")]
            hx-select=[pending.then_some(select.as_str())]
            hx-swap=[pending.then_some("outerHTML")] {
            (content)
        }
    }
}

/// A connection's health as facts (inside a `dl`).
pub fn health_facts(h: &crate::service::connections::ConnectionHealth) -> Markup {
    html! {
        dt { "Deliveries" } dd { (status(h.state.as_str())) (health_words(h)) }
        @if let Some(code) = &h.last_error_code {
            dt { "Last error" } dd { (code) ": " (outside(h.last_error_message.as_deref())) }
        }
        dt { "Waiting exports" } dd { (h.queued_exports) }
        @if let Some(at) = h.next_probe_at { dt { "Next try" } dd { (time(Some(at))) } }
    }
}

fn health_words(h: &crate::service::connections::ConnectionHealth) -> String {
    use crate::domain::delivery::Health;
    match h.state {
        Health::Healthy => String::new(),
        Health::Degraded => format!(
            " — {} delivery attempts in a row failed; retrying",
            h.consecutive_failures
        ),
        Health::Open => {
            " — the ERP cannot be reached; exports wait and are tried again at the next try".into()
        }
        Health::HalfOpen => " — one export is trying the ERP now".into(),
    }
}

/// A banner over the orders and exports pages while the org's connection is not healthy,
/// with "Retry now" for the roles that may use it.
pub fn health_banner(
    state: &AppState,
    user: &ConsoleUser,
    health: Option<&crate::service::connections::ConnectionHealth>,
) -> Markup {
    let Some(h) = health.filter(|h| h.state != crate::domain::delivery::Health::Healthy) else {
        return html! {};
    };
    let may_retry = Role::DELIVERY_OPERATORS.contains(&user.auth.user.role);
    html! {
        section.notice.error.banner role="status" aria-label="Connection health" {
            p { "Deliveries to your ERP: " (status(h.state.as_str())) (health_words(h)) }
            dl.facts { (health_facts(h)) }
            @if may_retry {
                (action_form(state, user, "/ui/health/retry-now", "Retry now"))
            }
        }
    }
}

/// A previewed export file (name, type, content), or why there is none.
pub fn preview(result: &Result<crate::service::preview::Preview, String>) -> Markup {
    match result {
        Ok(p) => {
            // CSV in Windows-1252 and EDIFACT in ISO 8859-1 are shown as the characters they
            // encode; the bytes delivered are the API's preview.
            let text = match std::str::from_utf8(&p.bytes) {
                Ok(t) => std::borrow::Cow::Borrowed(t),
                Err(_) => encoding_rs::WINDOWS_1252.decode(&p.bytes).0,
            };
            html! {
                dl.facts {
                    dt { "File name" } dd { code { (p.file_name) } }
                    dt { "Content type" } dd { code { (p.content_type) } }
                    dt { "Size" } dd { (p.bytes.len()) " bytes" }
                }
                pre.preview tabindex="0" aria-label="File content" { (crate::domain::text::reveal_bidi(&text)) }
            }
        }
        Err(why) => html! { p.notice.error role="status" { (why) } },
    }
}

/// A timestamp in UTC, or a dash.
pub fn time(at: Option<DateTime<Utc>>) -> Markup {
    html! {
        @match at {
            Some(at) => time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S UTC")) },
            None => "—",
        }
    }
}

/// A POST form with its CSRF token and one button.
pub fn action_form(state: &AppState, user: &ConsoleUser, action: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name=(CSRF_FIELD) value=(user.csrf(state));
            button type="submit" { (label) }
        }
    }
}

/// A whole page: navigation by role, the signed-in user, sign-out.
pub fn page(state: &AppState, user: Option<&ConsoleUser>, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx must not inject its own inline style: the CSP allows none.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                title { (title) " — OrderFlow Connect" }
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/htmx.min.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "OrderFlow Connect" }
                    @if let Some(user) = user {
                        nav aria-label="Main" {
                            a href="/ui/drafts" { "Orders" }
                            a href="/ui/exports" { "Exports" }
                            @if Role::CONNECTOR_MANAGERS.contains(&user.auth.user.role) {
                                a href="/ui/connector" { "Connector" }
                                a href="/ui/audit" { "Audit log" }
                            }
                        }
                        span.who {
                            (user.auth.user.email.as_str()) " (" (user.auth.user.role.as_str()) ")"
                        }
                        (action_form(state, user, "/ui/logout", "Sign out"))
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

/// A rendered page with its status code.
pub struct Html(pub StatusCode, pub Markup);

impl IntoResponse for Html {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// The one way a console handler fails: a page for an error that has nowhere better to go (a
/// missing draft, a forged form, a role that may not act), answered with the error's status.
pub struct PageError(Html);

impl PageError {
    /// The error page `err` gets when `user` (if signed in) asked.
    pub fn new(state: &AppState, user: Option<&ConsoleUser>, err: impl Into<ApiError>) -> Self {
        let (status, n) = Notice::from_error(err.into());
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            _ => "Something went wrong",
        };
        Self(Html(status, page(state, user, title, notice(Some(&n)))))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

/// `?` for console handlers: a failure becomes the signed-in user's error page.
pub trait OrPage<T> {
    /// The value, or the error page for `user`.
    fn or_page(self, state: &AppState, user: &ConsoleUser) -> Result<T, PageError>;
}

impl<T, E: Into<ApiError>> OrPage<T> for Result<T, E> {
    fn or_page(self, state: &AppState, user: &ConsoleUser) -> Result<T, PageError> {
        self.map_err(|err| PageError::new(state, Some(user), err))
    }
}

/// Links to the first and the next page of a list.
pub fn pager(base: &str, filter: &str, next_cursor: Option<&str>) -> Markup {
    html! {
        nav.pager aria-label="Pages" {
            a href={ (base) "?" (filter) } { "First page" }
            @if let Some(cursor) = next_cursor {
                " "
                a href={ (base) "?" (filter) "&cursor=" (cursor) } { "Next page" }
            }
        }
    }
}

/// The status filter above a list: `statuses` in life order, `selected` the current one.
pub fn status_filter_form(action: &str, statuses: &[&str], selected: &str) -> Markup {
    html! {
        form.filter method="get" action=(action) {
            label for="status" { "Status" }
            select id="status" name="status" {
                option value="" selected[selected.is_empty()] { "All" }
                @for s in statuses {
                    option value=(s) selected[*s == selected] { (s) }
                }
            }
            button type="submit" { "Filter" }
        }
    }
}
