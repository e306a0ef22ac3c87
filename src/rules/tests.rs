//! Table tests: every channel × every reason of SPEC §3, through one `check` helper.
//!
//! Each row starts from a baseline in which every channel sends (an unknown customer,
//! permissive settings; for `resend`, a member), flips one or two facts, and names the
//! reasons each channel must then get. Channels a row does not name must still send.

use super::*;
use crate::model::ReasonCode::*;

/// One fact flipped away from the baseline.
#[derive(Clone, Copy, Debug)]
enum Flip {
    OutgoingOff,
    PublicSignupOff,
    ShareOff,
    Deny,
    AllowOther,
    Exists,
    NoInvite,
    NotifyAutoOff,
    InviteNotificationOff,
    VerificationOff,
    Suppressed,
}

/// The outcome of the rules for `channel` with `flips` applied to the baseline.
fn run(channel: Channel, flips: &[Flip]) -> Decision {
    let address = EmailAddress::parse("alice@example.test").expect("valid test address");
    let deny = Regex::new(r"@example\.test$").expect("valid pattern");
    let allow_other = Regex::new(r"@corp\.test$").expect("valid pattern");
    let mut settings = RuleSettings {
        public_signup: true,
        share_with_anyone: true,
        notify_auto_created: true,
        ..RuleSettings::default()
    };
    let mut outgoing_mail = true;
    // A resend needs a member, so its baseline customer exists.
    let mut customer_exists = channel == Channel::Resend;
    let mut invite = true;
    let mut suppressed = false;
    for flip in flips {
        match flip {
            Flip::OutgoingOff => outgoing_mail = false,
            Flip::PublicSignupOff => settings.public_signup = false,
            Flip::ShareOff => settings.share_with_anyone = false,
            Flip::Deny => settings.deny_patterns = vec![deny.clone()],
            Flip::AllowOther => settings.allow_patterns = vec![allow_other.clone()],
            Flip::Exists => customer_exists = true,
            Flip::NoInvite => invite = false,
            Flip::NotifyAutoOff => settings.notify_auto_created = false,
            Flip::InviteNotificationOff => settings.invite_notification = false,
            Flip::VerificationOff => settings.verification_emails = false,
            Flip::Suppressed => suppressed = true,
        }
    }
    decide(&Facts {
        channel,
        address: &address,
        outgoing_mail,
        settings: &settings,
        customer_exists,
        invite,
        suppressed,
    })
}

/// Checks every channel: those in `expected` get exactly those reasons, in order;
/// all others send.
fn check(flips: &[Flip], expected: &[(Channel, &[ReasonCode])]) {
    for &channel in Channel::ALL {
        let want: &[ReasonCode] = expected
            .iter()
            .find(|(c, _)| *c == channel)
            .map_or(&[], |(_, reasons)| reasons);
        let decision = run(channel, flips);
        assert_eq!(
            decision.reasons, want,
            "channel {channel} with {flips:?}: reasons"
        );
        assert_eq!(decision.email_kind, channel.email_kind());
    }
}

/// One row: the facts flipped, and the channels that skip with their reasons.
type Row = (&'static [Flip], Vec<(Channel, &'static [ReasonCode])>);

/// The rows of the table. Kept as data so the coverage test below can walk it.
fn rows() -> Vec<Row> {
    use Channel::*;
    vec![
        (&[], vec![]),
        (
            &[Flip::OutgoingOff],
            Channel::ALL
                .iter()
                .map(|&c| (c, &[OutgoingMailDisabled][..]))
                .collect(),
        ),
        (
            &[Flip::PublicSignupOff],
            vec![
                (EmailRequest, &[PublicSignupDisabled]),
                (EmailCc, &[PublicSignupDisabled]),
                (Signup, &[PublicSignupDisabled]),
            ],
        ),
        (&[Flip::ShareOff], vec![(EmailCc, &[CcSharingDisabled])]),
        (
            &[Flip::Deny],
            vec![
                (EmailRequest, &[BlockedByRule]),
                (EmailCc, &[BlockedByRule]),
                (Signup, &[BlockedByRule]),
                (Automation, &[BlockedByRule]),
                (Api, &[BlockedByRule]),
            ],
        ),
        (
            &[Flip::AllowOther],
            vec![
                (EmailRequest, &[BlockedByRule]),
                (EmailCc, &[BlockedByRule]),
                (Signup, &[BlockedByRule]),
                (Automation, &[BlockedByRule]),
                (Api, &[BlockedByRule]),
            ],
        ),
        (
            &[Flip::Exists],
            vec![
                (Agent, &[ExistingCustomer]),
                (EmailRequest, &[ExistingCustomer]),
                (EmailCc, &[ExistingCustomer]),
                (Signup, &[ExistingCustomer]),
                (Automation, &[ExistingCustomer]),
                (Api, &[ExistingCustomer]),
            ],
        ),
        (&[Flip::NoInvite], vec![(Agent, &[AgentOptedOut])]),
        (
            &[Flip::NotifyAutoOff],
            vec![(Automation, &[AutomationCreated]), (Api, &[ApiCreated])],
        ),
        (
            &[Flip::InviteNotificationOff],
            vec![(Agent, &[InviteNotificationDisabled])],
        ),
        (
            &[Flip::VerificationOff],
            vec![
                (Agent, &[VerificationEmailsDisabled]),
                (EmailRequest, &[VerificationEmailsDisabled]),
                (EmailCc, &[VerificationEmailsDisabled]),
                (Signup, &[VerificationEmailsDisabled]),
            ],
        ),
        (
            &[Flip::Suppressed],
            Channel::ALL
                .iter()
                .map(|&c| (c, &[Suppressed][..]))
                .collect(),
        ),
        // Several reasons at once come in the order of the SPEC table.
        (
            &[Flip::Suppressed, Flip::OutgoingOff, Flip::Exists],
            vec![
                (Agent, &[OutgoingMailDisabled, ExistingCustomer, Suppressed]),
                (
                    EmailRequest,
                    &[OutgoingMailDisabled, ExistingCustomer, Suppressed],
                ),
                (
                    EmailCc,
                    &[OutgoingMailDisabled, ExistingCustomer, Suppressed],
                ),
                (
                    Signup,
                    &[OutgoingMailDisabled, ExistingCustomer, Suppressed],
                ),
                (
                    Automation,
                    &[OutgoingMailDisabled, ExistingCustomer, Suppressed],
                ),
                (Api, &[OutgoingMailDisabled, ExistingCustomer, Suppressed]),
                (Resend, &[OutgoingMailDisabled, Suppressed]),
            ],
        ),
        (
            &[
                Flip::PublicSignupOff,
                Flip::ShareOff,
                Flip::Deny,
                Flip::VerificationOff,
            ],
            vec![
                (Agent, &[VerificationEmailsDisabled]),
                (
                    EmailRequest,
                    &[
                        PublicSignupDisabled,
                        BlockedByRule,
                        VerificationEmailsDisabled,
                    ],
                ),
                (
                    EmailCc,
                    &[
                        PublicSignupDisabled,
                        CcSharingDisabled,
                        BlockedByRule,
                        VerificationEmailsDisabled,
                    ],
                ),
                (
                    Signup,
                    &[
                        PublicSignupDisabled,
                        BlockedByRule,
                        VerificationEmailsDisabled,
                    ],
                ),
                (Automation, &[BlockedByRule]),
                (Api, &[BlockedByRule]),
            ],
        ),
        (
            &[
                Flip::NoInvite,
                Flip::InviteNotificationOff,
                Flip::VerificationOff,
                Flip::NotifyAutoOff,
            ],
            vec![
                (
                    Agent,
                    &[
                        AgentOptedOut,
                        InviteNotificationDisabled,
                        VerificationEmailsDisabled,
                    ],
                ),
                (EmailRequest, &[VerificationEmailsDisabled]),
                (EmailCc, &[VerificationEmailsDisabled]),
                (Signup, &[VerificationEmailsDisabled]),
                (Automation, &[AutomationCreated]),
                (Api, &[ApiCreated]),
            ],
        ),
        // Known customers are not subject to signup rules or patterns: they already exist.
        (
            &[
                Flip::Exists,
                Flip::PublicSignupOff,
                Flip::ShareOff,
                Flip::Deny,
            ],
            vec![
                (Agent, &[ExistingCustomer]),
                (EmailRequest, &[ExistingCustomer]),
                (EmailCc, &[ExistingCustomer]),
                (Signup, &[ExistingCustomer]),
                (Automation, &[ExistingCustomer]),
                (Api, &[ExistingCustomer]),
            ],
        ),
    ]
}

#[test]
fn every_row_of_the_reason_table_holds_for_every_channel() {
    for (flips, expected) in rows() {
        check(flips, &expected);
    }
}

#[test]
fn every_reason_code_has_a_row() {
    let table = rows();
    for &code in ReasonCode::ALL {
        let covered = table
            .iter()
            .any(|(_, expected)| expected.iter().any(|(_, reasons)| reasons.contains(&code)));
        // Exhaustive on purpose: a new reason code must say where it is tested.
        match code {
            InvalidAddress => assert!(!covered, "invalid_address is decided at the edge"),
            OutgoingMailDisabled
            | PublicSignupDisabled
            | CcSharingDisabled
            | BlockedByRule
            | ExistingCustomer
            | AgentOptedOut
            | AutomationCreated
            | ApiCreated
            | InviteNotificationDisabled
            | VerificationEmailsDisabled
            | Suppressed => assert!(covered, "reason {code} has no row in the table"),
        }
    }
}

#[test]
fn customers_are_created_only_when_unknown_and_not_blocked() {
    assert!(run(Channel::Agent, &[]).create_customer);
    assert!(run(Channel::Agent, &[Flip::NoInvite, Flip::Suppressed]).create_customer);
    assert!(!run(Channel::Agent, &[Flip::Exists]).create_customer);
    assert!(!run(Channel::Resend, &[]).create_customer);
    assert!(!run(Channel::Signup, &[Flip::PublicSignupOff]).create_customer);
    assert!(!run(Channel::EmailCc, &[Flip::ShareOff]).create_customer);
    assert!(!run(Channel::Api, &[Flip::Deny]).create_customer);
    assert!(run(Channel::Api, &[Flip::NotifyAutoOff]).create_customer);
    // The agent channel is not auto-creation: patterns never block it.
    assert!(run(Channel::Agent, &[Flip::Deny]).create_customer);
    // Outgoing mail being off never stops an account from being created.
    assert!(run(Channel::Signup, &[Flip::OutgoingOff]).create_customer);
}

#[test]
fn verdict_is_send_exactly_when_no_reason_applies() {
    for &channel in Channel::ALL {
        assert_eq!(run(channel, &[]).verdict(), Verdict::Send);
        assert_eq!(run(channel, &[Flip::Suppressed]).verdict(), Verdict::Skip);
        assert_eq!(
            run(channel, &[Flip::Suppressed]).primary_reason(),
            Some(Suppressed)
        );
    }
}
