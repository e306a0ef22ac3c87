//! Reads only the dashboard needs: the overview's figures in one pass, the count of
//! invitations skipped while outgoing mail was off, and when it was turned off.
//!
//! Every query here is bounded by an index range or a `LIMIT`, so a page stays fast
//! with a million decisions stored (SPEC §6).

use super::db::{OptionalExtension, params};
use super::time::{Micros, format_time, now_micros};
use super::{Store, StoreError};

/// The overview's figures over one window.
#[derive(Clone, Debug, Default)]
pub struct OverviewFacts {
    /// Start of the window.
    pub since: Micros,
    /// Width of one bucket of the series.
    pub bucket: Micros,
    /// `(bucket start, status, status_reason, count)` of the decisions created in the
    /// window, from one grouped scan of the `decisions_by_time` range.
    pub counts: Vec<(Micros, String, Option<String>, i64)>,
    /// `(bucket start, count)` of suppressions added in the window.
    pub suppressions_added: Vec<(Micros, i64)>,
    /// Complaints (suppressions with reason `complaint`) added in the window.
    pub complaints: i64,
    /// Suppressions on the list now.
    pub suppressions_total: i64,
    /// Decisions waiting for delivery now (queued, sending, deferred).
    pub queue_depth: i64,
    /// Sender-side failures in the window, one group per cause.
    pub sender_side: Vec<SenderSideGroup>,
}

/// Failed decisions with one sender-side cause (SPEC §4: `policy_rejected`,
/// `relay_rejected`): our mail was refused, the addresses are fine.
#[derive(Clone, Debug)]
pub struct SenderSideGroup {
    /// `policy_rejected` or `relay_rejected`.
    pub status_reason: String,
    /// The server's reply to the newest of them.
    pub reply: Option<String>,
    /// How many decisions failed this way.
    pub count: i64,
    /// RFC 3339: the start of the first bucket with one, and the time of the last.
    pub first_at: String,
    pub last_at: String,
}

/// When outgoing mail was off, as the site page shows it.
#[derive(Clone, Debug, Default)]
pub struct OutgoingMailHistory {
    /// When it was last turned off (from the audit log), if ever.
    pub off_since: Option<Micros>,
    /// When it was turned back on after that, if it was.
    pub back_on_at: Option<Micros>,
    /// Customers (per project) whose email was skipped with `outgoing_mail_disabled` in
    /// that period: what resend-skipped would resend (capped).
    pub skipped_invitations: i64,
    /// When what it skipped was last resent (an audited resend-skipped), if after the
    /// period began.
    pub resent_at: Option<String>,
}

/// Most rows the skipped-while-off count looks at; beyond it the page says "at least".
pub const SKIPPED_COUNT_CAP: i64 = 100_000;

impl Store {
    /// The overview's figures for the last `hours`, with hourly buckets up to a day and
    /// daily buckets beyond.
    pub async fn overview_facts(&self, hours: i64) -> Result<OverviewFacts, StoreError> {
        self.read(move |conn| {
            let now = now_micros();
            let hour = 3_600_000_000i64;
            let since = now - hours * hour;
            let bucket = if hours <= 24 { hour } else { 24 * hour };
            let mut facts = OverviewFacts {
                since,
                bucket,
                ..OverviewFacts::default()
            };
            let mut stmt = conn.prepare_cached(
                "SELECT created_at / ?2 * ?2 AS b, status, status_reason, count(*)
                 FROM decisions WHERE created_at >= ?1 GROUP BY b, status, status_reason",
            )?;
            facts.counts = stmt
                .query_map(params![since, bucket], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut stmt = conn.prepare_cached(
                "SELECT at / ?2 * ?2 AS b, count(*), coalesce(CAST(sum(CASE WHEN reason = 'complaint' THEN 1 ELSE 0 END) AS BIGINT), 0)
                 FROM suppression_events WHERE added = TRUE AND at >= ?1 GROUP BY b",
            )?;
            for row in stmt.query_map(params![since, bucket], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })? {
                let (b, n, complaints) = row?;
                facts.suppressions_added.push((b, n));
                facts.complaints += complaints;
            }
            facts.suppressions_total =
                conn.query_row("SELECT count(*) FROM suppressions", params![], |r| r.get(0))?;
            facts.queue_depth = conn.query_row(
                "SELECT count(*) FROM decisions WHERE status IN ('queued', 'deferred', 'sending')",
                params![],
                |r| r.get(0),
            )?;
            // Sender-side failures: counted by the grouped scan above; the newest one of
            // each kind gives the server's reply (an index walk on `decisions_by_status`).
            for reason in ["relay_rejected", "policy_rejected"] {
                let buckets: Vec<(Micros, i64)> = facts
                    .counts
                    .iter()
                    .filter(|(_, status, r, _)| status == "failed" && r.as_deref() == Some(reason))
                    .map(|(b, _, _, n)| (*b, *n))
                    .collect();
                let count: i64 = buckets.iter().map(|(_, n)| n).sum();
                if count == 0 {
                    continue;
                }
                let first_bucket = buckets
                    .iter()
                    .map(|(b, _)| *b)
                    .min()
                    .unwrap_or(since)
                    .max(since);
                let (reply, last): (Option<String>, Micros) = conn
                    .prepare_cached(
                        "SELECT last_reply, created_at FROM decisions
                         WHERE status = 'failed' AND status_reason = ?1 ORDER BY seq DESC LIMIT 1",
                    )?
                    .query_row(params![reason], |r| Ok((r.get(0)?, r.get(1)?)))?;
                facts.sender_side.push(SenderSideGroup {
                    status_reason: reason.to_owned(),
                    reply,
                    count,
                    first_at: format_time(first_bucket),
                    last_at: format_time(last),
                });
            }
            Ok(facts)
        })
        .await
    }

    /// When outgoing mail was last off, and how many invitations it skipped meanwhile.
    pub async fn outgoing_mail_history(&self) -> Result<OutgoingMailHistory, StoreError> {
        self.read(|conn| {
            // The audit log holds every site change with the switch's state after it;
            // "turned off" is the oldest `false` entry after the newest `true` one before
            // it, so later edits of From while mail was off do not move the start.
            let mut stmt = conn.prepare_cached(
                "SELECT at, detail FROM audit
                 WHERE what = 'site.update' ORDER BY id DESC LIMIT 500",
            )?;
            let entries = stmt
                .query_map(params![], |r| {
                    let detail: Option<String> = r.get(1)?;
                    let on = detail
                        .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
                        .and_then(|d| d.get("outgoing_mail").and_then(serde_json::Value::as_bool));
                    Ok((r.get::<_, i64>(0)?, on))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut history = OutgoingMailHistory::default();
            let mut iter = entries.iter().peekable();
            // Newest first: skip a leading run of `true` (the current "on" period).
            while let Some((at, on)) = iter.peek() {
                if *on == Some(true) {
                    history.back_on_at = Some(*at);
                    iter.next();
                } else {
                    break;
                }
            }
            for (at, on) in iter {
                if *on == Some(false) {
                    history.off_since = Some(*at);
                } else {
                    break;
                }
            }
            let Some(off_since) = history.off_since else {
                history.back_on_at = None;
                return Ok(history);
            };
            let until = history.back_on_at.unwrap_or_else(now_micros) + 1;
            // The same selection as `resend_skipped`: one per customer and project.
            history.skipped_invitations = conn
                .prepare_cached(
                    "SELECT count(*) FROM (SELECT DISTINCT project, recipient FROM decisions
                     WHERE created_at >= ?1 AND created_at < ?2 AND status = 'skipped'
                       AND recipient IS NOT NULL AND customer_id IS NOT NULL
                       AND ((',' || reasons || ',') LIKE '%,outgoing_mail_disabled,%' OR status_reason = 'outgoing_mail_disabled')
                     LIMIT ?3) AS skipped",
                )?
                .query_row(params![off_since, until, SKIPPED_COUNT_CAP], |r| r.get(0))?;
            history.resent_at = conn
                .prepare_cached(
                    "SELECT at FROM audit WHERE what LIKE '%resend%skipped%' AND at >= ?1 ORDER BY id DESC LIMIT 1",
                )?
                .query_row(params![off_since], |r| r.get::<_, i64>(0))
                .optional()?
                .map(format_time);
            Ok(history)
        })
        .await
    }
}
