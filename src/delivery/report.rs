//! Bounce and complaint reports: raw bytes in, a [`Report`] out (SPEC §4, `POST /api/v1/bounces`).
//!
//! Owns the reading of RFC 3464 delivery status notifications (DSN, also the RFC 6533
//! `message/global-delivery-status` form) and RFC 5965 ARF feedback reports, and the one rule
//! that sorts an enhanced status code (RFC 3463) into "the address is bad", "our mail was
//! refused", "transient" or "other" ([`classify_status`]), shared with the SMTP delivery side.
//!
//! It must never do I/O, read the clock or touch the store, and never panic or recurse without
//! bound on hostile input: the body comes from the network, at up to 10 MiB (SPEC §5). Two
//! consequences shape the code:
//!
//! - mail-parser's `Message` owns nested messages by value. Its drop (and its `into_owned` of a
//!   message nested in a base64 `message/rfc822` part) recurses once per level, so an input of a
//!   few MB nesting `message/rfc822` a hundred thousand times aborts the process with a stack
//!   overflow. We therefore rename every `Content-Transfer-Encoding` field before mail-parser
//!   sees the bytes (it then never decodes, so it never recurses), decode the few parts we read
//!   ourselves, and drop the parsed tree with an explicit stack ([`drop_iteratively`]).
//! - Field blocks are read by a small parser of our own ([`field_blocks`]): CRLF or LF, folded
//!   lines, 8-bit bytes (lossy UTF-8), case-insensitive names, no trailing newline.

use std::borrow::Cow;

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{
    Header, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

/// What a report says, recipient by recipient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    /// RFC 3464 delivery status notification.
    Dsn(Dsn),
    /// RFC 5965 ARF feedback report.
    Complaint(Complaint),
}

/// An RFC 3464 delivery status notification: per-message fields, then one entry per recipient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dsn {
    /// The MTA that wrote the report (`Reporting-MTA`, RFC 3464 §2.2.2), without its `dns;` type.
    pub reporting_mta: Option<String>,
    /// Message-ID of the returned original, angle brackets stripped: from its `message/rfc822`
    /// or `text/rfc822-headers` part, else the report's own `In-Reply-To`, else the last
    /// `References` entry. How SPEC §4 finds the decision.
    pub original_message_id: Option<String>,
    /// Envelope sender of the original, lowercased: its `Return-Path`, else Postfix's
    /// `X-Postfix-Sender`, else the report's own `To` (a DSN goes to the reverse-path, RFC 3464
    /// §2). For our mail this is the VERP address `bounces+{decision_id}@{domain}`.
    pub original_envelope_from: Option<String>,
    /// The recipient blocks that name a recipient, an action and a status, in report order.
    pub recipients: Vec<DsnRecipient>,
}

/// One per-recipient block of a DSN (RFC 3464 §2.3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DsnRecipient {
    /// `Final-Recipient` address only: type (`rfc822;`) and angle brackets removed, trimmed,
    /// lowercased.
    pub final_recipient: String,
    /// `Original-Recipient`, normalized the same way, when given.
    pub original_recipient: Option<String>,
    /// What the reporting MTA did with the message for this recipient.
    pub action: Action,
    /// The enhanced status (RFC 3463), e.g. `5.1.1`, as given. When `Status` holds no valid code,
    /// the enhanced code of `Diagnostic-Code`, else `{c}.0.0` from its SMTP reply code `c`xx.
    pub status: String,
    /// `Diagnostic-Code` with folded lines joined by one space, e.g. `smtp; 550 5.1.1 ...`.
    pub diagnostic_code: Option<String>,
    /// The SMTP reply code of an `smtp;` diagnostic (RFC 3464 §2.3.6), e.g. 550.
    pub smtp_code: Option<u16>,
    /// The MTA that gave the answer (`Remote-MTA`), without its type and comments.
    pub remote_mta: Option<String>,
}

/// The `Action` of a recipient block (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Delivery failed and will not be retried.
    Failed,
    /// Delivery is still being tried.
    Delayed,
    /// Delivered to the recipient's mailbox.
    Delivered,
    /// Handed to a system that does not send DSNs.
    Relayed,
    /// Delivered and forwarded to further recipients.
    Expanded,
}

/// An RFC 5965 ARF feedback report: someone marked our mail as spam (or similar).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Complaint {
    /// `Feedback-Type` (RFC 5965 §3.1), lowercased: `abuse`, `fraud`, `not-spam`, ...
    pub feedback_type: String,
    /// `Original-Rcpt-To` addresses (RFC 5965 §3.2), lowercased, de-duplicated. Often redacted
    /// away: then the caller falls back to [`Complaint::original_to`].
    pub original_rcpt_to: Vec<String>,
    /// `Original-Mail-From`, lowercased: our VERP address when the reporter kept it.
    pub original_mail_from: Option<String>,
    /// Message-ID of the returned original (as for [`Dsn::original_message_id`]).
    pub original_message_id: Option<String>,
    /// `To` addresses of the returned original, lowercased.
    pub original_to: Vec<String>,
    /// `User-Agent` of the report generator.
    pub user_agent: Option<String>,
}

/// How a recipient's status is to be treated (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusClass {
    /// 5.1.x, 5.2.x, the unspecific 5.0.x, or a permanent failure whose subject is unknown:
    /// the recipient's address is bad → suppress.
    Recipient,
    /// 5.3.x–5.7.x: our mail was refused (system, network, protocol, content, policy) →
    /// `failed`/`policy_rejected`, not suppressed.
    SenderSide,
    /// 4.x.x, or `Action: delayed`: transient; change nothing but record.
    Transient,
    /// 2.x.x, a success action, or no valid status at all.
    Other,
}

impl DsnRecipient {
    /// How this recipient is treated: `delayed` is always transient, `failed` goes by its status
    /// ([`classify_status`]; Postfix reports an expired message as `failed` with `4.4.7`, which
    /// stays transient), and the success actions are [`StatusClass::Other`].
    pub fn class(&self) -> StatusClass {
        match self.action {
            Action::Delayed => StatusClass::Transient,
            Action::Failed => classify_status(&self.status),
            Action::Delivered | Action::Relayed | Action::Expanded => StatusClass::Other,
        }
    }
}

/// Sorts a bare enhanced status code (`class.subject.detail`, RFC 3463 §2) per SPEC §4.
///
/// RFC 3463 §2 says a client must act on the class even when it does not recognise the
/// subject, and on the subject even when it does not recognise the detail. So `5.0.7` means
/// "permanent, no subject information", like `5.0.0`, and so does `5.9.9` (subjects beyond 7
/// are unassigned): both are [`StatusClass::Recipient`], matching SPEC §4's rule that a 5xx
/// with no enhanced status suppresses. Only the subjects that blame the sending side, 3 to 7,
/// are [`StatusClass::SenderSide`]. Anything that is not a valid code is
/// [`StatusClass::Other`].
pub fn classify_status(status: &str) -> StatusClass {
    match enhanced_code(status.trim()) {
        Some((5, 3..=7, _)) => StatusClass::SenderSide,
        Some((5, _, _)) => StatusClass::Recipient,
        Some((4, _, _)) => StatusClass::Transient,
        Some(_) | None => StatusClass::Other,
    }
}

/// The enhanced status code (RFC 3463) in an SMTP reply or `Diagnostic-Code` text: the first of
/// its first few words that is one, where RFC 2034 §4 puts it (`550 5.1.1 ...`, `550-5.1.1`,
/// `smtp;550 5.1.10 ...`).
pub fn enhanced_status_in(text: &str) -> Option<&str> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ';' | '-' | ','))
        .filter(|word| !word.is_empty())
        .take(4)
        .map(|word| word.trim_matches(|c: char| !c.is_ascii_digit()))
        .find(|word| enhanced_code(word).is_some())
}

/// Why a body is not a report we can act on. Each message is a sentence for a 422 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// No header at all (mail-parser found none, or the body starts with a blank line).
    #[error("the body is not a MIME message")]
    Unparseable,
    /// A message, but with no delivery-status or feedback-report part.
    #[error(
        "the message is not a delivery status notification (multipart/report with message/delivery-status) or a feedback report (message/feedback-report)"
    )]
    NotAReport,
    /// A delivery-status part without one usable recipient block.
    #[error(
        "the delivery status part names no recipient (no block with Final-Recipient, Action and Status)"
    )]
    NoRecipients,
    /// A feedback-report part without `Feedback-Type`.
    #[error("the feedback report has no Feedback-Type field")]
    NoFeedbackType,
}

impl ReportError {
    /// The snake_case code of the API error body (SPEC §5 `{"error": {"code", "message"}}`).
    pub fn code(&self) -> &'static str {
        match self {
            ReportError::Unparseable => "unparseable_report",
            ReportError::NotAReport => "not_a_report",
            ReportError::NoRecipients => "no_recipients",
            ReportError::NoFeedbackType => "no_feedback_type",
        }
    }
}

/// Reads a raw report as POSTed (`message/rfc822` or `multipart/report`).
///
/// The report parts are looked for in the message itself, then in messages attached to it (a
/// forwarded bounce), at most [`MAX_NESTING`] levels down; the shallowest level with a report
/// part wins, so the returned original of a bounce is never mistaken for the report.
pub fn parse(raw: &[u8]) -> Result<Report, ReportError> {
    let visible = hide_transfer_encodings(raw);
    // mail-parser 0.11.9 has `debug_assert!`s that fire on some malformed nesting (a
    // message/rfc822 part holding an empty message/rfc822), so debug builds would panic where
    // release builds carry on. Bad input must never become a 500 (SPEC §5): read it as
    // unparseable instead.
    let parsed = std::panic::catch_unwind(|| MessageParser::default().parse(visible.as_ref()));
    let Some(message) = parsed.ok().flatten() else {
        return Err(ReportError::Unparseable);
    };
    let report = if message
        .parts
        .first()
        .is_some_and(|root| !root.headers.is_empty())
    {
        read_message(&message, MAX_NESTING)
    } else {
        Err(ReportError::Unparseable)
    };
    drop_iteratively(message);
    report
}

/// A message that is not a report, read for what a person (or [`super::notice`]) would
/// read in it: its own header fields and its human-readable text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlainMessage {
    /// The message's own header fields in order, names lowercased, folds joined, values
    /// as they stand (not RFC 2047-decoded), except `subject`, which is decoded.
    pub headers: Vec<(String, String)>,
    /// The text of its own `text/plain` parts (transfer encoding undone, lossy UTF-8), or,
    /// when it has none, of its `text/html` parts with the tags removed. Attached
    /// messages are not read.
    pub text: String,
}

impl PlainMessage {
    /// Every value of the header field `name` (lowercase).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first value of the header field `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Most text [`read_plain`] keeps: a notice says what it has to say early.
const PLAIN_TEXT_LIMIT: usize = 256 * 1024;

/// Reads a message that [`parse`] found no report in; `None` when it has no header.
/// Bounded and panic-free like [`parse`].
pub fn read_plain(raw: &[u8]) -> Option<PlainMessage> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .into_iter()
        .chain(raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 1))
        .min()
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut headers: Vec<(String, String)> = field_blocks(&head)
        .into_iter()
        .next()
        .map(|block| block.0)
        .unwrap_or_default();
    if headers.is_empty() {
        return None;
    }
    let visible = hide_transfer_encodings(raw);
    let parsed = std::panic::catch_unwind(|| MessageParser::default().parse(visible.as_ref()));
    let message = parsed.ok().flatten();
    let mut text = String::new();
    if let Some(message) = &message {
        if let Some(subject) = message.subject() {
            for (name, value) in &mut headers {
                if name == "subject" {
                    *value = subject.to_owned();
                    break;
                }
            }
        }
        let mut html = String::new();
        for part in &message.parts {
            let is_text = match part.content_type() {
                None => true,
                Some(ct) => {
                    ct.ctype().eq_ignore_ascii_case("text")
                        && !ct
                            .subtype()
                            .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
                }
            };
            if !is_text || text.len() >= PLAIN_TEXT_LIMIT {
                continue;
            }
            match &part.body {
                PartType::Text(_) => {
                    text.push_str(&part_text(part));
                    text.push('\n');
                }
                PartType::Html(_) if html.len() < PLAIN_TEXT_LIMIT => {
                    html.push_str(&strip_tags(&part_text(part)));
                    html.push('\n');
                }
                _ => {}
            }
        }
        if text.trim().is_empty() {
            text = html;
        }
    }
    if let Some(message) = message {
        drop_iteratively(message);
    }
    if text.trim().is_empty() {
        // Not MIME as mail-parser sees it: the body as it stands.
        text = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    }
    let cut = crate::model::truncate(&text, PLAIN_TEXT_LIMIT).len();
    text.truncate(cut);
    Some(PlainMessage { headers, text })
}

/// HTML as text: tags dropped (block tags become line breaks), the common entities
/// undone. Enough to find an SMTP reply in an HTML-only notice.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[open + 1..open + close]
            .trim_start_matches('/')
            .to_ascii_lowercase();
        if ["br", "p", "div", "tr", "li", "h1", "h2", "h3", "table"]
            .iter()
            .any(|t| tag.starts_with(t))
        {
            out.push('\n');
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// How many attached messages deep a report is looked for.
const MAX_NESTING: usize = 3;

/// `Content-Transfer-Encoding` after [`hide_transfer_encodings`] renamed it.
const HIDDEN_ENCODING: &str = "xontent-transfer-encoding";

fn read_message(message: &Message<'_>, depth: usize) -> Result<Report, ReportError> {
    if let Some(report) = read_level(message) {
        return report;
    }
    if depth > 0 {
        for nested in message.parts.iter().filter_map(MessagePart::message) {
            match read_message(nested, depth - 1) {
                Err(ReportError::NotAReport) => continue,
                found => return found,
            }
        }
    }
    Err(ReportError::NotAReport)
}

/// What a part of a `multipart/report` is (RFC 6522 §3, RFC 3464 §2, RFC 5965 §2).
enum Role {
    DeliveryStatus,
    Feedback,
    Original,
    Other,
}

fn role(part: &MessagePart<'_>) -> Role {
    let Some(content_type) = part.content_type() else {
        return Role::Other;
    };
    let subtype = content_type
        .subtype()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.ctype().eq_ignore_ascii_case("message") {
        match subtype.as_str() {
            "delivery-status" | "global-delivery-status" => Role::DeliveryStatus,
            "feedback-report" => Role::Feedback,
            "rfc822" | "global" | "global-headers" => Role::Original,
            _ => Role::Other,
        }
    } else if content_type.ctype().eq_ignore_ascii_case("text") && subtype == "rfc822-headers" {
        Role::Original
    } else {
        Role::Other
    }
}

/// Reads the report parts among one message's own parts, or `None` when it has none.
fn read_level(message: &Message<'_>) -> Option<Result<Report, ReportError>> {
    let (mut statuses, mut feedback, mut originals) = (Vec::new(), None, Vec::new());
    for part in &message.parts {
        match role(part) {
            Role::DeliveryStatus => statuses.push(part),
            Role::Feedback => feedback = feedback.or(Some(part)),
            Role::Original => originals.push(part),
            Role::Other => {}
        }
    }
    let headers = message
        .parts
        .first()
        .map_or(&[][..], |root| root.headers.as_slice());
    // Both kinds at once is odd; the `report-type` parameter (RFC 6522 §3) decides, else DSN.
    let feedback_first = message
        .parts
        .first()
        .and_then(|root| root.content_type())
        .is_some_and(|ct| {
            ct.attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("feedback-report"))
        });
    match feedback {
        Some(part) if statuses.is_empty() || feedback_first => {
            Some(read_complaint(part, Original::read(&originals, headers)))
        }
        _ if !statuses.is_empty() => Some(read_dsn(
            &statuses,
            Original::read(&originals, headers),
            headers,
        )),
        _ => None,
    }
}

fn read_dsn(
    parts: &[&MessagePart<'_>],
    original: Original,
    report_headers: &[Header<'_>],
) -> Result<Report, ReportError> {
    let mut per_message: Option<Fields> = None;
    let mut recipients = Vec::new();
    for part in parts {
        let mut blocks = field_blocks(&part_text(part)).into_iter();
        // RFC 3464 §2.1: the first block holds the per-message fields, the others one recipient
        // each. Some MTAs omit the blank line after the per-message fields, so a first block
        // naming a recipient is read as both.
        if let Some(first) = blocks.next() {
            if first.get("final-recipient").is_some() {
                recipients.extend(read_recipient(&first));
            }
            per_message.get_or_insert(first);
        }
        recipients.extend(blocks.filter_map(|block| read_recipient(&block)));
    }
    if recipients.is_empty() {
        return Err(ReportError::NoRecipients);
    }
    let per_message = per_message.unwrap_or_default();
    let original_envelope_from = original
        .return_path
        .or_else(|| per_message.get("x-postfix-sender").and_then(address_field))
        .or_else(|| first_address(report_headers, &HeaderName::To));
    Ok(Report::Dsn(Dsn {
        reporting_mta: per_message.get("reporting-mta").and_then(mta_field),
        original_message_id: original.message_id,
        original_envelope_from,
        recipients,
    }))
}

/// One recipient block, or `None` when it lacks `Final-Recipient`, a known `Action` or `Status`
/// (RFC 3464 §2.3 makes all three required).
fn read_recipient(fields: &Fields) -> Option<DsnRecipient> {
    let final_recipient = fields.get("final-recipient").and_then(address_field)?;
    let action = fields.get("action").and_then(action_field)?;
    let status_field = fields.get("status")?;
    let diagnostic_code = fields
        .get("diagnostic-code")
        .filter(|code| !code.is_empty())
        .map(str::to_owned);
    let smtp_code = diagnostic_code.as_deref().and_then(smtp_reply_code);
    let status = enhanced_status_in(status_field)
        .or_else(|| diagnostic_code.as_deref().and_then(enhanced_status_in))
        .map(str::to_owned)
        .or_else(|| {
            smtp_code
                .filter(|code| matches!(code / 100, 2 | 4 | 5))
                .map(|code| format!("{}.0.0", code / 100))
        })?;
    Some(DsnRecipient {
        final_recipient,
        original_recipient: fields.get("original-recipient").and_then(address_field),
        action,
        status,
        diagnostic_code,
        smtp_code,
        remote_mta: fields.get("remote-mta").and_then(mta_field),
    })
}

fn read_complaint(part: &MessagePart<'_>, original: Original) -> Result<Report, ReportError> {
    // RFC 5965 §3.1 has one block; we read every field of every block anyway.
    let fields = Fields(
        field_blocks(&part_text(part))
            .into_iter()
            .flat_map(|block| block.0)
            .collect(),
    );
    let feedback_type = fields
        .get("feedback-type")
        .and_then(|value| {
            strip_comments(value)
                .split_whitespace()
                .next()
                .map(str::to_ascii_lowercase)
        })
        .ok_or(ReportError::NoFeedbackType)?;
    // A set, not `Vec::contains`: a 10 MiB report can hold half a million of these fields.
    let mut seen = std::collections::HashSet::new();
    let original_rcpt_to = fields
        .all("original-rcpt-to")
        .filter_map(address_field)
        .filter(|address| seen.insert(address.clone()))
        .collect();
    Ok(Report::Complaint(Complaint {
        feedback_type,
        original_rcpt_to,
        original_mail_from: fields.get("original-mail-from").and_then(address_field),
        original_message_id: original.message_id,
        original_to: original.to,
        user_agent: fields
            .get("user-agent")
            .filter(|agent| !agent.is_empty())
            .map(str::to_owned),
    }))
}

/// What we need from the returned original message (RFC 3464 §2, RFC 5965 §2 (d)).
#[derive(Default)]
struct Original {
    message_id: Option<String>,
    return_path: Option<String>,
    to: Vec<String>,
}

impl Original {
    /// Reads the first original part that has each field; the Message-ID falls back to the
    /// report's own `In-Reply-To`, then the last `References` entry (RFC 5322 §3.6.4).
    fn read(parts: &[&MessagePart<'_>], report_headers: &[Header<'_>]) -> Original {
        let mut original = Original::default();
        for part in parts {
            let (bytes, parsed);
            let headers = match part.message() {
                Some(nested) => nested
                    .parts
                    .first()
                    .map_or(&[][..], |root| root.headers.as_slice()),
                None => {
                    // text/rfc822-headers, message/global-headers, or a message part mail-parser
                    // could not read: parse the (decoded) text as a header block.
                    bytes = [part_bytes(part).as_ref(), b"\r\n\r\n"].concat();
                    parsed = MessageParser::default().parse_headers(&bytes);
                    parsed
                        .as_ref()
                        .and_then(|m| m.parts.first())
                        .map_or(&[][..], |root| root.headers.as_slice())
                }
            };
            original.message_id = original
                .message_id
                .or_else(|| first_id(headers, &HeaderName::MessageId, false));
            original.return_path = original.return_path.or_else(|| {
                first_id(headers, &HeaderName::ReturnPath, false).map(|path| path.to_lowercase())
            });
            if original.to.is_empty() {
                original.to = addresses(headers, &HeaderName::To);
            }
        }
        original.message_id = original
            .message_id
            .or_else(|| first_id(report_headers, &HeaderName::InReplyTo, false))
            .or_else(|| first_id(report_headers, &HeaderName::References, true));
        original
    }
}

/// The first (or, with `last`, the last) id of the first `name` field, without angle brackets.
fn first_id(headers: &[Header<'_>], name: &HeaderName<'_>, last: bool) -> Option<String> {
    let value = headers.iter().find(|header| header.name == *name)?;
    let id = match &value.value {
        HeaderValue::Text(id) => id.as_ref(),
        HeaderValue::TextList(ids) if last => ids.last()?.as_ref(),
        HeaderValue::TextList(ids) => ids.first()?.as_ref(),
        _ => return None,
    };
    let id = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// The addresses of the first `name` field, lowercased.
fn addresses(headers: &[Header<'_>], name: &HeaderName<'_>) -> Vec<String> {
    let Some(HeaderValue::Address(list)) = headers
        .iter()
        .find(|header| header.name == *name)
        .map(|h| &h.value)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|addr| addr.address())
        .map(|address| address.trim().to_lowercase())
        .filter(|address| !address.is_empty())
        .collect()
}

fn first_address(headers: &[Header<'_>], name: &HeaderName<'_>) -> Option<String> {
    addresses(headers, name).into_iter().next()
}

/// The fields of one block, in order; names lowercased.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Splits a delivery-status or feedback-report body into blocks of fields (RFC 3464 §2.1:
/// blocks are separated by blank lines; RFC 5322 §2.2.3: a line starting with white space
/// continues the field before it). Folds are joined with one space. Lines that are neither a
/// field nor a continuation are skipped, and so are blocks with no field.
fn field_blocks(text: &str) -> Vec<Fields> {
    let mut blocks = Vec::new();
    let mut block = Fields::default();
    // Whether a continuation line belongs to the last field (not to a skipped garbage line).
    let mut continues = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !block.0.is_empty() {
                blocks.push(std::mem::take(&mut block));
            }
            continues = false;
        } else if line.starts_with([' ', '\t']) {
            if let (true, Some((_, value))) = (continues, block.0.last_mut()) {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(line.trim());
            }
        } else {
            let field = line
                .split_once(':')
                .filter(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()));
            continues = field.is_some();
            if let Some((name, value)) = field {
                block
                    .0
                    .push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
    }
    if !block.0.is_empty() {
        blocks.push(block);
    }
    blocks
}

/// `rfc822; <Bob@Example.test>` → `bob@example.test`. The type before `;` (RFC 3464 §2.3.2,
/// `utf-8` in RFC 6533) is dropped; brackets, a display name and trailing comments too.
fn address_field(value: &str) -> Option<String> {
    let address = value
        .split_once(';')
        .map_or(value, |(_, address)| address)
        .trim();
    let address = match (address.find('<'), address.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            address.get(open + 1..close).unwrap_or_default()
        }
        _ => address.split_whitespace().next().unwrap_or_default(),
    };
    let address = address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!address.is_empty()).then(|| address.to_lowercase())
}

/// `dns; mx.example.test. (192.0.2.1, the server for ...)` → `mx.example.test`.
fn mta_field(value: &str) -> Option<String> {
    let value = strip_comments(value);
    let name = value
        .split_once(';')
        .map_or(value.as_str(), |(_, name)| name);
    let name = name.split_whitespace().next()?.trim_end_matches('.');
    (!name.is_empty()).then(|| name.to_owned())
}

/// The five actions of RFC 3464 §2.3.3, case-insensitive, comments ignored.
fn action_field(value: &str) -> Option<Action> {
    match strip_comments(value)
        .split_whitespace()
        .next()?
        .to_ascii_lowercase()
        .as_str()
    {
        "failed" => Some(Action::Failed),
        "delayed" => Some(Action::Delayed),
        "delivered" => Some(Action::Delivered),
        "relayed" => Some(Action::Relayed),
        "expanded" => Some(Action::Expanded),
        _ => None,
    }
}

/// Removes RFC 5322 §3.2.2 comments (nested parentheses count; an unclosed one runs to the end).
fn strip_comments(value: &str) -> String {
    let mut depth = 0usize;
    value
        .chars()
        .filter(|&c| match c {
            '(' => {
                depth += 1;
                false
            }
            ')' if depth > 0 => {
                depth -= 1;
                false
            }
            _ => depth == 0,
        })
        .collect()
}

/// The reply code of an `smtp` diagnostic (RFC 3464 §2.3.6): `smtp; 550 5.1.1 ...` → 550,
/// `smtp;550-5.1.1 ...` → 550. Other diagnostic types (`X-Postfix;`) have none. A diagnostic
/// with no type at all is read as SMTP text.
fn smtp_reply_code(diagnostic: &str) -> Option<u16> {
    let text = match diagnostic.split_once(';') {
        Some((kind, text)) if kind.trim().eq_ignore_ascii_case("smtp") => text,
        Some(_) => return None,
        None => diagnostic,
    };
    let (code, rest) = text.trim_start().as_bytes().split_first_chunk::<3>()?;
    let ends = rest.first().is_none_or(|&b| b == b' ' || b == b'-');
    let valid = ends && (b'2'..=b'5').contains(&code[0]) && code.iter().all(u8::is_ascii_digit);
    valid.then(|| {
        code.iter()
            .fold(0u16, |n, &digit| n * 10 + u16::from(digit - b'0'))
    })
}

/// `class "." subject "." detail` (RFC 3463 §2): class 2, 4 or 5; subject and detail one to
/// three digits.
fn enhanced_code(code: &str) -> Option<(u8, u16, u16)> {
    let mut numbers = code.split('.');
    let (class, subject, detail) = (numbers.next()?, numbers.next()?, numbers.next()?);
    let number =
        |text: &str| (1..=3).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    if numbers.next().is_some()
        || !matches!(class, "2" | "4" | "5")
        || !number(subject)
        || !number(detail)
    {
        return None;
    }
    Some((
        class.parse().ok()?,
        subject.parse().ok()?,
        detail.parse().ok()?,
    ))
}

/// A part's body as text (lossy UTF-8), transfer encoding undone.
fn part_text(part: &MessagePart<'_>) -> String {
    String::from_utf8_lossy(&part_bytes(part)).into_owned()
}

/// A part's body, transfer encoding undone by us (see [`hide_transfer_encodings`]). A body that
/// does not decode is read as it stands.
fn part_bytes<'p>(part: &'p MessagePart<'_>) -> Cow<'p, [u8]> {
    let body = part.contents();
    let encoding = part.headers.iter().find_map(|header| {
        let name: String = header
            .name
            .as_str()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        match &header.value {
            HeaderValue::Text(value) if name.eq_ignore_ascii_case(HIDDEN_ENCODING) => {
                Some(strip_comments(value).trim().to_ascii_lowercase())
            }
            _ => None,
        }
    });
    let decoded = match encoding.as_deref() {
        Some("base64") => base64_decode(body),
        Some("quoted-printable") => quoted_printable_decode(body),
        _ => None,
    };
    decoded.map_or(Cow::Borrowed(body), Cow::Owned)
}

/// Renames every `Content-Transfer-Encoding` field to `Xontent-Transfer-Encoding`, so that
/// mail-parser leaves all bodies encoded: decoding a `message/rfc822` part is the one place where
/// it recurses without bound (see the module comment). A field is matched the way mail-parser
/// matches names: on one line, up to the first `:` after a name character, white space ignored.
fn hide_transfer_encodings(raw: &[u8]) -> Cow<'_, [u8]> {
    let mut renamed = Vec::new();
    let mut line_start = 0;
    let mut name = Vec::with_capacity(HIDDEN_ENCODING.len() + 1);
    for line in raw.split(|&b| b == b'\n') {
        let mut first = None;
        name.clear();
        for (index, &byte) in line.iter().enumerate() {
            match byte {
                b':' if first.is_some() => break,
                b':' => {}
                _ if byte.is_ascii_whitespace() => {}
                _ => {
                    first.get_or_insert(index);
                    if name.len() > HIDDEN_ENCODING.len() {
                        break;
                    }
                    name.push(byte.to_ascii_lowercase());
                }
            }
        }
        if let Some(first) = first.filter(|_| name == b"content-transfer-encoding") {
            renamed.push(line_start + first);
        }
        line_start += line.len() + 1;
    }
    if renamed.is_empty() {
        return Cow::Borrowed(raw);
    }
    let mut visible = raw.to_vec();
    for position in renamed {
        if let Some(byte) = visible.get_mut(position) {
            *byte = b'X';
        }
    }
    Cow::Owned(visible)
}

/// Drops a parsed message with an explicit stack: the derived drop of mail-parser's `Message`
/// recurses once per nested `message/rfc822`, and inputs nest those 100,000 deep in 3 MB.
fn drop_iteratively(message: Message<'_>) {
    let mut pending = vec![message];
    while let Some(mut message) = pending.pop() {
        for part in &mut message.parts {
            if let PartType::Message(nested) = std::mem::take(&mut part.body) {
                pending.push(nested);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MESSAGE_ID: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b@example.test";
    const VERP: &str = "bounces+0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b@example.test";

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/fixtures/reports/", $name, ".eml")).as_slice()
        };
    }

    const FIXTURES: &[&[u8]] = &[
        fixture!("postfix_user_unknown"),
        fixture!("postfix_two_recipients_one_failed"),
        fixture!("exim_failed"),
        fixture!("sendmail_dsn"),
        fixture!("exchange_o365_ndr"),
        fixture!("gmail_bounce"),
        fixture!("ses_bounce"),
        fixture!("policy_rejected_571"),
        fixture!("delayed_only"),
        fixture!("unspecific_500"),
        fixture!("eightbit_and_folded"),
        fixture!("arf_abuse"),
        fixture!("arf_no_rcpt_to"),
        fixture!("not_a_report"),
        fixture!("malformed_ds"),
        fixture!("forwarded_base64_ds"),
        fixture!("global_dsn"),
    ];

    fn dsn(raw: &[u8]) -> Dsn {
        match parse(raw) {
            Ok(Report::Dsn(dsn)) => dsn,
            other => panic!("expected a DSN, got {other:?}"),
        }
    }

    fn complaint(raw: &[u8]) -> Complaint {
        match parse(raw) {
            Ok(Report::Complaint(complaint)) => complaint,
            other => panic!("expected a complaint, got {other:?}"),
        }
    }

    /// Each recipient as (address, action, status, class, smtp code), the one-line view of a DSN.
    type Row<'a> = (&'a str, Action, &'a str, StatusClass, Option<u16>);

    /// The single check of a fixture: its recipients, and that the returned original is found.
    fn check(raw: &[u8], expected: &[Row<'_>]) -> Dsn {
        let dsn = dsn(raw);
        let rows: Vec<Row<'_>> = dsn
            .recipients
            .iter()
            .map(|r| {
                (
                    r.final_recipient.as_str(),
                    r.action,
                    r.status.as_str(),
                    r.class(),
                    r.smtp_code,
                )
            })
            .collect();
        assert_eq!(rows, expected);
        assert_eq!(dsn.original_message_id.as_deref(), Some(MESSAGE_ID));
        dsn
    }

    /// A minimal multipart/report around a delivery-status body, for the edge cases.
    fn report_with(delivery_status: &str) -> Vec<u8> {
        format!(
            "From: MAILER-DAEMON@mx.example.test\r\nTo: {VERP}\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n\
             --B\r\nContent-Type: text/plain\r\n\r\nBounced.\r\n\
             --B\r\nContent-Type: message/delivery-status\r\n\r\n{delivery_status}\r\n--B--\r\n"
        )
        .into_bytes()
    }

    use Action::{Delayed, Failed};
    use StatusClass::{Recipient, SenderSide, Transient};

    #[test]
    fn postfix_user_unknown_is_read_field_by_field() {
        let dsn = dsn(fixture!("postfix_user_unknown"));
        let expected = Dsn {
            reporting_mta: Some("mail.example.test".into()),
            original_message_id: Some(MESSAGE_ID.into()),
            original_envelope_from: Some(VERP.into()),
            recipients: vec![DsnRecipient {
                final_recipient: "nobody@example.test".into(),
                original_recipient: Some("nobody@example.test".into()),
                action: Failed,
                status: "5.1.1".into(),
                diagnostic_code: Some(
                    "smtp; 550 5.1.1 <nobody@example.test>: Recipient address rejected: \
                     User unknown in virtual mailbox table"
                        .into(),
                ),
                smtp_code: Some(550),
                remote_mta: Some("mx.example.test".into()),
            }],
        };
        assert_eq!(dsn, expected);
        assert_eq!(dsn.recipients[0].class(), Recipient);
    }

    #[test]
    fn postfix_failed_and_delayed_recipients_are_told_apart() {
        let dsn = check(
            fixture!("postfix_two_recipients_one_failed"),
            &[
                ("carol@example.test", Failed, "5.1.1", Recipient, Some(550)),
                ("dave@slow.example.test", Delayed, "4.4.1", Transient, None),
            ],
        );
        // No Return-Path in the returned headers: X-Postfix-Sender names the envelope sender.
        assert_eq!(dsn.original_envelope_from.as_deref(), Some(VERP));
        assert_eq!(
            dsn.recipients[1].diagnostic_code.as_deref(),
            Some("X-Postfix; connect to mx.slow.example.test[192.0.2.40]:25: Connection timed out")
        );
    }

    #[test]
    fn exim_status_is_kept_as_given_and_folded_diagnostic_is_joined() {
        let dsn = check(
            fixture!("exim_failed"),
            &[("erin@example.test", Failed, "5.0.0", Recipient, Some(550))],
        );
        let recipient = &dsn.recipients[0];
        assert_eq!(
            recipient.diagnostic_code.as_deref(),
            Some(
                "smtp; 550 5.1.1 <erin@example.test>: Recipient address rejected: User unknown in local recipient table"
            )
        );
        assert_eq!(recipient.remote_mta.as_deref(), Some("mx1.example.test"));
        assert_eq!(dsn.reporting_mta.as_deref(), Some("mx.exim.example.test"));
        assert_eq!(dsn.original_envelope_from.as_deref(), Some(VERP));
    }

    #[test]
    fn sendmail_three_failures_split_into_recipient_and_sender_side() {
        let dsn = check(
            fixture!("sendmail_dsn"),
            &[
                ("frank@example.test", Failed, "5.1.1", Recipient, Some(550)),
                ("grace@example.test", Failed, "5.2.2", Recipient, Some(552)),
                ("heidi@example.test", Failed, "5.7.1", SenderSide, Some(550)),
            ],
        );
        assert!(
            dsn.recipients
                .iter()
                .all(|r| r.remote_mta.as_deref() == Some("mx.example.test"))
        );
        assert_eq!(dsn.reporting_mta.as_deref(), Some("relay.example.test"));
    }

    #[test]
    fn office365_ndr_with_five_one_ten_is_a_recipient_failure() {
        let dsn = check(
            fixture!("exchange_o365_ndr"),
            &[("ivan@example.test", Failed, "5.1.10", Recipient, Some(550))],
        );
        assert_eq!(
            dsn.recipients[0].diagnostic_code.as_deref(),
            Some(
                "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
            )
        );
        assert_eq!(dsn.recipients[0].remote_mta, None);
        assert_eq!(
            dsn.reporting_mta.as_deref(),
            Some("DM6PR01MB1234.namprd01.prod.outlook.com")
        );
        // Return-Path from the text/rfc822-headers part wins over the report's own To.
        assert_eq!(dsn.original_envelope_from.as_deref(), Some(VERP));
    }

    #[test]
    fn gmail_multiline_reply_keeps_code_and_strips_remote_mta_comment() {
        let dsn = check(
            fixture!("gmail_bounce"),
            &[(
                "judy.nosuchuser@example.test",
                Failed,
                "5.1.1",
                Recipient,
                Some(550),
            )],
        );
        let recipient = &dsn.recipients[0];
        assert_eq!(recipient.remote_mta.as_deref(), Some("mx.example.test"));
        let diagnostic = recipient.diagnostic_code.as_deref().unwrap_or_default();
        assert!(diagnostic.starts_with("smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 double-checking"));
        assert!(diagnostic.ends_with("- gsmtp"));
        assert_eq!(dsn.reporting_mta.as_deref(), Some("googlemail.com"));
    }

    #[test]
    fn ses_bounce_is_a_standard_dsn() {
        let dsn = check(
            fixture!("ses_bounce"),
            &[("kim@example.test", Failed, "5.1.1", Recipient, Some(550))],
        );
        assert_eq!(
            dsn.reporting_mta.as_deref(),
            Some("a8-30.smtp-out.amazonses.com")
        );
        assert_eq!(
            dsn.recipients[0].remote_mta.as_deref(),
            Some("mx.example.test")
        );
        assert_eq!(dsn.original_envelope_from.as_deref(), Some(VERP));
    }

    #[test]
    fn policy_rejection_is_sender_side() {
        check(
            fixture!("policy_rejected_571"),
            &[("liam@example.test", Failed, "5.7.1", SenderSide, Some(550))],
        );
    }

    #[test]
    fn delay_warning_is_transient() {
        check(
            fixture!("delayed_only"),
            &[(
                "mia@slow.example.test",
                Delayed,
                "4.4.7",
                Transient,
                Some(421),
            )],
        );
    }

    #[test]
    fn unspecific_five_zero_zero_with_a_comment_is_a_recipient_failure() {
        let dsn = check(
            fixture!("unspecific_500"),
            &[("nora@example.test", Failed, "5.0.0", Recipient, Some(550))],
        );
        assert_eq!(
            dsn.recipients[0].remote_mta.as_deref(),
            Some("[192.0.2.90]")
        );
    }

    #[test]
    fn eight_bit_bytes_and_folded_fields_are_read() {
        let dsn = check(
            fixture!("eightbit_and_folded"),
            &[("olga@example.test", Failed, "5.1.1", Recipient, Some(550))],
        );
        assert_eq!(dsn.reporting_mta.as_deref(), Some("mx.de.example.test"));
        assert_eq!(
            dsn.recipients[0].diagnostic_code.as_deref(),
            Some(
                "smtp; 550 5.1.1 <olga@example.test>: Empfänger unbekannt / unknown recipient \u{FFFD}"
            )
        );
        assert_eq!(dsn.original_envelope_from.as_deref(), Some(VERP));
    }

    #[test]
    fn forwarded_bounce_with_base64_delivery_status_is_found_one_level_down() {
        let dsn = check(
            fixture!("forwarded_base64_ds"),
            &[("tom@example.test", Failed, "5.1.1", Recipient, Some(550))],
        );
        assert_eq!(dsn.reporting_mta.as_deref(), Some("exchange.example.test"));
        assert_eq!(dsn.original_envelope_from.as_deref(), Some(VERP));
    }

    #[test]
    fn global_delivery_status_reads_utf8_addresses() {
        let dsn = check(
            fixture!("global_dsn"),
            &[(
                "jürgen@bücher.example.test",
                Failed,
                "5.1.1",
                Recipient,
                Some(550),
            )],
        );
        assert_eq!(
            dsn.recipients[0].original_recipient.as_deref(),
            Some("juergen@xn--bcher-kva.example.test")
        );
    }

    #[test]
    fn arf_abuse_report_is_a_complaint() {
        let expected = Complaint {
            feedback_type: "abuse".into(),
            original_rcpt_to: vec!["nina@example.test".into()],
            original_mail_from: Some(VERP.into()),
            original_message_id: Some(MESSAGE_ID.into()),
            original_to: vec!["nina@example.test".into()],
            user_agent: Some("SomeGenerator/1.0".into()),
        };
        assert_eq!(complaint(fixture!("arf_abuse")), expected);
    }

    #[test]
    fn arf_without_rcpt_to_offers_the_original_to_header() {
        let complaint = complaint(fixture!("arf_no_rcpt_to"));
        assert_eq!(complaint.feedback_type, "abuse");
        assert!(complaint.original_rcpt_to.is_empty());
        assert_eq!(complaint.original_to, ["oscar@example.test"]);
        assert_eq!(complaint.original_message_id.as_deref(), Some(MESSAGE_ID));
        assert_eq!(
            complaint.user_agent.as_deref(),
            Some("Mailbox-Feedback/2.0")
        );
    }

    #[test]
    fn ordinary_email_is_not_a_report() {
        assert_eq!(
            parse(fixture!("not_a_report")),
            Err(ReportError::NotAReport)
        );
    }

    #[test]
    fn garbage_delivery_status_names_no_recipient() {
        assert_eq!(
            parse(fixture!("malformed_ds")),
            Err(ReportError::NoRecipients)
        );
    }

    #[test]
    fn bodies_without_headers_are_unparseable() {
        assert_eq!(parse(b""), Err(ReportError::Unparseable));
        assert_eq!(parse(b"\r\n\r\n"), Err(ReportError::Unparseable));
    }

    #[test]
    fn feedback_report_without_type_is_refused() {
        let raw = "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=F\r\n\r\n\
                   --F\r\nContent-Type: message/feedback-report\r\n\r\nUser-Agent: x/1\r\nVersion: 1\r\n--F--\r\n";
        assert_eq!(parse(raw.as_bytes()), Err(ReportError::NoFeedbackType));
    }

    #[test]
    fn malformed_status_falls_back_to_the_diagnostic_code() {
        let cases = [
            // The enhanced code of the diagnostic replaces a malformed Status.
            (
                "Status: 5.1\r\nDiagnostic-Code: smtp; 550 5.2.2 mailbox full",
                Some("5.2.2"),
            ),
            // No enhanced code anywhere: the reply code's class, unspecific (RFC 3463 X.0.0).
            (
                "Status: 550\r\nDiagnostic-Code: smtp; 550 mailbox unavailable",
                Some("5.0.0"),
            ),
            ("Status: 5.1.1 (bad mailbox)", Some("5.1.1")),
            ("Status: ???", None),
            (
                "Diagnostic-Code: smtp; 550 5.1.1 no Status field at all",
                None,
            ),
        ];
        for (fields, expected) in cases {
            let raw = report_with(&format!(
                "Reporting-MTA: dns; mx.example.test\r\n\r\nFinal-Recipient: rfc822; a@example.test\r\nAction: failed\r\n{fields}"
            ));
            let status = match parse(&raw) {
                Ok(Report::Dsn(dsn)) => Some(dsn.recipients[0].status.clone()),
                Err(ReportError::NoRecipients) => None,
                other => panic!("{fields}: {other:?}"),
            };
            assert_eq!(status.as_deref(), expected, "{fields}");
        }
    }

    #[test]
    fn recipient_fields_without_blank_line_after_per_message_fields_are_read() {
        let raw = report_with(
            "Reporting-MTA: dns; mx.example.test\nFinal-Recipient: rfc822; <Bob@Example.test>\nAction: FAILED\nStatus: 5.1.1",
        );
        let dsn = dsn(&raw);
        assert_eq!(dsn.reporting_mta.as_deref(), Some("mx.example.test"));
        assert_eq!(dsn.recipients[0].final_recipient, "bob@example.test");
        // No original part, no In-Reply-To: the report's own To is the envelope sender.
        assert_eq!(dsn.original_message_id, None);
        assert_eq!(dsn.original_envelope_from.as_deref(), Some(VERP));
    }

    #[test]
    fn classify_status_follows_spec_section_4() {
        let table = [
            ("5.1.1", Recipient),
            ("5.1.10", Recipient),
            ("5.2.2", Recipient),
            ("5.0.0", Recipient),
            // RFC 3463 §2: an unknown detail or subject leaves "permanent, nothing more".
            ("5.0.7", Recipient),
            ("5.9.9", Recipient),
            ("5.3.0", SenderSide),
            ("5.4.4", SenderSide),
            ("5.5.0", SenderSide),
            ("5.6.1", SenderSide),
            ("5.7.1", SenderSide),
            ("5.7.26", SenderSide),
            ("4.4.1", Transient),
            ("4.7.0", Transient),
            (" 5.1.1 ", Recipient),
            ("2.0.0", StatusClass::Other),
            ("", StatusClass::Other),
            ("garbage", StatusClass::Other),
            ("5.1", StatusClass::Other),
            ("5.1.1.1", StatusClass::Other),
            ("3.1.1", StatusClass::Other),
            ("5.1234.1", StatusClass::Other),
            ("550", StatusClass::Other),
        ];
        for (status, class) in table {
            assert_eq!(classify_status(status), class, "{status:?}");
        }
    }

    #[test]
    fn recipient_class_depends_on_action_too() {
        let recipient = |action, status: &str| DsnRecipient {
            final_recipient: "a@example.test".into(),
            original_recipient: None,
            action,
            status: status.into(),
            diagnostic_code: None,
            smtp_code: None,
            remote_mta: None,
        };
        assert_eq!(
            recipient(Failed, "4.4.7").class(),
            Transient,
            "Postfix: expired in the queue"
        );
        assert_eq!(recipient(Delayed, "5.1.1").class(), Transient);
        assert_eq!(
            recipient(Action::Delivered, "2.0.0").class(),
            StatusClass::Other
        );
        assert_eq!(
            recipient(Action::Relayed, "5.1.1").class(),
            StatusClass::Other
        );
        assert_eq!(recipient(Failed, "2.0.0").class(), StatusClass::Other);
    }

    #[test]
    fn enhanced_status_and_reply_code_are_found_in_reply_text() {
        assert_eq!(
            enhanced_status_in("550 5.1.1 <a@example.test>: user unknown"),
            Some("5.1.1")
        );
        assert_eq!(
            enhanced_status_in("smtp;550-5.7.26 unauthenticated"),
            Some("5.7.26")
        );
        assert_eq!(
            enhanced_status_in("#550 5.1.10 RESOLVER.ADR.RecipientNotFound"),
            Some("5.1.10")
        );
        assert_eq!(
            enhanced_status_in("550 requested action not taken 5.1.1"),
            None,
            "only the first words"
        );
        assert_eq!(smtp_reply_code("SMTP; 552 5.2.2 full"), Some(552));
        assert_eq!(smtp_reply_code("smtp;550-5.1.1 gone"), Some(550));
        assert_eq!(smtp_reply_code("X-Postfix; 550 lookalike"), None);
        assert_eq!(smtp_reply_code("smtp; 5500 too long"), None);
        assert_eq!(smtp_reply_code("smtp; 650 no such class"), None);
    }

    #[test]
    fn every_error_has_a_code_and_a_sentence() {
        for error in [
            ReportError::Unparseable,
            ReportError::NotAReport,
            ReportError::NoRecipients,
            ReportError::NoFeedbackType,
        ] {
            assert!(!error.code().is_empty() && error.to_string().len() > 20);
        }
    }

    /// `depth` nested `message/rfc822` wrappers around a DSN, optionally inside a base64 part.
    fn deeply_nested(depth: usize, transfer_encoding_field: Option<&str>) -> Vec<u8> {
        let mut inner = b"Content-Type: message/rfc822\r\n\r\n".repeat(depth);
        inner.extend_from_slice(&report_with(
            "Final-Recipient: rfc822; a@example.test\r\nAction: failed\r\nStatus: 5.1.1",
        ));
        let Some(field) = transfer_encoding_field else {
            return inner;
        };
        let encoded = mail_base64(&inner);
        format!(
            "Subject: outer\r\nContent-Type: message/rfc822\r\n{field}: base64\r\n\r\n{encoded}\r\n"
        )
        .into_bytes()
    }

    fn mail_base64(data: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for (index, chunk) in data.chunks(3).enumerate() {
            let bytes = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
            for k in 0..4 {
                let sextet = (n >> (18 - 6 * k)) & 63;
                out.push(if k <= chunk.len() {
                    char::from(ALPHABET[sextet as usize])
                } else {
                    '='
                });
            }
            if index % 19 == 18 {
                out.push_str("\r\n");
            }
        }
        out
    }

    #[test]
    fn deep_nesting_neither_overflows_the_stack_nor_is_read() {
        // Without our guards each of these aborts the process (derived drop, and mail-parser's
        // `into_owned` of a decoded message/rfc822, recurse once per level). A 512 KiB stack is
        // a quarter of a tokio worker's.
        let inputs = [
            deeply_nested(100_000, None),
            deeply_nested(100_000, Some("Content-Transfer-Encoding")),
            deeply_nested(100_000, Some("content- TRANSFER-encoding ")),
            deeply_nested(2, Some("Content-Transfer-Encoding")),
        ];
        let results = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || inputs.iter().map(|raw| parse(raw)).collect::<Vec<_>>())
            .expect("spawn a test thread")
            .join()
            .expect("parse must not panic");
        for result in &results[..3] {
            assert_eq!(
                result,
                &Err(ReportError::NotAReport),
                "deeper than MAX_NESTING"
            );
        }
        // A base64 message/rfc822 (which RFC 2046 §5.2.1 forbids) is left unread.
        assert_eq!(results[3], Err(ReportError::NotAReport));
    }

    #[test]
    fn shallow_nesting_is_read() {
        for depth in 0..=MAX_NESTING {
            let dsn = dsn(&deeply_nested(depth, None));
            assert_eq!(
                dsn.recipients[0].final_recipient, "a@example.test",
                "depth {depth}"
            );
        }
        assert_eq!(
            parse(&deeply_nested(MAX_NESTING + 1, None)),
            Err(ReportError::NotAReport)
        );
    }

    /// What must hold for anything `parse` returns.
    fn assert_well_formed(report: &Result<Report, ReportError>) {
        if let Ok(Report::Dsn(dsn)) = report {
            assert!(!dsn.recipients.is_empty());
            for recipient in &dsn.recipients {
                assert!(enhanced_code(&recipient.status).is_some(), "{recipient:?}");
                assert!(!recipient.final_recipient.is_empty());
                assert_eq!(
                    recipient.final_recipient,
                    recipient.final_recipient.to_lowercase()
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4_096)) {
            assert_well_formed(&parse(&raw));
        }

        #[test]
        fn mutated_fixtures_never_panic(
            fixture in 0..FIXTURES.len(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..24),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut raw = FIXTURES[fixture].to_vec();
            for (index, byte) in flips {
                let position = index.index(raw.len());
                raw[position] = byte;
            }
            if truncate {
                raw.truncate(cut.index(raw.len() + 1));
            }
            assert_well_formed(&parse(&raw));
        }

        #[test]
        fn spliced_fixtures_never_panic(
            first in 0..FIXTURES.len(),
            second in 0..FIXTURES.len(),
            head in any::<prop::sample::Index>(),
            tail in any::<prop::sample::Index>(),
        ) {
            let (first, second) = (FIXTURES[first], FIXTURES[second]);
            let mut raw = first[..head.index(first.len() + 1)].to_vec();
            raw.extend_from_slice(&second[tail.index(second.len() + 1)..]);
            assert_well_formed(&parse(&raw));
        }

        #[test]
        fn delivery_status_made_of_field_like_lines_never_panics(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just(String::new()),
                    Just("Final-Recipient: rfc822; a@example.test".to_owned()),
                    Just("Action: failed".to_owned()),
                    Just("Status: 5.1.1".to_owned()),
                    Just("Content-Type: message/rfc822".to_owned()),
                    Just("Content-Transfer-Encoding: base64".to_owned()),
                    Just("--B".to_owned()),
                    "[ \t]?[A-Za-z-]{0,20}:? ?[ -~\u{e4}]{0,40}",
                ],
                0..40,
            ),
        ) {
            let raw = report_with(&lines.join("\r\n"));
            assert_well_formed(&parse(&raw));
        }
    }
}
