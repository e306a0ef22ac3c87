//! What a posted bounce or complaint report does, address by address (SPEC §4): pure
//! mapping from a parsed [`Report`] to store actions.

use super::render::decision_id_from_verp;
use super::report::{Action, Report, StatusClass};
use crate::model::{EmailAddress, SuppressionReason};
use crate::store::{NewSuppression, ReportAction, ReportEffect};

/// Evidence kept on a suppression is cut to this many bytes.
pub const EVIDENCE_LIMIT: usize = 64 * 1024;

/// Most addresses one report may name. Real DSNs name a handful; each suppression keeps
/// its own copy of the evidence, so the bound keeps one report's footprint bounded.
pub const MAX_REPORT_RECIPIENTS: usize = 1000;

/// The decision id a Message-ID of ours names: `<{decision_id}@{domain}>`.
fn decision_id_from_message_id(message_id: &str) -> Option<String> {
    let inner = message_id.trim().trim_matches(['<', '>']);
    let (id, _) = inner.split_once('@')?;
    (id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then(|| id.to_owned())
}

/// The report's kind (`dsn` or `complaint`) and what to do for each address; `Err`
/// when it names more than [`MAX_REPORT_RECIPIENTS`] addresses.
pub fn actions(report: &Report, raw: &str) -> Result<(String, Vec<ReportAction>), String> {
    let named = match report {
        Report::Dsn(dsn) => dsn.recipients.len(),
        Report::Complaint(c) => c.original_rcpt_to.len().max(c.original_to.len()),
    };
    if named > MAX_REPORT_RECIPIENTS {
        return Err(format!(
            "the report names {named} recipients; at most {MAX_REPORT_RECIPIENTS} are taken"
        ));
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
                                reason: SuppressionReason::BounceReport,
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

/// `smtp; 550 5.1.1 user unknown` → `550 5.1.1 user unknown`.
fn strip_type(diagnostic: &str) -> String {
    match diagnostic.split_once(';') {
        Some((kind, rest)) if kind.trim().len() <= 10 && !kind.contains(' ') => {
            rest.trim().to_owned()
        }
        _ => diagnostic.trim().to_owned(),
    }
}
