//! The outbox's reads: a filtered page of decisions, one decision with its attempts,
//! and the parsers of the list's cursor and times.

use super::db::{Db, OptionalExtension, params};
use super::filter::Filter;
use super::records::{DECISION_COLUMNS, DecisionRecord, Page, decision_from_row, page};
use super::time::{Micros, parse_time};
use super::{Store, StoreError};
use crate::model::{Channel, ReasonCode, Status};

/// Filters of `GET /api/v1/decisions` (SPEC §5), already checked.
#[derive(Clone, Debug, Default)]
pub struct DecisionFilter {
    /// Normalized recipient, or a raw input to find invalid ones.
    pub email: Option<String>,
    /// The dashboard's partial address: `@domain` matches a domain, anything else the
    /// start of an address (or a whole invalid input).
    pub email_part: Option<String>,
    pub project: Option<String>,
    pub status: Option<Status>,
    pub reason: Option<ReasonCode>,
    pub channel: Option<Channel>,
    pub since: Option<Micros>,
    pub until: Option<Micros>,
    /// 1 to 500.
    pub limit: usize,
    /// Only rows older than this `seq` (the previous page's `next_cursor`).
    pub before: Option<i64>,
}

impl Store {
    /// A page of decisions, newest first.
    pub async fn decisions(
        &self,
        filter: DecisionFilter,
    ) -> Result<Page<DecisionRecord>, StoreError> {
        self.read(move |conn| list_decisions(conn, &filter)).await
    }

    /// Whether a decision with this id exists (the bounce door's `RCPT TO` check).
    pub async fn decision_exists(&self, id: String) -> Result<bool, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM decisions WHERE id = ?1")?
                .query_row(params![&id], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    /// One decision with its attempts.
    pub async fn decision(&self, id: String) -> Result<DecisionRecord, StoreError> {
        self.read(move |conn| {
            let mut decision = conn
                .prepare_cached(&format!(
                    "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ?1"
                ))?
                .query_row(params![&id], decision_from_row)
                .optional()?
                .ok_or(StoreError::NotFound("decision"))?;
            decision.attempts = Some(super::delivery::attempts_of(conn, &decision.id)?);
            Ok(decision)
        })
        .await
    }
}

fn list_decisions(conn: &Db, f: &DecisionFilter) -> Result<Page<DecisionRecord>, StoreError> {
    let mut w = decision_where(f);
    if let Some(before) = f.before {
        w.push("seq < $", Box::new(before));
    }
    let sql = format!(
        "SELECT {DECISION_COLUMNS} FROM decisions {} ORDER BY seq DESC LIMIT ?{}",
        w.sql(),
        w.next_index()
    );
    w.push_value(Box::new(f.limit as i64 + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    let items = stmt
        .query_map(&w.params(), decision_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page(items, f.limit, |d| d.seq.to_string()))
}

/// The WHERE clause of a decision filter, without its page position (`before`).
pub(crate) fn decision_where(f: &DecisionFilter) -> Filter {
    let mut w = Filter::default();
    if let Some(email) = &f.email {
        w.push(
            "(recipient = $ OR (recipient IS NULL AND input = $))",
            Box::new(email.clone()),
        );
    }
    if let Some(part) = &f.email_part {
        let escaped = super::suppressions::like_escape(&part.to_lowercase());
        let pattern = match escaped.strip_prefix('@') {
            Some(domain) => format!("%@{domain}"),
            None => format!("{escaped}%"),
        };
        w.push_value(Box::new(part.clone()));
        let raw = w.next_index() - 1;
        w.push(
            &format!("(recipient LIKE $ ESCAPE '\\' OR (recipient IS NULL AND input = ?{raw}))"),
            Box::new(pattern),
        );
    }
    if let Some(project) = &f.project {
        w.push("project = $", Box::new(project.clone()));
    }
    if let Some(status) = f.status {
        w.push("status = $", Box::new(status.as_str()));
    }
    if let Some(reason) = f.reason {
        w.push(
            "(',' || reasons || ',') LIKE $",
            Box::new(format!("%,{reason},%")),
        );
    }
    if let Some(channel) = f.channel {
        w.push("channel = $", Box::new(channel.as_str()));
    }
    if let Some(since) = f.since {
        w.push("created_at >= $", Box::new(since));
    }
    if let Some(until) = f.until {
        w.push("created_at < $", Box::new(until));
    }
    w
}

/// Parses a decisions cursor.
pub fn parse_cursor(cursor: &str) -> Option<i64> {
    cursor.parse().ok().filter(|n: &i64| *n > 0)
}

/// Parses RFC 3339 query times, for the HTTP layer's validation.
pub fn parse_query_time(s: &str) -> Option<Micros> {
    parse_time(s)
}
