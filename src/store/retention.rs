//! Retention (SPEC §14): decisions and their delivery attempts older than the
//! retention period are purged, except each address's newest decision per project (so
//! `why` still answers) and anything still on its way; expired sessions and
//! idempotency keys go too.
//!
//! Purging never holds the writer for long: candidates are found on a read connection,
//! then removed in small write jobs of at most `batch` decisions, which join the
//! writer's group commit like any ingest job and take a few milliseconds each.

use super::db::params;
use super::ingest::IDEMPOTENCY_WINDOW;
use super::time::{Micros, now_micros};
use super::{Store, StoreError};

/// How a purge pass runs.
#[derive(Clone, Copy, Debug)]
pub struct PurgePlan {
    /// Decisions and attempts older than this go.
    pub retention: std::time::Duration,
    /// Sessions not seen for this long go (the dashboard's idle limit).
    pub session_idle: Micros,
    /// At most this many rows per write job.
    pub batch: i64,
    /// The least wait between two write jobs, so other writes go first; the wait is
    /// also at least four times what the last batch took.
    pub pause: std::time::Duration,
}

/// What one purge pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub decisions: u64,
    pub attempts: u64,
    pub sessions: u64,
    pub idempotency_keys: u64,
    /// Kept bounce messages (SPEC §11) received before the cutoff.
    pub bounce_messages: u64,
}

/// Old decisions that may go: created before the cutoff, not on their way, and with a
/// newer decision for the same address (or the same unparsable input) in the same
/// project. Walks the table in `seq` order from a cursor.
///
/// `n.project || ''` keeps SQLite from looking newer decisions up by project (all of
/// the project's later decisions: quadratic) instead of by address; the value is the
/// same, and PostgreSQL plans it alike.
const CANDIDATES: &str = "SELECT d.seq, d.id FROM decisions d
    WHERE d.seq > ?1 AND d.created_at < ?2
      AND d.status NOT IN ('queued', 'deferred', 'sending')
      AND ((d.recipient IS NOT NULL AND EXISTS (SELECT 1 FROM decisions n
              WHERE n.recipient = d.recipient AND n.seq > d.seq
                AND n.project || '' = d.project))
        OR (d.recipient IS NULL AND EXISTS (SELECT 1 FROM decisions n
              WHERE n.input = d.input AND n.recipient IS NULL AND n.seq > d.seq
                AND n.project || '' = d.project)))
    ORDER BY d.seq LIMIT ?3";

/// The highest `seq` created before the cutoff: where a pass stops.
const LAST_OLD_SEQ: &str = "SELECT MAX(seq) FROM decisions WHERE created_at < ?1";

impl Store {
    /// Purges what `plan` says has expired, in small write jobs.
    pub async fn purge_expired(&self, plan: PurgePlan) -> Result<Purged, StoreError> {
        let PurgePlan {
            retention,
            session_idle,
            batch,
            pause,
        } = plan;
        let retention = Micros::try_from(retention.as_micros()).unwrap_or(Micros::MAX);
        let cutoff = now_micros().saturating_sub(retention);
        let mut purged = Purged::default();
        let last: Option<i64> = self
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(LAST_OLD_SEQ)?
                    .query_row(params![cutoff], |r| r.get(0))?)
            })
            .await?;
        let mut cursor = 0i64;
        while last.is_some_and(|last| cursor < last) {
            let started = std::time::Instant::now();
            let rows: Vec<(i64, String)> = self
                .read(move |conn| {
                    let mut statement = conn.prepare_cached(CANDIDATES)?;
                    let rows = statement
                        .query_map(params![cursor, cutoff, batch], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(rows)
                })
                .await?;
            let Some(&(next, _)) = rows.last() else {
                break;
            };
            cursor = next;
            let (decisions, attempts) = self.purge_decisions(rows).await?;
            purged.decisions += decisions;
            purged.attempts += attempts;
            // At most a fifth of the time goes to purging: a batch that took long (a
            // busy writer, a slow disk) is followed by a longer pause.
            tokio::time::sleep(pause.max(started.elapsed() * 4)).await;
        }
        loop {
            let gone = self
                .write(move |conn| {
                    Ok(conn
                        .prepare_cached(
                            "DELETE FROM bounce_messages WHERE id IN
                             (SELECT id FROM bounce_messages WHERE received_at < ?1 LIMIT ?2)",
                        )?
                        .execute(params![cutoff, batch])?)
                })
                .await?;
            purged.bounce_messages += gone as u64;
            if i64::try_from(gone).unwrap_or(i64::MAX) < batch {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        let (sessions, keys) = self.purge_sessions_and_keys(session_idle, batch).await?;
        purged.sessions = sessions;
        purged.idempotency_keys = keys;
        self.purge_webhook_history(cutoff, batch).await?;
        Ok(purged)
    }

    /// Decisions created before `time` (for the benchmark: what a purge left).
    pub async fn decisions_created_before(&self, time: Micros) -> Result<i64, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT count(*) FROM decisions WHERE created_at < ?1")?
                .query_row(params![time], |r| r.get(0))?)
        })
        .await
    }

    /// One short write job: removes these decisions and their attempts, unless one
    /// went back on its way meanwhile.
    async fn purge_decisions(&self, rows: Vec<(i64, String)>) -> Result<(u64, u64), StoreError> {
        self.write(move |conn| {
            let (mut decisions, mut attempts) = (0u64, 0u64);
            for (seq, id) in &rows {
                let removed = conn
                    .prepare_cached(
                        "DELETE FROM decisions WHERE seq = ?1
                         AND status NOT IN ('queued', 'deferred', 'sending')",
                    )?
                    .execute(params![seq])?;
                if removed > 0 {
                    decisions += removed as u64;
                    attempts += conn
                        .prepare_cached("DELETE FROM attempts WHERE decision_id = ?1")?
                        .execute(params![id])? as u64;
                }
            }
            Ok((decisions, attempts))
        })
        .await
    }

    /// Sessions idle longer than the dashboard allows and idempotency keys past their
    /// window, `batch` rows per write job.
    async fn purge_sessions_and_keys(
        &self,
        session_idle: Micros,
        batch: i64,
    ) -> Result<(u64, u64), StoreError> {
        let (mut sessions, mut keys) = (0u64, 0u64);
        loop {
            let (s, k) = self
                .write(move |conn| {
                    let now = now_micros();
                    let s = conn
                        .prepare_cached(
                            "DELETE FROM sessions WHERE id_hash IN
                             (SELECT id_hash FROM sessions WHERE last_seen_at < ?1 LIMIT ?2)",
                        )?
                        .execute(params![now - session_idle, batch])?;
                    let k = conn
                        .prepare_cached(
                            "DELETE FROM idempotency WHERE (principal, key) IN
                             (SELECT principal, key FROM idempotency WHERE created_at < ?1 LIMIT ?2)",
                        )?
                        .execute(params![now - IDEMPOTENCY_WINDOW, batch])?;
                    Ok((s as u64, k as u64))
                })
                .await?;
            sessions += s;
            keys += k;
            if i64::try_from(s.max(k)).unwrap_or(i64::MAX) < batch {
                return Ok((sessions, keys));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use std::time::Duration;

    /// Newer decisions are looked up by address, never by project (which made a pass
    /// over 100,000 seeded decisions purge nothing within the benchmark's window).
    #[test]
    fn candidates_look_newer_decisions_up_by_address() {
        let conn = crate::store::db::Db::sqlite_in_memory().unwrap();
        crate::store::schema::migrate(&conn).unwrap();
        let mut statement = conn
            .prepare_cached(&format!("EXPLAIN QUERY PLAN {CANDIDATES}"))
            .unwrap();
        let plan: Vec<String> = statement
            .query_map(params![0, 0, 500], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("decisions_by_recipient"), "{plan}");
        assert!(plan.contains("decisions_by_input"), "{plan}");
        assert!(!plan.contains("decisions_by_project"), "{plan}");
    }

    #[tokio::test]
    async fn expired_sessions_and_idempotency_keys_go_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let location = crate::store::DbLocation::Sqlite(dir.path().join("t.db"));
        let store = Store::open(&location, StoreOptions::default()).unwrap();
        let now = now_micros();
        let day: Micros = 86_400_000_000;
        store
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO users (name, role, password_hash, created_at) VALUES ('u', 'viewer', 'x', 0)",
                    params![],
                )?;
                for i in 0..7i64 {
                    let seen = if i < 5 { now - 2 * day } else { now };
                    conn.execute(
                        "INSERT INTO sessions (id_hash, user_name, csrf, created_at, last_seen_at)
                         VALUES (?1, 'u', 'c', ?2, ?2)",
                        params![format!("s{i}"), seen],
                    )?;
                    let at = if i < 4 { now - 2 * day } else { now };
                    conn.execute(
                        "INSERT INTO idempotency (principal, key, created_at, status, body)
                         VALUES ('p', ?1, ?2, 0, '{}')",
                        params![format!("k{i}"), at],
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let purged = store
            .purge_expired(PurgePlan {
                retention: Duration::from_secs(400 * 86_400),
                session_idle: day,
                batch: 2,
                pause: Duration::ZERO,
            })
            .await
            .unwrap();
        assert_eq!(
            purged,
            Purged {
                decisions: 0,
                attempts: 0,
                sessions: 5,
                idempotency_keys: 4,
                bounce_messages: 0
            }
        );
        let left: (i64, i64) = store
            .read(|conn| {
                Ok(conn.query_row(
                    "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM idempotency)",
                    params![],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(left, (2, 3));
    }
}
