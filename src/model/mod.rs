//! Vocabulary types shared by every layer: addresses, project keys, channels, email
//! kinds, reason codes, statuses and ids.
//!
//! The wire names (snake_case) written in SPEC live here and nowhere else. Nothing in
//! this module does I/O.

mod address;
mod project;

pub use address::{AddressError, EmailAddress, ParsedMailbox, RAW_INPUT_LIMIT};
pub use project::{
    CopyTo, FieldError, Project, ProjectPatch, ProjectSettings, Site, SitePatch, TEMPLATE_SETS,
    validate_name,
};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Declares a fieldless enum whose variants have fixed snake_case wire names, with
/// `as_str`, `ALL`, `Display`, `FromStr` and serde support derived from one list.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        // The OpenAPI schema lists the wire names, as the API sends them (utoipa's
        // derive would list the Rust variant names).
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($wire),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name written in SPEC.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(UnknownName { kind: stringify!($name), name: s.to_owned() }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A wire name that names no variant of the enum it was parsed as.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {kind} `{name}`")]
pub struct UnknownName {
    /// The Rust type name, e.g. `Channel`.
    pub kind: &'static str,
    /// What was given.
    pub name: String,
}

wire_enum! {
    /// How a customer reached a project (SPEC §3).
    Channel {
        Agent => "agent",
        EmailRequest => "email_request",
        EmailCc => "email_cc",
        Signup => "signup",
        Automation => "automation",
        Api => "api",
        Resend => "resend",
    }
}

impl Channel {
    /// The email kind this channel sends (SPEC §3 table).
    pub const fn email_kind(self) -> EmailKind {
        match self {
            Channel::Agent | Channel::Resend => EmailKind::Invitation,
            Channel::EmailRequest | Channel::EmailCc | Channel::Signup => {
                EmailKind::AccountVerification
            }
            Channel::Automation | Channel::Api => EmailKind::Registration,
        }
    }

    /// Customers created by these channels are "auto-created" (SPEC §2 `allow_patterns`).
    pub const fn auto_creates(self) -> bool {
        matches!(
            self,
            Channel::EmailRequest
                | Channel::EmailCc
                | Channel::Signup
                | Channel::Automation
                | Channel::Api
        )
    }

    /// A phrase for messages: "via email request".
    pub const fn phrase(self) -> &'static str {
        match self {
            Channel::Agent => "added by an agent",
            Channel::EmailRequest => "via email request",
            Channel::EmailCc => "via CC on an email request",
            Channel::Signup => "via portal signup",
            Channel::Automation => "via automation",
            Channel::Api => "via the REST API",
            Channel::Resend => "via resend",
        }
    }
}

wire_enum! {
    /// The three customer account emails (SPEC §1).
    EmailKind {
        Invitation => "invitation",
        AccountVerification => "account_verification",
        Registration => "registration",
    }
}

impl EmailKind {
    /// A phrase for messages: "an invitation".
    pub const fn phrase(self) -> &'static str {
        match self {
            EmailKind::Invitation => "an invitation",
            EmailKind::AccountVerification => "an account verification email",
            EmailKind::Registration => "a registration email",
        }
    }
}

wire_enum! {
    /// Why an email is skipped. The declaration order is the order of SPEC §3's reason
    /// table: when several apply they are listed in this order, the first is primary.
    ReasonCode {
        OutgoingMailDisabled => "outgoing_mail_disabled",
        PublicSignupDisabled => "public_signup_disabled",
        CcSharingDisabled => "cc_sharing_disabled",
        BlockedByRule => "blocked_by_rule",
        ExistingCustomer => "existing_customer",
        AgentOptedOut => "agent_opted_out",
        AutomationCreated => "automation_created",
        ApiCreated => "api_created",
        InviteNotificationDisabled => "invite_notification_disabled",
        VerificationEmailsDisabled => "verification_emails_disabled",
        Suppressed => "suppressed",
        /// Not in the reason table: the input was not an address at all (SPEC §3).
        InvalidAddress => "invalid_address",
    }
}

wire_enum! {
    /// A yes/no project setting (SPEC §2), as a fix names it and a toggle changes it.
    ProjectSetting {
        InviteNotification => "invite_notification",
        VerificationEmails => "verification_emails",
        PublicSignup => "public_signup",
        ShareWithAnyone => "share_with_anyone",
        NotifyAutoCreated => "notify_auto_created",
    }
}

impl ProjectSetting {
    /// The setting whose being off is `reason`, if turning one on can lift it. The one
    /// place that maps skip reasons to settings: every reason is named, so a new reason
    /// cannot silently map to the wrong setting.
    pub fn lifting(reason: ReasonCode) -> Option<ProjectSetting> {
        match reason {
            ReasonCode::InviteNotificationDisabled => Some(ProjectSetting::InviteNotification),
            ReasonCode::VerificationEmailsDisabled => Some(ProjectSetting::VerificationEmails),
            ReasonCode::PublicSignupDisabled => Some(ProjectSetting::PublicSignup),
            ReasonCode::CcSharingDisabled => Some(ProjectSetting::ShareWithAnyone),
            ReasonCode::AutomationCreated | ReasonCode::ApiCreated => {
                Some(ProjectSetting::NotifyAutoCreated)
            }
            ReasonCode::OutgoingMailDisabled
            | ReasonCode::BlockedByRule
            | ReasonCode::ExistingCustomer
            | ReasonCode::AgentOptedOut
            | ReasonCode::Suppressed
            | ReasonCode::InvalidAddress => None,
        }
    }

    /// Whether it is on in a project's `settings`.
    pub fn is_on(self, settings: &ProjectSettings) -> bool {
        match self {
            ProjectSetting::InviteNotification => settings.invite_notification,
            ProjectSetting::VerificationEmails => settings.verification_emails,
            ProjectSetting::PublicSignup => settings.public_signup,
            ProjectSetting::ShareWithAnyone => settings.share_with_anyone,
            ProjectSetting::NotifyAutoCreated => settings.notify_auto_created,
        }
    }

    /// Turns it on or off in `settings` (the rules' view of a project).
    pub fn set(self, settings: &mut crate::rules::RuleSettings, on: bool) {
        *self.field(settings) = on;
    }

    /// A patch that changes only this setting.
    pub fn patch(self, on: bool) -> ProjectPatch {
        let mut patch = ProjectPatch::default();
        let field = match self {
            ProjectSetting::InviteNotification => &mut patch.invite_notification,
            ProjectSetting::VerificationEmails => &mut patch.verification_emails,
            ProjectSetting::PublicSignup => &mut patch.public_signup,
            ProjectSetting::ShareWithAnyone => &mut patch.share_with_anyone,
            ProjectSetting::NotifyAutoCreated => &mut patch.notify_auto_created,
        };
        *field = Some(on);
        patch
    }

    fn field(self, settings: &mut crate::rules::RuleSettings) -> &mut bool {
        match self {
            ProjectSetting::InviteNotification => &mut settings.invite_notification,
            ProjectSetting::VerificationEmails => &mut settings.verification_emails,
            ProjectSetting::PublicSignup => &mut settings.public_signup,
            ProjectSetting::ShareWithAnyone => &mut settings.share_with_anyone,
            ProjectSetting::NotifyAutoCreated => &mut settings.notify_auto_created,
        }
    }
}

wire_enum! {
    /// Where in the SMTP dialogue a try ended (an attempt's `stage`).
    Stage {
        /// TCP connect, greeting, EHLO, STARTTLS, AUTH.
        Connect => "connect",
        /// MAIL FROM.
        MailFrom => "mail",
        /// RCPT TO for the customer.
        Rcpt => "rcpt",
        /// DATA and the message body.
        Data => "data",
        /// Name resolution (direct delivery).
        Dns => "dns",
    }
}

wire_enum! {
    /// What one delivery try came to (an attempt's `outcome`, SPEC §4 table).
    AttemptOutcome {
        /// 2xx after DATA.
        Sent => "sent",
        /// Try again by the retry schedule.
        Deferred => "deferred",
        /// Permanent failure about the recipient: bounced, suppressed.
        Bounced => "bounced",
        /// Permanent failure about us or the message (5.3–5.7): failed, not suppressed.
        PolicyRejected => "policy_rejected",
        /// 5xx before RCPT: the relay refused us; failed, not suppressed.
        RelayRejected => "relay_rejected",
        /// No mail server for the domain: failed, not suppressed.
        DomainUnroutable => "domain_unroutable",
    }
}

wire_enum! {
    /// How delivery ended for a `bounced` or `failed` decision (SPEC §4 `status_reason`).
    DeliveryEnd {
        /// The server refused the recipient for good (5.1.x, 5.2.x …): suppressed.
        HardBounce => "hard_bounce",
        /// A bounce report (DSN or notice) arrived after the server had accepted it.
        BounceReport => "bounce_report",
        /// The mailbox is full (5.2.2): suppressed for a while.
        MailboxFull => "mailbox_full",
        /// The receiving server refused our mail for policy reasons (5.7.x).
        PolicyRejected => "policy_rejected",
        /// Our own relay refused the message.
        RelayRejected => "relay_rejected",
        /// The domain accepts no mail (null MX, no address).
        DomainUnroutable => "domain_unroutable",
        /// "Try later" until the retry schedule gave up.
        RetriesExhausted => "retries_exhausted",
    }
}

/// Why a decision is where it is (SPEC §4 `status_reason`): the skip reason of a
/// `skipped` one, or how delivery ended for a `bounced`/`failed` one. On the wire and in
/// the database it is the bare name, e.g. `suppressed` or `hard_bounce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusReason {
    /// Skipped, at decision time or by a delivery-time guard.
    Skipped(ReasonCode),
    /// Delivery ended without the email arriving.
    Ended(DeliveryEnd),
}

impl StatusReason {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            StatusReason::Skipped(r) => r.as_str(),
            StatusReason::Ended(e) => e.as_str(),
        }
    }
}

impl fmt::Display for StatusReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StatusReason {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse()
            .map(StatusReason::Skipped)
            .or_else(|_| s.parse().map(StatusReason::Ended))
            .map_err(|_| UnknownName {
                kind: "StatusReason",
                name: s.to_owned(),
            })
    }
}

impl Serialize for StatusReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl utoipa::PartialSchema for StatusReason {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let names = ReasonCode::ALL
            .iter()
            .map(|r| r.as_str())
            .chain(DeliveryEnd::ALL.iter().map(|e| e.as_str()));
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(names))
            .into()
    }
}

impl utoipa::ToSchema for StatusReason {}

wire_enum! {
    /// What a fix of the why answer does (SPEC §5 `fixes[].action`).
    FixAction {
        Resend => "resend",
        Unsuppress => "unsuppress",
        EnableProjectSetting => "enable_project_setting",
        EnableOutgoingMail => "enable_outgoing_mail",
        FixAddress => "fix_address",
    }
}

wire_enum! {
    /// Send or skip.
    Verdict {
        Send => "send",
        Skip => "skip",
    }
}

wire_enum! {
    /// Where a decision is in its life (SPEC §4).
    Status {
        Skipped => "skipped",
        Queued => "queued",
        Sending => "sending",
        Sent => "sent",
        Deferred => "deferred",
        Bounced => "bounced",
        Failed => "failed",
    }
}

impl Status {
    /// The email is sent or still on its way (`mailtrail why` exits 0).
    pub const fn is_on_its_way(self) -> bool {
        matches!(
            self,
            Status::Sent | Status::Queued | Status::Sending | Status::Deferred
        )
    }
}

wire_enum! {
    /// Why an address is on the suppression list (SPEC §4).
    SuppressionReason {
        HardBounce => "hard_bounce",
        BounceReport => "bounce_report",
        Complaint => "complaint",
        Manual => "manual",
        Import => "import",
        /// A full mailbox (5.2.2): suppressed until `expires_at` (SPEC §11).
        MailboxFull => "mailbox_full",
    }
}

impl SuppressionReason {
    /// How a bounce that caused this suppression ends its decision: a full mailbox,
    /// or any other bounce report.
    pub fn bounce_end(self) -> DeliveryEnd {
        match self {
            SuppressionReason::MailboxFull => DeliveryEnd::MailboxFull,
            _ => DeliveryEnd::BounceReport,
        }
    }
}

wire_enum! {
    /// What a token or user may do (SPEC §6): admin everything, support look up and
    /// resend (and add customers), viewer read.
    Role {
        Viewer => "viewer",
        Support => "support",
        Admin => "admin",
    }
}

impl Role {
    /// `self` may do what `needed` may do (admin > support > viewer).
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

wire_enum! {
    /// Body format of sent emails (SPEC §2 `email_format`).
    EmailFormat {
        Multipart => "multipart",
        Html => "html",
        Text => "text",
    }
}

wire_enum! {
    /// Which header carries a `copy_to` address.
    CopyAs {
        To => "to",
        Cc => "cc",
        Bcc => "bcc",
    }
}

/// Whether a customer existed before the action, was created by it, or was not created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomerOutcome {
    /// The action created the customer.
    Created,
    /// The customer existed on the site before the action.
    Existing,
    /// No customer exists for this input (blocked, not allowed, or invalid).
    NotCreated,
}

/// A project key: `^[A-Z][A-Z0-9_]{1,15}$` (SPEC §1). Only built by [`ProjectKey::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ProjectKey(String);

impl ProjectKey {
    /// Checks the SPEC §1 shape.
    pub fn parse(input: &str) -> Result<Self, String> {
        let bytes = input.as_bytes();
        let ok = (2..=16).contains(&bytes.len())
            && bytes[0].is_ascii_uppercase()
            && bytes[1..]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
        if ok {
            Ok(ProjectKey(input.to_owned()))
        } else {
            Err(format!(
                "`{}` is not a project key: an upper-case letter, then 1 to 15 of A-Z, 0-9 and _",
                truncate(input, 40)
            ))
        }
    }

    /// The key as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

wire_enum! {
    /// The events a webhook can subscribe to (SPEC §13); `*` in a subscription means all.
    WebhookEvent {
        DecisionSkipped => "decision.skipped",
        MessageSent => "message.sent",
        MessageDeferred => "message.deferred",
        MessageBounced => "message.bounced",
        MessageFailed => "message.failed",
        AddressSuppressed => "address.suppressed",
        AddressUnsuppressed => "address.unsuppressed",
        ComplaintReceived => "complaint.received",
        BounceRateCrossed => "bounce_rate.crossed",
    }
}

impl WebhookEvent {
    /// The `message.*` event of a delivery status, if it has one.
    pub const fn of_status(status: Status) -> Option<WebhookEvent> {
        match status {
            Status::Sent => Some(WebhookEvent::MessageSent),
            Status::Deferred => Some(WebhookEvent::MessageDeferred),
            Status::Bounced => Some(WebhookEvent::MessageBounced),
            Status::Failed => Some(WebhookEvent::MessageFailed),
            Status::Skipped => Some(WebhookEvent::DecisionSkipped),
            _ => None,
        }
    }
}

/// A new, time-ordered id (UUID v7) for decisions and customers.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for code in ReasonCode::ALL {
            assert_eq!(code.as_str().parse::<ReasonCode>().ok(), Some(*code));
        }
        for channel in Channel::ALL {
            let json = serde_json::to_string(channel).expect("serializes");
            assert_eq!(serde_json::from_str::<Channel>(&json).ok(), Some(*channel));
        }
    }

    #[test]
    fn project_keys_follow_the_spec_shape() {
        for good in ["HR", "IT_HELP", "A1", "ABCDEFGHIJKLMNOP"] {
            assert!(ProjectKey::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "H", "hr", "1HR", "HR-1", "ABCDEFGHIJKLMNOPQ", "HÉ"] {
            assert!(ProjectKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin.allows(Role::Support));
        assert!(Role::Support.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Support));
    }
}
