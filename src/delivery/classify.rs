//! What one delivery try came to: the SPEC §4 outcome table as one pure function.
//!
//! Every way a try can end (a reply at some SMTP stage, a network failure, a DNS
//! answer) maps to exactly one [`AttemptOutcome`]; the match is exhaustive, so a new stage or
//! verdict forces a decision here, as Stalwart does for its client errors.

use super::report::{StatusClass, classify_status, enhanced_status_in};
pub use crate::model::{AttemptOutcome, Stage};

/// An SMTP reply: code, enhanced status (RFC 3463) when given, text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code.
    pub code: u16,
    /// `5.1.1`, when the text starts with one.
    pub enhanced: Option<String>,
    /// The reply text as received, lines joined with a space.
    pub text: String,
}

impl Reply {
    /// A reply from its code and text; the enhanced status is read from the text.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        let text = text.into();
        let enhanced = enhanced_status_in(&text)
            .filter(|e| e.starts_with(char::from(b'0' + (code / 100) as u8)))
            .map(str::to_owned);
        Reply {
            code,
            enhanced,
            text,
        }
    }

    /// `550 5.1.1 user unknown`.
    pub fn line(&self) -> String {
        format!("{} {}", self.code, self.text)
    }
}

/// How a try ended, before classification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TryEnd {
    /// The server accepted the message after DATA.
    Accepted(Reply),
    /// The server refused at `stage` with a reply.
    Refused(Stage, Reply),
    /// No SMTP reply: refused or reset connection, timeout, TLS failure, DNS timeout.
    NoReply(Stage, String),
    /// The recipient's domain has no mail server: NXDOMAIN, no MX/A/AAAA, null MX.
    Unroutable(String),
}

/// Classifies one try (SPEC §4).
pub fn classify(end: &TryEnd) -> AttemptOutcome {
    match end {
        TryEnd::Accepted(_) => AttemptOutcome::Sent,
        TryEnd::NoReply(..) => AttemptOutcome::Deferred,
        TryEnd::Unroutable(_) => AttemptOutcome::DomainUnroutable,
        TryEnd::Refused(stage, reply) => match (reply.code / 100, stage) {
            // Anything but a permanent failure is worth another try (4xx, and odd codes).
            (0..=4 | 6..=9, _) => AttemptOutcome::Deferred,
            // 5xx before RCPT: the fault is ours or the relay's, not the address's.
            (5, Stage::Connect | Stage::MailFrom | Stage::Dns) => AttemptOutcome::RelayRejected,
            (5, Stage::Rcpt | Stage::Data) => {
                match reply.enhanced.as_deref().map(classify_status) {
                    // No enhanced status: a plain 5xx to RCPT or DATA is about the recipient.
                    None | Some(StatusClass::Recipient) => AttemptOutcome::Bounced,
                    Some(StatusClass::SenderSide) => AttemptOutcome::PolicyRejected,
                    // A 5xx code with a 4.x.x or 2.x.x enhanced status is contradictory;
                    // the code wins, and a permanent code about the recipient bounces.
                    Some(StatusClass::Transient | StatusClass::Other) => AttemptOutcome::Bounced,
                }
            }
            _ => AttemptOutcome::Deferred,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(stage: Stage, code: u16, text: &str) -> AttemptOutcome {
        classify(&TryEnd::Refused(stage, Reply::new(code, text)))
    }

    #[test]
    fn the_spec_outcome_table() {
        use AttemptOutcome::*;
        use Stage::*;
        let rows: &[(Stage, u16, &str, AttemptOutcome)] = &[
            (Rcpt, 550, "5.1.1 user unknown", Bounced),
            (Rcpt, 550, "5.1.10 RESOLVER.ADR.RecipientNotFound", Bounced),
            (Rcpt, 552, "5.2.2 mailbox full", Bounced),
            (Rcpt, 550, "no such user here", Bounced),
            (Data, 550, "5.1.1 mailbox gone", Bounced),
            (Rcpt, 550, "5.7.1 message refused by policy", PolicyRejected),
            (Rcpt, 554, "5.7.26 DMARC failure", PolicyRejected),
            (Data, 554, "5.6.0 content rejected", PolicyRejected),
            (Data, 550, "5.4.1 relay denied", PolicyRejected),
            (Rcpt, 553, "5.3.0 system problem", PolicyRejected),
            (Rcpt, 550, "5.5.0 syntax", PolicyRejected),
            (Connect, 554, "5.3.2 no service", RelayRejected),
            (
                Connect,
                535,
                "5.7.8 Authentication credentials invalid",
                RelayRejected,
            ),
            (MailFrom, 550, "5.7.1 relay access denied", RelayRejected),
            (MailFrom, 550, "5.1.1 sender unknown", RelayRejected),
            (Rcpt, 451, "4.3.0 try later", Deferred),
            (Data, 452, "4.2.2 over quota", Deferred),
            (MailFrom, 421, "4.7.0 try again later", Deferred),
            (Connect, 421, "service not available", Deferred),
        ];
        for (stage, code, text, expected) in rows {
            assert_eq!(
                refused(*stage, *code, text),
                *expected,
                "{stage:?} {code} {text}"
            );
        }
    }

    #[test]
    fn no_reply_defers_and_no_mail_server_fails() {
        for stage in [
            Stage::Connect,
            Stage::MailFrom,
            Stage::Rcpt,
            Stage::Data,
            Stage::Dns,
        ] {
            assert_eq!(
                classify(&TryEnd::NoReply(stage, "connection reset".into())),
                AttemptOutcome::Deferred
            );
        }
        assert_eq!(
            classify(&TryEnd::Unroutable("null MX".into())),
            AttemptOutcome::DomainUnroutable
        );
        assert_eq!(
            classify(&TryEnd::Accepted(Reply::new(250, "2.0.0 ok"))),
            AttemptOutcome::Sent
        );
    }

    #[test]
    fn enhanced_status_is_read_from_the_text() {
        let r = Reply::new(550, "5.1.1 <bob@example.test>: user unknown");
        assert_eq!(r.enhanced.as_deref(), Some("5.1.1"));
        assert_eq!(Reply::new(550, "no such user").enhanced, None);
        // An enhanced status whose class disagrees with the code is not believed.
        assert_eq!(Reply::new(550, "2.0.0 odd").enhanced, None);
    }
}
