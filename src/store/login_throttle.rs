//! Failed-login counts in the database (SPEC §10: several `serve` processes behind one
//! load balancer share them; SPEC §14 "Login"). One row per key (`user:NAME` or
//! `client:IP`): how many failures, and when the last was. Rows older than the window
//! are purged as new failures are counted, so made-up user names cannot grow the table
//! for long.

use super::db::{OptionalExtension, params};
use super::time::{Micros, now_micros};
use super::{Store, StoreError};

impl Store {
    /// Counts one failure under `key`; returns the failures counted under it before this
    /// one within `window`.
    pub async fn add_login_failure(&self, key: String, window: Micros) -> Result<i64, StoreError> {
        self.write(move |conn| {
            let now = now_micros();
            conn.prepare_cached("DELETE FROM login_failures WHERE last_at < ?1")?
                .execute(params![now - window])?;
            let before: i64 = conn
                .prepare_cached("SELECT failures FROM login_failures WHERE key = ?1")?
                .query_row(params![key], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            conn.prepare_cached(
                "INSERT INTO login_failures (key, failures, last_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE
                 SET failures = excluded.failures, last_at = excluded.last_at",
            )?
            .execute(params![key, before + 1, now])?;
            Ok(before)
        })
        .await
    }

    /// Takes one failure back from `key`.
    pub async fn take_back_login_failure(&self, key: String) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE login_failures SET failures = failures - 1 WHERE key = ?1 AND failures > 0",
            )?
            .execute(params![key])?;
            Ok(())
        })
        .await
    }

    /// Forgets `key`'s failures.
    pub async fn clear_login_failures(&self, key: String) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM login_failures WHERE key = ?1")?
                .execute(params![key])?;
            Ok(())
        })
        .await
    }
}
