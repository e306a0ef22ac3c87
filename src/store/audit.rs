//! The audit log (SPEC §9): the row every admin write adds, and its listing.

use super::db::{Db, DbError, Row, params};
use super::records::{Page, page};
use super::time::{format_time, now_micros};
use super::{Store, StoreError};
use serde::Serialize;

/// Records an admin action (SPEC §5 audit: who, what, when, note).
pub(crate) fn audit(
    conn: &Db,
    who: &str,
    what: &str,
    target: Option<&str>,
    note: Option<&str>,
    detail: Option<&serde_json::Value>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit (at, who, what, target, note, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now_micros(),
        who,
        what,
        target,
        note,
        detail.map(|d| d.to_string())
    ])?;
    Ok(())
}

/// An audit entry (SPEC §9): `{id, who, what, target, note, when}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub who: String,
    pub what: String,
    pub target: Option<String>,
    pub note: Option<String>,
    pub when: String,
    /// Extra detail, e.g. the addresses of a bulk removal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// An audit row of `SELECT id, who, what, target, note, at, detail`.
pub(crate) fn audit_from_row(r: &Row<'_>) -> Result<AuditEntry, DbError> {
    let detail: Option<String> = r.get(6)?;
    Ok(AuditEntry {
        id: r.get(0)?,
        who: r.get(1)?,
        what: r.get(2)?,
        target: r.get(3)?,
        note: r.get(4)?,
        when: format_time(r.get(5)?),
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

impl Store {
    /// The audit log, newest first.
    pub async fn audit_log(
        &self,
        limit: usize,
        before: Option<i64>,
    ) -> Result<Page<AuditEntry>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, who, what, target, note, at, detail FROM audit
                 WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let items = stmt
                .query_map(
                    params![before.unwrap_or(i64::MAX), limit as i64 + 1],
                    audit_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(page(items, limit, |e| e.id.to_string()))
        })
        .await
    }
}
