//! The decision rules of SPEC §3 as one pure function: facts in, decision out.
//!
//! This module must never do I/O, read the clock, or know about SQLite, HTTP or SMTP.
//! Everything it needs (site and project settings, whether the customer existed,
//! whether the address is suppressed) arrives as arguments, so every rule is tested
//! table by table without a database.

use crate::model::{Channel, EmailAddress, EmailKind, ReasonCode, Verdict};
use regex::Regex;

/// The project settings the rules read (SPEC §2), with patterns already compiled.
#[derive(Clone, Debug)]
pub struct RuleSettings {
    /// "Customer invited" notification toggle.
    pub invite_notification: bool,
    /// Inverse of "Do not send account verification emails".
    pub verification_emails: bool,
    /// Anyone can raise requests / sign up.
    pub public_signup: bool,
    /// CC'd unknown addresses become customers (needs `public_signup` too).
    pub share_with_anyone: bool,
    /// Send a registration email to customers created by automation or the API.
    pub notify_auto_created: bool,
    /// When non-empty, auto-created customers must match one.
    pub allow_patterns: Vec<Regex>,
    /// Auto-created customers matching any are not created.
    pub deny_patterns: Vec<Regex>,
}

impl Default for RuleSettings {
    /// The SPEC §2 defaults.
    fn default() -> Self {
        RuleSettings {
            invite_notification: true,
            verification_emails: true,
            public_signup: false,
            share_with_anyone: false,
            notify_auto_created: false,
            allow_patterns: Vec::new(),
            deny_patterns: Vec::new(),
        }
    }
}

/// Everything known about one recipient at the moment of the decision.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// How the recipient reached the project.
    pub channel: Channel,
    /// The normalized recipient.
    pub address: &'a EmailAddress,
    /// Site setting `outgoing_mail`.
    pub outgoing_mail: bool,
    /// The project's settings.
    pub settings: &'a RuleSettings,
    /// The customer existed on the site before this action.
    pub customer_exists: bool,
    /// The agent asked for an invitation (`"invite"`, default true); only read for `agent`.
    pub invite: bool,
    /// The address is on the suppression list.
    pub suppressed: bool,
}

/// What the rules decided for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Which email this is about.
    pub email_kind: EmailKind,
    /// Every reason that applies, in SPEC order; empty means send.
    pub reasons: Vec<ReasonCode>,
    /// A new customer is to be created (never for `resend`, never for existing ones).
    pub create_customer: bool,
}

impl Decision {
    /// `send` exactly when no reason applies (SPEC §3).
    pub fn verdict(&self) -> Verdict {
        if self.reasons.is_empty() {
            Verdict::Send
        } else {
            Verdict::Skip
        }
    }

    /// The first reason, the one a support agent is told about first.
    pub fn primary_reason(&self) -> Option<ReasonCode> {
        self.reasons.first().copied()
    }
}

/// Applies SPEC §3's reason table to one recipient.
///
/// The reasons are pushed in the order of the table, so the first is the primary one.
/// A `resend` is a deliberate act of support: it ignores everything but the site's
/// outgoing mail switch and the suppression list.
pub fn decide(facts: &Facts<'_>) -> Decision {
    use ReasonCode::*;
    let Facts {
        channel,
        address,
        outgoing_mail,
        settings,
        customer_exists,
        invite,
        suppressed,
    } = *facts;
    let email_kind = channel.email_kind();
    let resend = channel == Channel::Resend;
    let unknown = !customer_exists && !resend;
    let mut reasons = Vec::new();

    if !outgoing_mail {
        reasons.push(OutgoingMailDisabled);
    }
    let needs_public_signup = matches!(
        channel,
        Channel::EmailRequest | Channel::EmailCc | Channel::Signup
    );
    if unknown && needs_public_signup && !settings.public_signup {
        reasons.push(PublicSignupDisabled);
    }
    if unknown && channel == Channel::EmailCc && !settings.share_with_anyone {
        reasons.push(CcSharingDisabled);
    }
    if unknown && channel.auto_creates() && blocked_by_patterns(settings, address) {
        reasons.push(BlockedByRule);
    }
    if customer_exists && !resend {
        reasons.push(ExistingCustomer);
    }
    if channel == Channel::Agent && !invite {
        reasons.push(AgentOptedOut);
    }
    if channel == Channel::Automation && !settings.notify_auto_created {
        reasons.push(AutomationCreated);
    }
    if channel == Channel::Api && !settings.notify_auto_created {
        reasons.push(ApiCreated);
    }
    if !resend && email_kind == EmailKind::Invitation && !settings.invite_notification {
        reasons.push(InviteNotificationDisabled);
    }
    let verifies = matches!(
        email_kind,
        EmailKind::Invitation | EmailKind::AccountVerification
    );
    if !resend && verifies && !settings.verification_emails {
        reasons.push(VerificationEmailsDisabled);
    }
    if suppressed {
        reasons.push(Suppressed);
    }

    let create_customer = unknown
        && !reasons
            .iter()
            .any(|r| matches!(r, PublicSignupDisabled | CcSharingDisabled | BlockedByRule));
    Decision {
        email_kind,
        reasons,
        create_customer,
    }
}

/// A deny pattern matched, or the allow list is non-empty and none matched (SPEC §2).
fn blocked_by_patterns(settings: &RuleSettings, address: &EmailAddress) -> bool {
    let address = address.as_str();
    settings.deny_patterns.iter().any(|p| p.is_match(address))
        || (!settings.allow_patterns.is_empty()
            && !settings.allow_patterns.iter().any(|p| p.is_match(address)))
}

#[cfg(test)]
mod tests;
