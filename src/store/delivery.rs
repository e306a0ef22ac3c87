//! The store side of delivery: leases, attempts and status changes, bounce reports,
//! and resend-skipped.
//!
//! What a try *means* is decided in `delivery` (pure classification, retry schedule);
//! this module only writes it, a try's attempt, new status and suppression in one
//! transaction (with the other tries of its batch), so they are never half there.

use super::audit::audit;
use super::db::Engine;
use super::db::{Db, OptionalExtension, params};
use super::ingest::ResendSkippedOutcome;
use super::ingest::{ResendOutcome, resend_tx, with_idempotency};
use super::records::{DECISION_COLUMNS, decision_from_row};
use super::site::load_site;
use super::suppressions::suppression_reason;
use super::suppressions::{NewSuppression, insert_suppression};
use super::time::{Micros, format_time, now_micros};
use super::{DecisionRecord, Store, StoreError};
use crate::model::{
    AttemptOutcome, DeliveryEnd, EmailAddress, ProjectKey, ReasonCode, Stage, Status,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// One SMTP delivery try (SPEC §1 attempt).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    pub at: String,
    pub server: Option<String>,
    pub stage: Option<Stage>,
    pub smtp_code: Option<i64>,
    pub enhanced_code: Option<String>,
    pub reply: Option<String>,
    pub outcome: AttemptOutcome,
    pub copy_outcome: Option<String>,
    /// The TLS version the try ran over, e.g. `TLSv1.3`; null for plain SMTP (SPEC §12).
    pub tls: Option<String>,
}

/// A decision leased for delivery.
#[derive(Clone, Debug)]
pub struct LeasedDecision {
    pub decision: DecisionRecord,
    /// When it was queued (micros): the retry deadline counts from here.
    pub queued_at: Micros,
    /// The lease's expiry; it doubles as the lease's token.
    pub lease_until: Micros,
}

/// How long a lease lasts.
#[derive(Clone, Copy, Debug)]
pub struct Lease {
    pub micros: i64,
}

/// The row changes of one finished try, decided by `delivery`.
#[derive(Clone, Debug)]
pub struct AttemptWrite {
    pub decision_id: String,
    pub lease_until: Micros,
    pub started_at: Micros,
    pub server: Option<String>,
    pub stage: Option<Stage>,
    pub smtp_code: Option<i64>,
    pub enhanced_code: Option<String>,
    pub reply: Option<String>,
    pub outcome: AttemptOutcome,
    pub copy_outcome: Option<String>,
    /// The TLS version the try ran over, if any.
    pub tls: Option<String>,
    pub status: Status,
    pub status_reason: Option<DeliveryEnd>,
    pub next_attempt_at: Option<Micros>,
    /// For a hard bounce: the suppression written in the same transaction.
    pub suppression: Option<NewSuppression>,
}

/// What a bounce or complaint report does to one address, decided by `delivery`.
#[derive(Clone, Debug)]
pub struct ReportAction {
    pub email: EmailAddress,
    /// Decision ids named by the report (VERP, Message-ID), tried first.
    pub decision_hint: Option<String>,
    pub effect: ReportEffect,
    pub action: String,
    pub status: String,
}

/// The effect of a report on one address.
// Short-lived (one per address of one report), so the large variant is not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ReportEffect {
    /// Suppress (bounce_report or complaint), and mark the decision bounced when `bounce`.
    Suppress {
        suppression: NewSuppression,
        bounce: bool,
    },
    /// Sender-side failure: the decision is failed/policy_rejected, the address is fine.
    PolicyRejected { reply: String },
    /// Delayed, 4.x.x, delivered: recorded, nothing changes.
    Record,
}

/// A received bounce message that was not a report, kept (SPEC §11 "nothing dropped").
#[derive(Clone, Debug)]
pub struct NewBounceMessage {
    /// The decision its VERP address names, when that decision exists.
    pub decision_id: Option<String>,
    /// The door it came through: `http` or `smtp`.
    pub via: String,
    /// The `RCPT TO` it came to over SMTP.
    pub smtp_recipient: Option<String>,
    /// `notice` (a bounce notice), `auto_reply`, or `other` (a message we do not know).
    pub kind: String,
    /// What it did when it caused no action: `unclassified` or `recorded`.
    pub result: String,
    /// The address it says failed.
    pub recipient: Option<String>,
    /// The enhanced status of the reply it quotes.
    pub enhanced_code: Option<String>,
    /// The reply it quotes.
    pub response: Option<String>,
    /// Its `Subject`.
    pub subject: Option<String>,
    /// Its `From`.
    pub sender: Option<String>,
    /// The message as received.
    pub raw: Vec<u8>,
}

/// A kept bounce message, as the dashboard shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct BounceMessageRecord {
    pub id: i64,
    pub received_at: String,
    pub decision_id: Option<String>,
    pub via: String,
    pub kind: String,
    pub result: String,
    pub recipient: Option<String>,
    pub enhanced_code: Option<String>,
    pub response: Option<String>,
    pub subject: Option<String>,
    pub sender: Option<String>,
    pub bytes: i64,
}

/// The answer to a posted report, per address.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ReportOutcome {
    pub email: String,
    pub action: String,
    pub status: String,
    /// `suppressed`, `already_suppressed`, `policy_rejected`, `recorded`.
    pub result: String,
    pub decision_id: Option<String>,
}

/// A stored wire name read back as its enum; an unknown one is a conversion error.
fn wire<T: std::str::FromStr>(s: &str, column: usize) -> Result<T, super::db::DbError> {
    s.parse().map_err(|_| super::db::DbError::Conversion {
        column,
        message: format!("unknown value `{s}`"),
    })
}

/// The attempts of a decision, oldest first.
pub(crate) fn attempts_of(conn: &Db, decision_id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT finished_at, server, stage, smtp_code, enhanced_code, reply, outcome, copy_outcome, tls
         FROM attempts WHERE decision_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![decision_id], |r| {
        Ok(AttemptRecord {
            at: format_time(r.get(0)?),
            server: r.get(1)?,
            stage: r
                .get::<_, Option<String>>(2)?
                .map(|s| wire(&s, 2))
                .transpose()?,
            smtp_code: r.get(3)?,
            enhanced_code: r.get(4)?,
            reply: r.get(5)?,
            outcome: wire(&r.get::<_, String>(6)?, 6)?,
            copy_outcome: r.get(7)?,
            tls: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

impl Store {
    /// Leases up to `limit` due decisions (queued, deferred, or sending with an expired
    /// lease), re-checking the delivery-time guards: with outgoing mail off or the address
    /// suppressed, the row is marked skipped instead (SPEC §4).
    pub async fn lease_due(
        &self,
        lease: Lease,
        limit: usize,
    ) -> Result<Vec<LeasedDecision>, StoreError> {
        self.write(move |conn| {
            let now = now_micros();
            let site = load_site(conn)?;
            // SQLite's one writer already serializes leases; on PostgreSQL the rows
            // another process is leasing right now are skipped, not waited for.
            let lock = match conn.engine() {
                Engine::Sqlite => "",
                Engine::Postgres => "FOR UPDATE SKIP LOCKED",
            };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DECISION_COLUMNS}, created_at FROM decisions
                 WHERE status IN ('queued', 'deferred', 'sending') AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at LIMIT ?2 {lock}"
            ))?;
            let due = stmt
                .query_map(params![now, limit as i64], |r| Ok((decision_from_row(r)?, r.get::<_, i64>(19)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            let guards = delivery_guards(conn, site.outgoing_mail, &due)?;
            let lease_until = now + lease.micros;
            let mut leased = Vec::with_capacity(due.len());
            for ((decision, queued_at), guard) in due.into_iter().zip(guards) {
                match guard {
                    Some(reason) => {
                        conn.prepare_cached(
                            "UPDATE decisions SET status = 'skipped', status_reason = ?2, next_attempt_at = NULL,
                                 lease_until = NULL, updated_at = ?3 WHERE id = ?1",
                        )?
                        .execute(params![decision.id, reason.as_str(), now])?;
                        super::webhooks::emit_decision(conn, &decision.id, Status::Skipped, now)?;
                    }
                    None => leased.push(LeasedDecision { decision, queued_at, lease_until }),
                }
            }
            // One statement per chunk rather than per row: on PostgreSQL each statement
            // is a round trip, and the lease is the one serial step of delivery.
            for chunk in leased.chunks(IN_LIST) {
                let ids: Vec<&str> = padded(chunk.iter().map(|l| l.decision.id.as_str()));
                let mut sql = String::from(
                    "UPDATE decisions SET status = 'sending', next_attempt_at = ?1, lease_until = ?1, updated_at = ?2 WHERE id IN (",
                );
                push_placeholders(&mut sql, 3, IN_LIST);
                let mut values: Vec<&dyn super::db::Param> = vec![&lease_until, &now];
                values.extend(ids.iter().map(|id| id as &dyn super::db::Param));
                conn.prepare_cached(&sql)?.execute(&values)?;
            }
            Ok(leased)
        })
        .await
    }

    /// Writes one finished try: the attempt, the decision's new status, and a suppression
    /// when it bounced (one transaction; see [`Store::record_attempts`]).
    pub async fn record_attempt(&self, w: AttemptWrite) -> Result<(), StoreError> {
        self.record_attempts(vec![w]).await
    }

    /// Writes finished tries, all in one transaction: their attempts, the decisions' new
    /// statuses, and a suppression for each that bounced. A try whose lease was taken
    /// over meanwhile records its attempt, and its status only when final (sent,
    /// bounced, failed): the row is being tried again meanwhile, and that try will find
    /// it settled. A deferral is left to whoever holds the lease now.
    ///
    /// The rows go in a few multi-row statements rather than two or three per try: on
    /// PostgreSQL every statement is a round trip, and the record is delivery's busiest
    /// write.
    pub async fn record_attempts(&self, writes: Vec<AttemptWrite>) -> Result<(), StoreError> {
        self.write(move |conn| {
            let now = now_micros();
            let mut subscribers = super::webhooks::Subscribers::default();
            for chunk in distinct_chunks(&writes) {
                insert_attempts(conn, &chunk, now)?;
                let settled = settle_decisions(conn, &chunk, now)?;
                for w in chunk
                    .iter()
                    .filter(|w| settled.contains(w.decision_id.as_str()))
                {
                    if let Some(s) = &w.suppression {
                        insert_suppression(conn, s, now)?;
                    }
                    super::webhooks::emit_decision_to(
                        &mut subscribers,
                        conn,
                        &w.decision_id,
                        w.status,
                        now,
                    )?;
                }
            }
            Ok(())
        })
        .await
    }

    /// The delivery-time guard for a leased decision, checked again right before the
    /// send (a lease may be taken a little ahead): outgoing mail off, or the address
    /// suppressed since.
    pub async fn guard(&self, recipient: String) -> Result<Option<ReasonCode>, StoreError> {
        self.read(move |conn| {
            delivery_guard(conn, load_site(conn)?.outgoing_mail, Some(&recipient))
        })
        .await
    }

    /// Marks a leased decision skipped by a delivery-time guard.
    pub async fn skip_leased(
        &self,
        id: String,
        lease_until: Micros,
        reason: ReasonCode,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            let now = now_micros();
            let updated = conn.prepare_cached(
                "UPDATE decisions SET status = 'skipped', status_reason = ?3, next_attempt_at = NULL,
                     lease_until = NULL, updated_at = ?4 WHERE id = ?1 AND status = 'sending' AND lease_until = ?2",
            )?
            .execute(params![id, lease_until, reason.as_str(), now])?;
            if updated == 1 {
                super::webhooks::emit_decision(conn, &id, Status::Skipped, now)?;
            }
            Ok(())
        })
        .await
    }

    /// Gives back leases without a try (graceful shutdown): the rows are due again now.
    pub async fn release(&self, leases: Vec<(String, Micros)>) -> Result<(), StoreError> {
        self.write(move |conn| {
            let now = now_micros();
            for (id, lease_until) in &leases {
                conn.prepare_cached(
                    "UPDATE decisions SET status = CASE WHEN attempts_count = 0 THEN 'queued' ELSE 'deferred' END,
                         next_attempt_at = ?3, lease_until = NULL WHERE id = ?1 AND status = 'sending' AND lease_until = ?2",
                )?
                .execute(params![id, lease_until, now])?;
            }
            Ok(())
        })
        .await
    }

    /// Applies a bounce or complaint report, all addresses in one transaction; the raw
    /// report is recorded either way. A message that was not a report is `kept` in the
    /// same transaction, with the result of its action; its id is returned.
    pub async fn apply_report(
        &self,
        kind: String,
        actions: Vec<ReportAction>,
        raw: String,
        who: String,
        kept: Option<NewBounceMessage>,
    ) -> Result<(Vec<ReportOutcome>, Option<i64>), StoreError> {
        self.write(move |conn| {
            let now = now_micros();
            let mut outcomes = Vec::new();
            for a in &actions {
                let decision_id = find_reported_decision(conn, a)?;
                let result = match &a.effect {
                    ReportEffect::Suppress {
                        suppression,
                        bounce,
                    } => {
                        let mut s = suppression.clone();
                        s.decision_id = decision_id.clone().or(s.decision_id);
                        let added = insert_suppression(conn, &s, now)?;
                        super::webhooks::emit_complaint(
                            conn,
                            s.email.as_str(),
                            decision_id.as_deref(),
                            s.reason,
                            now,
                        )?;
                        if *bounce && let Some(id) = &decision_id {
                            set_final(
                                conn,
                                id,
                                Status::Bounced,
                                s.reason.bounce_end(),
                                s.response.as_deref(),
                                now,
                            )?;
                        }
                        if added {
                            "suppressed"
                        } else {
                            "already_suppressed"
                        }
                    }
                    ReportEffect::PolicyRejected { reply } => {
                        if let Some(id) = &decision_id {
                            set_final(
                                conn,
                                id,
                                Status::Failed,
                                DeliveryEnd::PolicyRejected,
                                Some(reply),
                                now,
                            )?;
                        }
                        "policy_rejected"
                    }
                    ReportEffect::Record => "recorded",
                };
                outcomes.push(ReportOutcome {
                    email: a.email.to_string(),
                    action: a.action.clone(),
                    status: a.status.clone(),
                    result: result.to_owned(),
                    decision_id,
                });
            }
            let kept_id = match &kept {
                Some(message) => Some(keep_message(conn, message, &outcomes, now)?),
                None => None,
            };
            let summary = serde_json::to_value(&outcomes)?;
            audit(
                conn,
                &who,
                &format!("report.{kind}"),
                kept.as_ref().and_then(|m| m.decision_id.as_deref()),
                None,
                Some(&serde_json::json!({"recipients": summary, "bytes": raw.len(), "kept_id": kept_id})),
            )?;
            Ok((outcomes, kept_id))
        })
        .await
    }

    /// Re-queues, as new resend decisions, what was skipped for `reason` in the window
    /// (SPEC §5 resend-skipped). One resend per customer and project.
    pub async fn resend_skipped(
        &self,
        reason: ReasonCode,
        since: Micros,
        until: Micros,
        project: Option<ProjectKey>,
        who: String,
        idempotency: Option<super::IdempotencyKey>,
    ) -> Result<ResendSkippedOutcome, StoreError> {
        self.write(move |conn| {
            with_idempotency(conn, idempotency.as_ref(), |conn| {
                let pattern = format!("%,{reason},%");
                let mut stmt = conn.prepare_cached(
                    "SELECT project, recipient, reasons FROM decisions
                     WHERE status = 'skipped' AND email_kind = 'invitation' AND recipient IS NOT NULL
                       AND customer_id IS NOT NULL AND created_at >= ?1 AND created_at < ?2
                       AND (CAST(?3 AS TEXT) IS NULL OR project = ?3)
                       AND ((',' || reasons || ',') LIKE ?4 OR status_reason = ?5)
                     ORDER BY seq",
                )?;
                let rows = stmt
                    .query_map(params![since, until, project.as_ref().map(|p| p.to_string()), pattern, reason.as_str()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                // Only invitations that `reason` kept back: one skipped because the agent
                // opted out, or because the customer already existed, stays skipped.
                let mut targets: Vec<(String, String)> = Vec::new();
                for (key, recipient, reasons) in rows {
                    let only_this = reasons
                        .split(',')
                        .filter(|r| !r.is_empty())
                        .all(|r| r == reason.as_str() || r == ReasonCode::Suppressed.as_str());
                    let target = (key, recipient);
                    if only_this && !targets.contains(&target) {
                        targets.push(target);
                    }
                }
                let now = now_micros();
                let mut outcome = ResendSkippedOutcome { queued: 0, still_blocked: BTreeMap::new(), recorded: true };
                for (key, recipient) in targets {
                    let (Ok(key), Ok(email)) = (ProjectKey::parse(&key), EmailAddress::parse(&recipient)) else {
                        continue;
                    };
                    match resend_tx(conn, &key, &email, now) {
                        Ok(ResendOutcome::Recorded(o)) if o.reasons.is_empty() => outcome.queued += 1,
                        Ok(ResendOutcome::Recorded(o)) => {
                            let primary = o.reasons.first().map(|r| r.to_string()).unwrap_or_default();
                            *outcome.still_blocked.entry(primary).or_default() += 1;
                        }
                        Ok(ResendOutcome::NotMember) | Err(StoreError::NotFound(_)) => {
                            *outcome.still_blocked.entry("not_a_member".into()).or_default() += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
                audit(conn, &who, "resend_skipped", project.as_ref().map(|p| p.as_str()), None, Some(&serde_json::json!({
                    "reason": reason, "since": format_time(since), "until": format_time(until),
                    "queued": outcome.queued, "still_blocked": outcome.still_blocked,
                })))?;
                Ok(outcome)
            })
        })
        .await
    }

    /// How many decisions were skipped for `reason` since `since` (the site page's
    /// "while outgoing mail was off" count).
    pub async fn skipped_count(
        &self,
        reason: ReasonCode,
        since: Micros,
    ) -> Result<i64, StoreError> {
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT count(*) FROM decisions WHERE status = 'skipped' AND created_at >= ?1
                   AND ((',' || reasons || ',') LIKE ?2 OR status_reason = ?3)",
                params![since, format!("%,{reason},%"), reason.as_str()],
                |r| r.get(0),
            )?)
        })
        .await
    }
}

/// The delivery-time guards of SPEC §4, in the reason table's order: outgoing mail
/// off, then the address suppressed (or missing: an invalid input is never sent).
fn delivery_guard(
    conn: &Db,
    outgoing_mail: bool,
    recipient: Option<&str>,
) -> Result<Option<ReasonCode>, StoreError> {
    if !outgoing_mail {
        return Ok(Some(ReasonCode::OutgoingMailDisabled));
    }
    let suppressed = match recipient {
        Some(r) => suppression_reason(conn, r)?.is_some(),
        None => true,
    };
    Ok(suppressed.then_some(ReasonCode::Suppressed))
}

/// [`delivery_guard`] for a batch of due rows, with one suppression look-up per
/// [`IN_LIST`] recipients instead of one per row.
fn delivery_guards(
    conn: &Db,
    outgoing_mail: bool,
    due: &[(DecisionRecord, Micros)],
) -> Result<Vec<Option<ReasonCode>>, StoreError> {
    if !outgoing_mail {
        return Ok(vec![Some(ReasonCode::OutgoingMailDisabled); due.len()]);
    }
    let recipients: Vec<&str> = due
        .iter()
        .filter_map(|(d, _)| d.recipient.as_deref())
        .collect();
    let mut suppressed = std::collections::HashSet::new();
    for chunk in recipients.chunks(IN_LIST) {
        let mut sql = String::from("SELECT email FROM suppressions WHERE email IN (");
        push_placeholders(&mut sql, 1, IN_LIST);
        let values = padded(chunk.iter().copied());
        let values: Vec<&dyn super::db::Param> =
            values.iter().map(|v| v as &dyn super::db::Param).collect();
        conn.prepare_cached(&sql)?.for_each(&values, |r| {
            suppressed.insert(r.get::<_, String>(0)?);
            Ok(())
        })?;
    }
    Ok(due
        .iter()
        .map(|(d, _)| match d.recipient.as_deref() {
            Some(r) if !suppressed.contains(r) => None,
            _ => Some(ReasonCode::Suppressed),
        })
        .collect())
}

/// `writes` cut into chunks of at most [`IN_LIST`], no decision twice in one chunk (two
/// tries of one decision — one outlived its lease — settle one after the other).
fn distinct_chunks(writes: &[AttemptWrite]) -> Vec<Vec<&AttemptWrite>> {
    let mut chunks: Vec<(std::collections::HashSet<&str>, Vec<&AttemptWrite>)> = Vec::new();
    for w in writes {
        let id = w.decision_id.as_str();
        match chunks
            .iter_mut()
            .find(|(ids, rows)| rows.len() < IN_LIST && !ids.contains(id))
        {
            Some((ids, rows)) => {
                ids.insert(id);
                rows.push(w);
            }
            None => chunks.push((std::collections::HashSet::from([id]), vec![w])),
        }
    }
    chunks.into_iter().map(|(_, rows)| rows).collect()
}

/// The rows a multi-row statement is written for: `n` rounded up to a power of two, so
/// each statement has a handful of shapes to prepare and cache, not one per length.
/// The rows past `n` are all NULL and match nothing.
fn shape(n: usize) -> usize {
    n.next_power_of_two()
}

/// `(?a, ?b, …), (…)`: `rows` tuples of one placeholder per entry of `casts`, numbered
/// from `?first`, each wrapped in its cast (PostgreSQL types a `VALUES` list's
/// placeholders by them).
fn values_list(first: usize, rows: usize, casts: &[&str]) -> String {
    let tuples: Vec<String> = (0..rows)
        .map(|row| {
            let cols: Vec<String> = casts
                .iter()
                .enumerate()
                .map(|(col, cast)| format!("CAST(?{} AS {cast})", first + row * casts.len() + col))
                .collect();
            format!("({})", cols.join(", "))
        })
        .collect();
    tuples.join(", ")
}

/// `values` padded with NULLs to [`shape`] rows of `per_row`.
fn pad(
    mut values: Vec<&dyn super::db::Param>,
    rows: usize,
    per_row: usize,
) -> Vec<&dyn super::db::Param> {
    values.resize(1 + shape(rows) * per_row, &super::db::Value::Null);
    values
}

/// Inserts the attempt rows of `chunk`, finished at `now`.
fn insert_attempts(conn: &Db, chunk: &[&AttemptWrite], now: Micros) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO attempts (finished_at, decision_id, started_at, server, stage, smtp_code, enhanced_code, reply, outcome, copy_outcome, tls)
         SELECT ?1, v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, v.column8, v.column9, v.column10
         FROM (VALUES {}) AS v WHERE v.column1 IS NOT NULL",
        values_list(2, shape(chunk.len()), &["TEXT", "BIGINT", "TEXT", "TEXT", "BIGINT", "TEXT", "TEXT", "TEXT", "TEXT", "TEXT"])
    );
    let rows: Vec<(Option<&str>, &str)> = chunk
        .iter()
        .map(|w| (w.stage.map(Stage::as_str), w.outcome.as_str()))
        .collect();
    let mut values: Vec<&dyn super::db::Param> = vec![&now];
    for (w, (stage, outcome)) in chunk.iter().zip(&rows) {
        values.extend([
            &w.decision_id as &dyn super::db::Param,
            &w.started_at,
            &w.server,
            stage,
            &w.smtp_code,
            &w.enhanced_code,
            &w.reply,
            outcome,
            &w.copy_outcome,
            &w.tls,
        ]);
    }
    conn.prepare_cached(&sql)?
        .execute(&pad(values, chunk.len(), 10))?;
    Ok(())
}

/// Settles the decisions of `chunk` (see [`Store::record_attempts`]); answers the ids
/// whose row changed.
fn settle_decisions(
    conn: &Db,
    chunk: &[&AttemptWrite],
    now: Micros,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let sql = format!(
        "UPDATE decisions SET status = v.column3, status_reason = v.column4, next_attempt_at = v.column5,
             lease_until = NULL, attempts_count = attempts_count + 1, last_reply = v.column6,
             sent_at = CASE WHEN v.column3 = 'sent' THEN ?1 ELSE sent_at END, updated_at = ?1
         FROM (VALUES {}) AS v
         WHERE decisions.id = v.column1 AND decisions.status = 'sending'
             AND (decisions.lease_until = v.column2 OR v.column7)
         RETURNING decisions.id",
        values_list(2, shape(chunk.len()), &["TEXT", "BIGINT", "TEXT", "TEXT", "BIGINT", "TEXT", "BOOLEAN"])
    );
    let rows: Vec<(&str, Option<&str>, Option<String>, bool)> = chunk
        .iter()
        .map(|w| {
            let last_reply = w.reply.as_ref().map(|r| match w.smtp_code {
                Some(code) => format!("{code} {r}"),
                None => r.clone(),
            });
            // Only a final result settles a row whose lease another try holds now.
            let final_result = w.status != Status::Deferred;
            (
                w.status.as_str(),
                w.status_reason.map(DeliveryEnd::as_str),
                last_reply,
                final_result,
            )
        })
        .collect();
    let mut values: Vec<&dyn super::db::Param> = vec![&now];
    for (w, (status, reason, last_reply, final_result)) in chunk.iter().zip(&rows) {
        values.extend([
            &w.decision_id as &dyn super::db::Param,
            &w.lease_until,
            status,
            reason,
            &w.next_attempt_at,
            last_reply,
            final_result,
        ]);
    }
    let mut settled = std::collections::HashSet::new();
    conn.prepare_cached(&sql)?
        .for_each(&pad(values, chunk.len(), 7), |r| {
            settled.insert(r.get::<_, String>(0)?);
            Ok(())
        })?;
    Ok(settled)
}

/// Values per `IN (…)` list of a batched statement. Lists are padded to this length
/// (repeating a value changes nothing) so each statement is prepared once and cached.
const IN_LIST: usize = 64;

/// `values` padded to [`IN_LIST`] by repeating the last one.
fn padded<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = values.collect();
    if let Some(last) = out.last().copied() {
        out.resize(IN_LIST, last);
    }
    out
}

/// Appends `?first, …` (`n` placeholders) and the closing parenthesis.
fn push_placeholders(sql: &mut String, first: usize, n: usize) {
    let list: Vec<String> = (first..first + n).map(|i| format!("?{i}")).collect();
    sql.push_str(&list.join(", "));
    sql.push(')');
}

/// Inserts a kept message; its result is its action's, else the one it came with.
fn keep_message(
    conn: &Db,
    m: &NewBounceMessage,
    outcomes: &[ReportOutcome],
    now: Micros,
) -> Result<i64, StoreError> {
    let result = outcomes
        .first()
        .map_or(m.result.as_str(), |o| o.result.as_str());
    let bytes = i64::try_from(m.raw.len()).unwrap_or(i64::MAX);
    Ok(conn
        .prepare_cached(
            "INSERT INTO bounce_messages (received_at, decision_id, via, smtp_recipient, kind,
                 result, recipient, enhanced_code, response, subject, sender, bytes, raw)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING id",
        )?
        .query_row(
            params![
                now,
                m.decision_id,
                m.via,
                m.smtp_recipient,
                m.kind,
                result,
                m.recipient,
                m.enhanced_code,
                m.response,
                m.subject,
                m.sender,
                bytes,
                m.raw
            ],
            |r| r.get(0),
        )?)
}

const BOUNCE_MESSAGE_COLUMNS: &str = "id, received_at, decision_id, via, kind, result, recipient,
    enhanced_code, response, subject, sender, bytes";

fn bounce_message_from_row(
    r: &super::db::Row<'_>,
) -> Result<BounceMessageRecord, super::db::DbError> {
    Ok(BounceMessageRecord {
        id: r.get(0)?,
        received_at: super::time::format_time(r.get(1)?),
        decision_id: r.get(2)?,
        via: r.get(3)?,
        kind: r.get(4)?,
        result: r.get(5)?,
        recipient: r.get(6)?,
        enhanced_code: r.get(7)?,
        response: r.get(8)?,
        subject: r.get(9)?,
        sender: r.get(10)?,
        bytes: r.get(11)?,
    })
}

impl Store {
    /// The kept bounce messages of a decision, oldest first (at most 100), each with
    /// the first 8 KiB of the message as received.
    pub async fn bounce_messages_of(
        &self,
        decision_id: String,
    ) -> Result<Vec<(BounceMessageRecord, Vec<u8>)>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {BOUNCE_MESSAGE_COLUMNS}, substr(raw, 1, 8192) FROM bounce_messages
                 WHERE decision_id = ?1 ORDER BY id LIMIT 100"
            ))?;
            let rows = stmt.query_map(params![decision_id], |r| {
                Ok((bounce_message_from_row(r)?, r.get(12)?))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// One kept bounce message with its raw bytes.
    pub async fn bounce_message(
        &self,
        id: i64,
    ) -> Result<(BounceMessageRecord, Vec<u8>), StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {BOUNCE_MESSAGE_COLUMNS}, raw FROM bounce_messages WHERE id = ?1"
            ))?
            .query_row(params![id], |r| {
                Ok((bounce_message_from_row(r)?, r.get(12)?))
            })
            .optional()?
            .ok_or(StoreError::NotFound("bounce message"))
        })
        .await
    }

    /// Kept bounce messages that changed nothing because nothing in them was understood
    /// (`unclassified`), received since `since`: attributed to a decision, and not.
    pub async fn unclassified_bounces(&self, since: Micros) -> Result<(i64, i64), StoreError> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT CAST(count(decision_id) AS BIGINT),
                            CAST(count(*) - count(decision_id) AS BIGINT)
                     FROM bounce_messages WHERE result = 'unclassified' AND received_at >= ?1",
                )?
                .query_row(params![since], |r| Ok((r.get(0)?, r.get(1)?)))?)
        })
        .await
    }

    /// Lifts the suppressions whose time is up (a full mailbox's, SPEC §11), each with
    /// an audit entry by `system`; returns the addresses freed.
    pub async fn expire_suppressions(&self, now: Micros) -> Result<Vec<String>, StoreError> {
        let due = self
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT email FROM suppressions
                         WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT 1",
                    )?
                    .query_row(params![now], |r| r.get::<_, String>(0))
                    .optional()?)
            })
            .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        self.write(move |conn| {
            let due: Vec<(String, String)> = conn
                .prepare_cached(
                    "SELECT email, reason FROM suppressions
                     WHERE expires_at IS NOT NULL AND expires_at <= ?1 ORDER BY expires_at LIMIT 500",
                )?
                .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut emails = Vec::new();
            for (email, reason) in due {
                let gone = conn
                    .prepare_cached(
                        "DELETE FROM suppressions WHERE email = ?1 AND expires_at <= ?2",
                    )?
                    .execute(params![email, now])?;
                if gone == 1 {
                    emails.push((email, reason));
                }
            }
            for (email, reason) in &emails {
                super::suppressions::log_event(conn, email, false, reason, now)?;
                audit(
                    conn,
                    "system",
                    "suppression.expire",
                    Some(email),
                    Some("the suppression's time was up"),
                    Some(&serde_json::json!({"reason": reason})),
                )?;
            }
            Ok(emails.into_iter().map(|(email, _)| email).collect())
        })
        .await
    }
}

/// The decision a report is about: the one it names (VERP or Message-ID) when its
/// recipient matches, else the newest sent decision to that address.
fn find_reported_decision(conn: &Db, a: &ReportAction) -> Result<Option<String>, StoreError> {
    if let Some(id) = &a.decision_hint {
        let named: Option<String> = conn
            .prepare_cached("SELECT id FROM decisions WHERE id = ?1 AND recipient = ?2")?
            .query_row(params![id, a.email.as_str()], |r| r.get(0))
            .optional()?;
        if named.is_some() {
            return Ok(named);
        }
    }
    Ok(conn
        .prepare_cached("SELECT id FROM decisions WHERE recipient = ?1 AND status = 'sent' ORDER BY seq DESC LIMIT 1")?
        .query_row(params![a.email.as_str()], |r| r.get(0))
        .optional()?)
}

fn set_final(
    conn: &Db,
    id: &str,
    status: Status,
    reason: DeliveryEnd,
    reply: Option<&str>,
    now: Micros,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE decisions SET status = ?2, status_reason = ?3, last_reply = coalesce(?4, last_reply),
             next_attempt_at = NULL, lease_until = NULL, updated_at = ?5 WHERE id = ?1",
    )?
    .execute(params![id, status.as_str(), reason.as_str(), reply, now])?;
    super::webhooks::emit_decision(conn, id, status, now)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SuppressionReason;
    use crate::store::{DbLocation, StoreOptions};

    fn write(id: &str, lease_until: Micros, status: Status) -> AttemptWrite {
        AttemptWrite {
            decision_id: id.to_owned(),
            lease_until,
            started_at: 1,
            server: Some("127.0.0.1:25".into()),
            stage: Some(Stage::Data),
            smtp_code: Some(250),
            enhanced_code: None,
            reply: Some("ok".into()),
            outcome: AttemptOutcome::Sent,
            copy_outcome: None,
            tls: None,
            status,
            status_reason: None,
            next_attempt_at: (status == Status::Deferred).then_some(5),
            suppression: None,
        }
    }

    #[test]
    fn chunks_hold_a_decision_once_and_at_most_an_in_list() {
        let writes: Vec<_> = (0..70)
            .map(|i| write(&format!("d{i}"), 1, Status::Sent))
            .chain([write("d3", 2, Status::Sent)])
            .collect();
        let chunks = distinct_chunks(&writes);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [64, 7],
            "d3's second try goes to the chunk without d3"
        );
        for chunk in &chunks {
            let ids: std::collections::HashSet<_> = chunk.iter().map(|w| &w.decision_id).collect();
            assert_eq!(ids.len(), chunk.len());
        }
        assert_eq!((shape(1), shape(7), shape(64)), (1, 8, 64));
    }

    /// One batch with a send, a bounce, a deferral whose lease another try took over,
    /// a final result whose lease was taken over, and two tries of one decision: each
    /// settles as it would alone.
    #[tokio::test]
    async fn a_batch_settles_each_try_as_it_would_alone() {
        let dir = tempfile::tempdir().unwrap();
        let location = DbLocation::Sqlite(dir.path().join("t.db"));
        let store = Store::open(&location, StoreOptions::default()).unwrap();
        store
            .write(|conn| {
                for (id, lease) in [("a", 10), ("b", 10), ("c", 99), ("d", 99), ("e", 10)] {
                    conn.execute(
                        "INSERT INTO decisions (id, created_at, project, recipient, input, channel, email_kind,
                             decision, reasons, status, lease_until, next_attempt_at, updated_at)
                         VALUES (?1, 0, 'P', ?2, ?2, 'agent', 'invite', 'send', '', 'sending', ?3, ?3, 0)",
                        params![id, format!("{id}@example.com"), lease],
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let mut bounced = write("b", 10, Status::Bounced);
        bounced.suppression = Some(NewSuppression::plain(
            EmailAddress::parse("b@example.com").unwrap(),
            SuppressionReason::HardBounce,
            None,
        ));
        store
            .record_attempts(vec![
                write("a", 10, Status::Sent),
                bounced,
                write("c", 10, Status::Deferred),
                write("d", 10, Status::Sent),
                write("e", 10, Status::Deferred),
                write("e", 10, Status::Sent),
            ])
            .await
            .unwrap();
        let rows = store
            .read(|conn| {
                let statuses = conn
                    .prepare_cached("SELECT id, status, attempts_count FROM decisions ORDER BY id")?
                    .query_map(params![], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let attempts: i64 =
                    conn.query_row("SELECT count(*) FROM attempts", params![], |r| r.get(0))?;
                let suppressed: i64 = conn.query_row(
                    "SELECT count(*) FROM suppressions WHERE email = 'b@example.com'",
                    params![],
                    |r| r.get(0),
                )?;
                Ok((statuses, attempts, suppressed))
            })
            .await
            .unwrap();
        let status = |id: &str| {
            rows.0
                .iter()
                .find(|r| r.0 == id)
                .map(|r| (r.1.as_str(), r.2))
                .unwrap()
        };
        assert_eq!(status("a"), ("sent", 1));
        assert_eq!(status("b"), ("bounced", 1));
        assert_eq!(
            status("c"),
            ("sending", 0),
            "a deferral leaves a taken-over lease alone"
        );
        assert_eq!(
            status("d"),
            ("sent", 1),
            "a final result settles a taken-over lease"
        );
        assert_eq!(
            status("e"),
            ("deferred", 1),
            "the second try of e found it no longer sending"
        );
        assert_eq!(rows.1, 6, "every try has its attempt row");
        assert_eq!(rows.2, 1);
    }
}
