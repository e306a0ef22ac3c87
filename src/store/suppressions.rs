//! The suppression list: manual adds and removals, CSV import, bulk removal, incidents.
//!
//! Every change is audited in the same transaction, and every add or removal is also
//! logged in `suppression_events` so the overview can chart suppression growth.

use super::audit::audit;
use super::db::{Db, OptionalExtension, params};
use super::records::{SUPPRESSION_COLUMNS, page, suppression_from_row};
use super::time::{Micros, format_time, now_micros};
use super::{Page, Store, StoreError, SuppressionRecord};
use crate::model::{EmailAddress, SuppressionReason};
use serde::Serialize;
use std::collections::BTreeMap;

pub(crate) fn suppression_reason(
    conn: &Db,
    email: &str,
) -> Result<Option<SuppressionReason>, StoreError> {
    let reason: Option<String> = conn
        .prepare_cached("SELECT reason FROM suppressions WHERE email = ?1")?
        .query_row(params![email], |r| r.get(0))
        .optional()?;
    reason
        .map(|r| r.parse().map_err(|e| StoreError::Corrupt(format!("{e}"))))
        .transpose()
}

/// Filters of `GET /api/v1/suppressions`.
#[derive(Clone, Debug, Default)]
pub struct SuppressionFilter {
    pub q: Option<String>,
    pub limit: usize,
    pub after: Option<(Micros, String)>,
}

/// Suppressions sharing a cause (SPEC §5 incidents).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Incident {
    pub cause: String,
    pub count: i64,
    pub first_at: String,
    pub last_at: String,
    pub sample: Vec<String>,
    /// Its suppressions (their addresses): what `bulk-remove` `{ids}` removes.
    pub ids: Vec<String>,
}

/// A suppression to insert.
#[derive(Clone, Debug)]
pub struct NewSuppression {
    pub email: EmailAddress,
    pub reason: SuppressionReason,
    pub smtp_code: Option<i64>,
    pub enhanced_code: Option<String>,
    pub response: Option<String>,
    pub remote_host: Option<String>,
    pub stage: Option<String>,
    pub decision_id: Option<String>,
    pub note: Option<String>,
    pub evidence: Option<String>,
    /// When it ends by itself (a full mailbox, SPEC §11); `None`: never.
    pub expires_at: Option<Micros>,
}

impl NewSuppression {
    /// A suppression with only an address, a reason and a note.
    pub fn plain(email: EmailAddress, reason: SuppressionReason, note: Option<String>) -> Self {
        NewSuppression {
            email,
            reason,
            smtp_code: None,
            enhanced_code: None,
            response: None,
            remote_host: None,
            stage: None,
            decision_id: None,
            note,
            evidence: None,
            expires_at: None,
        }
    }
}

/// Filters of bulk-remove (SPEC §5); at least one must be set.
#[derive(Clone, Debug, Default)]
pub struct BulkRemoveFilter {
    pub reason: Option<SuppressionReason>,
    pub smtp_code: Option<i64>,
    pub enhanced_code: Option<String>,
    pub domain: Option<String>,
    pub remote_host: Option<String>,
    pub since: Option<Micros>,
    pub until: Option<Micros>,
}

/// Inserts a suppression unless the address is already suppressed; returns whether it
/// was added. A suppression that ends by itself (a full mailbox) is replaced by one
/// that does not (a hard bounce of the same address): the address is bad for good.
pub(crate) fn insert_suppression(
    conn: &Db,
    s: &NewSuppression,
    now: Micros,
) -> Result<bool, StoreError> {
    let added =
        conn.prepare_cached(
            "INSERT INTO suppressions (email, domain, reason, smtp_code, enhanced_code, response,
                 remote_host, stage, suppressed_at, decision_id, note, evidence, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (email) DO UPDATE SET reason = excluded.reason,
                 smtp_code = excluded.smtp_code, enhanced_code = excluded.enhanced_code,
                 response = excluded.response, remote_host = excluded.remote_host,
                 stage = excluded.stage, suppressed_at = excluded.suppressed_at,
                 decision_id = excluded.decision_id, note = excluded.note,
                 evidence = excluded.evidence, expires_at = NULL
             WHERE suppressions.expires_at IS NOT NULL AND excluded.expires_at IS NULL",
        )?
        .execute(params![
            s.email.as_str(),
            s.email.domain(),
            s.reason.as_str(),
            s.smtp_code,
            s.enhanced_code,
            s.response,
            s.remote_host,
            s.stage,
            now,
            s.decision_id,
            s.note,
            s.evidence,
            s.expires_at
        ])? == 1;
    if added {
        log_event(conn, s.email.as_str(), true, s.reason.as_str(), now)?;
    }
    Ok(added)
}

pub(super) fn log_event(
    conn: &Db,
    email: &str,
    added: bool,
    reason: &str,
    now: Micros,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO suppression_events (email, added, reason, at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![email, added, reason, now])?;
    super::webhooks::emit_suppression(conn, email, added, reason, now)?;
    Ok(())
}

/// `text` with LIKE's wildcards (and the escape character) escaped by `\\`, so a
/// search for `john_doe` finds exactly that.
pub(super) fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn get(conn: &Db, email: &str) -> Result<Option<SuppressionRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SUPPRESSION_COLUMNS} FROM suppressions WHERE email = ?1"
        ))?
        .query_row(params![email], suppression_from_row)
        .optional()?)
}

impl Store {
    /// A page of suppressions, newest first, optionally matching `q` in the address.
    pub async fn suppressions(
        &self,
        filter: SuppressionFilter,
    ) -> Result<Page<SuppressionRecord>, StoreError> {
        self.read(move |conn| {
            let (at, email) = filter.after.clone().unwrap_or((i64::MAX, String::new()));
            let q = filter
                .q
                .as_deref()
                .map(|q| format!("%{}%", like_escape(&q.to_lowercase())));
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SUPPRESSION_COLUMNS} FROM suppressions
                 WHERE (CAST(?1 AS TEXT) IS NULL OR email LIKE ?1 ESCAPE '\\')
                   AND (suppressed_at < ?2 OR (suppressed_at = ?2 AND email > ?3))
                 ORDER BY suppressed_at DESC, email LIMIT ?4"
            ))?;
            let items = stmt
                .query_map(
                    params![q, at, email, filter.limit as i64 + 1],
                    suppression_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(page(items, filter.limit, |s| {
                format!("{}|{}", s.suppressed_at_micros, s.email)
            }))
        })
        .await
    }

    /// One suppression.
    pub async fn suppression(
        &self,
        email: EmailAddress,
    ) -> Result<Option<SuppressionRecord>, StoreError> {
        self.read(move |conn| get(conn, email.as_str())).await
    }

    /// Adds a suppression by hand (or from the CLI); `Conflict` if already suppressed.
    pub async fn suppress(
        &self,
        s: NewSuppression,
        who: String,
    ) -> Result<SuppressionRecord, StoreError> {
        self.write(move |conn| {
            if !insert_suppression(conn, &s, now_micros())? {
                return Err(StoreError::Conflict(format!(
                    "{} is already suppressed",
                    s.email
                )));
            }
            audit(
                conn,
                &who,
                "suppression.add",
                Some(s.email.as_str()),
                s.note.as_deref(),
                Some(&serde_json::json!({"reason": s.reason})),
            )?;
            get(conn, s.email.as_str())?.ok_or(StoreError::NotFound("suppression"))
        })
        .await
    }

    /// Removes a suppression (unsuppress); audited with its note.
    pub async fn unsuppress(
        &self,
        email: EmailAddress,
        note: String,
        who: String,
    ) -> Result<SuppressionRecord, StoreError> {
        self.write(move |conn| {
            let record = get(conn, email.as_str())?.ok_or(StoreError::NotFound("suppression"))?;
            conn.execute("DELETE FROM suppressions WHERE email = ?1", params![email.as_str()])?;
            log_event(conn, email.as_str(), false, record.reason.as_str(), now_micros())?;
            audit(conn, &who, "suppression.remove", Some(email.as_str()), Some(&note), Some(&serde_json::json!({
                "reason": record.reason, "smtp_code": record.smtp_code, "enhanced_code": record.enhanced_code,
                "response": record.response, "suppressed_at": record.suppressed_at,
            })))?;
            Ok(record)
        })
        .await
    }

    /// Imports rows all-or-none; returns (added, already_suppressed).
    pub async fn import_suppressions(
        &self,
        rows: Vec<NewSuppression>,
        who: String,
    ) -> Result<(i64, i64), StoreError> {
        self.write(move |conn| {
            let now = now_micros();
            let (mut added, mut already) = (0, 0);
            for row in &rows {
                if insert_suppression(conn, row, now)? {
                    added += 1;
                } else {
                    already += 1;
                }
            }
            audit(
                conn,
                &who,
                "suppression.import",
                None,
                None,
                Some(&serde_json::json!({"added": added, "already_suppressed": already})),
            )?;
            Ok((added, already))
        })
        .await
    }

    /// Bounce suppressions (`hard_bounce`, `bounce_report`) since `since`, grouped by
    /// shared cause within one hour, largest first (SPEC §15).
    pub async fn incidents(&self, since: Micros) -> Result<Vec<Incident>, StoreError> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT email, domain, reason, remote_host, enhanced_code, smtp_code, suppressed_at
                     FROM suppressions WHERE suppressed_at >= ?1 AND reason IN ('hard_bounce', 'bounce_report')
                     ORDER BY suppressed_at LIMIT 200000",
                )?
                .query_map(params![since], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?, r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<i64>>(5)?, r.get::<_, i64>(6)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(group_incidents(rows))
        })
        .await
    }
}

type IncidentRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Micros,
);

/// Groups suppressions by (host or domain, enhanced status); a group is split
/// where more than an hour passes between one suppression and the group's first.
fn group_incidents(rows: Vec<IncidentRow>) -> Vec<Incident> {
    const HOUR: Micros = 3600 * 1_000_000;
    struct Open {
        incident: Incident,
        first: Micros,
    }
    let mut open: BTreeMap<String, Open> = BTreeMap::new();
    let mut done = Vec::new();
    for (email, domain, _reason, host, enhanced, code, at) in rows {
        let place = host
            .clone()
            .map(|h| format!("host {h}"))
            .unwrap_or_else(|| format!("domain {domain}"));
        let status = enhanced
            .clone()
            .or(code.map(|c| c.to_string()))
            .unwrap_or_else(|| "no status".into());
        let cause = format!("{place}, {status}");
        if let Some(current) = open.get(&cause)
            && at - current.first > HOUR
            && let Some(finished) = open.remove(&cause)
        {
            done.push(finished.incident);
        }
        let entry = open.entry(cause.clone()).or_insert_with(|| Open {
            incident: Incident {
                cause,
                count: 0,
                first_at: format_time(at),
                last_at: String::new(),
                sample: Vec::new(),
                ids: Vec::new(),
            },
            first: at,
        });
        entry.incident.count += 1;
        entry.incident.last_at = format_time(at);
        if entry.incident.sample.len() < 5 {
            entry.incident.sample.push(email.clone());
        }
        entry.incident.ids.push(email);
    }
    done.extend(open.into_values().map(|o| o.incident));
    done.sort_by(|a, b| b.count.cmp(&a.count).then(b.last_at.cmp(&a.last_at)));
    done
}
