//! Lists that page both ways and say how many there are (SPEC §15 "Lists"): a page of
//! decisions newer than one already seen, and capped counts of the outbox and the
//! suppression list (a count stops at its cap, so a million rows cost no full scan).

use super::db::params;
use super::decisions::{DecisionFilter, decision_where};
use super::records::{DECISION_COLUMNS, DecisionRecord, decision_from_row};
use super::suppressions::like_escape;
use super::{Store, StoreError};

/// A count of at most `cap`: `exact` is false when there are more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CappedCount {
    pub count: i64,
    pub exact: bool,
}

impl CappedCount {
    fn of(counted: i64, cap: i64) -> CappedCount {
        CappedCount {
            count: counted.min(cap),
            exact: counted <= cap,
        }
    }
}

impl Store {
    /// Up to `filter.limit` decisions just newer than `after` (a `seq`), newest first,
    /// and whether there are newer ones still.
    pub async fn decisions_newer(
        &self,
        filter: DecisionFilter,
        after: i64,
    ) -> Result<(Vec<DecisionRecord>, bool), StoreError> {
        self.read(move |conn| {
            let mut w = decision_where(&filter);
            w.push("seq > $", Box::new(after));
            let sql = format!(
                "SELECT {DECISION_COLUMNS} FROM decisions {} ORDER BY seq ASC LIMIT ?{}",
                w.sql(),
                w.next_index()
            );
            w.push_value(Box::new(filter.limit as i64 + 1));
            let items = conn
                .prepare_cached(&sql)?
                .query_map(&w.params(), decision_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(newer_page(items, filter.limit))
        })
        .await
    }

    /// How many decisions match `filter` (its page position ignored), up to `cap`.
    pub async fn count_decisions(
        &self,
        filter: DecisionFilter,
        cap: i64,
    ) -> Result<CappedCount, StoreError> {
        self.read(move |conn| {
            let mut w = decision_where(&filter);
            let sql = format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM decisions {} LIMIT ?{}) AS capped",
                w.sql(),
                w.next_index()
            );
            w.push_value(Box::new(cap + 1));
            let counted: i64 = conn
                .prepare_cached(&sql)?
                .query_row(&w.params(), |r| r.get(0))?;
            Ok(CappedCount::of(counted, cap))
        })
        .await
    }

    /// How many suppressions match the search `q` (as the list searches), up to `cap`.
    pub async fn count_suppressions(
        &self,
        q: Option<String>,
        cap: i64,
    ) -> Result<CappedCount, StoreError> {
        self.read(move |conn| {
            let pattern = q.map(|q| format!("%{}%", like_escape(&q.to_lowercase())));
            let counted: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM suppressions
                     WHERE (CAST(?1 AS TEXT) IS NULL OR email LIKE ?1 ESCAPE '\\') LIMIT ?2) AS capped",
                )?
                .query_row(params![pattern, cap + 1], |r| r.get(0))?;
            Ok(CappedCount::of(counted, cap))
        })
        .await
    }
}

impl Store {
    /// Up to `limit` suppressions just newer than the one at `(at, email)` in the
    /// list's order (newest first, then by address), matching the search `q`, newest
    /// first; and whether there are newer ones still.
    pub async fn suppressions_newer(
        &self,
        q: Option<String>,
        at: i64,
        email: String,
        limit: usize,
    ) -> Result<(Vec<super::SuppressionRecord>, bool), StoreError> {
        self.read(move |conn| {
            let pattern = q.map(|q| format!("%{}%", like_escape(&q.to_lowercase())));
            let items = conn
                .prepare_cached(&format!(
                    "SELECT {} FROM suppressions
                     WHERE (CAST(?1 AS TEXT) IS NULL OR email LIKE ?1 ESCAPE '\\')
                       AND (suppressed_at > ?2 OR (suppressed_at = ?2 AND email < ?3))
                     ORDER BY suppressed_at ASC, email DESC LIMIT ?4",
                    super::records::SUPPRESSION_COLUMNS
                ))?
                .query_map(
                    params![pattern, at, email, limit as i64 + 1],
                    super::records::suppression_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(newer_page(items, limit))
        })
        .await
    }
}

impl Store {
    /// Up to `limit` audit entries just newer than entry `after`, newest first, and
    /// whether there are newer ones still.
    pub async fn audit_newer(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<super::AuditEntry>, bool), StoreError> {
        self.read(move |conn| {
            let items = conn
                .prepare_cached(
                    "SELECT id, who, what, target, note, at, detail FROM audit
                     WHERE id > ?1 ORDER BY id ASC LIMIT ?2",
                )?
                .query_map(
                    params![after, limit as i64 + 1],
                    super::audit::audit_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(newer_page(items, limit))
        })
        .await
    }

    /// How many audit entries there are, up to `cap`.
    pub async fn count_audit(&self, cap: i64) -> Result<CappedCount, StoreError> {
        self.read(move |conn| {
            let counted: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM (SELECT 1 FROM audit LIMIT ?1) AS capped")?
                .query_row(params![cap + 1], |r| r.get(0))?;
            Ok(CappedCount::of(counted, cap))
        })
        .await
    }
}

/// Rows read oldest first past a position (`limit + 1` of them): the page, newest
/// first, and whether there are newer ones still.
fn newer_page<T>(mut items: Vec<T>, limit: usize) -> (Vec<T>, bool) {
    let more = items.len() > limit;
    items.truncate(limit);
    items.reverse();
    (items, more)
}
