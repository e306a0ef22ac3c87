//! Renders a decision into an email: askama templates under `templates/email/`, the
//! project's format and template set, `copy_to`, the stable Message-ID and the VERP
//! envelope sender (SPEC §2, §4).
//!
//! Header values come only from normalized addresses and from text that was checked
//! free of CR/LF when it was stored (project names, display names); lettre encodes them.

use super::dkim::{DkimError, Signer};
use crate::model::{
    AddressError, CopyAs, EmailAddress, EmailFormat, EmailKind, ParsedMailbox, Project, Site,
};
use crate::store::DecisionRecord;
use askama::Template;
use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart, header};
use lettre::{Address, Message};

/// Why a decision's email could not be rendered or built. The texts are shown on the
/// dashboard's preview and kept in the attempt of a try that could not render.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A decision of an input that never parsed has no recipient.
    #[error("an invalid address has no email")]
    NoRecipient,
    /// The recipient stored on the decision no longer parses.
    #[error("{0}")]
    Recipient(AddressError),
    /// The site's From setting does not parse.
    #[error("the site's From is not valid: {0}")]
    From(AddressError),
    /// The project's `copy_to` does not parse.
    #[error("copy_to is not valid: {0}")]
    CopyTo(AddressError),
    /// An address lettre does not accept.
    #[error("{address} cannot be written as an SMTP address: {detail}")]
    SmtpAddress {
        /// The address.
        address: String,
        /// lettre's reason.
        detail: String,
    },
    /// An askama template failed.
    #[error("template error: {0}")]
    Template(#[from] askama::Error),
    /// The project's format asked for no part at all.
    #[error("the email has no body")]
    NoBody,
    /// The message could not be built; the text says which part failed.
    #[error("{0}")]
    Build(String),
    /// Signing failed.
    #[error(transparent)]
    Dkim(#[from] DkimError),
}

/// What the templates see.
struct Context<'a> {
    kind: &'static str,
    subject: &'a str,
    project_name: &'a str,
    greeting_name: Option<&'a str>,
    recipient: &'a str,
    link: &'a str,
    action: &'static str,
    sender_name: &'a str,
}

macro_rules! email_template {
    ($name:ident, $path:literal) => {
        #[derive(Template)]
        #[template(path = $path)]
        struct $name<'a> {
            kind: &'static str,
            subject: &'a str,
            project_name: &'a str,
            greeting_name: Option<&'a str>,
            recipient: &'a str,
            link: &'a str,
            action: &'static str,
            sender_name: &'a str,
        }

        impl<'a> From<&Context<'a>> for $name<'a> {
            fn from(c: &Context<'a>) -> Self {
                $name {
                    kind: c.kind,
                    subject: c.subject,
                    project_name: c.project_name,
                    greeting_name: c.greeting_name,
                    recipient: c.recipient,
                    link: c.link,
                    action: c.action,
                    sender_name: c.sender_name,
                }
            }
        }
    };
}

email_template!(DefaultText, "email/default.txt");
email_template!(DefaultHtml, "email/default.html");
email_template!(PlainText, "email/plain.txt");
email_template!(PlainHtml, "email/plain.html");

/// An email ready to show (the dashboard's preview).
#[derive(Clone, Debug)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    /// The headers that matter to a support agent, in order.
    pub headers: Vec<(String, String)>,
}

/// An email ready to send.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The decision this message carries.
    pub decision_id: String,
    /// The customer's address: its RCPT decides the decision's status.
    pub customer: EmailAddress,
    /// The `copy_to` address, an extra RCPT of the same message.
    pub copy: Option<EmailAddress>,
    /// `bounces+{decision_id}@{from domain}`.
    pub envelope_from: String,
    /// The whole message, CRLF line endings.
    pub bytes: Vec<u8>,
}

/// The subject line of each kind (SPEC §1).
pub fn subject(kind: EmailKind, project_name: &str) -> String {
    match kind {
        EmailKind::Invitation => format!("Welcome to {project_name}"),
        EmailKind::AccountVerification => format!("Verify your email address for {project_name}"),
        EmailKind::Registration => format!("Your account for {project_name} was created"),
    }
}

fn link(site: &Site, project: &Project, kind: EmailKind, recipient: &str) -> String {
    let path = match kind {
        EmailKind::Invitation => "invite",
        EmailKind::AccountVerification => "verify",
        EmailKind::Registration => "set-password",
    };
    let query =
        serde_urlencoded::to_string([("project", project.key.as_str()), ("email", recipient)])
            .unwrap_or_default();
    format!(
        "{}/customer/{path}?{query}",
        site.portal_base_url.trim_end_matches('/')
    )
}

fn bodies(
    format: EmailFormat,
    template_set: &str,
    c: &Context<'_>,
) -> Result<(Option<String>, Option<String>), RenderError> {
    let plain = template_set == "plain";
    let text = || {
        if plain {
            PlainText::from(c).render()
        } else {
            DefaultText::from(c).render()
        }
    };
    let html = || {
        if plain {
            PlainHtml::from(c).render()
        } else {
            DefaultHtml::from(c).render()
        }
    };
    Ok(match format {
        EmailFormat::Multipart => (Some(text()?), Some(html()?)),
        EmailFormat::Text => (Some(text()?), None),
        EmailFormat::Html => (None, Some(html()?)),
    })
}

/// Renders the decision's email as a support agent would want to see it.
pub fn preview(
    decision: &DecisionRecord,
    project: &Project,
    site: &Site,
) -> Result<RenderedEmail, RenderError> {
    let recipient = decision
        .recipient
        .as_deref()
        .ok_or(RenderError::NoRecipient)?;
    let from = ParsedMailbox::parse(&site.from).map_err(RenderError::From)?;
    let sender_name = from
        .display_name
        .clone()
        .unwrap_or_else(|| "The help desk".into());
    let subject = subject(decision.email_kind, &project.name);
    let link = link(site, project, decision.email_kind, recipient);
    let context = Context {
        kind: decision.email_kind.as_str(),
        subject: &subject,
        project_name: &project.name,
        greeting_name: decision.display_name.as_deref(),
        recipient,
        link: &link,
        action: action(decision.email_kind),
        sender_name: &sender_name,
    };
    let (text, html) = bodies(
        project.settings.email_format,
        &project.settings.template_set,
        &context,
    )?;
    let mut headers = vec![
        ("From".to_owned(), site.from.clone()),
        (
            "To".to_owned(),
            match &decision.display_name {
                Some(n) => format!("{n} <{recipient}>"),
                None => recipient.to_owned(),
            },
        ),
    ];
    if let Some(copy) = copy_for(project, decision.email_kind) {
        let name = match copy.copy_as {
            CopyAs::To => "To",
            CopyAs::Cc => "Cc",
            CopyAs::Bcc => "Bcc",
        };
        headers.push((name.to_owned(), copy.address.clone()));
    }
    headers.push(("Subject".to_owned(), subject.clone()));
    if let Some(id) = &decision.message_id {
        headers.push(("Message-ID".to_owned(), id.clone()));
    }
    headers.push((
        "Return-Path".to_owned(),
        format!("<{}>", verp(&decision.id, from.address.domain())),
    ));
    Ok(RenderedEmail {
        subject,
        text,
        html,
        headers,
    })
}

fn action(kind: EmailKind) -> &'static str {
    match kind {
        EmailKind::Invitation => "Accept the invitation",
        EmailKind::AccountVerification => "Verify your email address",
        EmailKind::Registration => "Set your password",
    }
}

/// `copy_to` applies to registration emails only (SPEC §2).
fn copy_for(project: &Project, kind: EmailKind) -> Option<&crate::model::CopyTo> {
    project
        .settings
        .copy_to
        .as_ref()
        .filter(|_| kind == EmailKind::Registration)
}

/// The VERP envelope sender of a decision (SPEC §4).
pub fn verp(decision_id: &str, from_domain: &str) -> String {
    format!("bounces+{decision_id}@{from_domain}")
}

/// The decision id carried by a VERP address, if it is one.
pub fn decision_id_from_verp(address: &str) -> Option<&str> {
    let local = address.trim().trim_matches(['<', '>']).split('@').next()?;
    local
        .strip_prefix("bounces+")
        .filter(|id| !id.is_empty() && id.len() <= 64)
}

fn lettre_address(a: &EmailAddress) -> Result<Address, RenderError> {
    Address::new(a.local_part(), a.domain()).map_err(|e| RenderError::SmtpAddress {
        address: a.to_string(),
        detail: e.to_string(),
    })
}

/// Builds the message to send for `decision`, signed with `dkim` for the domain of the
/// site's From when a key is configured (SPEC §12).
pub fn prepare(
    decision: &DecisionRecord,
    project: &Project,
    site: &Site,
    dkim: Option<&Signer>,
) -> Result<Prepared, RenderError> {
    let rendered = preview(decision, project, site)?;
    let recipient = EmailAddress::parse(decision.recipient.as_deref().unwrap_or(""))
        .map_err(RenderError::Recipient)?;
    let from = ParsedMailbox::parse(&site.from).map_err(RenderError::From)?;
    let from_mailbox = Mailbox::new(from.display_name.clone(), lettre_address(&from.address)?);
    let to_mailbox = Mailbox::new(decision.display_name.clone(), lettre_address(&recipient)?);
    let envelope_from = verp(&decision.id, from.address.domain());
    let copy = copy_for(project, decision.email_kind)
        .map(|c| EmailAddress::parse(&c.address).map(|a| (a, c.copy_as)))
        .transpose()
        .map_err(RenderError::CopyTo)?;
    let mut rcpts = vec![lettre_address(&recipient)?];
    let mut builder = Message::builder()
        .from(from_mailbox)
        .to(to_mailbox)
        .subject(rendered.subject.clone())
        .message_id(decision.message_id.clone())
        .header(header::MIME_VERSION_1_0);
    if let Some((address, copy_as)) = &copy {
        let mailbox = Mailbox::new(None, lettre_address(address)?);
        rcpts.push(mailbox.email.clone());
        builder = match copy_as {
            CopyAs::To => builder.to(mailbox),
            CopyAs::Cc => builder.cc(mailbox),
            // Bcc stays out of the headers: only the envelope carries it.
            CopyAs::Bcc => builder,
        };
    }
    let envelope = Envelope::new(
        Some(
            envelope_from
                .parse()
                .map_err(|e| RenderError::Build(format!("bad VERP address: {e}")))?,
        ),
        rcpts,
    )
    .map_err(|e| RenderError::Build(format!("bad envelope: {e}")))?;
    let builder = builder.envelope(envelope);
    // The MIME part's own headers (Content-Type, Content-Transfer-Encoding) become the
    // message's headers and the rest its body, byte for byte as lettre would write it:
    // lettre's DKIM signs the message's headers only, and a Content-Type written with
    // the body would be a header no signature covers (and listed in h=, one that breaks it).
    let part = match (rendered.text, rendered.html) {
        (Some(text), Some(html)) => MultiPart::alternative_plain_html(text, html).formatted(),
        (Some(text), None) => SinglePart::plain(text).formatted(),
        (None, Some(html)) => SinglePart::html(html).formatted(),
        (None, None) => return Err(RenderError::NoBody),
    };
    let split = part
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| RenderError::Build("the MIME part has no header end".into()))?;
    let part_head = std::str::from_utf8(&part[..split])
        .map_err(|_| RenderError::Build("the MIME part's headers are not text".into()))?;
    let body = part[split + 4..].to_vec();
    let mut content_type = None;
    let mut encoding = ContentTransferEncoding::SevenBit;
    for line in unfold(part_head) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("Content-Type") {
            content_type = Some(
                ContentType::parse(value)
                    .map_err(|e| RenderError::Build(format!("bad Content-Type: {e}")))?,
            );
        } else if name.eq_ignore_ascii_case("Content-Transfer-Encoding") {
            encoding = match value.to_ascii_lowercase().as_str() {
                "7bit" => ContentTransferEncoding::SevenBit,
                "8bit" => ContentTransferEncoding::EightBit,
                "quoted-printable" => ContentTransferEncoding::QuotedPrintable,
                "base64" => ContentTransferEncoding::Base64,
                "binary" => ContentTransferEncoding::Binary,
                other => {
                    return Err(RenderError::Build(format!(
                        "unknown Content-Transfer-Encoding {other}"
                    )));
                }
            };
        }
    }
    let content_type = content_type
        .ok_or_else(|| RenderError::Build("the MIME part has no Content-Type".into()))?;
    let mut message = builder
        .header(content_type)
        .body(Body::dangerous_pre_encoded(body, encoding))
        .map_err(|e| RenderError::Build(format!("cannot build the message: {e}")))?;
    if let Some(signer) = dkim {
        signer.sign(&mut message, from.address.domain())?;
    }
    Ok(Prepared {
        decision_id: decision.id.clone(),
        customer: recipient,
        copy: copy.map(|(a, _)| a),
        envelope_from,
        bytes: message.formatted(),
    })
}

/// Header lines with their folded continuations joined.
fn unfold(head: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        match lines.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
            _ => lines.push(line.to_owned()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verp_round_trips() {
        let id = "019a2b3c-0000-7000-8000-000000000001";
        let v = verp(id, "example.com");
        assert_eq!(v, format!("bounces+{id}@example.com"));
        assert_eq!(decision_id_from_verp(&format!("<{v}>")), Some(id));
        assert_eq!(decision_id_from_verp("alice@example.com"), None);
    }
}
