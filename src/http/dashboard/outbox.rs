//! The outbox: every decision, newest first, with filters, paging and CSV export; and
//! one decision with its attempts and the email as it was (or would be) rendered.

use super::error::PageError;
use super::overview::reason_label;
use super::session::User;
use super::{Ctx, FormState, query, render, short_time};
use crate::http::AppState;
use crate::http::csv::csv_decisions;
use crate::model::{Channel, EmailAddress, ProjectKey, ReasonCode, Status};
use crate::store::{DecisionFilter, DecisionRecord, parse_cursor};
use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

/// Rows per page.
const PAGE: usize = 50;

/// The filter fields as typed.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    pub email: String,
    pub project: String,
    pub status: String,
    pub reason: String,
    pub channel: String,
    pub since: String,
    pub until: String,
}

impl Filters {
    fn from(q: &HashMap<String, String>) -> Filters {
        let get = |k: &str| q.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
        Filters {
            email: get("email"),
            project: get("project"),
            status: get("status"),
            reason: get("reason"),
            channel: get("channel"),
            since: get("since"),
            until: get("until"),
        }
    }

    fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("email", self.email.as_str()),
            ("project", self.project.as_str()),
            ("status", self.status.as_str()),
            ("reason", self.reason.as_str()),
            ("channel", self.channel.as_str()),
            ("since", self.since.as_str()),
            ("until", self.until.as_str()),
        ]
    }

    /// The store's filter, or the first field that is wrong and why.
    fn check(&self) -> Result<DecisionFilter, (&'static str, String)> {
        // A whole address is matched exactly; `@example.com` matches a domain and any
        // other text the start of an address (or a whole invalid input).
        let (email, email_part) = match self.email.as_str() {
            "" => (None, None),
            text => match EmailAddress::parse(text) {
                Ok(a) => (Some(a.as_str().to_owned()), None),
                Err(_) => (
                    None,
                    Some(crate::model::truncate(text, crate::model::RAW_INPUT_LIMIT).to_owned()),
                ),
            },
        };
        let project = match self.project.as_str() {
            "" => None,
            p => Some(
                ProjectKey::parse(p)
                    .map_err(|m| ("project", m))?
                    .to_string(),
            ),
        };
        fn parse<T: std::str::FromStr>(
            field: &'static str,
            v: &str,
        ) -> Result<Option<T>, (&'static str, String)> {
            if v.is_empty() {
                return Ok(None);
            }
            v.parse().map(Some).map_err(|_| {
                (
                    field,
                    format!(
                        "`{}` is not a {field} mailtrail knows",
                        crate::model::truncate(v, 40)
                    ),
                )
            })
        }
        let status: Option<Status> = parse("status", &self.status)?;
        let reason: Option<ReasonCode> = parse("reason", &self.reason)?;
        let channel: Option<Channel> = parse("channel", &self.channel)?;
        let since = day_or_time("since", &self.since, false)?;
        let until = day_or_time("until", &self.until, true)?;
        if let (Some(s), Some(u)) = (since, until)
            && s >= u
        {
            return Err(("until", "must be after \"since\"".into()));
        }
        Ok(DecisionFilter {
            email,
            email_part,
            project,
            status,
            reason,
            channel,
            since,
            until,
            limit: PAGE,
            before: None,
        })
    }
}

/// `2026-11-22` (a whole day in UTC; as an end, the day is included) or RFC 3339.
pub fn day_or_time(
    field: &'static str,
    v: &str,
    end: bool,
) -> Result<Option<i64>, (&'static str, String)> {
    if v.is_empty() {
        return Ok(None);
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let day = if end {
            day.succ_opt().unwrap_or(day)
        } else {
            day
        };
        return Ok(day
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_micros()));
    }
    crate::store::parse_time(v).map(Some).ok_or((
        field,
        "must be a day like 2026-11-22, or a time like 2026-11-22T14:30:00Z".into(),
    ))
}

/// One row of the outbox table.
pub struct Row {
    pub id: String,
    pub at: String,
    pub project: String,
    pub recipient: String,
    pub valid: bool,
    pub channel: &'static str,
    pub kind: &'static str,
    pub status: &'static str,
    pub reasons: Vec<String>,
    pub status_reason: String,
}

impl Row {
    fn of(d: &DecisionRecord) -> Row {
        Row {
            id: d.id.clone(),
            at: short_time(&d.created_at),
            project: d.project.clone(),
            recipient: d.recipient.clone().unwrap_or_else(|| d.input.clone()),
            valid: d.recipient.is_some(),
            channel: d.channel.as_str(),
            kind: d.email_kind.as_str(),
            status: d.status.as_str(),
            reasons: d.reasons.iter().map(|r| r.as_str().to_owned()).collect(),
            status_reason: d.status_reason.map(|r| r.to_string()).unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "outbox.html")]
struct OutboxPage {
    ctx: Ctx,
    projects: Vec<(String, String)>,
    statuses: Vec<&'static str>,
    reasons: Vec<(&'static str, String)>,
    channels: Vec<&'static str>,
    rows: Vec<Row>,
    next: Option<String>,
    /// A page of newer rows (paging back up).
    newer: Option<String>,
    first: Option<String>,
    /// "N decisions match." (capped).
    total: Option<String>,
    csv: String,
    filtered: bool,
}

/// Counts stop here: a million rows need no full count to say "more than".
const TOTAL_CAP: i64 = 10_000;

fn list_query(q: &Option<String>) -> HashMap<String, String> {
    serde_urlencoded::from_str(q.as_deref().unwrap_or("")).unwrap_or_default()
}

/// `GET /outbox`.
pub async fn page(
    State(state): State<AppState>,
    user: User,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let q = list_query(&raw);
    let filters = Filters::from(&q);
    let mut ctx = Ctx::new(&user, "outbox", "Outbox");
    ctx.form = FormState {
        form: "filter".into(),
        errors: Vec::new(),
        values: q.clone(),
    };
    let broken =
        || PageError::BadRequest("That page link is broken; start from the first page.".into());
    let cursor = q.get("cursor").filter(|c| !c.is_empty());
    let after = q.get("after").filter(|c| !c.is_empty());
    // `cursor`: older than a row seen; `after`: newer than one (paging back up).
    let (rows, next, newer, total, status) = match filters.check() {
        Ok(mut filter) => {
            let total = state
                .store
                .count_decisions(filter.clone(), TOTAL_CAP)
                .await?;
            match (after, cursor) {
                (Some(a), _) => {
                    let after = parse_cursor(a).ok_or_else(broken)?;
                    let (items, more) = state.store.decisions_newer(filter, after).await?;
                    // The row `after` is older than all of these, so an older page exists.
                    let older = items.last().map(|d| d.seq.to_string());
                    let newer = more
                        .then(|| items.first().map(|d| d.seq.to_string()))
                        .flatten();
                    (
                        items.iter().map(Row::of).collect(),
                        older,
                        newer,
                        Some(total),
                        StatusCode::OK,
                    )
                }
                (None, Some(c)) => {
                    filter.before = Some(parse_cursor(c).ok_or_else(broken)?);
                    let page = state.store.decisions(filter).await?;
                    // Came down from newer pages, so newer rows exist.
                    let newer = page.items.first().map(|d| d.seq.to_string());
                    (
                        page.items.iter().map(Row::of).collect(),
                        page.next_cursor,
                        newer,
                        Some(total),
                        StatusCode::OK,
                    )
                }
                (None, None) => {
                    let page = state.store.decisions(filter).await?;
                    (
                        page.items.iter().map(Row::of).collect(),
                        page.next_cursor,
                        None,
                        Some(total),
                        StatusCode::OK,
                    )
                }
            }
        }
        Err((field, message)) => {
            ctx.form.errors.push((field.to_owned(), message));
            (
                Vec::new(),
                None,
                None,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
    };
    let pairs = filters.pairs();
    let first = (cursor.is_some() || after.is_some()).then(|| format!("/outbox{}", query(&pairs)));
    let newer = newer.map(|after| {
        let mut pairs = pairs.clone();
        pairs.push(("after", after.as_str()));
        format!("/outbox{}", query(&pairs))
    });
    let total = total.map(|t| match (t.count, t.exact) {
        (1, true) => "1 decision matches.".to_owned(),
        (n, true) => format!("{} decisions match.", super::thousands(n)),
        (n, false) => format!("More than {} decisions match.", super::thousands(n)),
    });
    let csv = format!("/outbox.csv{}", query(&pairs));
    let next = next.map(|cursor| {
        let mut pairs = pairs.clone();
        pairs.push(("cursor", cursor.as_str()));
        format!("/outbox{}", query(&pairs))
    });
    let page = OutboxPage {
        projects: state
            .store
            .projects()
            .await?
            .into_iter()
            .map(|p| (p.key.to_string(), p.name))
            .collect(),
        statuses: Status::ALL.iter().map(|s| s.as_str()).collect(),
        reasons: ReasonCode::ALL
            .iter()
            .map(|r| (r.as_str(), reason_label(r.as_str())))
            .collect(),
        channels: Channel::ALL.iter().map(|c| c.as_str()).collect(),
        rows,
        next,
        newer,
        first,
        total,
        csv,
        filtered: filters.pairs().iter().any(|(_, v)| !v.is_empty()),
        ctx,
    };
    render(&page, &page.ctx, status)
}

/// `GET /outbox.csv`: every decision matching the filters, streamed (RFC 4180).
pub async fn csv(
    State(state): State<AppState>,
    _user: User,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let filters = Filters::from(&list_query(&raw));
    let filter = filters.check().map_err(|(field, message)| {
        PageError::BadRequest(format!("The filter \"{field}\" {message}."))
    })?;
    Ok(csv_decisions(state, filter).into_response())
}

/// The rendered email of a decision, for the preview.
pub struct EmailView {
    pub headers: Vec<(String, String)>,
    pub text: Option<String>,
    pub html: Option<String>,
}

#[derive(Template)]
#[template(path = "decision.html")]
struct DecisionPage {
    ctx: Ctx,
    d: Row,
    input: String,
    decision: &'static str,
    reasons: Vec<(String, &'static str)>,
    customer_id: String,
    next_attempt: String,
    sent_at: String,
    last_reply: String,
    message_id: String,
    attempts: Vec<super::why::AttemptView>,
    email: Option<EmailView>,
    email_error: String,
    bounces: Vec<BounceView>,
}

/// A message that came back for the decision and was not a report (SPEC §11), kept.
struct BounceView {
    at: String,
    kind: String,
    result: String,
    recipient: String,
    reply: String,
    subject: String,
    sender: String,
    bytes: i64,
    raw: String,
}

/// `GET /decisions/{id}`.
pub async fn decision(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    if id.len() > 64 {
        return Err(PageError::NotFound("decision with this id".into()));
    }
    let d = match state.store.decision(id).await {
        Err(crate::store::StoreError::NotFound(_)) => {
            return Err(PageError::NotFound("decision with this id".into()));
        }
        other => other?,
    };
    let (email, email_error) = match (d.recipient.as_ref(), ProjectKey::parse(&d.project)) {
        (Some(_), Ok(key)) => {
            let project = state.store.project(key).await?;
            let site = state.store.site().await?;
            match crate::delivery::render::preview(&d, &project, &site) {
                Ok(r) => (
                    Some(EmailView {
                        headers: r.headers,
                        text: r.text,
                        html: r.html,
                    }),
                    String::new(),
                ),
                Err(e) => (None, e.to_string()),
            }
        }
        _ => (
            None,
            "The input was not a valid address, so there is no email to show.".into(),
        ),
    };
    let bounces = state
        .store
        .bounce_messages_of(d.id.clone())
        .await?
        .into_iter()
        .map(|(m, raw)| BounceView {
            at: short_time(&m.received_at),
            kind: m.kind,
            result: m.result,
            recipient: m.recipient.unwrap_or_default(),
            reply: m.response.unwrap_or_default(),
            subject: m.subject.unwrap_or_default(),
            sender: m.sender.unwrap_or_default(),
            bytes: m.bytes,
            raw: String::from_utf8_lossy(&raw).into_owned(),
        })
        .collect();
    let page = DecisionPage {
        bounces,
        ctx: Ctx::new(
            &user,
            "outbox",
            format!(
                "Decision for {}",
                d.recipient.as_deref().unwrap_or(&d.input)
            ),
        ),
        input: d.input.clone(),
        decision: d.decision.as_str(),
        reasons: d
            .reasons
            .iter()
            .map(|r| (reason_label(r.as_str()), crate::messages::reason_phrase(*r)))
            .collect(),
        customer_id: d.customer_id.clone().unwrap_or_default(),
        next_attempt: d
            .next_attempt_at
            .as_deref()
            .map(short_time)
            .unwrap_or_default(),
        sent_at: d.sent_at.as_deref().map(short_time).unwrap_or_default(),
        last_reply: d.last_reply.clone().unwrap_or_default(),
        message_id: d.message_id.clone().unwrap_or_default(),
        attempts: d
            .attempts
            .iter()
            .flatten()
            .map(super::why::AttemptView::of)
            .collect(),
        d: Row::of(&d),
        email,
        email_error,
    };
    render(&page, &page.ctx, StatusCode::OK)
}
