//! `Idempotency-Key` (SPEC §5, §15): a repeat of the same request with the same key
//! within 24 h gets the first answer and writes nothing; the same key with another
//! request (another body or endpoint), or from another caller, is refused.
//!
//! A key is stored under its caller's id (a token's id, never its name, so two tokens
//! named alike never share answers) with a fingerprint of the request.

use super::StoreError;
use super::db::{Db, params};
use super::ingest::IdempotencyKey;
use super::time::{Micros, now_micros};
use serde::{Serialize, de::DeserializeOwned};

/// Keys older than this are forgotten (SPEC §5: "within 24 h").
const WINDOW: Micros = super::ingest::IDEMPOTENCY_WINDOW;

/// The field named when a key is reused.
const FIELD: &str = "Idempotency-Key";
/// The message of a reused key (the HTTP edge answers 422 `idempotency_key_reused`).
const REUSED: &str = "was already used for another request";

/// Whether a [`StoreError::Invalid`] says a key was reused.
pub fn is_reuse(field: &str, message: &str) -> bool {
    field == FIELD && message == REUSED
}

/// Runs `job` unless the key was used within 24 h: the same request gets the first
/// answer and nothing is written; another request, or another caller, is refused.
///
/// The key is claimed (its row written) before `job` runs, in the same transaction: a
/// second request with the key that arrives meanwhile (a double submit, on an engine
/// with several writers) waits for the first one's commit and then gets its answer,
/// instead of running `job` a second time.
pub(crate) fn with_idempotency<T: Serialize + DeserializeOwned>(
    conn: &Db,
    key: Option<&IdempotencyKey>,
    job: impl FnOnce(&Db) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let Some(key) = key else {
        return job(conn);
    };
    let now = now_micros();
    if let Some(body) = first_answer(conn, key, now)? {
        return Ok(serde_json::from_str(&body)?);
    }
    // Claim the key; an expired row of the same key is taken over. No row changed: a
    // request with this key committed meanwhile, whose answer is now visible.
    let claimed = conn
        .prepare_cached(
            "INSERT INTO idempotency (principal, key, created_at, status, body, fingerprint)
             VALUES (?1, ?2, ?3, 1, '', ?4)
             ON CONFLICT (principal, key) DO UPDATE
             SET created_at = excluded.created_at, status = excluded.status,
                 body = excluded.body, fingerprint = excluded.fingerprint
             WHERE idempotency.created_at <= ?5",
        )?
        .execute(params![
            key.scope,
            key.key,
            now,
            key.fingerprint,
            now - WINDOW
        ])?;
    if claimed == 0 {
        return match first_answer(conn, key, now)? {
            Some(body) => Ok(serde_json::from_str(&body)?),
            None => Err(StoreError::invalid(FIELD, REUSED)),
        };
    }
    let answer = job(conn)?;
    conn.prepare_cached(
        "UPDATE idempotency SET status = 0, body = ?3 WHERE principal = ?1 AND key = ?2",
    )?
    .execute(params![key.scope, key.key, serde_json::to_string(&answer)?])?;
    Ok(answer)
}

/// The stored answer of `key` within 24 h; refused when the key came with another
/// request or from another caller.
fn first_answer(
    conn: &Db,
    key: &IdempotencyKey,
    now: Micros,
) -> Result<Option<String>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT principal, fingerprint, body, status FROM idempotency
         WHERE key = ?1 AND created_at > ?2",
    )?;
    let rows = statement.query_map(params![key.key, now - WINDOW], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut first = None;
    for row in rows {
        let (principal, fingerprint, body, status) = row?;
        if principal != key.scope || fingerprint.as_deref() != Some(key.fingerprint.as_str()) {
            return Err(StoreError::invalid(FIELD, REUSED));
        }
        // A claim without its answer (status 1) is never committed: its job's failure
        // rolls it back with the job's other writes.
        if status == 0 {
            first = Some(body);
        }
    }
    Ok(first)
}

impl super::Store {
    /// The answer remembered under `scope`'s `key` within 24 h, if any (the dashboard
    /// shows it again after its post/redirect/get).
    pub async fn remembered_answer<T: DeserializeOwned + Send + 'static>(
        &self,
        scope: String,
        key: String,
    ) -> Result<Option<T>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT body FROM idempotency
                 WHERE principal = ?1 AND key = ?2 AND created_at > ?3 AND status = 0",
            )?;
            let mut rows = statement
                .query_map(params![scope, key, now_micros() - WINDOW], |r| {
                    r.get::<_, String>(0)
                })?;
            match rows.next() {
                Some(body) => Ok(Some(serde_json::from_str(&body?)?)),
                None => Ok(None),
            }
        })
        .await
    }
}
