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
pub(crate) fn with_idempotency<T: Serialize + DeserializeOwned>(
    conn: &Db,
    key: Option<&IdempotencyKey>,
    job: impl FnOnce(&Db) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let Some(key) = key else {
        return job(conn);
    };
    let now = now_micros();
    let mut statement = conn.prepare_cached(
        "SELECT principal, fingerprint, body FROM idempotency WHERE key = ?1 AND created_at > ?2",
    )?;
    let rows = statement.query_map(params![key.key, now - WINDOW], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut first_answer = None;
    for row in rows {
        let (principal, fingerprint, body) = row?;
        if principal != key.scope || fingerprint.as_deref() != Some(key.fingerprint.as_str()) {
            return Err(StoreError::invalid(FIELD, REUSED));
        }
        first_answer = Some(body);
    }
    drop(statement);
    if let Some(body) = first_answer {
        return Ok(serde_json::from_str(&body)?);
    }
    let answer = job(conn)?;
    conn.prepare_cached(
        "INSERT INTO idempotency (principal, key, created_at, status, body, fingerprint)
         VALUES (?1, ?2, ?3, 0, ?4, ?5)
         ON CONFLICT (principal, key) DO UPDATE
         SET created_at = excluded.created_at, status = excluded.status,
             body = excluded.body, fingerprint = excluded.fingerprint",
    )?
    .execute(params![
        key.scope,
        key.key,
        now,
        serde_json::to_string(&answer)?,
        key.fingerprint,
    ])?;
    Ok(answer)
}
