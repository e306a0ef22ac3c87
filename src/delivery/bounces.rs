//! What a posted bounce or complaint report does, address by address (SPEC §4): pure
//! mapping from a parsed [`Report`] to store actions.

use super::notice::{Notice, NoticeClass};
use super::render::decision_id_from_verp;
use super::report::{Action, Report, StatusClass};
use crate::model::{EmailAddress, SuppressionReason};
use crate::store::{Micros, NewSuppression, ReportAction, ReportEffect};

/// Evidence kept on a suppression is cut to this many bytes.
pub const EVIDENCE_LIMIT: usize = 64 * 1024;

/// Most addresses one report may name. Real DSNs name a handful; each suppression keeps
/// its own copy of the evidence, so the bound keeps one report's footprint bounded.
pub const MAX_REPORT_RECIPIENTS: usize = 1000;

/// A report that names more addresses than one report may.
#[derive(Debug, thiserror::Error)]
#[error("the report names {named} recipients; at most {MAX_REPORT_RECIPIENTS} are taken")]
pub struct TooManyRecipients {
    /// How many it names.
    pub named: usize,
}

/// The decision id a Message-ID of ours names: `<{decision_id}@{domain}>`.
fn decision_id_from_message_id(message_id: &str) -> Option<String> {
    let inner = message_id.trim().trim_matches(['<', '>']);
    let (id, _) = inner.split_once('@')?;
    (id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then(|| id.to_owned())
}

/// The report's kind (`dsn` or `complaint`) and what to do for each address; `Err`
/// when it names more than [`MAX_REPORT_RECIPIENTS`] addresses. A full mailbox's
/// suppression ends at `mailbox_full_until`.
pub fn actions(
    report: &Report,
    raw: &str,
    mailbox_full_until: Micros,
) -> Result<(String, Vec<ReportAction>), TooManyRecipients> {
    let named = match report {
        Report::Dsn(dsn) => dsn.recipients.len(),
        Report::Complaint(c) => c.original_rcpt_to.len().max(c.original_to.len()),
    };
    if named > MAX_REPORT_RECIPIENTS {
        return Err(TooManyRecipients { named });
    }
    let evidence = crate::model::truncate(raw, EVIDENCE_LIMIT).to_owned();
    match report {
        Report::Dsn(dsn) => {
            let hint = dsn
                .original_envelope_from
                .as_deref()
                .and_then(decision_id_from_verp)
                .map(str::to_owned)
                .or_else(|| {
                    dsn.original_message_id
                        .as_deref()
                        .and_then(decision_id_from_message_id)
                });
            let actions = dsn
                .recipients
                .iter()
                .filter_map(|r| {
                    let email = EmailAddress::parse(&r.final_recipient).ok()?;
                    let response = r.diagnostic_code.clone().map(|d| strip_type(&d));
                    let effect = match (r.action, r.class()) {
                        (Action::Failed, StatusClass::Recipient) => ReportEffect::Suppress {
                            suppression: NewSuppression {
                                email: email.clone(),
                                reason: if r.status == "5.2.2" {
                                    SuppressionReason::MailboxFull
                                } else {
                                    SuppressionReason::BounceReport
                                },
                                smtp_code: r.smtp_code.map(i64::from),
                                enhanced_code: Some(r.status.clone()),
                                response: response.clone(),
                                remote_host: r
                                    .remote_mta
                                    .clone()
                                    .or_else(|| dsn.reporting_mta.clone()),
                                stage: Some("report".into()),
                                decision_id: None,
                                note: None,
                                evidence: Some(evidence.clone()),
                                expires_at: (r.status == "5.2.2").then_some(mailbox_full_until),
                            },
                            bounce: true,
                        },
                        (Action::Failed, StatusClass::SenderSide) => ReportEffect::PolicyRejected {
                            reply: response.clone().unwrap_or_else(|| r.status.clone()),
                        },
                        _ => ReportEffect::Record,
                    };
                    Some(ReportAction {
                        email,
                        decision_hint: hint.clone(),
                        effect,
                        action: format!("{:?}", r.action).to_lowercase(),
                        status: r.status.clone(),
                    })
                })
                .collect();
            Ok(("dsn".into(), actions))
        }
        Report::Complaint(c) => {
            let hint = c
                .original_message_id
                .as_deref()
                .and_then(decision_id_from_message_id);
            let addresses = if c.original_rcpt_to.is_empty() {
                &c.original_to
            } else {
                &c.original_rcpt_to
            };
            let actions = addresses
                .iter()
                .filter_map(|a| EmailAddress::parse(a).ok())
                .map(|email| {
                    let suppress = c.feedback_type == "abuse";
                    ReportAction {
                        decision_hint: hint.clone(),
                        effect: if suppress {
                            ReportEffect::Suppress {
                                suppression: NewSuppression {
                                    email: email.clone(),
                                    reason: SuppressionReason::Complaint,
                                    smtp_code: None,
                                    enhanced_code: None,
                                    response: Some(format!(
                                        "Feedback-Type: {}{}",
                                        c.feedback_type,
                                        c.user_agent
                                            .as_deref()
                                            .map(|u| format!(" (from {u})"))
                                            .unwrap_or_default()
                                    )),
                                    remote_host: None,
                                    stage: Some("report".into()),
                                    decision_id: None,
                                    note: None,
                                    evidence: Some(evidence.clone()),
                                    expires_at: None,
                                },
                                bounce: false,
                            }
                        } else {
                            ReportEffect::Record
                        },
                        email,
                        action: "complaint".into(),
                        status: c.feedback_type.clone(),
                    }
                })
                .collect();
            Ok(("complaint".into(), actions))
        }
    }
}

/// What a notice that is not a report does (SPEC §11), given the recipient of the
/// decision its VERP address names: at most one action, about that recipient. A notice
/// quoting another address (a `copy_to` that bounced, a forward) changes nothing for
/// the customer; one quoting no reply, or an auto-reply, changes nothing at all.
pub fn notice_action(
    notice: &Notice,
    decision_id: &str,
    recipient: &EmailAddress,
    raw: &str,
    mailbox_full_until: Micros,
) -> Option<ReportAction> {
    let reply = notice.reply.as_ref()?;
    if notice
        .failed_recipient
        .as_deref()
        .is_some_and(|quoted| quoted != recipient.as_str())
    {
        return None;
    }
    let class = notice.class();
    let suppress = |reason: SuppressionReason, expires_at: Option<Micros>| ReportEffect::Suppress {
        suppression: NewSuppression {
            email: recipient.clone(),
            reason,
            smtp_code: reply.code.map(i64::from),
            enhanced_code: reply.enhanced.clone(),
            response: Some(reply.text.clone()),
            remote_host: None,
            stage: Some("report".into()),
            decision_id: Some(decision_id.to_owned()),
            note: None,
            evidence: Some(crate::model::truncate(raw, EVIDENCE_LIMIT).to_owned()),
            expires_at,
        },
        bounce: true,
    };
    let effect = match class {
        NoticeClass::Recipient => suppress(SuppressionReason::BounceReport, None),
        NoticeClass::MailboxFull => {
            suppress(SuppressionReason::MailboxFull, Some(mailbox_full_until))
        }
        NoticeClass::SenderSide => ReportEffect::PolicyRejected {
            reply: reply.text.clone(),
        },
        NoticeClass::Transient => ReportEffect::Record,
        NoticeClass::Unclassified => return None,
    };
    Some(ReportAction {
        email: recipient.clone(),
        decision_hint: Some(decision_id.to_owned()),
        effect,
        action: if class == NoticeClass::Transient {
            "delayed".into()
        } else {
            "failed".into()
        },
        status: reply
            .enhanced
            .clone()
            .or_else(|| reply.code.map(|c| format!("{}.0.0", c / 100)))
            .unwrap_or_default(),
    })
}

/// `smtp; 550 5.1.1 user unknown` → `550 5.1.1 user unknown`.
fn strip_type(diagnostic: &str) -> String {
    match diagnostic.split_once(';') {
        Some((kind, rest)) if kind.trim().len() <= 10 && !kind.contains(' ') => {
            rest.trim().to_owned()
        }
        _ => diagnostic.trim().to_owned(),
    }
}
