//! The gauges `/metrics` reads at scrape time (SPEC §14): indexed counts and a minimum,
//! never a pass over a whole table.

use super::db::{OptionalExtension, params};
use super::time::{Micros, now_micros};
use super::{Store, StoreError};
use crate::model::Status;

/// The delivery queue as `/metrics` shows it.
#[derive(Clone, Debug, Default)]
pub struct QueueGauges {
    /// Decisions per waiting status (`queued`, `deferred`, `sending`).
    pub depth: Vec<(Status, i64)>,
    /// How long the longest-waiting due message has waited, in seconds (0 when none).
    pub oldest_queued_seconds: f64,
}

/// One status's rows, counted on the `decisions_by_status` index.
const COUNT_BY_STATUS: &str = "SELECT count(*) FROM decisions WHERE status = ?1";

/// The earliest due time among waiting rows. It reads only the waiting rows, through
/// `decisions_by_status` or the partial index `decisions_due` (whose condition it
/// repeats word for word), whichever the planner picks; never the whole table.
const OLDEST_DUE: &str = "SELECT min(next_attempt_at) FROM decisions
     WHERE status IN ('queued', 'deferred', 'sending') AND next_attempt_at <= ?1";

impl Store {
    /// Queue depth per status in `statuses` and the age of the oldest due message.
    pub async fn queue_gauges(
        &self,
        statuses: &'static [Status],
    ) -> Result<QueueGauges, StoreError> {
        self.read(move |conn| {
            let mut depth = Vec::with_capacity(statuses.len());
            for status in statuses {
                let n: i64 = conn
                    .prepare_cached(COUNT_BY_STATUS)?
                    .query_row(params![status.as_str()], |r| r.get(0))?;
                depth.push((*status, n));
            }
            let now = now_micros();
            let oldest: Option<Micros> = conn
                .prepare_cached(OLDEST_DUE)?
                .query_row(params![now], |r| r.get(0))
                .optional()?
                .flatten();
            Ok(QueueGauges {
                depth,
                oldest_queued_seconds: oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1e6),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::db::Db;
    use super::*;

    /// The plan SQLite picks for `sql` on the real schema, one line per step.
    fn plan(sql: &str) -> String {
        let conn = Db::sqlite_in_memory().expect("a database");
        super::super::schema::migrate(&conn).expect("the schema");
        let mut stmt = conn
            .prepare_cached(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("a plan");
        let rows = stmt
            .query_map(params!["queued"], |r| r.get::<_, String>(3))
            .expect("plan rows");
        rows.collect::<Result<Vec<_>, _>>()
            .expect("plan rows")
            .join("\n")
    }

    #[test]
    fn a_scrape_reads_no_table_in_full() {
        for sql in [COUNT_BY_STATUS, OLDEST_DUE] {
            let plan = plan(sql);
            assert!(
                plan.contains("USING") && !plan.contains("SCAN"),
                "{sql}\n{plan}"
            );
        }
    }
}
