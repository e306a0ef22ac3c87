//! The rows the store hands out, each with its column list and row mapper, shared by
//! every module that reads them (decisions, suppressions, webhooks, delivery, paging),
//! and [`page`], which cuts a `limit + 1` fetch into a [`Page`].

use super::db::{DbError, Row};
use super::time::{Micros, format_time};
use crate::model::{Channel, ReasonCode, Status, SuppressionReason};
use serde::Serialize;

/// One row of the outbox (SPEC §5 Decision JSON).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionRecord {
    pub id: String,
    pub created_at: String,
    pub project: String,
    pub recipient: Option<String>,
    pub input: String,
    pub customer_id: Option<String>,
    pub channel: Channel,
    pub email_kind: crate::model::EmailKind,
    pub decision: crate::model::Verdict,
    pub reasons: Vec<ReasonCode>,
    pub status: Status,
    pub status_reason: Option<crate::model::StatusReason>,
    pub attempts_count: i64,
    pub next_attempt_at: Option<String>,
    pub last_reply: Option<String>,
    pub sent_at: Option<String>,
    pub message_id: Option<String>,
    /// Present on `GET /decisions/{id}` and in `why`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<super::AttemptRecord>>,
    /// The display name given on input (used to greet the customer).
    #[serde(skip)]
    pub display_name: Option<String>,
    /// Internal order, for paging.
    #[serde(skip)]
    pub seq: i64,
}

pub(crate) const DECISION_COLUMNS: &str =
    "seq, id, created_at, project, recipient, input, customer_id, channel,
    email_kind, decision, reasons, status, status_reason, attempts_count, next_attempt_at,
    last_reply, sent_at, message_id, display_name";

pub(crate) fn decision_from_row(row: &Row<'_>) -> Result<DecisionRecord, DbError> {
    fn parse<T: std::str::FromStr>(row: &Row<'_>, i: usize) -> Result<T, DbError> {
        let s: String = row.get(i)?;
        s.parse().map_err(|_| DbError::Conversion {
            column: i,
            message: format!("unknown value `{s}`"),
        })
    }
    let reasons: String = row.get(10)?;
    Ok(DecisionRecord {
        seq: row.get(0)?,
        id: row.get(1)?,
        created_at: format_time(row.get(2)?),
        project: row.get(3)?,
        recipient: row.get(4)?,
        input: row.get(5)?,
        customer_id: row.get(6)?,
        channel: parse(row, 7)?,
        email_kind: parse(row, 8)?,
        decision: parse(row, 9)?,
        reasons: reasons.split(',').filter_map(|r| r.parse().ok()).collect(),
        status: parse(row, 11)?,
        status_reason: match row.get::<_, Option<String>>(12)? {
            Some(_) => Some(parse(row, 12)?),
            None => None,
        },
        attempts_count: row.get(13)?,
        next_attempt_at: row.get::<_, Option<i64>>(14)?.map(format_time),
        last_reply: row.get(15)?,
        sent_at: row.get::<_, Option<i64>>(16)?.map(format_time),
        message_id: row.get(17)?,
        display_name: row.get(18)?,
        attempts: None,
    })
}

/// A page of a list: `{items, next_cursor}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Cuts a `limit + 1` fetch into a page and its cursor.
pub(crate) fn page<T>(mut items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor)
    } else {
        None
    };
    Page { items, next_cursor }
}

/// A suppression (SPEC §9).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SuppressionRecord {
    pub email: String,
    pub reason: SuppressionReason,
    pub smtp_code: Option<i64>,
    pub enhanced_code: Option<String>,
    pub response: Option<String>,
    pub remote_host: Option<String>,
    pub stage: Option<String>,
    pub suppressed_at: String,
    pub decision_id: Option<String>,
    pub note: Option<String>,
    pub evidence: Option<String>,
    /// When the suppression ends by itself (RFC 3339): a full mailbox's (SPEC §11);
    /// null for every other reason.
    pub expires_at: Option<String>,
    #[serde(skip)]
    pub suppressed_at_micros: Micros,
}

pub(crate) const SUPPRESSION_COLUMNS: &str = "email, reason, smtp_code, enhanced_code, response,
    remote_host, stage, suppressed_at, decision_id, note, evidence, expires_at";

pub(crate) fn suppression_from_row(row: &Row<'_>) -> Result<SuppressionRecord, DbError> {
    let reason: String = row.get(1)?;
    let at: i64 = row.get(7)?;
    Ok(SuppressionRecord {
        email: row.get(0)?,
        reason: reason.parse().unwrap_or(SuppressionReason::Manual),
        smtp_code: row.get(2)?,
        enhanced_code: row.get(3)?,
        response: row.get(4)?,
        remote_host: row.get(5)?,
        stage: row.get(6)?,
        suppressed_at: format_time(at),
        decision_id: row.get(8)?,
        note: row.get(9)?,
        evidence: row.get(10)?,
        expires_at: row.get::<_, Option<i64>>(11)?.map(format_time),
        suppressed_at_micros: at,
    })
}
