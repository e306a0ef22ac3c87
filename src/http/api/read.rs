//! Look-ups: `why`, decisions (JSON pages or a CSV stream), one decision, stats, audit.

use crate::http::AppState;
use crate::http::csv::{csv_decisions, wants_csv};
use crate::http::error::ApiError;
use crate::http::extract::Caller;
use crate::model::{EmailAddress, ProjectKey, Role};
use crate::store::{
    AuditEntry, DecisionFilter, DecisionRecord, Page, Stats, parse_cursor, parse_query_time,
};
use crate::why::WhyAnswer;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
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
