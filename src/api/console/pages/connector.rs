//! The org's connector: its status, last test and recorded host key; a form generated from the
//! type's JSON Schema (secrets write-only: shown as "set", replaceable, clearable, never
//! displayed); test on the saved or the unsaved form; reset trust; disable and enable.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::Fields;
use crate::api::console::session::{CSRF_FIELD, ConsoleUser, SignedForm};
use crate::api::console::views::{
    Html, Notice, OrPage, PageError, action_form, health_facts, notice, page, preview, status, time,
};
use crate::api::error::ApiError;
use crate::api::extract::parse_uuid;
use crate::api::state::AppState;
use crate::connectors::TestResult;
use crate::domain::connection::ConnectionStatus;
use crate::domain::user::Role;
use crate::service::ServiceError;
use crate::service::connections::{ConnectionDetails, SaveOutcome};
use crate::service::preview::{Preview, PreviewWith};

/// How a schema property is edited.
enum Kind {
    Secret,
    Choice(Vec<String>),
    Flag,
    Number,
    Text,
}

fn types(prop: &Value) -> Vec<&str> {
    match &prop["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

fn kind(prop: &Value) -> Kind {
    if prop["writeOnly"] == Value::Bool(true) {
        return Kind::Secret;
    }
    if let Some(choices) = prop["enum"].as_array() {
        return Kind::Choice(
            choices
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
        );
    }
    let t = types(prop);
    if t.contains(&"boolean") {
        Kind::Flag
    } else if t.contains(&"integer") {
        Kind::Number
    } else {
        Kind::Text
    }
}

/// Keys, certificates, header sets and formats are several lines.
fn multiline(name: &str) -> bool {
    name == "private_key" || name == "headers" || name == "format" || name.ends_with("_pem")
}

/// Whether a property takes a JSON object (typed into the form as JSON text).
fn takes_object(prop: &Value) -> bool {
    types(prop).contains(&"object")
        || ["anyOf", "oneOf"].iter().any(|k| {
            prop[*k]
                .as_array()
                .is_some_and(|v| v.iter().any(|alt| alt["type"] == "object"))
        })
}

/// One field of a generated form.
struct FormField<'a> {
    name: &'a str,
    prop: &'a Value,
    /// The value of `mode` this field belongs to; None: every mode's.
    mode: Option<&'a str>,
}

/// The form's fields in the order a person fills them in: the schema's `propertyOrder`, a
/// mode's own fields after the shared ones, secrets last in each group.
fn layout(schema: &Value) -> Vec<FormField<'_>> {
    let mut fields: Vec<FormField<'_>> = schema["properties"]
        .as_object()
        .map(|p| {
            p.iter()
                .map(|(name, prop)| FormField {
                    name,
                    prop,
                    mode: only_for_mode(schema, name),
                })
                .collect()
        })
        .unwrap_or_default();
    fields.sort_by_key(|f| {
        (
            f.mode,
            matches!(kind(f.prop), Kind::Secret),
            f.prop["propertyOrder"].as_u64().unwrap_or(u64::MAX),
            f.name,
        )
    });
    fields
}

/// Laid-out fields in runs of the same mode.
fn by_mode(fields: Vec<FormField<'_>>) -> Vec<(Option<&str>, Vec<FormField<'_>>)> {
    let mut groups: Vec<(Option<&str>, Vec<FormField<'_>>)> = Vec::new();
    for f in fields {
        match groups.last_mut() {
            Some((mode, group)) if *mode == f.mode => group.push(f),
            _ => groups.push((f.mode, vec![f])),
        }
    }
    groups
}

/// The one mode a field is allowed in, read from the schema's per-mode variants (`oneOf`,
/// each with a `mode` const, where another mode's fields must be null).
fn only_for_mode<'a>(schema: &'a Value, name: &str) -> Option<&'a str> {
    let variants = schema["oneOf"].as_array()?;
    let null_only = serde_json::json!({ "type": "null" });
    let mut allowed = variants
        .iter()
        .filter(|v| v["properties"][name] != null_only)
        .filter_map(|v| v["properties"]["mode"]["const"].as_str());
    match (allowed.next(), allowed.next()) {
        (Some(mode), None) if variants.len() > 1 => Some(mode),
        _ => None,
    }
}

/// The request body a submitted form means: empty fields are left out (a left-out secret keeps
/// its stored value, as in the API), "clear" sends null.
fn body_from_form(schema: &Value, fields: &Fields) -> Map<String, Value> {
    let mut body = Map::new();
    let selected = fields.get("mode").map(String::as_str);
    for FormField { name, prop, mode } in layout(schema) {
        // Fields of a mode not selected are hidden: whatever they hold is not meant.
        if mode.is_some() && selected.is_some() && mode != selected {
            continue;
        }
        let typed = fields.get(name).map(String::as_str).unwrap_or_default();
        let value = match kind(prop) {
            Kind::Secret if fields.contains_key(&format!("clear.{name}")) => Some(Value::Null),
            Kind::Flag if fields.contains_key(&format!("present.{name}")) => {
                Some(Value::Bool(typed == "true"))
            }
            Kind::Flag => None,
            _ if typed.trim().is_empty() => None,
            // A number that does not parse is sent as typed, so the 422 names the field.
            Kind::Number => Some(
                typed
                    .trim()
                    .parse::<i64>()
                    .map_or_else(|_| Value::String(typed.to_owned()), Value::from),
            ),
            // A JSON object field (extra headers) typed as JSON; anything else is sent as
            // typed, so the 422 names the field.
            _ if takes_object(prop) => Some(
                serde_json::from_str::<Map<String, Value>>(typed)
                    .map_or_else(|_| Value::String(typed.to_owned()), Value::Object),
            ),
            _ => Some(Value::String(typed.to_owned())),
        };
        if let Some(value) = value {
            body.insert(name.to_owned(), value);
        }
    }
    if fields.get("test_on_save").is_some_and(|v| v == "true") {
        body.insert("test_on_save".into(), Value::Bool(true));
    }
    body
}

fn value_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// What a connector form is filled with.
#[derive(Clone, Copy)]
struct Filled<'a> {
    /// The non-secret values to show.
    shown: &'a Map<String, Value>,
    /// The secrets that are set (shown as set, never their values).
    secrets_set: &'a [String],
    /// The field the last save refused, and why.
    invalid: Option<&'a (String, String)>,
}

/// One field of the generated form.
fn field(slug: &str, name: &str, prop: &Value, filled: Filled<'_>) -> Markup {
    let Filled {
        shown,
        secrets_set,
        invalid,
    } = filled;
    // Unique on the page, which holds one form per connector type.
    let id = format!("f-{slug}-{name}");
    let help = format!("{id}-help");
    let problem = invalid
        .filter(|(f, _)| f == name)
        .map(|(_, why)| why.as_str());
    let description = prop["description"].as_str().unwrap_or_default();
    let title = prop["title"].as_str().unwrap_or(name);
    let current = value_text(shown.get(name));
    html! {
        div.field {
            @match kind(prop) {
                Kind::Secret => {
                    @let set = secrets_set.iter().any(|s| s == name);
                    label for=(id) { (title) " " span.secret-state { @if set { "(set — leave empty to keep)" } @else { "(not set)" } } }
                    @if multiline(name) {
                        textarea id=(id) name=(name) rows="4" autocomplete="off" aria-describedby=(help) {}
                    } @else {
                        input id=(id) name=(name) type="password" autocomplete="new-password" aria-describedby=(help) aria-invalid=[problem.map(|_| "true")];
                    }
                    @if set {
                        label.check { input type="checkbox" name={ "clear." (name) } value="on"; " Clear " (title) }
                    }
                }
                Kind::Choice(choices) => {
                    label for=(id) { (title) }
                    select id=(id) name=(name) aria-describedby=(help) {
                        @for c in &choices { option value=(c) selected[*c == current] { (c) } }
                    }
                }
                Kind::Flag => {
                    @let on = match shown.get(name) { Some(Value::Bool(b)) => *b, _ => prop["default"] == Value::Bool(true) };
                    input type="hidden" name={ "present." (name) } value="1";
                    label.check for=(id) { input id=(id) type="checkbox" name=(name) value="true" checked[on] aria-describedby=(help) aria-invalid=[problem.map(|_| "true")]; " " (title) }
                }
                Kind::Number => {
                    label for=(id) { (title) }
                    input id=(id) name=(name) type="number" value=(current) min=[prop["minimum"].as_i64()] max=[prop["maximum"].as_i64()] aria-describedby=(help) aria-invalid=[problem.map(|_| "true")];
                }
                Kind::Text if multiline(name) => {
                    label for=(id) { (title) }
                    textarea id=(id) name=(name) rows="4" aria-describedby=(help) aria-invalid=[problem.map(|_| "true")] { (current) }
                }
                Kind::Text => {
                    label for=(id) { (title) }
                    input id=(id) name=(name) value=(current) aria-describedby=(help) aria-invalid=[problem.map(|_| "true")];
                }
            }
            @if let Some(why) = problem {
                p.field-error role="alert" { "Refused: " (why) }
            }
            // The API's name of the field, for integrators who script what they set up here.
            small id=(help) { code { (name) } @if !description.is_empty() { " — " (description) } }
        }
    }
}

fn test_result(r: &TestResult) -> Markup {
    html! {
        @if r.success {
            p.notice.done role="status" {
                "✓ Connection works: " (r.message.as_deref().unwrap_or("OK")) " (" (r.latency_ms) " ms)"
                @if let Some(cert) = r.details.as_ref().map(|d| &d["certificate"]).filter(|c| c.is_object()) {
                    br;
                    "Server certificate: " (cert["subject"].as_str().unwrap_or("?"))
                    ", expires in " (cert["days_until_expiry"]) " days"
                }
            }
        } @else {
            p.notice.error role="alert" {
                "Test failed: " (r.error_code.map(|c| c.to_string()).unwrap_or_default()) " — "
                (r.error_message.as_deref().unwrap_or_default()) " (" (r.latency_ms) " ms)"
            }
        }
    }
}

/// What happened on this page just now.
#[derive(Default)]
struct Outcome {
    notice: Option<Notice>,
    test: Option<TestResult>,
    /// The submitted form and its connector type's slug, shown again in that type's section
    /// after a refusal (secrets never are).
    form: Option<(String, Map<String, Value>)>,
    /// The field a refusal named, and why.
    invalid: Option<(String, String)>,
    /// The sample order rendered with the submitted form.
    preview: Option<Result<Preview, String>>,
}

/// The facts and actions of a type's active connection.
fn active_connection(
    state: &AppState,
    user: &ConsoleUser,
    slug: &str,
    schema: &Value,
    d: &ConnectionDetails,
    health: Option<&crate::service::connections::ConnectionHealth>,
) -> Markup {
    let has = |field: &str| schema["properties"].get(field).is_some();
    html! {
        dl.facts {
            dt { "Status" } dd { (status(d.connection.status.as_str())) }
            @if let Some(h) = &health { (health_facts(h)) }
            dt { "Last successful test" } dd { (time(d.connection.last_test_at)) }
            @if has("host_key_fingerprint") {
                dt { "Host key fingerprint" } dd {
                    @match d.config.get("host_key_fingerprint").and_then(Value::as_str) {
                        Some(fp) => { code { (fp) } }
                        None => "none recorded",
                    }
                }
            }
            dt { "Connection id" } dd { code { (d.connection.id) } }
            @if d.config.get("ack_mode").and_then(Value::as_str) == Some("callback") {
                dt { "Callback URL for the ERP" } dd {
                    code { (state.public_url.as_deref().unwrap_or("").trim_end_matches('/')) "/api/v1/hooks/" (d.connection.id) "/acks" }
                }
            }
        }
        div.actions {
            (action_form(state, user, &format!("/ui/connector/{slug}/test"), "Test connection"))
            @if health.as_ref().is_some_and(|h| h.state != crate::domain::delivery::Health::Healthy) {
                (action_form(state, user, "/ui/health/retry-now", "Retry now"))
            }
            @if has("ack_path") {
                (action_form(state, user, &format!("/ui/connector/{slug}/poll-acks"), "Check acknowledgements now"))
            }
            @if d.config.get("host_key_fingerprint").is_some_and(|v| !v.is_null()) {
                (action_form(state, user, &format!("/ui/connector/{slug}/reset-trust"), "Reset trust in the host key"))
            }
            (action_form(state, user, &format!("/ui/connector/{slug}/disable"), "Disable"))
        }
    }
}

/// The create/edit form of a connector type, laid out from its schema.
fn config_form(
    state: &AppState,
    user: &ConsoleUser,
    slug: &str,
    schema: &Value,
    filled: Filled<'_>,
) -> Markup {
    html! {
        form.config method="post" action={ "/ui/connector/" (slug) } {
            input type="hidden" name=(CSRF_FIELD) value=(user.csrf(state));
            @for (mode, group) in by_mode(layout(schema)) {
                @match mode {
                    None => { @for f in group { (field(slug, f.name, f.prop, filled)) } }
                    Some(mode) => {
                        fieldset.mode data-mode=(mode) {
                            legend { "Only for " (mode) }
                            @for f in group { (field(slug, f.name, f.prop, filled)) }
                        }
                    }
                }
            }
            label.check { input type="checkbox" name="test_on_save" value="true"; " Test before saving (nothing is saved if the test fails)" }
            div.actions {
                button type="submit" name="intent" value="save" { "Save" }
                button type="submit" name="intent" value="test" { "Test this form without saving" }
                button type="submit" name="intent" value="preview" { "Preview a sample order in this format" }
            }
        }
    }
}

/// A type's disabled or replaced connections, each with a button to enable it again.
fn earlier_connections(
    state: &AppState,
    user: &ConsoleUser,
    inactive: &[&crate::domain::connection::Connection],
) -> Markup {
    html! {
        @if !inactive.is_empty() {
            h3 { "Earlier connections" }
            ul {
                @for c in inactive {
                    li {
                        code { (c.id) } " " (status(c.status.as_str())) " "
                        (action_form(state, user, &format!("/ui/connections/{}/enable", c.id), "Enable"))
                    }
                }
            }
        }
    }
}

/// A type's active connection and its delivery health, if it has one.
async fn active_of(
    state: &AppState,
    org_id: uuid::Uuid,
    slug: &str,
) -> Result<
    (
        Option<ConnectionDetails>,
        Option<crate::service::connections::ConnectionHealth>,
    ),
    ServiceError,
> {
    let details = match state.connections.details(org_id, slug).await {
        Ok(d) => d,
        Err(ServiceError::NotFound(_)) => return Ok((None, None)),
        Err(err) => return Err(err),
    };
    // Health is a nicety beside the form: a failure to read it leaves it out.
    let health = state
        .connections
        .health(std::slice::from_ref(&details.connection))
        .await
        .ok()
        .and_then(|h| h.into_iter().next());
    Ok((Some(details), health))
}

async fn render(
    state: &AppState,
    user: &ConsoleUser,
    code: StatusCode,
    outcome: Outcome,
) -> Result<Response, PageError> {
    let org_id = user.auth.org_id();
    user.auth
        .require(Role::CONNECTOR_MANAGERS)
        .or_page(state, user)?;
    let connections = state.connections.list(org_id).await.or_page(state, user)?;
    let mut sections = Vec::new();
    for connector in state.connections.registry().all() {
        let slug = connector.slug();
        let (details, health) = active_of(state, org_id, slug).await.or_page(state, user)?;
        let schema = crate::formats::connection_schema(connector.config_schema());
        let empty = Map::new();
        // What was just submitted belongs to its own type's form only.
        let submitted = outcome
            .form
            .as_ref()
            .filter(|(s, _)| s == slug)
            .map(|(_, form)| form);
        let invalid = submitted.and(outcome.invalid.as_ref());
        let shown = submitted
            .or(details.as_ref().map(|d| &d.config))
            .unwrap_or(&empty);
        let secrets_set: &[String] = details
            .as_ref()
            .map(|d| d.secrets_set.as_slice())
            .unwrap_or_default();
        let inactive: Vec<_> = connections
            .iter()
            .filter(|c| {
                c.connector_type == connector.connector_type()
                    && c.status != ConnectionStatus::Active
            })
            .collect();
        sections.push(html! {
            section aria-labelledby={ "t-" (slug) } {
                h2 id={ "t-" (slug) } { (connector.display_name()) " (" (connector.connector_type()) ")" }
                @if let Some(d) = &details {
                    (active_connection(state, user, slug, &schema, d, health.as_ref()))
                } @else {
                    p { "No active connection of this type." }
                }
                (earlier_connections(state, user, &inactive))
                h3 { @if details.is_some() { "Edit" } @else { "Create" } }
                (config_form(state, user, slug, &schema, Filled { shown, secrets_set, invalid }))
            }
        });
    }
    let content = html! {
        (notice(outcome.notice.as_ref()))
        @if let Some(r) = &outcome.test { (test_result(r)) }
        @if let Some(p) = &outcome.preview {
            section aria-labelledby="preview" {
                h2 id="preview" { "Sample order, as the form's format would deliver it" }
                (preview(p))
            }
        }
        @for s in sections { (s) }
    };
    Ok(Html(code, page(state, Some(user), "Connector", content)).into_response())
}

/// `GET /ui/connector`.
pub async fn show(
    State(state): State<AppState>,
    user: ConsoleUser,
    Query(query): Query<Fields>,
) -> Result<Response, PageError> {
    let done = query.get("done").and_then(|d| match d.as_str() {
        "saved" => Some("Saved."),
        "disabled" => Some("Disabled."),
        "enabled" => Some("Enabled."),
        "reset-trust" => Some("Trust reset: the next connection records the server's key again."),
        _ => None,
    });
    let outcome = Outcome {
        notice: done.map(|t| Notice::Done(t.into())),
        ..Outcome::default()
    };
    render(&state, &user, StatusCode::OK, outcome).await
}

async fn refused(
    state: &AppState,
    user: &ConsoleUser,
    err: ApiError,
    form: Option<(String, Map<String, Value>)>,
) -> Result<Response, PageError> {
    let public = err.public();
    // A 422 names its field: the message goes beside that field too.
    let invalid = public
        .details
        .get("field")
        .and_then(Value::as_str)
        .map(|f| {
            let why = public
                .details
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or("invalid");
            (f.to_owned(), why.to_owned())
        });
    let (code, n) = Notice::from_public(public);
    let outcome = Outcome {
        notice: Some(n),
        test: None,
        form,
        invalid,
        preview: None,
    };
    render(state, user, code, outcome).await
}

/// The form's config rendered into a sample order, shown above the form.
async fn preview_form(
    state: &AppState,
    user: &ConsoleUser,
    slug: String,
    body: &Map<String, Value>,
    shown: Map<String, Value>,
) -> Result<Response, PageError> {
    let org_id = user.auth.org_id();
    match state
        .previews
        .sample(org_id, PreviewWith::Unsaved(body))
        .await
    {
        Ok(p) => {
            let outcome = Outcome {
                preview: Some(Ok(p)),
                form: Some((slug, shown)),
                ..Outcome::default()
            };
            render(state, user, StatusCode::OK, outcome).await
        }
        Err(err) => refused(state, user, err.into(), Some((slug, shown))).await,
    }
}

/// The form's config tested without saving it.
async fn test_form(
    state: &AppState,
    user: &ConsoleUser,
    slug: String,
    mut body: Map<String, Value>,
    shown: Map<String, Value>,
) -> Result<Response, PageError> {
    body.remove("test_on_save");
    let (actor, org_id) = (user.auth.actor(), user.auth.org_id());
    match state
        .connections
        .test(&actor, org_id, &slug, Some(body))
        .await
    {
        Ok(result) => {
            let outcome = Outcome {
                test: Some(result),
                form: Some((slug, shown)),
                ..Outcome::default()
            };
            render(state, user, StatusCode::OK, outcome).await
        }
        Err(err) => refused(state, user, err.into(), Some((slug, shown))).await,
    }
}

/// `POST /ui/connector/{slug}`: save the form, or test it without saving (`intent=test`).
pub async fn submit(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    SignedForm { user, fields }: SignedForm,
) -> Result<Response, PageError> {
    user.auth
        .require(Role::CONNECTOR_MANAGERS)
        .or_page(&state, &user)?;
    let Some(connector) = state.connections.registry().by_slug(&slug).cloned() else {
        return Err(PageError::new(
            &state,
            Some(&user),
            ApiError::NotFound("Unknown connector type".into()),
        ));
    };
    let body = body_from_form(
        &crate::formats::connection_schema(connector.config_schema()),
        &fields,
    );
    let mut shown = body.clone();
    for secret in connector.secret_fields() {
        shown.remove(*secret);
    }
    let actor = user.auth.actor();
    let org_id = user.auth.org_id();
    match fields.get("intent").map(String::as_str) {
        Some("preview") => return preview_form(&state, &user, slug, &body, shown).await,
        Some("test") => return test_form(&state, &user, slug, body, shown).await,
        _ => {}
    }
    match state.connections.save(&actor, org_id, &slug, body).await {
        Ok(SaveOutcome::Saved {
            generated_secrets, ..
        }) if !generated_secrets.is_empty() => {
            // Shown this once (the page is no-store); never again.
            let shown_once = generated_secrets
                .iter()
                .map(|(k, v)| format!("{k}: {}", value_text(Some(v))))
                .collect::<Vec<_>>()
                .join("; ");
            let outcome = Outcome {
                notice: Some(Notice::Done(format!(
                    "Saved. Generated, shown only now — give it to the ERP: {shown_once}"
                ))),
                ..Outcome::default()
            };
            render(&state, &user, StatusCode::OK, outcome).await
        }
        Ok(SaveOutcome::Saved { .. }) => {
            Ok(Redirect::to("/ui/connector?done=saved").into_response())
        }
        Ok(SaveOutcome::TestFailed(result)) => {
            let outcome = Outcome {
                notice: Some(Notice::Error(
                    "The test failed, so nothing was saved.".into(),
                )),
                test: Some(result),
                form: Some((slug.clone(), shown)),
                ..Outcome::default()
            };
            render(&state, &user, StatusCode::BAD_REQUEST, outcome).await
        }
        Err(err) => refused(&state, &user, err.into(), Some((slug.clone(), shown))).await,
    }
}

/// `POST /ui/connector/{slug}/{test|disable|reset-trust|poll-acks}`.
pub async fn act(
    State(state): State<AppState>,
    Path((slug, action)): Path<(String, String)>,
    SignedForm { user, .. }: SignedForm,
) -> Result<Response, PageError> {
    let actor = user.auth.actor();
    let org_id = user.auth.org_id();
    if action == "poll-acks" {
        let polled = match user.auth.require(Role::DRAFT_WRITERS) {
            Ok(()) => state
                .ack_polls
                .poll_now(org_id, &slug)
                .await
                .map_err(ApiError::from),
            Err(refused) => Err(refused),
        };
        return match polled {
            Ok(c) => {
                let n = Notice::Done(format!(
                    "Acknowledgements checked: {} booked, {} rejected, {} unreadable, {} unmatched, {} waiting for delivery.",
                    c.processed, c.rejected, c.malformed, c.unmatched, c.waiting
                ));
                render(
                    &state,
                    &user,
                    StatusCode::OK,
                    Outcome {
                        notice: Some(n),
                        ..Outcome::default()
                    },
                )
                .await
            }
            Err(err) => refused(&state, &user, err, None).await,
        };
    }
    user.auth
        .require(Role::CONNECTOR_MANAGERS)
        .or_page(&state, &user)?;
    let done = match action.as_str() {
        "test" => {
            return match state.connections.test(&actor, org_id, &slug, None).await {
                Ok(result) => {
                    render(
                        &state,
                        &user,
                        StatusCode::OK,
                        Outcome {
                            test: Some(result),
                            ..Outcome::default()
                        },
                    )
                    .await
                }
                Err(err) => refused(&state, &user, err.into(), None).await,
            };
        }
        "disable" => state
            .connections
            .disable(&actor, org_id, &slug)
            .await
            .map(|_| ()),
        "reset-trust" => reset_trust(&state, &user, &slug).await,
        _ => Err(ServiceError::NotFound("No such action".into())),
    };
    match done {
        Ok(()) => Ok(Redirect::to(&format!(
            "/ui/connector?done={}",
            if action == "disable" {
                "disabled"
            } else {
                "reset-trust"
            }
        ))
        .into_response()),
        Err(err) => refused(&state, &user, err.into(), None).await,
    }
}

/// Saves the stored config again with `host_key_fingerprint: null` (the API's deliberate
/// reset); the secrets stay, because the identity fields do not change.
async fn reset_trust(state: &AppState, user: &ConsoleUser, slug: &str) -> Result<(), ServiceError> {
    let details = state.connections.details(user.auth.org_id(), slug).await?;
    let mut body = details.config;
    body.insert("host_key_fingerprint".into(), Value::Null);
    state
        .connections
        .save(&user.auth.actor(), user.auth.org_id(), slug, body)
        .await
        .map(|_| ())
}

/// `POST /ui/connections/{id}/enable`.
pub async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { user, .. }: SignedForm,
) -> Result<Response, PageError> {
    let done = async {
        user.auth.require(Role::CONNECTOR_MANAGERS)?;
        let id = parse_uuid("id", &id)?;
        state
            .connections
            .enable(&user.auth.actor(), user.auth.org_id(), id)
            .await?;
        Ok::<_, ApiError>(())
    };
    match done.await {
        Ok(()) => Ok(Redirect::to("/ui/connector?done=enabled").into_response()),
        Err(err) => refused(&state, &user, err, None).await,
    }
}

/// `POST /ui/health/retry-now`: closes the org's active connection's circuit by hand, then
/// back to the page the button was on.
pub async fn retry_now(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    SignedForm { user, .. }: SignedForm,
) -> Result<Response, PageError> {
    let done = async {
        user.auth.require(Role::DELIVERY_OPERATORS)?;
        state
            .connections
            .retry_active(&user.auth.actor(), user.auth.org_id())
            .await?;
        Ok::<_, ApiError>(())
    };
    done.await.or_page(&state, &user)?;
    Ok(Redirect::to(back_to(&headers)).into_response())
}

/// The console page a form was sent from (its `Referer`, same-origin paths under `/ui/`
/// only), else the orders page.
fn back_to(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(axum::http::header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("/ui/").map(|i| &r[i..]))
        .filter(|p| p.bytes().all(|b| b.is_ascii_graphic()) && !p.contains("//"))
        .unwrap_or("/ui/drafts")
}
