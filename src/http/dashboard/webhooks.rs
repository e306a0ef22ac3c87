//! `/webhooks` (admin, SPEC §13): the subscriptions, a form to add one (its secret is
//! shown once, in the answer to that form, and never again), delete, and each
//! subscription's delivery log.

use super::error::PageError;
use super::form::Posted;
use super::session::{Flash, User};
use super::{Ctx, FormState, render, short_time};
use crate::http::AppState;
use crate::model::{Role, WebhookEvent};
use crate::store::{StoreError, WebhookDelivery, WebhookRecord};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use std::collections::HashMap;

/// One event checkbox of the add form.
struct EventChoice {
    name: &'static str,
    field: String,
    checked: bool,
}

struct Row {
    id: String,
    url: String,
    events: String,
    description: String,
    created: String,
}

struct LogRow {
    at: String,
    message_id: String,
    event: String,
    status: String,
    reply_code: String,
    error: String,
    took_ms: i64,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    ctx: Ctx,
    rows: Vec<Row>,
    more: bool,
    choices: Vec<EventChoice>,
    all_checked: bool,
    /// The subscription just created and its secret: shown in this answer only.
    created: Option<(String, String, String)>,
    /// The delivery log shown: (id, url, rows).
    log: Option<(String, String, Vec<LogRow>)>,
}

fn row(w: WebhookRecord) -> Row {
    Row {
        events: if w.events.iter().any(|e| e == "*") {
            "all events (*)".into()
        } else {
            w.events.join(", ")
        },
        description: w.description.unwrap_or_default(),
        created: short_time(&w.created_at),
        id: w.id,
        url: w.url,
    }
}

fn log_row(d: WebhookDelivery) -> LogRow {
    LogRow {
        at: short_time(&d.at),
        message_id: d.message_id,
        event: d.event,
        status: d.status,
        reply_code: d
            .reply_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "—".into()),
        error: d.error.unwrap_or_default(),
        took_ms: d.took_ms,
    }
}

fn field_of(e: WebhookEvent) -> String {
    format!("event_{}", e.as_str().replace('.', "_"))
}

async fn show(
    state: &AppState,
    ctx: Ctx,
    q: &HashMap<String, String>,
    created: Option<(String, String, String)>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let page = state.store.webhooks(200, None).await?;
    let failed = ctx.failed("add");
    let choices = WebhookEvent::ALL
        .iter()
        .map(|e| {
            let field = field_of(*e);
            EventChoice {
                name: e.as_str(),
                checked: failed && !ctx.val_or("add", &field, "").is_empty(),
                field,
            }
        })
        .collect();
    let all_checked = !failed || !ctx.val_or("add", "event_all", "").is_empty();
    let log = match q.get("log").filter(|id| !id.is_empty()) {
        Some(id) => match state.store.webhook(id.clone()).await {
            Ok(w) => {
                let deliveries = state
                    .store
                    .webhook_deliveries(id.clone(), 100, None)
                    .await?;
                Some((
                    w.id,
                    w.url,
                    deliveries.items.into_iter().map(log_row).collect(),
                ))
            }
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let view = WebhooksPage {
        more: page.next_cursor.is_some(),
        rows: page.items.into_iter().map(row).collect(),
        choices,
        all_checked,
        created,
        log,
        ctx,
    };
    let mut response = render(&view, &view.ctx, status)?;
    // The answer may hold a secret: never kept by a cache.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /webhooks` (admin); `?log=ID` adds that subscription's delivery log.
pub async fn page(
    State(state): State<AppState>,
    user: User,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    user.require(Role::Admin)?;
    show(
        &state,
        Ctx::new(&user, "webhooks", "Webhooks"),
        &q,
        None,
        StatusCode::OK,
    )
    .await
}

/// `POST /webhooks/add` (admin): answers the page itself, with the secret, instead of
/// a redirect, so the secret travels once and is stored nowhere but the database.
pub async fn add(State(state): State<AppState>, posted: Posted) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let mut events: Vec<String> = Vec::new();
    if form.checked("event_all") {
        events.push("*".into());
    } else {
        for e in WebhookEvent::ALL {
            if form.checked(&field_of(*e)) {
                events.push(e.as_str().to_owned());
            }
        }
    }
    let url = form.get("url").trim().to_owned();
    let description = form.opt("description").map(str::to_owned);
    match state
        .create_webhook(url, events, description, user.audit_name())
        .await
    {
        Ok(w) => {
            let secret = w.secret.clone().unwrap_or_default();
            let ctx = Ctx::new(&user, "webhooks", "Webhooks");
            show(
                &state,
                ctx,
                &HashMap::new(),
                Some((w.id, w.url, secret)),
                StatusCode::CREATED,
            )
            .await
        }
        Err(StoreError::Invalid { field, message }) => {
            let field = match field.as_str() {
                "events" => "events",
                "description" => "description",
                _ => "url",
            };
            let ctx = Ctx::new(&user, "webhooks", "Webhooks").with_form(FormState::failed(
                "add",
                &form,
                field,
                capitalized(&message),
            ));
            show(
                &state,
                ctx,
                &HashMap::new(),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

fn capitalized(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => format!(
            "{}{}.",
            first.to_uppercase(),
            chars.as_str().trim_end_matches('.')
        ),
        None => String::new(),
    }
}

/// `POST /webhooks/delete` (admin).
pub async fn delete(State(state): State<AppState>, posted: Posted) -> Result<Response, PageError> {
    let Posted { user, form } = posted;
    user.require(Role::Admin)?;
    let id = form.get("id").to_owned();
    match state.delete_webhook(id, user.audit_name()).await {
        Ok(()) => Ok(user.redirect(
            "/webhooks",
            Flash::ok("Deleted the subscription: it gets no more events, and its undelivered ones are dropped."),
        )),
        Err(StoreError::NotFound(_)) => Ok(user.redirect(
            "/webhooks",
            Flash::error("That subscription does not exist (any more)."),
        )),
        Err(e) => Err(e.into()),
    }
}
