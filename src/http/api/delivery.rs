//! The delivery side of the API: bounce and complaint reports, resend-skipped.

use super::read::query_map;
use crate::app::{IncomingBounce, ReportAnswer};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{Caller, JsonBody, RAW_LIMIT, idempotency_key, media_type, read_body};
use crate::model::{Channel, ProjectKey, ReasonCode, Role, Verdict};
use crate::store::{ResendSkippedOutcome, parse_query_time};
use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::Deserialize;

/// Takes a raw bounce: an RFC 3464 DSN or RFC 5965 ARF report (`message/rfc822`, or
/// `multipart/report`, also as its parts alone with the boundary in this header), or a
/// plain notice addressed to a VERP address (SPEC §11); suppresses the addresses it
/// proves bad and records it. 422 `not_a_report` when it is neither a report nor
/// carries a VERP address.
#[utoipa::path(post, path = "/api/v1/bounces", tag = "delivery",
    request_body(content = String, content_type = "message/rfc822", description = "The raw report"),
    responses((status = 200, body = ReportAnswer), (status = 413, body = crate::http::error::ErrorBody), (status = 415, body = crate::http::error::ErrorBody), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn bounces(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReportAnswer>, ApiError> {
    caller.require(Role::Admin)?;
    match media_type(&headers).as_deref() {
        Some("message/rfc822" | "multipart/report") => {}
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "send the raw report as message/rfc822 or multipart/report (got {})",
                other.unwrap_or("none")
            )));
        }
    }
    let bytes = read_body(body, RAW_LIMIT, "10 MiB").await?;
    // A multipart/report posted bare lacks its own header: give the parser one.
    let raw = if media_type(&headers).as_deref() == Some("multipart/report")
        && !looks_like_message(&bytes)
    {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("multipart/report");
        [
            format!("Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n").into_bytes(),
            bytes.to_vec(),
        ]
        .concat()
    } else {
        bytes.to_vec()
    };
    let answer = state
        .receive_bounce(
            IncomingBounce {
                raw,
                smtp_recipient: None,
            },
            &caller.name(),
        )
        .await?;
    Ok(Json(answer))
}

/// Whether `bytes` start with a header block of their own (a whole message), rather
/// than with a MIME preamble or the first `--boundary` line (a multipart report posted
/// as its parts, SPEC §11).
fn looks_like_message(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(2048)];
    let text = String::from_utf8_lossy(head);
    let Some(first) = text.lines().find(|l| !l.trim().is_empty()) else {
        return false;
    };
    let lower = first.to_ascii_lowercase();
    let is_field = first
        .split_once(':')
        .is_some_and(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()));
    is_field
        && !lower.starts_with("--")
        && text
            .lines()
            .take(60)
            .take_while(|l| !l.trim().is_empty())
            .any(|l| {
                let l = l.to_ascii_lowercase();
                l.starts_with("content-type:")
                    || l.starts_with("from:")
                    || l.starts_with("mime-version:")
                    || l.starts_with("to:")
                    || l.starts_with("subject:")
                    || l.starts_with("return-path:")
                    || l.starts_with("received:")
                    || l.starts_with("delivered-to:")
                    || l.starts_with("x-original-to:")
            })
}

/// Body of resend-skipped.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendSkipped {
    /// `outgoing_mail_disabled`, `invite_notification_disabled` or `verification_emails_disabled`.
    pub reason: ReasonCode,
    pub since: String,
    pub until: String,
    #[serde(default)]
    pub project: Option<String>,
}

/// Re-queues, as new resend decisions, what was skipped for `reason` in the window.
#[utoipa::path(post, path = "/api/v1/resend-skipped", tag = "delivery",
    request_body = ResendSkipped,
    responses((status = 200, body = ResendSkippedOutcome), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn resend_skipped(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    JsonBody(body): JsonBody<ResendSkipped>,
) -> Result<Json<ResendSkippedOutcome>, ApiError> {
    caller.require(Role::Admin)?;
    let _ = query_map(raw)?;
    if !matches!(
        body.reason,
        ReasonCode::OutgoingMailDisabled
            | ReasonCode::InviteNotificationDisabled
            | ReasonCode::VerificationEmailsDisabled
    ) {
        return Err(ApiError::invalid(
            "reason",
            "must be outgoing_mail_disabled, invite_notification_disabled or verification_emails_disabled",
        ));
    }
    let since = parse_query_time(&body.since)
        .ok_or_else(|| ApiError::invalid("since", "must be an RFC 3339 time"))?;
    let until = parse_query_time(&body.until)
        .ok_or_else(|| ApiError::invalid("until", "must be an RFC 3339 time"))?;
    if until <= since {
        return Err(ApiError::invalid("until", "must be after since"));
    }
    let project =
        match body.project.filter(|p| !p.is_empty()) {
            Some(p) => {
                let key = ProjectKey::parse(&p).map_err(|m| ApiError::invalid("project", m))?;
                state.store.project(key.clone()).await.map_err(|_| {
                    ApiError::invalid("project", format!("no project with key `{p}`"))
                })?;
                Some(key)
            }
            None => None,
        };
    let request = serde_json::json!([
        body.reason.as_str(),
        since,
        until,
        project.as_ref().map(|p| p.to_string()),
    ])
    .to_string();
    let idempotency = idempotency_key(&headers, &caller, "POST /resend-skipped", &request)?;
    let outcome = state
        .resend_skipped(
            body.reason,
            (since, until),
            project,
            caller.name(),
            idempotency,
        )
        .await?;
    if outcome.recorded {
        // Every blocked one was recorded as a skip decision, except non-members.
        let skipped: i64 = outcome
            .still_blocked
            .iter()
            .filter(|(reason, _)| reason.as_str() != "not_a_member")
            .map(|(_, n)| *n)
            .sum();
        for (verdict, n) in [(Verdict::Send, outcome.queued), (Verdict::Skip, skipped)] {
            state.metrics.decisions_recorded_n(
                verdict,
                Channel::Resend,
                u64::try_from(n).unwrap_or(0),
            );
        }
    }
    Ok(Json(outcome))
}
