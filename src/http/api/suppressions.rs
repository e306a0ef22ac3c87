//! The suppression list over HTTP: list (JSON or CSV), add, remove, import, incidents,
//! bulk removal.

use super::read::{csv_safe, limit, query_map, stream_csv, wants_csv};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{Caller, JsonBody, RAW_LIMIT, media_type, read_body};
use crate::model::{EmailAddress, Role, SuppressionReason};
use crate::store::{
    BulkOutcome, BulkRemoveFilter, BulkSelection, Incident, NewSuppression, Page,
    SuppressionFilter, SuppressionRecord, parse_query_time,
};
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

/// A note from a person: at most 1,000 characters, no control characters but newlines.
pub fn check_note(note: Option<&str>, required: bool) -> Result<Option<String>, ApiError> {
    match note.map(str::trim).filter(|n| !n.is_empty()) {
        None if required => Err(ApiError::invalid("note", "a note is required: say why")),
        None => Ok(None),
        Some(n) if n.chars().count() > 1000 => {
            Err(ApiError::invalid("note", "at most 1,000 characters"))
        }
        Some(n) if n.chars().any(|c| c.is_control() && c != '\n' && c != '\r') => Err(
            ApiError::invalid("note", "must not contain control characters"),
        ),
        Some(n) => Ok(Some(n.to_owned())),
    }
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

/// Every suppression matching `filter`, as CSV; the first three columns are what the
/// import reads back (SPEC §9).
pub fn csv_suppressions(state: AppState, filter: SuppressionFilter) -> Response {
    const HEADER: &[&str] = &[
        "email",
        "reason",
        "note",
        "smtp_code",
        "enhanced_code",
        "response",
        "remote_host",
        "stage",
        "suppressed_at",
        "decision_id",
    ];
    let page = move |cursor: Option<String>| {
        let mut filter = SuppressionFilter {
            limit: 500,
            ..filter.clone()
        };
        if let Some(after) = cursor
            .as_deref()
            .and_then(|c| c.split_once('|'))
            .and_then(|(t, e)| Some((t.parse().ok()?, e.to_owned())))
        {
            filter.after = Some(after);
        }
        let store = state.store.clone();
        async move { store.suppressions(filter).await }
    };
    stream_csv("suppressions.csv", HEADER, page, |s: &SuppressionRecord| {
        let text = |v: &Option<String>| csv_safe(v.as_deref().unwrap_or(""));
        vec![
            csv_safe(&s.email),
            s.reason.to_string(),
            text(&s.note),
            s.smtp_code.map(|c| c.to_string()).unwrap_or_default(),
            text(&s.enhanced_code),
            text(&s.response),
            text(&s.remote_host),
            text(&s.stage),
            s.suppressed_at.clone(),
            text(&s.decision_id),
        ]
    })
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

/// Parses an import file; the first bad line rejects the whole file (SPEC §9).
pub fn parse_import(bytes: &[u8]) -> Result<Vec<NewSuppression>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::Malformed("the CSV is not UTF-8".into()))?;
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // Line numbers count every line of the file from 1, blank ones and the header too
    // (SPEC §9), so each line is read on its own: no field of this format spans lines.
    for (i, raw_line) in text.split('\n').enumerate() {
        let line = i + 1;
        let raw_line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        if raw_line.trim().is_empty() {
            continue;
        }
        let at = |message: String| ApiError::invalid(format!("line {line}"), message);
        let record = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(raw_line.as_bytes())
            .records()
            .next()
            .transpose()
            .map_err(|e| at(format!("not valid CSV: {e}")))?
            .unwrap_or_default();
        let cells: Vec<&str> = record.iter().map(str::trim).collect();
        if line == 1
            && cells
                .first()
                .is_some_and(|c| c.eq_ignore_ascii_case("email"))
        {
            continue;
        }
        if cells.len() > 3 {
            return Err(at("at most three columns: email,reason,note".into()));
        }
        let first = cells.first().copied().unwrap_or("");
        let email = EmailAddress::parse(first).map_err(|e| {
            at(format!(
                "`{}` is not a valid address: {e}",
                crate::model::truncate(first, 80)
            ))
        })?;
        let reason = match cells.get(1).copied().unwrap_or("") {
            "" => SuppressionReason::Import,
            // A full mailbox's suppression ends by itself; only a bounce sets it.
            r => r
                .parse()
                .ok()
                .filter(|r| *r != SuppressionReason::MailboxFull)
                .ok_or_else(|| at(format!("unknown reason `{}`; use hard_bounce, bounce_report, complaint, manual or import", crate::model::truncate(r, 40))))?,
        };
        let note = check_note(cells.get(2).copied(), false).map_err(|e| at(e.to_string()))?;
        if seen.insert(email.clone()) {
            rows.push(NewSuppression::plain(email, reason, note));
        }
    }
    Ok(rows)
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

/// Body of bulk-remove: an incident's `ids`, or filters; a note; maybe a dry run.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRemove {
    /// Exactly these suppressions (their addresses, as an incident lists them).
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    pub reason: Option<SuppressionReason>,
    pub smtp_code: Option<i64>,
    pub enhanced_code: Option<String>,
    pub domain: Option<String>,
    pub remote_host: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub note: String,
    /// Count and sample what would be removed; change nothing.
    #[serde(default)]
    pub dry_run: bool,
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

/// Most `ids` one call takes.
pub const MAX_IDS: usize = 10_000;

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

/// Checks a bulk-remove body: `ids` alone, or at least one filter.
pub fn bulk_selection(mut body: BulkRemove) -> Result<BulkSelection, ApiError> {
    let Some(ids) = body.ids.take() else {
        return Ok(BulkSelection::Filter(bulk_filter(body)?));
    };
    let has_filter = body.reason.is_some()
        || body.smtp_code.is_some()
        || [
            &body.enhanced_code,
            &body.domain,
            &body.remote_host,
            &body.since,
            &body.until,
        ]
        .iter()
        .any(|f| f.as_deref().is_some_and(|s| !s.is_empty()));
    if has_filter {
        return Err(ApiError::invalid(
            "ids",
            "give either ids or filters, not both",
        ));
    }
    if ids.is_empty() {
        return Err(ApiError::invalid("ids", "name at least one suppression"));
    }
    if ids.len() > MAX_IDS {
        return Err(ApiError::invalid("ids", "at most 10,000 in one call"));
    }
    let ids = ids
        .iter()
        .map(|id| {
            EmailAddress::parse(id)
                .map(|a| a.as_str().to_owned())
                .map_err(|e| {
                    ApiError::invalid(
                        "ids",
                        format!(
                            "`{}` is not a suppressed address: {e}",
                            crate::model::truncate(id, 80)
                        ),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BulkSelection::Ids(ids))
}

/// Checks bulk-remove filters; at least one is needed.
pub fn bulk_filter(body: BulkRemove) -> Result<BulkRemoveFilter, ApiError> {
    let time = |name: &str, v: Option<String>| {
        v.filter(|s| !s.is_empty())
            .map(|s| {
                parse_query_time(&s)
                    .ok_or_else(|| ApiError::invalid(name, "must be an RFC 3339 time"))
            })
            .transpose()
    };
    let filter = BulkRemoveFilter {
        reason: body.reason,
        smtp_code: body.smtp_code,
        enhanced_code: body.enhanced_code.filter(|s| !s.is_empty()),
        domain: body
            .domain
            .filter(|s| !s.is_empty())
            .map(|d| d.to_ascii_lowercase()),
        remote_host: body.remote_host.filter(|s| !s.is_empty()),
        since: time("since", body.since)?,
        until: time("until", body.until)?,
    };
    let any = filter.reason.is_some()
        || filter.smtp_code.is_some()
        || filter.enhanced_code.is_some()
        || filter.domain.is_some()
        || filter.remote_host.is_some()
        || filter.since.is_some()
        || filter.until.is_some();
    if !any {
        return Err(ApiError::invalid(
            "filter",
            "name at least one filter (reason, smtp_code, enhanced_code, domain, remote_host, since, until)",
        ));
    }
    Ok(filter)
}
