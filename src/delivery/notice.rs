//! Bounces that are not reports (SPEC §11): the plain-text notices of qmail, Exim,
//! Sendmail, Exchange, Gmail, Yahoo and others, and the auto-replies that are not
//! bounces at all. Pure: raw bytes (already refused by [`super::report::parse`]) in, a
//! [`Notice`] out.
//!
//! A notice is attributed through the VERP address it came back to (the SMTP recipient,
//! else the `X-Original-To`, `Delivered-To` or `To` header) and classified by the SMTP
//! reply it quotes (`550 5.1.1 …`, `550-5.1.1`, `#5.1.1`, `smtp; 550 …`, `<<< 550 …`)
//! with the same rule as a DSN's status ([`super::report::classify_status`]): a reply
//! about the recipient suppresses, one about us (5.3–5.7) never does, a full mailbox
//! (5.2.2) suppresses for a while. Only a message that looks like a bounce (a mailer
//! daemon's sender, a bounce subject, a known MTA sentence) is read for a reply, so a
//! person's answer that happens to mention `5.1.1` suppresses nothing.

use super::render::decision_id_from_verp;
use super::report::{PlainMessage, StatusClass, classify_status, enhanced_status_in};

#[cfg(test)]
mod tests;

/// What a received message that is not a report turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What kind of message it is.
    pub kind: NoticeKind,
    /// The decision id of the VERP address it came back to, if any.
    pub decision_id: Option<String>,
    /// The address that failed, as the notice quotes it (lowercased).
    pub failed_recipient: Option<String>,
    /// The SMTP reply it quotes.
    pub reply: Option<QuotedReply>,
    /// Its `Subject`, for the dashboard.
    pub subject: Option<String>,
    /// Its `From`, for the dashboard.
    pub from: Option<String>,
}

/// The kinds of message that are not reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// A mail server's notice that a message was not delivered.
    Bounce,
    /// An out-of-office or other automatic answer: not a bounce, changes nothing.
    AutoReply,
    /// Neither (a person's reply, a forwarded message, …): kept, changes nothing.
    Other,
}

/// An SMTP reply quoted in a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedReply {
    /// The three-digit reply code, when quoted.
    pub code: Option<u16>,
    /// The enhanced status (RFC 3463), when quoted.
    pub enhanced: Option<String>,
    /// The reply as quoted, continuation lines joined by a space.
    pub text: String,
}

/// What a notice's reply means (SPEC §4's table, blame-aware).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeClass {
    /// The address is bad (5.1.x, 5.2.x but 5.2.2, 5.0.x, or a 5xx without status).
    Recipient,
    /// The mailbox is full (5.2.2): suppressed for a while.
    MailboxFull,
    /// Our mail was refused (5.3.x–5.7.x): the address is fine.
    SenderSide,
    /// 4xx: still being tried; nothing changes.
    Transient,
    /// No reply, or one that says nothing about a failure.
    Unclassified,
}

impl QuotedReply {
    /// The class of this reply.
    pub fn class(&self) -> NoticeClass {
        if let Some(enhanced) = &self.enhanced {
            if enhanced == "5.2.2" {
                return NoticeClass::MailboxFull;
            }
            match classify_status(enhanced) {
                StatusClass::Recipient => return NoticeClass::Recipient,
                StatusClass::SenderSide => return NoticeClass::SenderSide,
                StatusClass::Transient if self.code.is_none_or(|c| c / 100 == 4) => {
                    return NoticeClass::Transient;
                }
                // A 5xx code with another class of status: the code wins, as in delivery.
                _ => {}
            }
        }
        match self.code.map(|c| c / 100) {
            Some(5) => NoticeClass::Recipient,
            Some(4) => NoticeClass::Transient,
            _ => NoticeClass::Unclassified,
        }
    }
}

impl Notice {
    /// The class of the quoted reply ([`NoticeClass::Unclassified`] for anything but a
    /// bounce).
    pub fn class(&self) -> NoticeClass {
        match (self.kind, &self.reply) {
            (NoticeKind::Bounce, Some(reply)) => reply.class(),
            _ => NoticeClass::Unclassified,
        }
    }
}

/// Reads a message that is not a report; `smtp_recipient` is the `RCPT TO` it came to
/// over SMTP. A body without headers is read as [`NoticeKind::Other`] with nothing found.
pub fn read(raw: &[u8], smtp_recipient: Option<&str>) -> Notice {
    let message = super::report::read_plain(raw).unwrap_or_default();
    let decision_id = smtp_recipient
        .and_then(decision_id_from_verp)
        .map(str::to_owned)
        .or_else(|| verp_decision_id(&message));
    let subject = message.header("subject").map(|s| clip(s, 200));
    let from = message.header("from").map(|s| clip(s, 200));
    let kind = kind(&message);
    let text = human_part(&message.text);
    let (reply, reply_line) = match kind {
        NoticeKind::Bounce => find_reply(text).map_or((None, None), |(r, l)| (Some(r), Some(l))),
        _ => (None, None),
    };
    let failed_recipient = match kind {
        NoticeKind::Bounce => failed_recipient(&message, text, reply_line),
        _ => None,
    };
    Notice {
        kind,
        decision_id,
        failed_recipient,
        reply,
        subject,
        from,
    }
}

/// The decision id of the first VERP address in `X-Original-To`, `Delivered-To` or `To`.
fn verp_decision_id(message: &PlainMessage) -> Option<String> {
    ["x-original-to", "delivered-to", "to"]
        .iter()
        .flat_map(|name| message.header_values(name))
        .flat_map(addresses_in)
        .find_map(|address| decision_id_from_verp(&address).map(str::to_owned))
}

fn clip(s: &str, max: usize) -> String {
    crate::model::truncate(s.trim(), max).to_owned()
}

/// Sender local parts of mail systems, not people.
const DAEMONS: &[&str] = &[
    "mailer-daemon",
    "mailer_daemon",
    "mail-daemon",
    "maildaemon",
    "postmaster",
    "mail.delivery.system",
    "microsoftexchange",
    "mdaemon",
];

/// Subjects of non-delivery notices, lowercased.
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliver",
    "undelivered",
    "delivery status notification (failure)",
    "delivery status notification (delay)",
    "delivery failure",
    "delivery failed",
    "delivery has failed",
    "failure notice",
    "returned mail",
    "mail delivery failed",
    "mail delivery failure",
    "message not delivered",
    "could not be delivered",
    "not delivered",
    "nondeliverable",
    "non-delivery",
    "delivery notification",
    "mail system error",
    "message delivery has failed",
    "unzustellbar",
    "non remis",
];

/// Sentences only a non-delivery notice says, lowercased.
const BOUNCE_SENTENCES: &[&str] = &[
    "this is the qmail-send program",
    "created automatically by mail delivery software",
    "transcript of session follows",
    "delivery has failed to these recipients",
    "your message couldn't be delivered",
    "your message wasn't delivered",
    "message wasn't delivered",
    "couldn't be delivered",
    "could not be delivered",
    "was not delivered",
    "unable to deliver",
    "delivery to the following recipient",
    "permanent fatal errors",
    "the following address failed",
    "following addresses failed",
    "permanent error",
    "undeliverable",
    "delivery failed",
    "remote host said:",
    "the response from the remote server was",
    "the error that the other server returned was",
    "i'm afraid i wasn't able to deliver",
    "smtp error from remote mail server",
];

/// Out-of-office subjects, lowercased.
const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "autoreply",
    "auto-reply",
    "auto:",
    "away from",
    "on vacation",
    "vacation",
    "abwesenheit",
    "automatische antwort",
    "absence",
    "réponse automatique",
];

fn kind(message: &PlainMessage) -> NoticeKind {
    let from = message
        .header("from")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let from_daemon = addresses_in(&from)
        .iter()
        .filter_map(|a| a.split('@').next().map(str::to_owned))
        .any(|local| DAEMONS.contains(&local.as_str()))
        || from.contains("mail delivery");
    let subject = message.header("subject").unwrap_or_default().to_lowercase();
    let head = crate::model::truncate(&message.text, 8 * 1024).to_lowercase();
    let bounce_subject = BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s));
    let bounce_text = BOUNCE_SENTENCES.iter().any(|s| head.contains(s));
    let return_path_null = message
        .header("return-path")
        .is_some_and(|p| p.trim() == "<>");
    let auto_submitted = message
        .header("auto-submitted")
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("no"));
    let auto_reply = message.header("x-autoreply").is_some()
        || message.header("x-autorespond").is_some()
        || message.header("x-autoresponder").is_some()
        || message.header("precedence").is_some_and(|p| {
            matches!(
                p.trim().to_ascii_lowercase().as_str(),
                "auto_reply" | "bulk" | "junk"
            )
        })
        || AUTO_REPLY_SUBJECTS.iter().any(|s| subject.contains(s))
        || message
            .header("x-auto-response-suppress")
            .is_some_and(|_| auto_submitted);
    // A mail system's own notice is a bounce even though it is auto-submitted (Exim
    // and Postfix mark theirs `auto-replied`); a person's automatic answer is not.
    if from_daemon && (bounce_subject || bounce_text || return_path_null)
        || (bounce_subject && bounce_text)
        || (!auto_reply && (bounce_subject || bounce_text))
    {
        NoticeKind::Bounce
    } else if auto_reply || auto_submitted {
        NoticeKind::AutoReply
    } else if from_daemon {
        NoticeKind::Bounce
    } else {
        NoticeKind::Other
    }
}

/// The notice's own words: its text up to where the returned original begins.
fn human_part(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let lower = line.trim().to_ascii_lowercase();
        let original = lower.contains("copy of the message")
            || lower.contains("original message")
            || lower.contains("message follows")
            || lower.contains("returned message")
            || lower.contains("header of the original")
            || lower.contains("headers of the original")
            || lower.starts_with("received: ")
            || lower.starts_with("return-path:")
            || lower.starts_with("------ this is a copy");
        if original && offset > 0 {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

/// The first SMTP reply the notice quotes, and the index of its line.
fn find_reply(text: &str) -> Option<(QuotedReply, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    // A reply code with an enhanced status anywhere, then a bare code where replies are
    // quoted, then qmail's `(#5.1.1)`.
    for (i, line) in lines.iter().enumerate() {
        if let Some((code, at)) = reply_code(line, false) {
            let rest = &line[at..];
            if let Some(enhanced) = enhanced_after_code(rest) {
                return Some((
                    QuotedReply {
                        code: Some(code),
                        enhanced: Some(enhanced),
                        text: reply_text(&lines, i, at),
                    },
                    i,
                ));
            }
        }
    }
    for (i, line) in lines.iter().enumerate() {
        if let Some((code, at)) = reply_code(line, true) {
            return Some((
                QuotedReply {
                    code: Some(code),
                    enhanced: enhanced_after_code(&line[at..]),
                    text: reply_text(&lines, i, at),
                },
                i,
            ));
        }
    }
    for (i, line) in lines.iter().enumerate() {
        if let Some(at) = line.find("#5.").or_else(|| line.find("#4.")) {
            let word: String = line[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let word = word.trim_end_matches('.');
            if enhanced_status_in(word) == Some(word) {
                let text = lines[..=i]
                    .iter()
                    .rev()
                    .take(2)
                    .rev()
                    .map(|l| l.trim())
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                return Some((
                    QuotedReply {
                        code: None,
                        enhanced: Some(word.to_owned()),
                        text: clip(&text, 500),
                    },
                    i,
                ));
            }
        }
    }
    None
}

/// Words after which a bare reply code is a quoted reply.
const REPLY_CUES: &[&str] = &[
    "said:",
    "smtp;",
    "smtp ;",
    "<<<",
    "returned '",
    "returned \"",
    "replied:",
    "response:",
    "error:",
    "server was:",
    "returned was:",
    "diagnostic-code:",
];

/// A 4xx/5xx reply code in `line` and where its reply starts: a three-digit word
/// followed by a space, a `-` or the end of the line. With `cued`, only a code that
/// starts the line (after quoting marks) or follows a [`REPLY_CUES`] word counts.
fn reply_code(line: &str, cued: bool) -> Option<(u16, usize)> {
    let bytes = line.as_bytes();
    let lower = line.to_ascii_lowercase();
    let mut i = 0;
    while i + 3 <= bytes.len() {
        let word = &bytes[i..i + 3];
        let before_ok = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || matches!(bytes[i - 1], b'.' | b'-' | b'+' | b'/' | b':' | b'='));
        let after_ok = bytes.get(i + 3).is_none_or(|&b| b == b' ' || b == b'-');
        if before_ok
            && after_ok
            && matches!(word[0], b'4' | b'5')
            && word.iter().all(u8::is_ascii_digit)
        {
            let code = u16::from(word[0] - b'0') * 100
                + u16::from(word[1] - b'0') * 10
                + u16::from(word[2] - b'0');
            let prefix = lower[..i].trim_end();
            let starts = prefix
                .trim_start_matches(|c: char| {
                    c.is_whitespace() || matches!(c, '>' | '<' | '#' | '\'' | '"' | '(' | '[')
                })
                .is_empty();
            let cue = REPLY_CUES.iter().any(|c| prefix.ends_with(c.trim_end()));
            if !cued || starts || cue {
                return Some((code, i));
            }
        }
        i += 1;
    }
    None
}

/// The enhanced status right after a reply code: `550 5.1.1`, `550-5.1.1`, `550 #5.1.1`.
fn enhanced_after_code(rest: &str) -> Option<String> {
    let after = rest.get(3..)?;
    let word = after
        .trim_start_matches([' ', '-', '#'])
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | ',' | ')' | '\'' | '"'))
        .next()?
        .trim_end_matches('.');
    let first = rest.as_bytes().first().copied()?;
    (enhanced_status_in(word) == Some(word) && word.as_bytes().first() == Some(&first))
        .then(|| word.to_owned())
}

/// The reply from `at` on line `i`, with the continuation lines of a multi-line reply
/// (`550-5.1.1 …` then `550 5.1.1 …`) or indented lines joined by a space.
fn reply_text(lines: &[&str], i: usize, at: usize) -> String {
    let first = lines[i][at..].trim();
    let code = first.get(..3).unwrap_or_default().to_owned();
    let mut text = first.trim_end_matches(['\'', '"']).to_owned();
    let mut multi = first.as_bytes().get(3) == Some(&b'-');
    for line in lines.iter().skip(i + 1).take(8) {
        let trimmed = line.trim();
        if multi && trimmed.starts_with(&code) {
            multi = trimmed.as_bytes().get(3) == Some(&b'-');
            text.push(' ');
            text.push_str(trimmed.get(4..).unwrap_or_default().trim());
        } else if !multi && line.starts_with([' ', '\t']) && !trimmed.is_empty() && text.len() < 300
        {
            text.push(' ');
            text.push_str(trimmed);
        } else {
            break;
        }
    }
    clip(&text, 500)
}

/// The address the notice says failed: `X-Failed-Recipients`, else the nearest address
/// before (or on) the reply's line, else the first address in its words.
fn failed_recipient(
    message: &PlainMessage,
    text: &str,
    reply_line: Option<usize>,
) -> Option<String> {
    let ours = |a: &String| {
        let local = a.split('@').next().unwrap_or_default();
        !local.starts_with("bounces+") && !DAEMONS.contains(&local) && a.contains('.')
    };
    if let Some(a) = message
        .header("x-failed-recipients")
        .and_then(|header| addresses_in(header).into_iter().find(ours))
    {
        return Some(a);
    }
    let from: Vec<String> = message.header("from").map(addresses_in).unwrap_or_default();
    let useful = |a: &String| ours(a) && !from.contains(a);
    let lines: Vec<&str> = text.lines().collect();
    if let Some(r) = reply_line {
        for line in lines[..=r.min(lines.len().saturating_sub(1))].iter().rev() {
            // Within the reply line, the address the reply names comes first.
            if let Some(a) = addresses_in(line).into_iter().find(|a| useful(a)) {
                return Some(a);
            }
        }
    }
    lines
        .iter()
        .flat_map(|l| addresses_in(l))
        .find(|a| useful(a))
}

/// The email addresses in `text`, lowercased, in order.
pub fn addresses_in(text: &str) -> Vec<String> {
    text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '<' | '>' | '(' | ')' | '[' | ']' | '"' | '\'' | ',' | ';' | '`'
            )
    })
    .map(|w| w.trim_start_matches("mailto:").trim_end_matches(['.', ':']))
    .filter_map(|w| {
        let (local, domain) = w.rsplit_once('@')?;
        let ok = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-'))
            && !local.contains(':');
        ok.then(|| w.to_lowercase())
    })
    .collect()
}
