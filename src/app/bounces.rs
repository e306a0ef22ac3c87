//! A bounce or complaint arrives (SPEC §4, §11): through `POST /api/v1/bounces` or the
//! SMTP door, the same pipeline — parse (pure, off the executor), map to actions (pure),
//! apply in one transaction, count.
//!
//! A report (RFC 3464 DSN, RFC 5965 complaint) is read as such. Anything else is read as
//! a notice ([`notice`]): attributed through its VERP address, classified by the reply it
//! quotes, and kept whole in `bounce_messages` whatever it did, so nothing that came
//! back is dropped. Over HTTP, a message that is neither a report nor carries a VERP
//! address is refused (422 `not_a_report`); over SMTP it is kept as unattributed.

use super::{App, AppResult};
use crate::delivery::bounces;
use crate::delivery::notice::{self, Notice, NoticeKind};
use crate::delivery::report::{self, Report, ReportError};
use crate::model::{EmailAddress, SuppressionReason};
use crate::store::{NewBounceMessage, ReportOutcome, StoreError, now_micros};
use serde::Serialize;

/// One received message, as a door hands it over.
#[derive(Debug, Clone)]
pub struct IncomingBounce {
    /// The whole message, headers and body, as received.
    pub raw: Vec<u8>,
    /// The `RCPT TO` it came to when it came over SMTP (a VERP address or the feedback
    /// address); `None` over HTTP.
    pub smtp_recipient: Option<String>,
}

/// What a received message did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportAnswer {
    /// `dsn` or `complaint` (a report); `notice` (a bounce that is not a report, or a
    /// message not understood); `auto_reply` (an out-of-office: changes nothing).
    #[serde(rename = "type")]
    pub kind: String,
    /// What it did, in one word: `suppressed`, `already_suppressed`, `policy_rejected`,
    /// `recorded` (understood, nothing to change) or `unclassified` (kept, not
    /// understood, nothing changed).
    pub result: String,
    /// The decision it was attributed to (a notice's VERP address), if any.
    pub decision_id: Option<String>,
    /// The id under which a message that was not a report is kept.
    pub kept_id: Option<i64>,
    /// One entry per address the report names (a notice: at most one).
    pub recipients: Vec<ReportOutcome>,
}

/// What the parser made of a message.
enum Reading {
    Report(Report),
    NotReport(ReportError, Notice),
}

impl App {
    /// Understands `message` and applies what it proves, committed before this returns;
    /// `by` is the actor the audit names. Refused (and nothing changed) only when it
    /// came over HTTP and is neither a report nor names a decision by its VERP address,
    /// or when it is a report naming too many recipients.
    pub async fn receive_bounce(
        &self,
        message: IncomingBounce,
        by: &str,
    ) -> AppResult<ReportAnswer> {
        let IncomingBounce {
            raw,
            smtp_recipient,
        } = message;
        let rcpt = smtp_recipient.clone();
        let (reading, raw) = tokio::task::spawn_blocking(move || {
            // Read without NUL bytes: PostgreSQL text holds none, and no field of a
            // report or notice needs one. The message is kept as it came.
            let readable: std::borrow::Cow<'_, [u8]> = if raw.contains(&0) {
                raw.iter()
                    .copied()
                    .filter(|&b| b != 0)
                    .collect::<Vec<u8>>()
                    .into()
            } else {
                raw.as_slice().into()
            };
            let reading = match report::parse(&readable) {
                Ok(report) => Reading::Report(report),
                Err(e) => Reading::NotReport(e, notice::read(&readable, rcpt.as_deref())),
            };
            drop(readable);
            (reading, raw)
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the report parser failed");
            StoreError::invalid("body", "the message could not be read")
        })?;
        // PostgreSQL text holds no NUL byte; the evidence is for people to read.
        let text = String::from_utf8_lossy(&raw).replace('\0', "");
        let mailbox_full_until = now_micros().saturating_add(
            i64::try_from(self.config.mailbox_full_for.as_micros()).unwrap_or(i64::MAX),
        );
        match reading {
            Reading::Report(parsed) => {
                let (kind, mut actions) = bounces::actions(&parsed, &text, mailbox_full_until)
                    .map_err(|m| {
                        self.metrics.bounce_report("invalid");
                        StoreError::Refused {
                            code: "too_many_recipients",
                            field: "body",
                            message: m.to_string(),
                        }
                    })?;
                // Over SMTP, the VERP address it came to names the decision too.
                let verp = smtp_recipient
                    .as_deref()
                    .and_then(crate::delivery::render::decision_id_from_verp);
                for a in actions.iter_mut().filter(|a| a.decision_hint.is_none()) {
                    a.decision_hint = verp.map(str::to_owned);
                }
                let (recipients, _) = self
                    .store
                    .apply_report(kind.clone(), actions, text, by.to_owned(), None)
                    .await?;
                self.count(&recipients, None);
                Ok(ReportAnswer {
                    result: overall(&recipients, "recorded"),
                    decision_id: recipients.iter().find_map(|r| r.decision_id.clone()),
                    kind,
                    kept_id: None,
                    recipients,
                })
            }
            Reading::NotReport(error, notice) => {
                self.receive_notice(
                    error,
                    notice,
                    raw,
                    text,
                    smtp_recipient,
                    by,
                    mailbox_full_until,
                )
                .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn receive_notice(
        &self,
        error: ReportError,
        notice: Notice,
        raw: Vec<u8>,
        text: String,
        smtp_recipient: Option<String>,
        by: &str,
        mailbox_full_until: i64,
    ) -> AppResult<ReportAnswer> {
        if notice.decision_id.is_none() && smtp_recipient.is_none() {
            self.metrics.bounce_report("invalid");
            let (code, message) = match error {
                ReportError::NotAReport | ReportError::Unparseable => (
                    "not_a_report",
                    "the message is neither a bounce or complaint report (multipart/report) nor \
                     addressed to a VERP address (bounces+{decision_id}@…) in X-Original-To, \
                     Delivered-To or To"
                        .to_owned(),
                ),
                other => (other.code(), other.to_string()),
            };
            return Err(StoreError::Refused {
                code,
                field: "body",
                message,
            });
        }
        // The decision its VERP address names, when there is one.
        let decision = match &notice.decision_id {
            Some(id) => match self.store.decision(id.clone()).await {
                Ok(d) => Some(d),
                Err(StoreError::NotFound(_)) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let action = decision.as_ref().and_then(|d| {
            let email = EmailAddress::parse(d.recipient.as_deref()?).ok()?;
            bounces::notice_action(&notice, &d.id, &email, &text, mailbox_full_until)
        });
        let kind = match notice.kind {
            NoticeKind::AutoReply => "auto_reply",
            NoticeKind::Bounce | NoticeKind::Other => "notice",
        };
        // Understood but nothing to do (an auto-reply, a bounce of another address, a
        // delay), or not understood at all.
        let understood = notice.kind == NoticeKind::AutoReply
            || (notice.kind == NoticeKind::Bounce
                && notice.reply.is_some()
                && notice.class() != notice::NoticeClass::Unclassified);
        let default_result = if understood {
            "recorded"
        } else {
            "unclassified"
        };
        let reply = notice.reply.as_ref();
        let kept = NewBounceMessage {
            decision_id: decision.as_ref().map(|d| d.id.clone()),
            via: if smtp_recipient.is_some() {
                "smtp"
            } else {
                "http"
            }
            .to_owned(),
            smtp_recipient,
            kind: kind.to_owned(),
            result: default_result.to_owned(),
            recipient: notice.failed_recipient.clone(),
            enhanced_code: reply.and_then(|r| r.enhanced.clone()),
            response: reply.map(|r| r.text.clone()),
            subject: notice.subject.clone(),
            sender: notice.from.clone(),
            raw,
        };
        let suppressed_reason = action.as_ref().and_then(|a| match &a.effect {
            crate::store::ReportEffect::Suppress { suppression, .. } => Some(suppression.reason),
            _ => None,
        });
        let (recipients, kept_id) = self
            .store
            .apply_report(
                kind.to_owned(),
                action.into_iter().collect(),
                text,
                by.to_owned(),
                Some(kept),
            )
            .await?;
        self.count(&recipients, suppressed_reason);
        if recipients.is_empty() {
            self.metrics.bounce_report(default_result);
        }
        Ok(ReportAnswer {
            kind: kind.to_owned(),
            result: overall(&recipients, default_result),
            decision_id: decision.map(|d| d.id),
            kept_id,
            recipients,
        })
    }

    /// Lifts the suppressions whose time is up (a full mailbox's, SPEC §11), each with
    /// an audit entry by `system`; returns how many.
    pub async fn expire_suppressions(&self) -> AppResult<usize> {
        let freed = self.store.expire_suppressions(now_micros()).await?;
        if !freed.is_empty() {
            tracing::info!(count = freed.len(), "suppressions expired");
        }
        Ok(freed.len())
    }

    /// Counts each address's result, and the suppressions made.
    fn count(&self, recipients: &[ReportOutcome], reason: Option<SuppressionReason>) {
        for r in recipients {
            self.metrics.bounce_report(&r.result);
            if r.result == "suppressed" {
                let reason = reason.unwrap_or(if r.action == "complaint" {
                    SuppressionReason::Complaint
                } else if r.status == "5.2.2" {
                    SuppressionReason::MailboxFull
                } else {
                    SuppressionReason::BounceReport
                });
                self.metrics.suppressed(reason, 1);
            }
        }
    }
}

/// One word for what a message did: `suppressed` when any address was, else the first
/// address's result, else `otherwise`.
fn overall(recipients: &[ReportOutcome], otherwise: &str) -> String {
    if recipients.iter().any(|r| r.result == "suppressed") {
        return "suppressed".into();
    }
    recipients
        .first()
        .map_or(otherwise, |r| r.result.as_str())
        .to_owned()
}
