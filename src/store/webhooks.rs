//! Webhooks (SPEC §13): subscriptions, the event outbox and the delivery log.
//!
//! An event is written by [`emit`], called inside the store write that makes the change
//! it reports (a decision skipped, a try recorded, a suppression added or removed, a
//! complaint), so the event and the change commit or vanish together. `emit` writes one
//! outbox row per matching subscription, and nothing at all when no subscription wants
//! the event (one indexed look-up of a tiny table). The delivery loop
//! (`delivery::webhooks`) leases due rows, the oldest pending row of each
//! (subscription, address) pair first, so every address's events arrive in order.

use super::audit::audit;
use super::db::{Db, Engine, OptionalExtension, Param, params};
use super::records::{
    DECISION_COLUMNS, SUPPRESSION_COLUMNS, decision_from_row, page, suppression_from_row,
};
use super::time::{Micros, format_time, now_micros};
use super::{Page, Store, StoreError};
use crate::model::{Status, SuppressionReason, WebhookEvent};
use serde::Serialize;

/// A webhook subscription as the API shows it; `secret` only in the answer that created it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    /// Event names, or `["*"]` for all.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub created_at: String,
    /// `whsec_…`: shown once, in the answer of `POST /api/v1/webhooks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A new subscription, checked by the caller (`webhooks::check_url`, known events).
#[derive(Clone, Debug)]
pub struct NewWebhook {
    pub url: String,
    /// Wire names of [`WebhookEvent`]s, or `*`.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub secret: String,
}

/// One try of a webhook message (`GET /api/v1/webhooks/{id}/deliveries`).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    pub id: i64,
    /// The `webhook-id` header of the message tried (`msg_…`).
    pub message_id: String,
    /// The event type.
    pub event: String,
    /// `delivered`, `retrying` (a retry is scheduled) or `failed` (no more retries).
    pub status: String,
    /// The receiver's HTTP status, or null (no answer: timeout, refused, closed).
    pub reply_code: Option<i64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub at: String,
    pub took_ms: i64,
}

/// A message leased for delivery.
#[derive(Clone, Debug)]
pub struct LeasedWebhookMessage {
    pub id: i64,
    pub webhook_id: String,
    pub url: String,
    pub secret: String,
    pub event: String,
    pub address: String,
    pub payload: String,
    pub attempts: i64,
    pub created_at: Micros,
    pub lease_until: Micros,
}

impl LeasedWebhookMessage {
    /// The Standard Webhooks `webhook-id`, the same for every try.
    pub fn message_id(&self) -> String {
        message_id(self.id)
    }
}

fn message_id(id: i64) -> String {
    format!("msg_{id}")
}

/// What one try of a leased message came to.
#[derive(Clone, Debug)]
pub struct WebhookTry {
    pub message: i64,
    pub webhook_id: String,
    pub event: String,
    pub lease_until: Micros,
    pub at: Micros,
    pub took_ms: i64,
    pub reply_code: Option<i64>,
    pub error: Option<String>,
    pub result: TryResult,
}

/// The message's next state after a try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryResult {
    Delivered,
    /// Not delivered; try again at this time.
    Retry(Micros),
    /// Not delivered; retries exhausted.
    Failed,
    /// Not tried (an earlier message of the same address failed in this round): the
    /// lease is given back, the row is due again after the one before it.
    Released,
}

/// Wire names of the events a subscription to `events` gets, stored as `,a,b,` so a
/// LIKE finds one.
fn events_column(events: &[String]) -> String {
    format!(",{},", events.join(","))
}

fn record_from_row(r: &super::db::Row<'_>) -> Result<WebhookRecord, super::db::DbError> {
    let events: String = r.get(2)?;
    Ok(WebhookRecord {
        id: r.get(0)?,
        url: r.get(1)?,
        events: events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        description: r.get(3)?,
        created_at: format_time(r.get(4)?),
        secret: None,
    })
}

const WEBHOOK_COLUMNS: &str = "id, url, events, description, created_at";

/// Writes `event` for every subscription that wants it, with `data` built only then.
/// Runs inside the caller's transaction.
pub(crate) fn emit(
    conn: &Db,
    event: WebhookEvent,
    address: &str,
    now: Micros,
    data: impl FnOnce(&Db) -> Result<serde_json::Value, StoreError>,
) -> Result<(), StoreError> {
    let subscribers = subscribers_of(conn, event)?;
    emit_to(conn, &subscribers, event, address, now, data)
}

/// The subscriptions that want `event`.
fn subscribers_of(conn: &Db, event: WebhookEvent) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM webhooks WHERE events LIKE ?1 OR events LIKE '%,*,%' ORDER BY id",
        )?
        .query_map(params![format!("%,{event},%")], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Writes `event` for `subscribers`, with `data` built only when there is one.
fn emit_to(
    conn: &Db,
    subscribers: &[String],
    event: WebhookEvent,
    address: &str,
    now: Micros,
    data: impl FnOnce(&Db) -> Result<serde_json::Value, StoreError>,
) -> Result<(), StoreError> {
    if subscribers.is_empty() {
        return Ok(());
    }
    let body = serde_json::json!({
        "type": event,
        "timestamp": format_time(now),
        "data": data(conn)?,
    })
    .to_string();
    let mut insert = conn.prepare_cached(
        "INSERT INTO webhook_messages (webhook_id, event_type, address, payload, created_at, status, attempts, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?5)",
    )?;
    for id in subscribers {
        insert.execute(params![id, event.as_str(), address, body, now])?;
    }
    Ok(())
}

/// The subscriptions of each event, read once per transaction that emits many events
/// (a batch of delivery records) instead of once per event.
#[derive(Default)]
pub(crate) struct Subscribers(std::collections::HashMap<WebhookEvent, Vec<String>>);

impl Subscribers {
    fn of(&mut self, conn: &Db, event: WebhookEvent) -> Result<&[String], StoreError> {
        let ids = match self.0.entry(event) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(new) => {
                new.insert(subscribers_of(conn, event)?)
            }
        };
        Ok(ids)
    }
}

/// The event of a decision's new status (`decision.skipped`, `message.*`), with the
/// decision (SPEC §5 Decision JSON) as its data.
pub(crate) fn emit_decision(
    conn: &Db,
    id: &str,
    status: Status,
    now: Micros,
) -> Result<(), StoreError> {
    emit_decision_to(&mut Subscribers::default(), conn, id, status, now)
}

/// [`emit_decision`], with the subscriptions read through `subscribers`; the decision is
/// read only when some subscription wants its event.
pub(crate) fn emit_decision_to(
    subscribers: &mut Subscribers,
    conn: &Db,
    id: &str,
    status: Status,
    now: Micros,
) -> Result<(), StoreError> {
    let Some(event) = WebhookEvent::of_status(status) else {
        return Ok(());
    };
    let subscribers = subscribers.of(conn, event)?;
    if subscribers.is_empty() {
        return Ok(());
    }
    let decision = conn
        .prepare_cached(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ?1"
        ))?
        .query_row(params![id], decision_from_row)
        .optional()?;
    let Some(decision) = decision else {
        return Ok(());
    };
    let address = decision
        .recipient
        .clone()
        .unwrap_or_else(|| decision.input.clone());
    emit_to(conn, subscribers, event, &address, now, |_| {
        Ok(serde_json::to_value(&decision)?)
    })
}

/// `address.suppressed` (with the suppression as data) or `address.unsuppressed`.
pub(crate) fn emit_suppression(
    conn: &Db,
    email: &str,
    added: bool,
    reason: &str,
    now: Micros,
) -> Result<(), StoreError> {
    if added {
        emit(conn, WebhookEvent::AddressSuppressed, email, now, |conn| {
            let record = conn
                .prepare_cached(&format!(
                    "SELECT {SUPPRESSION_COLUMNS} FROM suppressions WHERE email = ?1"
                ))?
                .query_row(params![email], suppression_from_row)
                .optional()?;
            Ok(match record {
                Some(r) => serde_json::to_value(&r)?,
                None => serde_json::json!({"email": email, "reason": reason}),
            })
        })
    } else {
        emit(conn, WebhookEvent::AddressUnsuppressed, email, now, |_| {
            Ok(
                serde_json::json!({"email": email, "reason": reason, "unsuppressed_at": format_time(now)}),
            )
        })
    }
}

/// `complaint.received`: a complaint report (RFC 5965) about `email`.
pub(crate) fn emit_complaint(
    conn: &Db,
    email: &str,
    decision_id: Option<&str>,
    reason: SuppressionReason,
    now: Micros,
) -> Result<(), StoreError> {
    if reason != SuppressionReason::Complaint {
        return Ok(());
    }
    emit(conn, WebhookEvent::ComplaintReceived, email, now, |_| {
        Ok(
            serde_json::json!({"email": email, "decision_id": decision_id, "received_at": format_time(now)}),
        )
    })
}

/// Ids per `IN (…)` list; lists are padded by repeating the last id.
const IN_LIST: usize = 64;

fn in_list(first: usize) -> String {
    let list: Vec<String> = (first..first + IN_LIST).map(|i| format!("?{i}")).collect();
    format!("({})", list.join(", "))
}

fn padded(ids: &[i64]) -> Vec<i64> {
    let mut out = ids.to_vec();
    if let Some(last) = out.last().copied() {
        out.resize(IN_LIST, last);
    }
    out
}

/// The 1-hour counts of the bounce rate (SPEC §5: bounced / (sent + bounced)).
#[derive(Clone, Copy, Debug)]
pub struct HourCounts {
    pub sent: i64,
    pub bounced: i64,
}

impl Store {
    /// Stores a new subscription (audited) and answers it with its secret.
    pub async fn create_webhook(
        &self,
        new: NewWebhook,
        who: String,
    ) -> Result<WebhookRecord, StoreError> {
        self.write(move |conn| {
            let id = format!("wh_{}", crate::model::new_id().replace('-', ""));
            let now = now_micros();
            conn.prepare_cached(
                "INSERT INTO webhooks (id, url, events, description, secret, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                id,
                new.url,
                events_column(&new.events),
                new.description,
                new.secret,
                now
            ])?;
            // The URL may carry a token of the receiver's: the audit keeps only its origin.
            audit(
                conn,
                &who,
                "webhook.create",
                Some(&id),
                None,
                Some(&serde_json::json!({"events": new.events, "url": origin(&new.url)})),
            )?;
            Ok(WebhookRecord {
                id,
                url: new.url.clone(),
                events: new.events.clone(),
                description: new.description.clone(),
                created_at: format_time(now),
                secret: Some(new.secret.clone()),
            })
        })
        .await
    }

    /// A page of subscriptions, oldest first (secrets never shown).
    pub async fn webhooks(
        &self,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<WebhookRecord>, StoreError> {
        self.read(move |conn| {
            let items = conn
                .prepare_cached(&format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))?
                .query_map(
                    params![cursor.unwrap_or_default(), limit as i64 + 1],
                    record_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(page(items, limit, |w| w.id.clone()))
        })
        .await
    }

    /// One subscription.
    pub async fn webhook(&self, id: String) -> Result<WebhookRecord, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1"
            ))?
            .query_row(params![id], record_from_row)
            .optional()?
            .ok_or(StoreError::NotFound("webhook"))
        })
        .await
    }

    /// Deletes a subscription with its undelivered messages and its log (audited).
    pub async fn delete_webhook(&self, id: String, who: String) -> Result<(), StoreError> {
        self.write(move |conn| {
            let url: Option<String> = conn
                .prepare_cached("SELECT url FROM webhooks WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?;
            let url = url.ok_or(StoreError::NotFound("webhook"))?;
            conn.execute(
                "DELETE FROM webhook_messages WHERE webhook_id = ?1",
                params![id],
            )?;
            conn.execute(
                "DELETE FROM webhook_deliveries WHERE webhook_id = ?1",
                params![id],
            )?;
            conn.execute("DELETE FROM webhooks WHERE id = ?1", params![id])?;
            audit(
                conn,
                &who,
                "webhook.delete",
                Some(&id),
                None,
                Some(&serde_json::json!({"url": origin(&url)})),
            )?;
            Ok(())
        })
        .await
    }

    /// A page of a subscription's tries, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: String,
        limit: usize,
        cursor: Option<i64>,
    ) -> Result<Page<WebhookDelivery>, StoreError> {
        self.read(move |conn| {
            let exists: Option<String> = conn
                .prepare_cached("SELECT id FROM webhooks WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Err(StoreError::NotFound("webhook"));
            }
            let items = conn
                .prepare_cached(
                    "SELECT id, message_id, event_type, status, reply_code, error, at, took_ms
                     FROM webhook_deliveries WHERE webhook_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
                )?
                .query_map(params![id, cursor.unwrap_or(i64::MAX), limit as i64 + 1], |r| {
                    Ok(WebhookDelivery {
                        id: r.get(0)?,
                        message_id: message_id(r.get(1)?),
                        event: r.get(2)?,
                        status: r.get(3)?,
                        reply_code: r.get(4)?,
                        error: r.get(5)?,
                        at: format_time(r.get(6)?),
                        took_ms: r.get(7)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(page(items, limit, |d| d.id.to_string()))
        })
        .await
    }

    /// Retention (SPEC §14): webhook tries older than `cutoff`, and messages that are
    /// settled (delivered or failed) and older, `batch` rows per write job. Pending
    /// messages stay whatever their age. Returns the rows removed.
    pub(crate) async fn purge_webhook_history(
        &self,
        cutoff: Micros,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let mut removed = 0u64;
        loop {
            let n = self
                .write(move |conn| {
                    let tries = conn
                        .prepare_cached(
                            "DELETE FROM webhook_deliveries WHERE id IN
                             (SELECT id FROM webhook_deliveries WHERE at < ?1 LIMIT ?2)",
                        )?
                        .execute(params![cutoff, batch])?;
                    let messages = conn
                        .prepare_cached(
                            "DELETE FROM webhook_messages WHERE id IN
                             (SELECT id FROM webhook_messages WHERE created_at < ?1
                                AND status <> 'pending' LIMIT ?2)",
                        )?
                        .execute(params![cutoff, batch])?;
                    Ok(tries.max(messages) as u64)
                })
                .await?;
            removed += n;
            if i64::try_from(n).unwrap_or(i64::MAX) < batch {
                return Ok(removed);
            }
        }
    }

    /// Messages delivered so far (`mailtrail bench webhooks`).
    pub async fn webhook_messages_delivered(&self) -> Result<i64, StoreError> {
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT count(*) FROM webhook_messages WHERE status = 'delivered'",
                params![],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Whether any webhook message is due now (a cheap read before a lease).
    pub async fn webhook_messages_due(&self) -> Result<bool, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id FROM webhook_messages WHERE status = 'pending' AND next_attempt_at <= ?1 LIMIT 1",
                )?
                .query_row(params![now_micros()], |r| r.get::<_, i64>(0))
                .optional()?
                .is_some())
        })
        .await
    }

    /// Leases up to `limit` due messages for `lease` micros, in outbox order, skipping
    /// every address whose older message is still pending and not due (being tried by
    /// someone, or waiting for its retry): that keeps each address's events in order.
    /// On PostgreSQL leases of all processes take turns (an advisory lock), so two
    /// processes never hold two messages of one address.
    pub async fn lease_webhook_messages(
        &self,
        lease: i64,
        limit: usize,
    ) -> Result<Vec<LeasedWebhookMessage>, StoreError> {
        self.write(move |conn| {
            if conn.engine() == Engine::Postgres {
                conn.execute_batch("SELECT pg_advisory_xact_lock(7245102)")?;
            }
            let now = now_micros();
            let lease_until = now + lease;
            let mut leased = conn
                .prepare_cached(
                    "SELECT m.id, m.webhook_id, w.url, w.secret, m.event_type, m.address, m.payload, m.attempts, m.created_at
                     FROM webhook_messages m JOIN webhooks w ON w.id = m.webhook_id
                     WHERE m.status = 'pending' AND m.next_attempt_at <= ?1
                       AND NOT EXISTS (SELECT 1 FROM webhook_messages e
                           WHERE e.webhook_id = m.webhook_id AND e.address = m.address
                             AND e.status = 'pending' AND e.id < m.id AND e.next_attempt_at > ?1)
                     ORDER BY m.id LIMIT ?2",
                )?
                .query_map(params![now, limit as i64], |r| {
                    Ok(LeasedWebhookMessage {
                        id: r.get(0)?,
                        webhook_id: r.get(1)?,
                        url: r.get(2)?,
                        secret: r.get(3)?,
                        event: r.get(4)?,
                        address: r.get(5)?,
                        payload: r.get(6)?,
                        attempts: r.get(7)?,
                        created_at: r.get(8)?,
                        lease_until,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            leased.sort_by_key(|m| m.id);
            let ids: Vec<i64> = leased.iter().map(|m| m.id).collect();
            let sql = format!(
                "UPDATE webhook_messages SET next_attempt_at = ?1, lease_until = ?1 WHERE id IN {}",
                in_list(2)
            );
            for chunk in ids.chunks(IN_LIST) {
                let ids = padded(chunk);
                let mut values: Vec<&dyn Param> = vec![&lease_until];
                values.extend(ids.iter().map(|id| id as &dyn Param));
                conn.prepare_cached(&sql)?.execute(&values)?;
            }
            Ok(leased)
        })
        .await
    }

    /// Writes the tries of one round in one transaction: delivered rows in bulk, the
    /// others row by row, and one delivery-log row per try. A try whose lease was taken
    /// over meanwhile (it outlived its lease) still logs its try.
    pub async fn record_webhook_tries(&self, tries: Vec<WebhookTry>) -> Result<(), StoreError> {
        self.write(move |conn| {
            let delivered: Vec<&WebhookTry> = tries
                .iter()
                .filter(|t| t.result == TryResult::Delivered)
                .collect();
            let sql = format!(
                "UPDATE webhook_messages SET status = 'delivered', attempts = attempts + 1,
                     next_attempt_at = NULL, lease_until = NULL WHERE id IN {}",
                in_list(1)
            );
            for chunk in delivered.chunks(IN_LIST) {
                let ids = padded(&chunk.iter().map(|t| t.message).collect::<Vec<_>>());
                let values: Vec<&dyn Param> = ids.iter().map(|id| id as &dyn Param).collect();
                conn.prepare_cached(&sql)?.execute(&values)?;
            }
            for t in &tries {
                let (status, next) = match t.result {
                    TryResult::Delivered => continue,
                    TryResult::Retry(at) => ("pending", Some(at)),
                    TryResult::Failed => ("failed", None),
                    TryResult::Released => {
                        conn.prepare_cached(
                            "UPDATE webhook_messages SET next_attempt_at = ?3, lease_until = NULL
                             WHERE id = ?1 AND lease_until = ?2 AND status = 'pending'",
                        )?
                        .execute(params![t.message, t.lease_until, t.at])?;
                        continue;
                    }
                };
                conn.prepare_cached(
                    "UPDATE webhook_messages SET status = ?3, attempts = attempts + 1, next_attempt_at = ?4,
                         lease_until = NULL WHERE id = ?1 AND lease_until = ?2 AND status = 'pending'",
                )?
                .execute(params![t.message, t.lease_until, status, next])?;
            }
            let logged: Vec<&WebhookTry> = tries
                .iter()
                .filter(|t| t.result != TryResult::Released)
                .collect();
            for chunk in logged.chunks(IN_LIST) {
                let mut values: Vec<Box<dyn Param>> = Vec::new();
                let mut rows = Vec::new();
                for t in chunk {
                    let n = values.len();
                    let status = match t.result {
                        TryResult::Delivered => "delivered",
                        TryResult::Retry(_) => "retrying",
                        _ => "failed",
                    };
                    let marks: Vec<String> = (n + 1..=n + 8).map(|i| format!("?{i}")).collect();
                    rows.push(format!("({})", marks.join(", ")));
                    values.push(Box::new(t.webhook_id.clone()));
                    values.push(Box::new(t.message));
                    values.push(Box::new(t.event.clone()));
                    values.push(Box::new(t.at));
                    values.push(Box::new(status.to_owned()));
                    values.push(Box::new(t.reply_code));
                    values.push(Box::new(t.error.clone()));
                    values.push(Box::new(t.took_ms));
                }
                let sql = format!(
                    "INSERT INTO webhook_deliveries (webhook_id, message_id, event_type, at, status, reply_code, error, took_ms)
                     VALUES {}",
                    rows.join(", ")
                );
                let refs: Vec<&dyn Param> = values.iter().map(|v| v.as_ref()).collect();
                conn.execute(&sql, &refs)?;
            }
            Ok(())
        })
        .await
    }

    /// Whether any subscription wants `bounce_rate.crossed` (the rate is only watched then).
    pub async fn bounce_rate_watched(&self) -> Result<bool, StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id FROM webhooks WHERE events LIKE '%,bounce_rate.crossed,%' OR events LIKE '%,*,%' LIMIT 1",
                )?
                .query_row(params![], |r| r.get::<_, String>(0))
                .optional()?
                .is_some())
        })
        .await
    }

    /// Reads the last hour's counts and the stored bounce-rate level, lets `decide`
    /// (pure) say whether the level changed, and if so stores the new level and emits
    /// `bounce_rate.crossed` in the same transaction. Returns the event's data.
    pub async fn check_bounce_rate<F>(
        &self,
        decide: F,
    ) -> Result<Option<serde_json::Value>, StoreError>
    where
        F: Fn(i64, HourCounts) -> Option<(i64, serde_json::Value)> + Send + 'static,
    {
        self.write(move |conn| {
            if conn.engine() == Engine::Postgres {
                conn.execute_batch("SELECT pg_advisory_xact_lock(7245103)")?;
            }
            let now = now_micros();
            let (sent, bounced): (i64, i64) = conn.query_row(
                "SELECT coalesce(CAST(sum(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) AS BIGINT), 0),
                        coalesce(CAST(sum(CASE WHEN status = 'bounced' THEN 1 ELSE 0 END) AS BIGINT), 0)
                 FROM decisions WHERE created_at >= ?1",
                params![now - 3_600_000_000i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let level: i64 = conn
                .prepare_cached("SELECT value FROM webhook_state WHERE key = 'bounce_rate_level'")?
                .query_row(params![], |r| r.get::<_, String>(0))
                .optional()?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let Some((new_level, data)) = decide(level, HourCounts { sent, bounced }) else {
                return Ok(None);
            };
            conn.prepare_cached(
                "INSERT INTO webhook_state (key, value) VALUES ('bounce_rate_level', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![new_level.to_string()])?;
            let d = data.clone();
            emit(conn, WebhookEvent::BounceRateCrossed, "", now, move |_| Ok(d))?;
            Ok(Some(data))
        })
        .await
    }
}

/// `scheme://host[:port]` of a URL, without its path, query or credentials.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_drops_path_query_and_credentials() {
        assert_eq!(
            origin("https://user:pw@hooks.example.com:8443/in?token=x"),
            "https://hooks.example.com:8443"
        );
        assert_eq!(origin("http://h/"), "http://h");
    }
}
