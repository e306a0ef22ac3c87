//! Counts: `GET /api/v1/stats` (SPEC §5), a status count, table counts and the health
//! ping.

use super::db::params;
use super::time::{format_time, now_micros};
use super::{Store, StoreError};
use crate::model::Status;
use serde::Serialize;

/// `GET /api/v1/stats` (SPEC §5).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub window: String,
    pub decisions: i64,
    pub sent: i64,
    pub bounced: i64,
    pub deferred: i64,
    pub failed: i64,
    pub queued: i64,
    pub skipped: std::collections::BTreeMap<String, i64>,
    pub bounce_rate: f64,
    pub complaints: i64,
    pub complaint_rate: f64,
    pub suppressions_total: i64,
    pub suppressions_added: i64,
    pub sender_side_failures: i64,
    pub series: Vec<StatsPoint>,
}

/// One bucket of the stats series.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct StatsPoint {
    pub t: String,
    pub sent: i64,
    pub skipped: i64,
    pub bounced: i64,
    pub suppressions_added: i64,
}

impl Store {
    /// How many decisions have `status` (an index range count).
    pub async fn count_status(&self, status: Status) -> Result<i64, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT count(*) FROM decisions WHERE status = ?1")?
                .query_row(params![status.as_str()], |r| r.get(0))?)
        })
        .await
    }

    /// Whether the database answers (for `/healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT 1", params![], |r| r.get::<_, i64>(0))
                .map(|_| ())?)
        })
        .await
    }

    /// Counts of a few tables, for tests and the CLI (`mailtrail stats --counts`).
    pub async fn row_counts(&self) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        self.read(|conn| {
            let mut counts = std::collections::BTreeMap::new();
            for table in [
                "customers",
                "memberships",
                "decisions",
                "attempts",
                "suppressions",
                "audit",
                "projects",
            ] {
                let n: i64 =
                    conn.query_row(&format!("SELECT count(*) FROM {table}"), params![], |r| {
                        r.get(0)
                    })?;
                counts.insert(table.to_owned(), n);
            }
            Ok(counts)
        })
        .await
    }
}

impl Store {
    /// Counts and series over the last `hours` (SPEC §5 stats).
    pub async fn stats(&self, window: String, hours: i64) -> Result<Stats, StoreError> {
        self.read(move |conn| {
            let now = now_micros();
            let hour = 3_600_000_000i64;
            let since = now - hours * hour;
            let bucket = if hours <= 24 { hour } else { 24 * hour };
            let mut stats = Stats {
                window,
                decisions: 0,
                sent: 0,
                bounced: 0,
                deferred: 0,
                failed: 0,
                queued: 0,
                skipped: Default::default(),
                bounce_rate: 0.0,
                complaints: 0,
                complaint_rate: 0.0,
                suppressions_total: 0,
                suppressions_added: 0,
                sender_side_failures: 0,
                series: Vec::new(),
            };
            let mut stmt = conn.prepare_cached(
                "SELECT status, status_reason, count(*) FROM decisions WHERE created_at >= ?1 GROUP BY status, status_reason",
            )?;
            let rows = stmt.query_map(params![since], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, i64>(2)?)))?;
            for row in rows {
                let (status, reason, n) = row?;
                stats.decisions += n;
                match status.as_str() {
                    "sent" => stats.sent += n,
                    "bounced" => stats.bounced += n,
                    "deferred" => stats.deferred += n,
                    "queued" | "sending" => stats.queued += n,
                    "failed" => {
                        stats.failed += n;
                        if matches!(reason.as_deref(), Some("policy_rejected" | "relay_rejected")) {
                            stats.sender_side_failures += n;
                        }
                    }
                    "skipped" => *stats.skipped.entry(reason.unwrap_or_else(|| "unknown".into())).or_default() += n,
                    _ => {}
                }
            }
            if stats.sent + stats.bounced > 0 {
                stats.bounce_rate = stats.bounced as f64 / (stats.sent + stats.bounced) as f64;
            }
            stats.suppressions_total = conn.query_row("SELECT count(*) FROM suppressions", params![], |r| r.get(0))?;
            let (added, complaints): (i64, i64) = conn.query_row(
                "SELECT count(*), coalesce(CAST(sum(CASE WHEN reason = 'complaint' THEN 1 ELSE 0 END) AS BIGINT), 0) FROM suppression_events WHERE added = TRUE AND at >= ?1",
                params![since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            stats.suppressions_added = added;
            stats.complaints = complaints;
            if stats.sent > 0 {
                stats.complaint_rate = complaints as f64 / stats.sent as f64;
            }
            let mut points: std::collections::BTreeMap<i64, StatsPoint> = std::collections::BTreeMap::new();
            let first = since / bucket * bucket;
            let mut t = first;
            while t <= now {
                points.insert(t, StatsPoint { t: format_time(t), sent: 0, skipped: 0, bounced: 0, suppressions_added: 0 });
                t += bucket;
            }
            let mut stmt = conn.prepare_cached(
                "SELECT created_at / ?2 * ?2 AS b, CAST(sum(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) AS BIGINT), CAST(sum(CASE WHEN status = 'skipped' THEN 1 ELSE 0 END) AS BIGINT), CAST(sum(CASE WHEN status = 'bounced' THEN 1 ELSE 0 END) AS BIGINT)
                 FROM decisions WHERE created_at >= ?1 GROUP BY b",
            )?;
            for row in stmt.query_map(params![since, bucket], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)))? {
                let (b, sent, skipped, bounced) = row?;
                if let Some(p) = points.get_mut(&b) {
                    p.sent = sent;
                    p.skipped = skipped;
                    p.bounced = bounced;
                }
            }
            let mut stmt = conn.prepare_cached(
                "SELECT at / ?2 * ?2 AS b, count(*) FROM suppression_events WHERE added = TRUE AND at >= ?1 GROUP BY b",
            )?;
            for row in stmt.query_map(params![since, bucket], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))? {
                let (b, n) = row?;
                if let Some(p) = points.get_mut(&b) {
                    p.suppressions_added = n;
                }
            }
            stats.series = points.into_values().collect();
            Ok(stats)
        })
        .await
    }
}
