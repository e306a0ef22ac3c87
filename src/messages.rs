//! The plain-language sentences support agents read: one per result, one per verdict.
//!
//! Pure text assembly, no I/O. Each sentence says what happened and what to do, in the
//! knowledge base's words (SPEC §3: "every result carries `message`").

use crate::model::{
    Channel, DeliveryEnd, EmailKind, ReasonCode, Status, StatusReason, SuppressionReason,
};

/// What a sentence about one decision needs to know.
#[derive(Clone, Debug)]
pub struct MessageFacts<'a> {
    /// The normalized address, or the raw input when it was invalid.
    pub email: &'a str,
    /// The project's display name.
    pub project_name: &'a str,
    /// How the recipient reached the project.
    pub channel: Channel,
    /// Which email.
    pub email_kind: EmailKind,
    /// The reasons, primary first; empty means send.
    pub reasons: &'a [ReasonCode],
    /// The decision created the customer.
    pub customer_created: bool,
    /// For an existing customer: since when (a date) and how they came.
    pub existing_since: Option<(&'a str, Channel)>,
    /// For a suppressed address: why it is suppressed.
    pub suppression: Option<SuppressionReason>,
}

/// The `message` of a Result object.
pub fn result_message(f: &MessageFacts<'_>) -> String {
    let kind = f.email_kind.phrase();
    let email = f.email;
    let project = f.project_name;
    let Some(primary) = f.reasons.first() else {
        return match (f.channel, f.customer_created) {
            (Channel::Resend, _) => {
                format!(
                    "{kind} to {project} will be sent to {email} again.",
                    kind = capital(kind)
                )
            }
            (_, true) => format!("{email} is now a customer of {project}; {kind} will be sent."),
            (_, false) => format!("{} will be sent to {email}.", capital(kind)),
        };
    };
    let created = if f.customer_created {
        format!("{email} is now a customer of {project}, but ")
    } else {
        String::new()
    };
    let sentence = match primary {
        ReasonCode::OutgoingMailDisabled => format!(
            "outgoing mail is turned off for the whole site, so no {} was sent to {email}; turn outgoing mail back on, then resend what it skipped.",
            noun(f.email_kind)
        ),
        ReasonCode::PublicSignupDisabled => format!(
            "{email} is not a customer and {project} does not allow public signup, so the request was not processed and no account was created; turn on public signup, or add the customer as an agent."
        ),
        ReasonCode::CcSharingDisabled => format!(
            "{email} was CC'd on a request, but {project} does not share requests with anyone, so no account was created; turn on sharing with anyone (and public signup), or add the customer as an agent."
        ),
        ReasonCode::BlockedByRule => format!(
            "{email} is blocked by the allow/deny patterns of {project}, so no account was created and nothing was sent; change the patterns, or add the customer as an agent."
        ),
        ReasonCode::ExistingCustomer => match f.existing_since {
            Some((since, via)) => format!(
                "{email} was already a customer (since {since}, {}), so no {} was sent; use Resend to send one.",
                via.phrase(),
                noun(f.email_kind)
            ),
            None => format!(
                "{email} was already a customer, so no {} was sent; use Resend to send one.",
                noun(f.email_kind)
            ),
        },
        ReasonCode::AgentOptedOut => format!(
            "{email} was added without an invitation, as the agent chose; use Resend to send one."
        ),
        ReasonCode::AutomationCreated => format!(
            "{email} was created by automation and {project} does not notify auto-created customers, so no registration email was sent; turn on \"Notify auto-created customer\", or use Resend."
        ),
        ReasonCode::ApiCreated => format!(
            "{email} was created through the REST API and {project} does not notify auto-created customers, so no registration email was sent; turn on \"Notify auto-created customer\", or use Resend."
        ),
        ReasonCode::InviteNotificationDisabled => format!(
            "the \"Customer invited\" notification is turned off in {project}, so no invitation was sent to {email}; turn it on, then use Resend."
        ),
        ReasonCode::VerificationEmailsDisabled => format!(
            "{project} is set to \"Do not send account verification emails\", so no {} was sent to {email}; turn verification emails back on, then use Resend.",
            noun(f.email_kind)
        ),
        ReasonCode::Suppressed => format!(
            "{email} is on the suppression list{}, so no {} was sent; check the address with the customer, then unsuppress it and use Resend.",
            f.suppression
                .map(|r| format!(" ({})", suppression_phrase(r)))
                .unwrap_or_default(),
            noun(f.email_kind)
        ),
        ReasonCode::InvalidAddress => format!(
            "\"{email}\" is not a valid email address, so nothing was recorded for a customer and nothing was sent; correct the address and add it again."
        ),
    };
    let message = format!("{created}{sentence}");
    // An address is quoted as written, never capitalized.
    if message.starts_with(email) {
        message
    } else {
        capital(&message)
    }
}

/// The summary sentence of a `why` verdict.
pub fn verdict_summary(
    email: &str,
    status: Option<Status>,
    status_reason: Option<StatusReason>,
    primary: Option<ReasonCode>,
    suppression: Option<SuppressionReason>,
    last_reply: Option<&str>,
) -> String {
    let reply = last_reply
        .map(|r| format!(" The server said: \"{r}\"."))
        .unwrap_or_default();
    match status {
        None if suppression.is_some() => format!(
            "{email} is on the suppression list ({}) and has no email on record; unsuppress it if the address is good.",
            suppression.map(suppression_phrase).unwrap_or_default()
        ),
        None => format!(
            "mailtrail has no record of {email}: no customer, no decision. Check the spelling, or add the customer."
        ),
        Some(Status::Sent) => format!(
            "The last email to {email} was sent and accepted by the receiving server. If the customer cannot find it, ask them to check spam, or resend."
        ),
        Some(Status::Queued) | Some(Status::Sending) => {
            format!("An email to {email} is on its way (queued for delivery).")
        }
        Some(Status::Deferred) => format!(
            "The receiving server asked mailtrail to try again later; delivery to {email} will be retried automatically.{reply}"
        ),
        Some(Status::Bounced) => format!(
            "The last email to {email} bounced: the receiving server said the address does not exist or cannot receive mail, so it is now suppressed.{reply} Check the address with the customer, then unsuppress and resend."
        ),
        Some(Status::Failed) => {
            let why = match status_reason {
                Some(StatusReason::Ended(DeliveryEnd::PolicyRejected)) => {
                    "the receiving server refused our mail for policy reasons (not a problem with the address)"
                }
                Some(StatusReason::Ended(DeliveryEnd::RelayRejected)) => {
                    "our mail relay refused the message before it reached the recipient (a sender-side problem)"
                }
                Some(StatusReason::Ended(DeliveryEnd::DomainUnroutable)) => {
                    "the address's domain does not accept mail (no mail server)"
                }
                Some(StatusReason::Ended(DeliveryEnd::RetriesExhausted)) => {
                    "the receiving server kept answering \"try later\" until mailtrail gave up"
                }
                _ => "delivery failed permanently",
            };
            format!("The last email to {email} failed: {why}.{reply} Fix the cause, then resend.")
        }
        Some(Status::Skipped) => match (primary, suppression) {
            (Some(ReasonCode::Suppressed), Some(reason)) => format!(
                "No email was sent to {email} because the address is suppressed ({}). Unsuppress it, then resend.",
                suppression_phrase(reason)
            ),
            (Some(reason), _) => {
                format!("No email was sent to {email}: {}.", reason_phrase(reason))
            }
            (None, _) => match status_reason {
                Some(r) => format!("No email was sent to {email} ({r})."),
                None => format!("No email was sent to {email}."),
            },
        },
    }
}

/// A short phrase per reason, with its fix, for summaries and the dashboard.
pub fn reason_phrase(reason: ReasonCode) -> &'static str {
    match reason {
        ReasonCode::OutgoingMailDisabled => {
            "outgoing mail was turned off for the site; turn it on, then resend what it skipped"
        }
        ReasonCode::PublicSignupDisabled => {
            "the project does not allow public signup, so no account was created; enable public signup or add the customer as an agent"
        }
        ReasonCode::CcSharingDisabled => {
            "the project does not share requests with anyone, so the CC'd address got no account; enable sharing or add the customer as an agent"
        }
        ReasonCode::BlockedByRule => {
            "an allow/deny pattern of the project blocked the address; change the patterns or add the customer as an agent"
        }
        ReasonCode::ExistingCustomer => {
            "the customer already existed on the site, so no new invitation was sent; use Resend"
        }
        ReasonCode::AgentOptedOut => {
            "the agent added the customer without an invitation; use Resend"
        }
        ReasonCode::AutomationCreated => {
            "the customer was created by automation, which sends nothing unless \"Notify auto-created customer\" is on; turn it on or use Resend"
        }
        ReasonCode::ApiCreated => {
            "the customer was created through the REST API, which sends nothing unless \"Notify auto-created customer\" is on; turn it on or use Resend"
        }
        ReasonCode::InviteNotificationDisabled => {
            "the \"Customer invited\" notification is off in the project; turn it on, then resend"
        }
        ReasonCode::VerificationEmailsDisabled => {
            "the project is set to \"Do not send account verification emails\"; turn them back on, then resend"
        }
        ReasonCode::Suppressed => {
            "the address is on the suppression list; unsuppress it, then resend"
        }
        ReasonCode::InvalidAddress => {
            "the input is not a valid email address; correct it and add the customer again"
        }
    }
}

/// How a suppression came about, in words.
pub fn suppression_phrase(reason: SuppressionReason) -> &'static str {
    match reason {
        SuppressionReason::HardBounce => "a permanent SMTP failure during delivery",
        SuppressionReason::BounceReport => "a bounce report from the receiving side",
        SuppressionReason::Complaint => "the recipient reported our email as spam",
        SuppressionReason::Manual => "added by an admin",
        SuppressionReason::Import => "imported from a list",
        SuppressionReason::MailboxFull => "the mailbox was full (suppressed for a while only)",
    }
}

fn noun(kind: EmailKind) -> &'static str {
    match kind {
        EmailKind::Invitation => "invitation",
        EmailKind::AccountVerification => "account verification email",
        EmailKind::Registration => "registration email",
    }
}

fn capital(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(reasons: &[ReasonCode]) -> MessageFacts<'_> {
        MessageFacts {
            email: "alice@example.com",
            project_name: "IT Help",
            channel: Channel::Agent,
            email_kind: EmailKind::Invitation,
            reasons,
            customer_created: false,
            existing_since: Some(("2026-03-02", Channel::EmailRequest)),
            suppression: None,
        }
    }

    #[test]
    fn existing_customer_message_matches_the_spec_example() {
        assert_eq!(
            result_message(&facts(&[ReasonCode::ExistingCustomer])),
            "alice@example.com was already a customer (since 2026-03-02, via email request), so no invitation was sent; use Resend to send one."
        );
    }

    #[test]
    fn every_reason_has_a_sentence_naming_the_address() {
        for &reason in ReasonCode::ALL {
            let message = result_message(&facts(&[reason]));
            assert!(message.contains("alice@example.com"), "{reason}: {message}");
            assert!(message.ends_with('.'), "{reason}: {message}");
        }
    }
}
