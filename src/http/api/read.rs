//! Look-ups: `why`, decisions (JSON pages or a CSV stream), one decision, stats, audit.

use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::Caller;
use crate::model::{EmailAddress, ProjectKey, Role};
use crate::store::{
    AuditEntry, DecisionFilter, DecisionRecord, Page, Stats, parse_cursor, parse_query_time,
};
use crate::why::WhyAnswer;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

/// Query parameters as a map; unknown names are ignored, repeated ones take the last.
pub fn query_map(raw: Option<String>) -> Result<HashMap<String, String>, ApiError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw.as_deref().unwrap_or(""))
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|e| ApiError::Malformed(format!("bad query string: {e}")))
}

/// `limit`, 1 to `max`, default `default`.
pub fn limit(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::invalid("limit", format!("must be a whole number from 1 to {max}"))
            }),
    }
}

fn parsed<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    q.get(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| ApiError::invalid(name, e.to_string()))
        })
        .transpose()
}

fn time(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    q.get(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            parse_query_time(v).ok_or_else(|| {
                ApiError::invalid(name, "must be an RFC 3339 time, e.g. 2026-11-22T00:00:00Z")
            })
        })
        .transpose()
}

/// Answers why an address got (or did not get) an email.
#[utoipa::path(get, path = "/api/v1/why/{email}", tag = "why",
    params(("email" = String, Path, description = "The address"), ("project" = Option<String>, Query, description = "Preview this project too")),
    responses((status = 200, body = WhyAnswer), (status = 404, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn why(
    State(state): State<AppState>,
    caller: Caller,
    Path(email): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<WhyAnswer>, ApiError> {
    caller.require(Role::Viewer)?;
    let q = query_map(raw)?;
    let project = match q.get("project").filter(|p| !p.is_empty()) {
        Some(p) => {
            let key = ProjectKey::parse(p).map_err(|_| ApiError::NotFound("project".into()))?;
            state.store.project(key.clone()).await?;
            Some(key)
        }
        None => None,
    };
    Ok(Json(state.why(&email, project).await?))
}

/// Builds a decision filter from query parameters.
pub fn decision_filter(q: &HashMap<String, String>) -> Result<DecisionFilter, ApiError> {
    let email = q
        .get("email")
        .filter(|e| !e.is_empty())
        .map(|e| match EmailAddress::parse(e) {
            Ok(a) => a.as_str().to_owned(),
            Err(_) => crate::model::truncate(e.trim(), crate::model::RAW_INPUT_LIMIT).to_owned(),
        });
    let before = match q.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => Some(
            parse_cursor(c)
                .ok_or_else(|| ApiError::invalid("cursor", "not a cursor from a previous page"))?,
        ),
        None => None,
    };
    Ok(DecisionFilter {
        email,
        email_part: None,
        project: q.get("project").filter(|p| !p.is_empty()).cloned(),
        status: parsed(q, "status")?,
        reason: parsed(q, "reason")?,
        channel: parsed(q, "channel")?,
        since: time(q, "since")?,
        until: time(q, "until")?,
        limit: limit(q, 50, 500)?,
        before,
    })
}

/// Pages through the outbox, newest first; `Accept: text/csv` streams every match.
#[utoipa::path(get, path = "/api/v1/decisions", tag = "decisions",
    params(("email" = Option<String>, Query), ("project" = Option<String>, Query), ("status" = Option<String>, Query), ("reason" = Option<String>, Query),
           ("channel" = Option<String>, Query), ("since" = Option<String>, Query), ("until" = Option<String>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 500), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<DecisionRecord>, content_type = "application/json"), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn decisions(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let filter = decision_filter(&query_map(raw)?)?;
    if wants_csv(&headers) {
        return Ok(csv_decisions(state, filter));
    }
    Ok(Json(state.store.decisions(filter).await?).into_response())
}

/// The client asked for CSV.
pub fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("text/csv"))
}

/// Streams a paged listing as RFC 4180 CSV: `header`, then `row` of every item of every
/// page, fetched page by page so a million rows never sit in memory at once.
pub fn stream_csv<T, F, Fut>(
    filename: &'static str,
    header: &'static [&'static str],
    mut page: F,
    row: fn(&T) -> Vec<String>,
) -> Response
where
    T: Send + 'static,
    F: FnMut(Option<String>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Page<T>, crate::store::StoreError>> + Send,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let _ = writer.write_record(header);
        let mut cursor = None;
        loop {
            let current = match page(cursor.take()).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            for item in &current.items {
                let _ = writer.write_record(row(item));
            }
            if tx.send(Ok(take_csv(&mut writer))).await.is_err() {
                return;
            }
            match current.next_cursor {
                Some(next) => cursor = Some(next),
                None => return,
            }
        }
    });
    csv_response(Body::from_stream(tokio_stream_from(rx)), filename)
}

/// Every decision matching `filter`, as CSV.
pub fn csv_decisions(state: AppState, filter: DecisionFilter) -> Response {
    const HEADER: &[&str] = &[
        "id",
        "created_at",
        "project",
        "recipient",
        "input",
        "customer_id",
        "channel",
        "email_kind",
        "decision",
        "reasons",
        "status",
        "status_reason",
        "attempts_count",
        "next_attempt_at",
        "last_reply",
        "sent_at",
        "message_id",
    ];
    let page = move |cursor: Option<String>| {
        let mut filter = DecisionFilter {
            limit: 500,
            ..filter.clone()
        };
        filter.before = cursor.as_deref().and_then(parse_cursor).or(filter.before);
        let store = state.store.clone();
        async move { store.decisions(filter).await }
    };
    stream_csv("decisions.csv", HEADER, page, |d: &DecisionRecord| {
        let reasons = d
            .reasons
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let text = |s: &Option<String>| s.clone().unwrap_or_default();
        vec![
            d.id.clone(),
            d.created_at.clone(),
            d.project.clone(),
            csv_safe(d.recipient.as_deref().unwrap_or("")),
            csv_safe(&d.input),
            text(&d.customer_id),
            d.channel.to_string(),
            d.email_kind.to_string(),
            d.decision.to_string(),
            reasons,
            d.status.to_string(),
            d.status_reason.map(|r| r.to_string()).unwrap_or_default(),
            d.attempts_count.to_string(),
            text(&d.next_attempt_at),
            csv_safe(d.last_reply.as_deref().unwrap_or("")),
            text(&d.sent_at),
            text(&d.message_id),
        ]
    })
}

/// Takes what `writer` has buffered so far, leaving it empty for the next page.
pub fn take_csv(writer: &mut csv::Writer<Vec<u8>>) -> Vec<u8> {
    let _ = writer.flush();
    let next = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    std::mem::replace(writer, next)
        .into_inner()
        .unwrap_or_default()
}

/// A cell that a spreadsheet would run as a formula gets a leading quote (CSV injection).
pub fn csv_safe(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// Wraps a channel receiver as a stream for a response body.
pub fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A `text/csv` answer offered as a download.
pub fn csv_response(body: Body, filename: &str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// One decision with its attempts.
#[utoipa::path(get, path = "/api/v1/decisions/{id}", tag = "decisions",
    params(("id" = String, Path)),
    responses((status = 200, body = DecisionRecord), (status = 404, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn decision(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DecisionRecord>, ApiError> {
    caller.require(Role::Viewer)?;
    if id.len() > 64 {
        return Err(ApiError::NotFound("decision".into()));
    }
    Ok(Json(state.store.decision(id).await?))
}

/// Parses `window=24h|7d|30d`.
pub fn window(q: &HashMap<String, String>) -> Result<(String, i64), ApiError> {
    let w = q.get("window").map(String::as_str).unwrap_or("24h");
    let hours = match w {
        "24h" => 24,
        "7d" => 24 * 7,
        "30d" => 24 * 30,
        _ => return Err(ApiError::invalid("window", "must be 24h, 7d or 30d")),
    };
    Ok((w.to_owned(), hours))
}

/// Rates and counts over a window.
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats",
    params(("window" = Option<String>, Query, description = "24h, 7d or 30d", pattern = "^(24h|7d|30d)$")),
    responses((status = 200, body = Stats), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<Stats>, ApiError> {
    caller.require(Role::Viewer)?;
    let (name, hours) = window(&query_map(raw)?)?;
    Ok(Json(state.store.stats(name, hours).await?))
}

/// Admin actions, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 500), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<AuditEntry>)),
    security(("bearer" = [])))]
pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    caller.require(Role::Viewer)?;
    let q = query_map(raw)?;
    let before = match q.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => Some(
            parse_cursor(c)
                .ok_or_else(|| ApiError::invalid("cursor", "not a cursor from a previous page"))?,
        ),
        None => None,
    };
    Ok(Json(
        state.store.audit_log(limit(&q, 50, 500)?, before).await?,
    ))
}
