//! The suppression list over HTTP: list (JSON or CSV), add, remove, import, incidents,
//! bulk removal.

use super::read::{limit, query_map};
use crate::app::{BulkRemove, bulk_selection, check_note, parse_import};
use crate::http::AppState;
use crate::http::csv::{csv_suppressions, wants_csv};
use crate::http::error::ApiError;
use crate::http::extract::{Caller, JsonBody, RAW_LIMIT, media_type, read_body};
use crate::model::{EmailAddress, Role};
use crate::store::{BulkOutcome, Incident, Page, SuppressionFilter, SuppressionRecord};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Body of a manual suppression.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSuppression {
    pub email: String,
    #[serde(default)]
    pub note: Option<String>,
}

fn address(field: &str, input: &str) -> Result<EmailAddress, ApiError> {
    EmailAddress::parse(input)
        .map_err(|e| ApiError::invalid(field, format!("not a valid address: {e}")))
}

fn suppression_filter(q: &HashMap<String, String>) -> Result<SuppressionFilter, ApiError> {
    let after =
        match q.get("cursor").filter(|c| !c.is_empty()) {
            Some(c) => {
                let parsed = c
                    .split_once('|')
                    .and_then(|(t, e)| Some((t.parse::<i64>().ok()?, e.to_owned())));
                Some(parsed.ok_or_else(|| {
                    ApiError::invalid("cursor", "not a cursor from a previous page")
                })?)
            }
            None => None,
        };
    Ok(SuppressionFilter {
        q: q.get("q")
            .filter(|s| !s.trim().is_empty())
            .map(|s| crate::model::truncate(s.trim(), 320).to_owned()),
        limit: limit(q, 50, 500)?,
        after,
    })
}

/// Lists suppressions, newest first; `Accept: text/csv` streams them all.
#[utoipa::path(get, path = "/api/v1/suppressions", tag = "suppressions",
    params(("q" = Option<String>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 500), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<SuppressionRecord>)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let filter = suppression_filter(&query_map(raw)?)?;
    if wants_csv(&headers) {
        return Ok(csv_suppressions(state, filter));
    }
    Ok(Json(state.store.suppressions(filter).await?).into_response())
}

/// Suppresses an address by hand (201); 409 when already suppressed.
#[utoipa::path(post, path = "/api/v1/suppressions", tag = "suppressions",
    request_body = AddSuppression,
    responses((status = 201, body = SuppressionRecord), (status = 409, body = crate::http::error::ErrorBody), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn add(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<AddSuppression>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let email = address("email", &body.email)?;
    let note = check_note(body.note.as_deref(), false)?;
    let record = state.suppress_by_hand(email, note, caller.name()).await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// Unsuppresses an address; the note is required and audited.
#[utoipa::path(delete, path = "/api/v1/suppressions/{email}", tag = "suppressions",
    params(("email" = String, Path), ("note" = String, Query, description = "Why (required)")),
    responses((status = 200, body = SuppressionRecord), (status = 404, body = crate::http::error::ErrorBody), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(email): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SuppressionRecord>, ApiError> {
    caller.require(Role::Admin)?;
    let q = query_map(raw)?;
    let email =
        EmailAddress::parse(&email).map_err(|_| ApiError::NotFound("suppression".into()))?;
    // An address that is not suppressed is 404 whatever the note says.
    if state.store.suppression(email.clone()).await?.is_none() {
        return Err(ApiError::NotFound("suppression".into()));
    }
    let note = check_note(q.get("note").map(String::as_str), true)?.unwrap_or_default();
    Ok(Json(state.unsuppress(email, note, caller.name()).await?))
}

/// `{added, already_suppressed}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ImportResult {
    pub added: i64,
    pub already_suppressed: i64,
}

/// Imports `email[,reason][,note]` rows, all or none.
#[utoipa::path(post, path = "/api/v1/suppressions/import", tag = "suppressions",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportResult), (status = 415, body = crate::http::error::ErrorBody), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportResult>, ApiError> {
    caller.require(Role::Admin)?;
    if media_type(&headers).as_deref() != Some("text/csv") {
        return Err(ApiError::UnsupportedMediaType(
            "send Content-Type: text/csv".into(),
        ));
    }
    let bytes = read_body(body, RAW_LIMIT, "10 MiB").await?;
    let rows = parse_import(&bytes)?;
    let (added, already_suppressed) = state.import_suppressions(rows, caller.name()).await?;
    Ok(Json(ImportResult {
        added,
        already_suppressed,
    }))
}

/// Query of incidents.
#[utoipa::path(get, path = "/api/v1/suppressions/incidents", tag = "suppressions",
    params(("window" = Option<String>, Query, description = "24h, 7d or 30d", pattern = "^(24h|7d|30d)$")),
    responses((status = 200, body = IncidentList)),
    security(("bearer" = [])))]
pub async fn incidents(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<IncidentList>, ApiError> {
    caller.require(Role::Viewer)?;
    let q = query_map(raw)?;
    let (_, hours) = super::read::window(&HashMap::from([(
        "window".to_owned(),
        q.get("window").cloned().unwrap_or_else(|| "7d".into()),
    )]))?;
    let since = crate::store::now_micros() - hours * 3_600_000_000;
    Ok(Json(IncidentList {
        items: state.store.incidents(since).await?,
    }))
}

/// `{items}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IncidentList {
    pub items: Vec<Incident>,
}

/// `{removed}`, or for a dry run `{would_remove, sample}`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BulkRemoveResult {
    /// What was removed.
    Removed { removed: usize },
    /// What a dry run would remove: how many, and some of them.
    DryRun {
        would_remove: usize,
        sample: Vec<String>,
    },
}

impl BulkRemoveResult {
    /// The answer for an outcome of the store.
    pub fn of(outcome: BulkOutcome) -> BulkRemoveResult {
        if outcome.dry_run {
            BulkRemoveResult::DryRun {
                would_remove: outcome.addresses.len(),
                sample: outcome
                    .addresses
                    .into_iter()
                    .take(crate::store::BULK_SAMPLE)
                    .collect(),
            }
        } else {
            BulkRemoveResult::Removed {
                removed: outcome.addresses.len(),
            }
        }
    }
}

/// Unsuppresses exactly the `ids`, or every match of the filters (which never take a
/// `complaint` or `manual` suppression unless `reason` names it), in one transaction.
#[utoipa::path(post, path = "/api/v1/suppressions/bulk-remove", tag = "suppressions",
    request_body = BulkRemove,
    responses((status = 200, body = BulkRemoveResult), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn bulk_remove(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<BulkRemove>,
) -> Result<Json<BulkRemoveResult>, ApiError> {
    caller.require(Role::Admin)?;
    let note = check_note(Some(&body.note), true)?.unwrap_or_default();
    let dry_run = body.dry_run;
    let selection = bulk_selection(body)?;
    let outcome = state
        .bulk_remove(selection, note, caller.name(), dry_run)
        .await?;
    Ok(Json(BulkRemoveResult::of(outcome)))
}
