//! Recording decisions: the creation endpoints of SPEC §3 and resend.
//!
//! Each request runs as one write job, so the facts the rules read (does the customer
//! exist? is the address suppressed?) and the rows written from the decision are one
//! transaction. Two concurrent adds of the same new address are two jobs of the one
//! writer: the second sees the customer the first created.

use super::db::{Db, OptionalExtension, params};
use super::projects::load_project;
use super::site::load_site;
use super::suppressions::suppression_reason;
use super::time::{Micros, format_time, now_micros};
use super::{Store, StoreError};
use crate::messages::{MessageFacts, result_message};
use crate::model::{
    AddressError, Channel, CustomerOutcome, EmailAddress, EmailKind, ParsedMailbox, ProjectKey,
    ReasonCode, Status, Verdict, new_id,
};
use crate::rules::{self, Facts};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One input string of a creation request, parsed at the edge.
#[derive(Clone, Debug)]
pub struct Recipient {
    /// The string as the caller sent it.
    pub input: String,
    /// The channel of this recipient (an email request has a sender and CCs).
    pub channel: Channel,
    /// The parsed mailbox, or why it is not one.
    pub mailbox: Result<ParsedMailbox, AddressError>,
}

/// A creation request for one project.
#[derive(Clone, Debug)]
pub struct IngestRequest {
    /// The project the customers join.
    pub project: ProjectKey,
    /// The recipients in input order.
    pub recipients: Vec<Recipient>,
    /// The agent's "send invitation" choice (only read for `agent`).
    pub invite: bool,
}

/// An `Idempotency-Key` with its caller and the request it was sent with.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    /// Who called, by id, e.g. `token-id:0193…` (never a token's name).
    pub scope: String,
    /// The header's value.
    pub key: String,
    /// A digest of the endpoint and the body: the same key with another request is
    /// refused (see `store::idempotency`).
    pub fingerprint: String,
}

/// The Result object of SPEC §3, one per input.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    /// The normalized address; null when the input was not a valid address.
    pub email: Option<String>,
    /// The input as given.
    pub input: String,
    /// Whether the action created the customer.
    pub customer: CustomerOutcome,
    /// The customer's id, when one exists.
    pub customer_id: Option<String>,
    /// The recorded decision.
    pub decision_id: String,
    /// Which email the decision is about.
    pub email_kind: EmailKind,
    /// Send or skip.
    pub decision: Verdict,
    /// Every reason, primary first.
    pub reasons: Vec<ReasonCode>,
    /// `queued` or `skipped`.
    pub status: Status,
    /// One sentence for a support agent.
    pub message: String,
    /// The channel, when this call recorded the decision; `None` in an idempotent
    /// replay. Read by the metrics (SPEC §14), never sent.
    #[serde(skip)]
    pub recorded: Option<Channel>,
}

/// What a resend came to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ResendOutcome {
    /// The address is not a customer of the project (404).
    NotMember,
    /// A decision was recorded: queued (202) or blocked (409).
    Recorded(Outcome),
}

/// What `resend-skipped` did.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResendSkippedOutcome {
    pub queued: i64,
    pub still_blocked: std::collections::BTreeMap<String, i64>,
    /// True when this call recorded the decisions; false in an idempotent replay.
    /// Read by the metrics (SPEC §14), never sent.
    #[serde(skip)]
    pub recorded: bool,
}

/// The columns of a new decision row.
pub(crate) struct NewDecision<'a> {
    pub project: &'a str,
    pub recipient: Option<&'a str>,
    pub input: &'a str,
    pub display_name: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    pub channel: Channel,
    pub email_kind: EmailKind,
    pub reasons: &'a [ReasonCode],
    pub from_domain: &'a str,
    pub now: Micros,
}

/// Inserts a decision and returns its id. A send is queued, due now, and gets its
/// stable Message-ID (SPEC §4); a skip is final, its primary reason as `status_reason`.
pub(crate) fn insert_decision(conn: &Db, d: &NewDecision<'_>) -> Result<String, StoreError> {
    let id = new_id();
    let send = d.reasons.is_empty();
    let (status, status_reason, next_attempt_at, message_id) = if send {
        (
            Status::Queued,
            None,
            Some(d.now),
            Some(format!("<{id}@{}>", d.from_domain)),
        )
    } else {
        (
            Status::Skipped,
            d.reasons.first().map(|r| r.as_str()),
            None,
            None,
        )
    };
    let reasons = d
        .reasons
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",");
    conn.prepare_cached(
        "INSERT INTO decisions (id, created_at, project, recipient, input, display_name,
             customer_id, channel, email_kind, decision, reasons, status, status_reason,
             next_attempt_at, message_id, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?2)",
    )?
    .execute(params![
        id,
        d.now,
        d.project,
        d.recipient,
        d.input,
        d.display_name,
        d.customer_id,
        d.channel.as_str(),
        d.email_kind.as_str(),
        if send { "send" } else { "skip" },
        reasons,
        status.as_str(),
        status_reason,
        next_attempt_at,
        message_id,
    ])?;
    if !send {
        super::webhooks::emit_decision(conn, &id, Status::Skipped, d.now)?;
    }
    Ok(id)
}

/// A customer row as the rules and messages need it.
pub(crate) struct CustomerRow {
    pub id: String,
    pub created_at: Micros,
    pub created_via: Channel,
}

pub(crate) fn find_customer(conn: &Db, email: &str) -> Result<Option<CustomerRow>, StoreError> {
    let row = conn
        .prepare_cached("SELECT id, created_at, created_via FROM customers WHERE email = ?1")?
        .query_row(params![email], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .optional()?;
    row.map(|(id, created_at, via)| {
        Ok(CustomerRow {
            id,
            created_at,
            created_via: via
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{e}")))?,
        })
    })
    .transpose()
}

/// The domain of the site's From mailbox, for Message-IDs and VERP.
pub(crate) fn from_domain(from: &str) -> String {
    ParsedMailbox::parse(from)
        .map(|m| m.address.domain().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

impl Store {
    /// Records one decision per input of `request`, creating customers and memberships
    /// as the rules say, in one transaction (SPEC §3).
    #[tracing::instrument(skip_all, fields(project = %request.project, n = request.recipients.len()))]
    pub async fn ingest(
        &self,
        request: IngestRequest,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Vec<Outcome>, StoreError> {
        self.write(move |conn| {
            with_idempotency(conn, idempotency.as_ref(), |conn| ingest_tx(conn, &request))
        })
        .await
    }

    /// Records a `resend` decision for a member of `project` (SPEC §3, §5).
    #[tracing::instrument(skip_all, fields(project = %project))]
    pub async fn resend(
        &self,
        project: ProjectKey,
        email: EmailAddress,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<ResendOutcome, StoreError> {
        self.write(move |conn| {
            with_idempotency(conn, idempotency.as_ref(), |conn| {
                resend_tx(conn, &project, &email, now_micros())
            })
        })
        .await
    }
}

fn ingest_tx(conn: &Db, request: &IngestRequest) -> Result<Vec<Outcome>, StoreError> {
    let project = load_project(conn, request.project.as_str())?;
    let site = load_site(conn)?;
    let settings = project.settings.rule_settings();
    let from_domain = from_domain(&site.from);
    let now = now_micros();
    // Repeats of an input in one request get the first one's result (SPEC §5).
    let mut seen: HashMap<String, Outcome> = HashMap::new();
    let mut outcomes = Vec::with_capacity(request.recipients.len());

    for recipient in &request.recipients {
        let dedup_key = match &recipient.mailbox {
            Ok(m) => m.address.as_str().to_owned(),
            Err(_) => format!("\0{}", recipient.input),
        };
        if let Some(first) = seen.get(&dedup_key) {
            outcomes.push(Outcome {
                input: recipient.input.clone(),
                ..first.clone()
            });
            continue;
        }
        let outcome = match &recipient.mailbox {
            Err(_) => record_invalid(
                conn,
                recipient,
                &project.key.to_string(),
                &project.name,
                now,
            )?,
            Ok(mailbox) => {
                let email = mailbox.address.as_str();
                let existing = find_customer(conn, email)?;
                let suppression = suppression_reason(conn, email)?;
                let decision = rules::decide(&Facts {
                    channel: recipient.channel,
                    address: &mailbox.address,
                    outgoing_mail: site.outgoing_mail,
                    settings: &settings,
                    customer_exists: existing.is_some(),
                    invite: request.invite,
                    suppressed: suppression.is_some(),
                });
                let customer_id = match (&existing, decision.create_customer) {
                    (Some(c), _) => Some(c.id.clone()),
                    (None, true) => Some(create_customer(
                        conn,
                        email,
                        mailbox.display_name.as_deref(),
                        recipient.channel,
                        now,
                    )?),
                    (None, false) => None,
                };
                if let Some(id) = &customer_id {
                    add_membership(conn, id, project.key.as_str(), recipient.channel, now)?;
                }
                let decision_id = insert_decision(
                    conn,
                    &NewDecision {
                        project: project.key.as_str(),
                        recipient: Some(email),
                        input: &recipient.input,
                        display_name: mailbox.display_name.as_deref(),
                        customer_id: customer_id.as_deref(),
                        channel: recipient.channel,
                        email_kind: decision.email_kind,
                        reasons: &decision.reasons,
                        from_domain: &from_domain,
                        now,
                    },
                )?;
                let since = existing.as_ref().map(|c| format_time(c.created_at));
                let message = result_message(&MessageFacts {
                    email,
                    project_name: &project.name,
                    channel: recipient.channel,
                    email_kind: decision.email_kind,
                    reasons: &decision.reasons,
                    customer_created: existing.is_none() && customer_id.is_some(),
                    existing_since: existing
                        .as_ref()
                        .zip(since.as_deref())
                        .map(|(c, s)| (&s[..10], c.created_via)),
                    suppression,
                });
                Outcome {
                    email: Some(email.to_owned()),
                    input: recipient.input.clone(),
                    customer: match (&existing, &customer_id) {
                        (Some(_), _) => CustomerOutcome::Existing,
                        (None, Some(_)) => CustomerOutcome::Created,
                        (None, None) => CustomerOutcome::NotCreated,
                    },
                    customer_id,
                    decision_id,
                    email_kind: decision.email_kind,
                    decision: decision.verdict(),
                    status: if decision.reasons.is_empty() {
                        Status::Queued
                    } else {
                        Status::Skipped
                    },
                    reasons: decision.reasons,
                    message,
                    recorded: Some(recipient.channel),
                }
            }
        };
        seen.insert(dedup_key, outcome.clone());
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// An input that is not an address: a skip decision holding the raw input, so a later
/// search finds it (SPEC §3).
fn record_invalid(
    conn: &Db,
    recipient: &Recipient,
    project_key: &str,
    project_name: &str,
    now: Micros,
) -> Result<Outcome, StoreError> {
    let raw = EmailAddress::raw_input(&recipient.input);
    let reasons = [ReasonCode::InvalidAddress];
    let email_kind = recipient.channel.email_kind();
    let decision_id = insert_decision(
        conn,
        &NewDecision {
            project: project_key,
            recipient: None,
            input: &raw,
            display_name: None,
            customer_id: None,
            channel: recipient.channel,
            email_kind,
            reasons: &reasons,
            from_domain: "",
            now,
        },
    )?;
    let shown = crate::model::truncate(&raw, 80);
    Ok(Outcome {
        email: None,
        input: recipient.input.clone(),
        customer: CustomerOutcome::NotCreated,
        customer_id: None,
        decision_id,
        email_kind,
        decision: Verdict::Skip,
        reasons: reasons.to_vec(),
        status: Status::Skipped,
        message: result_message(&MessageFacts {
            email: shown,
            project_name,
            channel: recipient.channel,
            email_kind,
            reasons: &reasons,
            customer_created: false,
            existing_since: None,
            suppression: None,
        }),
        recorded: Some(recipient.channel),
    })
}

fn create_customer(
    conn: &Db,
    email: &str,
    display_name: Option<&str>,
    channel: Channel,
    now: Micros,
) -> Result<String, StoreError> {
    let id = new_id();
    conn.prepare_cached(
        "INSERT INTO customers (id, email, display_name, created_at, created_via)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, email, display_name, now, channel.as_str()])?;
    Ok(id)
}

fn add_membership(
    conn: &Db,
    customer_id: &str,
    project: &str,
    channel: Channel,
    now: Micros,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO memberships (customer_id, project, added_at, added_via)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
    )?
    .execute(params![customer_id, project, now, channel.as_str()])?;
    Ok(())
}

/// A resend as one write: membership check, rules, decision row.
pub(crate) fn resend_tx(
    conn: &Db,
    project: &ProjectKey,
    email: &EmailAddress,
    now: Micros,
) -> Result<ResendOutcome, StoreError> {
    let project = load_project(conn, project.as_str())?;
    let Some(customer) = find_customer(conn, email.as_str())? else {
        return Ok(ResendOutcome::NotMember);
    };
    let member: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM memberships WHERE customer_id = ?1 AND project = ?2")?
        .query_row(params![customer.id, project.key.as_str()], |r| r.get(0))
        .optional()?;
    if member.is_none() {
        return Ok(ResendOutcome::NotMember);
    }
    let site = load_site(conn)?;
    let settings = project.settings.rule_settings();
    let suppression = suppression_reason(conn, email.as_str())?;
    let decision = rules::decide(&Facts {
        channel: Channel::Resend,
        address: email,
        outgoing_mail: site.outgoing_mail,
        settings: &settings,
        customer_exists: true,
        invite: true,
        suppressed: suppression.is_some(),
    });
    let display_name: Option<String> = conn
        .prepare_cached("SELECT display_name FROM customers WHERE id = ?1")?
        .query_row(params![&customer.id], |r| r.get(0))?;
    let decision_id = insert_decision(
        conn,
        &NewDecision {
            project: project.key.as_str(),
            recipient: Some(email.as_str()),
            input: email.as_str(),
            display_name: display_name.as_deref(),
            customer_id: Some(&customer.id),
            channel: Channel::Resend,
            email_kind: decision.email_kind,
            reasons: &decision.reasons,
            from_domain: &from_domain(&site.from),
            now,
        },
    )?;
    let message = result_message(&MessageFacts {
        email: email.as_str(),
        project_name: &project.name,
        channel: Channel::Resend,
        email_kind: decision.email_kind,
        reasons: &decision.reasons,
        customer_created: false,
        existing_since: None,
        suppression,
    });
    Ok(ResendOutcome::Recorded(Outcome {
        email: Some(email.as_str().to_owned()),
        input: email.as_str().to_owned(),
        customer: CustomerOutcome::Existing,
        customer_id: Some(customer.id),
        decision_id,
        email_kind: decision.email_kind,
        decision: decision.verdict(),
        status: if decision.reasons.is_empty() {
            Status::Queued
        } else {
            Status::Skipped
        },
        reasons: decision.reasons,
        message,
        recorded: Some(Channel::Resend),
    }))
}

/// Keys older than this are forgotten (SPEC §5: "within 24 h").
pub(crate) const IDEMPOTENCY_WINDOW: Micros = 24 * 3600 * 1_000_000;

pub(crate) use super::idempotency::with_idempotency;
