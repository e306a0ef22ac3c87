//! `serve --demo`: a store full of the knowledge base's five scenarios, so a newcomer
//! sees every reason code, a delivery history and the fixes at first start.
//!
//! Everything goes through the application's operations, as the API's do: `ingest` for
//! decisions, the real renderer and file transport for sent emails, `receive_bounce`
//! for the DSN and the complaint. Only three SMTP replies are scripted (a 550 5.1.1 hard bounce,
//! a 451 greylisting, a 550 5.7.1 policy refusal), because the demo runs with no mail
//! server; they are then classified and recorded by the same functions as real replies.

use crate::app::{App, IncomingBounce};
use crate::delivery::classify::{Reply, Stage, TryEnd};
use crate::delivery::render;
use crate::delivery::schedule::RetryPolicy;
use crate::delivery::transport::{Attempt, Transport};
use crate::delivery::worker::attempt_write;
use crate::model::{
    Channel, EmailAddress, ParsedMailbox, ProjectKey, ProjectPatch, SitePatch, SuppressionReason,
};
use crate::store::{IngestRequest, Lease, NewSuppression, Recipient, Store, now_micros};
use anyhow::Context;
use serde_json::json;

const WHO: &str = "demo";

async fn project(
    store: &Store,
    key: &str,
    settings: serde_json::Value,
) -> anyhow::Result<ProjectKey> {
    let key = ProjectKey::parse(key).map_err(anyhow::Error::msg)?;
    let patch: ProjectPatch = serde_json::from_value(settings)?;
    store
        .put_project(key.clone(), patch, true, WHO.into())
        .await?;
    Ok(key)
}

async fn add(
    app: &App,
    project: &ProjectKey,
    channel: Channel,
    inputs: &[&str],
    invite: bool,
) -> anyhow::Result<()> {
    let recipients = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| Recipient {
            input: (*input).to_owned(),
            channel: if channel == Channel::EmailRequest && i > 0 {
                Channel::EmailCc
            } else {
                channel
            },
            mailbox: ParsedMailbox::parse(input),
        })
        .collect();
    app.ingest(
        IngestRequest {
            project: project.clone(),
            recipients,
            invite,
        },
        None,
    )
    .await?;
    Ok(())
}

/// Seeds the demo unless the store already has projects.
pub async fn seed(state: &App) -> anyhow::Result<()> {
    let store = &state.store;
    if !store.projects().await?.is_empty() {
        return Ok(());
    }
    tracing::info!("seeding the demo");
    state
        .patch_site(
            SitePatch {
                from: Some("Acme Help Desk <help@acme.example>".into()),
                portal_base_url: Some("https://help.acme.example/portal".into()),
                outgoing_mail: None,
            },
            WHO.into(),
        )
        .await?;
    let it = project(store, "IT", json!({"name": "IT Help"})).await?;
    let hr = project(
        store,
        "HR",
        json!({"name": "People Team", "invite_notification": false}),
    )
    .await?;
    let sales = project(
        store,
        "SALES",
        json!({"name": "Sales Desk", "verification_emails": false}),
    )
    .await?;
    let portal = project(store, "PORTAL", json!({"name": "Customer Portal", "public_signup": true, "deny_patterns": ["@competitor\\.example$"],
        "copy_to": {"address": "admin@acme.example", "as": "bcc"}})).await?;
    let onboard = project(
        store,
        "ONBOARD",
        json!({"name": "Onboarding", "public_signup": true, "share_with_anyone": true,
        "notify_auto_created": true, "email_format": "text", "template_set": "plain"}),
    )
    .await?;

    // Sent invitations, and the delivery stories told below.
    add(
        state,
        &it,
        Channel::Agent,
        &[
            "Alice Example <alice@example.com>",
            "Bob Stone <bob@example.com>",
            "rosa@example.com",
            "sam@example.org",
            "tina@example.net",
            "uma@example.com",
            "Victor Lee <victor@example.com>",
        ],
        true,
    )
    .await?;
    // Scenario 1: the "Customer invited" notification is off.
    add(
        state,
        &hr,
        Channel::Agent,
        &["Dave Brown <dave@example.com>"],
        true,
    )
    .await?;
    // Scenario 2: an existing customer added to another project.
    add(state, &hr, Channel::Agent, &["alice@example.com"], true).await?;
    // The agent chose not to invite.
    add(state, &it, Channel::Agent, &["carol@example.com"], false).await?;
    // "Do not send account verification emails".
    add(state, &sales, Channel::Agent, &["paul@example.com"], true).await?;
    // Email requests: unknown sender without public signup; CC without sharing.
    add(
        state,
        &it,
        Channel::EmailRequest,
        &["mallory@example.net"],
        true,
    )
    .await?;
    add(
        state,
        &portal,
        Channel::EmailRequest,
        &["Nina Park <nina@example.com>", "oscar@example.org"],
        true,
    )
    .await?;
    add(
        state,
        &portal,
        Channel::Signup,
        &["spy@competitor.example"],
        true,
    )
    .await?;
    add(
        state,
        &onboard,
        Channel::Signup,
        &["quinn@example.com"],
        true,
    )
    .await?;
    // Scenario 5: created by automation; and by the REST API.
    add(
        state,
        &portal,
        Channel::Automation,
        &["ivan@example.com"],
        true,
    )
    .await?;
    add(state, &portal, Channel::Api, &["kim@example.com"], true).await?;
    add(state, &onboard, Channel::Api, &["judy@example.com"], true).await?;
    // A typo, kept so support can find it.
    add(state, &it, Channel::Agent, &["lena@example,com"], true).await?;
    // Scenario 3: an address an admin suppressed, then an invitation to it.
    let grace = EmailAddress::parse("grace@example.com").map_err(anyhow::Error::msg)?;
    store
        .suppress(
            NewSuppression::plain(
                grace,
                SuppressionReason::Manual,
                Some("customer asked us to stop".into()),
            ),
            "admin".into(),
        )
        .await?;
    add(state, &it, Channel::Agent, &["grace@example.com"], true).await?;
    // Scenario 4: outgoing mail was off for a while.
    state
        .patch_site(
            SitePatch {
                outgoing_mail: Some(false),
                ..SitePatch::default()
            },
            "admin".into(),
        )
        .await?;
    add(
        state,
        &it,
        Channel::Agent,
        &["henry@example.com", "ines@example.com"],
        true,
    )
    .await?;
    state
        .patch_site(
            SitePatch {
                outgoing_mail: Some(true),
                ..SitePatch::default()
            },
            "admin".into(),
        )
        .await?;

    deliver_stories(state)
        .await
        .context("demo delivery history")?;
    Ok(())
}

/// Delivers the queued demo decisions now: most through the real file transport, three
/// with scripted SMTP replies, and one DSN and one complaint posted afterwards.
async fn deliver_stories(state: &App) -> anyhow::Result<()> {
    let store = &state.store;
    let transport = Transport::from_config(&state.config)?;
    let policy = RetryPolicy::from_config(&state.config);
    let projects = store.projects().await?;
    let site = store.site().await?;
    let leased = store.lease_due(Lease { micros: 60_000_000 }, 1000).await?;
    for l in leased {
        let recipient = l.decision.recipient.clone().unwrap_or_default();
        let scripted = match recipient.as_str() {
            "rosa@example.com" => Some(TryEnd::Refused(
                Stage::Rcpt,
                Reply::new(
                    550,
                    "5.1.1 <rosa@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
                ),
            )),
            "sam@example.org" => Some(TryEnd::Refused(
                Stage::Rcpt,
                Reply::new(451, "4.7.1 Greylisted, please try again in 5 minutes"),
            )),
            "tina@example.net" => Some(TryEnd::Refused(
                Stage::Data,
                Reply::new(
                    550,
                    "5.7.1 Message rejected due to local policy (our IP is listed on a blocklist)",
                ),
            )),
            _ => None,
        };
        let attempt = match scripted {
            Some(end) => Attempt {
                end,
                server: Some("mx1.mail.example:25".into()),
                copy: None,
                tls: None,
            },
            None => {
                let project = projects
                    .iter()
                    .find(|p| p.key.as_str() == l.decision.project)
                    .context("project")?;
                let message =
                    render::prepare(&l.decision, project, &site, state.config.dkim.as_ref())?;
                transport.deliver(&message).await
            }
        };
        let now = now_micros();
        state
            .record_attempt(
                attempt_write(&l, attempt, &policy, now, now),
                std::time::Duration::ZERO,
            )
            .await?;
    }
    // A DSN for uma, returned by her provider after the email was accepted.
    let uma = store
        .why_facts("uma@example.com".into(), true, None)
        .await?;
    if let Some(d) = uma.decisions.first() {
        let raw = demo_dsn(&d.id, d.message_id.as_deref().unwrap_or(""));
        state
            .receive_bounce(demo_report(raw), "demo")
            .await
            .context("demo DSN")?;
    }
    // A spam complaint (ARF) for victor, from his mailbox provider's feedback loop.
    let victor = store
        .why_facts("victor@example.com".into(), true, None)
        .await?;
    if let Some(d) = victor.decisions.first() {
        let raw = demo_arf(d.message_id.as_deref().unwrap_or(""));
        state
            .receive_bounce(demo_report(raw), "demo")
            .await
            .context("demo ARF")?;
    }
    Ok(())
}

/// A report as the HTTP door hands it over.
fn demo_report(raw: String) -> IncomingBounce {
    IncomingBounce {
        raw: raw.into_bytes(),
        smtp_recipient: None,
    }
}

fn demo_arf(message_id: &str) -> String {
    format!(
        "From: feedback@fbl.mailbox.example\r\nTo: abuse@acme.example\r\nSubject: FW: Welcome to IT Help\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n--F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report for an email message received from IP 192.0.2.10.\r\n\r\n--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: MailboxFBL/1.0\r\nVersion: 1\r\nOriginal-Mail-From: <bounces@acme.example>\r\nOriginal-Rcpt-To: <victor@example.com>\r\nArrival-Date: Sun, 22 Nov 2026 05:00:00 +0000\r\n\r\n--F\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\nFrom: Acme Help Desk <help@acme.example>\r\nTo: victor@example.com\r\nSubject: Welcome to IT Help\r\n\r\n--F--\r\n"
    )
}

fn demo_dsn(decision_id: &str, message_id: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\nTo: bounces+{decision_id}@acme.example\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; uma@example.com\r\nAction: failed\r\nStatus: 5.2.1\r\nRemote-MTA: dns; mailstore.example.com\r\nDiagnostic-Code: smtp; 550 5.2.1 The email account that you tried to reach is disabled\r\n\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\nReturn-Path: <bounces+{decision_id}@acme.example>\r\nSubject: Welcome to IT Help\r\n\r\n--B--\r\n"
    )
}
