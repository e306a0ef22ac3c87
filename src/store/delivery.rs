//! The store side of delivery: attempts, leases and status changes.

use super::time::format_time;
use super::StoreError;
use rusqlite::Connection;
use serde::Serialize;

/// One SMTP delivery try (SPEC §1 attempt).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    pub at: String,
    pub server: Option<String>,
    pub stage: Option<String>,
    pub smtp_code: Option<i64>,
    pub enhanced_code: Option<String>,
    pub reply: Option<String>,
    pub outcome: String,
    pub copy_outcome: Option<String>,
}

/// A decision leased for delivery.
#[derive(Clone, Debug)]
pub struct LeasedDecision {
    pub decision: super::DecisionRecord,
}

/// How long a lease lasts.
#[derive(Clone, Copy, Debug)]
pub struct Lease {
    pub micros: i64,
}

/// The attempts of a decision, oldest first.
pub(crate) fn attempts_of(conn: &Connection, decision_id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT finished_at, server, stage, smtp_code, enhanced_code, reply, outcome, copy_outcome
         FROM attempts WHERE decision_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([decision_id], |r| {
        Ok(AttemptRecord {
            at: format_time(r.get(0)?),
            server: r.get(1)?,
            stage: r.get(2)?,
            smtp_code: r.get(3)?,
            enhanced_code: r.get(4)?,
            reply: r.get(5)?,
            outcome: r.get(6)?,
            copy_outcome: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
