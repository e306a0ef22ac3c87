//! The creation endpoints of SPEC §3 (one per channel) and resend.
//!
//! Each handler parses its body into [`Recipient`]s at the edge and hands them to the
//! store, which decides and records in one transaction.

use crate::app::{CREATE_ROLE, MAX_AGENT_ADDRESSES};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{
    Caller, JsonBody, RAW_LIMIT, idempotency_key, media_type, parse_json, read_body,
};
use crate::model::{Channel, EmailAddress, ParsedMailbox, ProjectKey, Role};
use crate::store::{IngestRequest, Outcome, Recipient, ResendOutcome, StoreError};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// `{"results": [Result, ...]}`.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct Results {
    pub results: Vec<Outcome>,
}

/// Body of an agent add.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddCustomers {
    /// 1 to 1,000 addresses, display-name form allowed.
    pub emails: Vec<String>,
    /// Send an invitation (default true).
    #[serde(default = "yes")]
    pub invite: bool,
}

fn yes() -> bool {
    true
}

/// Body of an email request given as JSON.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    pub from: String,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

/// Body of a signup or an automation add.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OneCustomer {
    pub email: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Body of `POST /api/v1/customers`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiCustomer {
    pub email: String,
    pub project: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Parses a project key from a path: a malformed key is as unknown as a missing one.
pub fn path_project(key: &str) -> Result<ProjectKey, ApiError> {
    ProjectKey::parse(key).map_err(|_| ApiError::NotFound("project".into()))
}

fn recipient(
    input: String,
    channel: Channel,
    display_name: Option<&str>,
) -> Result<Recipient, ApiError> {
    let mut mailbox = ParsedMailbox::parse(&input);
    if let Some(name) = display_name {
        if name.contains(['\r', '\n'])
            || name.chars().any(char::is_control)
            || name.chars().count() > 200
        {
            return Err(ApiError::invalid(
                "display_name",
                "must be at most 200 characters without line breaks or control characters",
            ));
        }
        if let Ok(m) = &mut mailbox {
            let name = name.trim();
            m.display_name = (!name.is_empty()).then(|| name.to_owned());
        }
    }
    Ok(Recipient {
        input,
        channel,
        mailbox,
    })
}

async fn ingest(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    endpoint: String,
    project: ProjectKey,
    recipients: Vec<Recipient>,
    invite: bool,
) -> Result<Response, StoreError> {
    // The request as the key's fingerprint sees it: every input with its channel.
    let request = serde_json::json!({
        "invite": invite,
        "recipients": recipients
            .iter()
            .map(|r| [r.channel.as_str(), r.input.as_str()])
            .collect::<Vec<_>>(),
    })
    .to_string();
    let idempotency = idempotency_key(headers, caller, &endpoint, &request)
        .map_err(|e| StoreError::invalid("Idempotency-Key", e.to_string()))?;
    let results = state
        .ingest(
            IngestRequest {
                project,
                recipients,
                invite,
            },
            idempotency,
        )
        .await?;
    Ok((StatusCode::OK, Json(Results { results })).into_response())
}

/// Agent adds customers (channel `agent`, email kind `invitation`).
#[utoipa::path(post, path = "/api/v1/projects/{key}/customers", tag = "decisions",
    params(("key" = String, Path, description = "Project key", pattern = "^[A-Z][A-Z0-9_]{1,15}$")),
    request_body = AddCustomers,
    responses((status = 200, body = Results), (status = 404, body = crate::http::error::ErrorBody), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_customers(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AddCustomers>,
) -> Result<Response, ApiError> {
    caller.require(CREATE_ROLE)?;
    let project = path_project(&key)?;
    if body.emails.is_empty() {
        return Err(ApiError::invalid("emails", "name at least one address"));
    }
    if body.emails.len() > MAX_AGENT_ADDRESSES {
        return Err(ApiError::invalid(
            "emails",
            format!(
                "at most {MAX_AGENT_ADDRESSES} addresses per request (got {})",
                body.emails.len()
            ),
        ));
    }
    let recipients = body
        .emails
        .into_iter()
        .map(|e| recipient(e, Channel::Agent, None))
        .collect::<Result<_, _>>()?;
    Ok(ingest(
        &state,
        &caller,
        &headers,
        format!("POST /projects/{key}/customers"),
        project,
        recipients,
        body.invite,
    )
    .await?)
}

/// A customer raised a request by email (sender `email_request`, each CC `email_cc`).
#[utoipa::path(post, path = "/api/v1/projects/{key}/email-requests", tag = "decisions",
    params(("key" = String, Path, description = "Project key", pattern = "^[A-Z][A-Z0-9_]{1,15}$")),
    request_body(content = EmailRequest, description = "JSON, or a raw RFC 5322 message as message/rfc822"),
    responses((status = 200, body = Results), (status = 404, body = crate::http::error::ErrorBody), (status = 415, body = crate::http::error::ErrorBody), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn email_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(CREATE_ROLE)?;
    let project = path_project(&key)?;
    let (from, cc) = match media_type(&headers).as_deref() {
        Some("application/json") => {
            let bytes = read_body(body, crate::http::extract::JSON_LIMIT, "1 MiB").await?;
            let request: EmailRequest = parse_json(&bytes)?;
            if let Some(subject) = &request.subject
                && subject.contains(['\r', '\n'])
            {
                return Err(ApiError::invalid("subject", "must not contain line breaks"));
            }
            (request.from, request.cc)
        }
        Some("message/rfc822") => {
            let bytes = read_body(body, RAW_LIMIT, "10 MiB").await?;
            parse_raw_request(&bytes)?
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "send application/json or message/rfc822 (got {})",
                other.unwrap_or("none")
            )));
        }
    };
    if cc.len() > MAX_AGENT_ADDRESSES {
        return Err(ApiError::invalid(
            "cc",
            format!("at most {MAX_AGENT_ADDRESSES} addresses"),
        ));
    }
    let mut recipients = vec![recipient(from, Channel::EmailRequest, None)?];
    for c in cc {
        recipients.push(recipient(c, Channel::EmailCc, None)?);
    }
    Ok(ingest(
        &state,
        &caller,
        &headers,
        format!("POST /projects/{key}/email-requests"),
        project,
        recipients,
        true,
    )
    .await?)
}

/// Reads From and Cc of a raw message with a real MIME parser.
pub(crate) fn parse_raw_request(bytes: &[u8]) -> Result<(String, Vec<String>), ApiError> {
    let message = mail_parser::MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| ApiError::Malformed("the body is not an RFC 5322 message".into()))?;
    let show = |a: &mail_parser::Addr<'_>| -> Option<String> {
        let address = a.address.as_deref()?;
        Some(match a.name.as_deref() {
            Some(name) if !name.trim().is_empty() => {
                format!("\"{}\" <{address}>", name.replace(['"', '\\'], ""))
            }
            _ => address.to_owned(),
        })
    };
    let from = message
        .from()
        .and_then(|a| a.first())
        .and_then(show)
        .ok_or_else(|| ApiError::invalid("From", "the message has no From address"))?;
    let cc = message
        .cc()
        .map(|a| a.iter().filter_map(show).collect())
        .unwrap_or_default();
    Ok((from, cc))
}

/// Someone signed up on the portal (channel `signup`).
#[utoipa::path(post, path = "/api/v1/projects/{key}/signups", tag = "decisions",
    params(("key" = String, Path, description = "Project key", pattern = "^[A-Z][A-Z0-9_]{1,15}$")),
    request_body = OneCustomer,
    responses((status = 200, body = Results), (status = 404, body = crate::http::error::ErrorBody), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn signup(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<OneCustomer>,
) -> Result<Response, ApiError> {
    caller.require(CREATE_ROLE)?;
    let project = path_project(&key)?;
    let r = recipient(body.email, Channel::Signup, body.display_name.as_deref())?;
    Ok(ingest(
        &state,
        &caller,
        &headers,
        format!("POST /projects/{key}/signups"),
        project,
        vec![r],
        true,
    )
    .await?)
}

/// An automation rule added a customer (channel `automation`).
#[utoipa::path(post, path = "/api/v1/projects/{key}/automation/customers", tag = "decisions",
    params(("key" = String, Path, description = "Project key", pattern = "^[A-Z][A-Z0-9_]{1,15}$")),
    request_body = OneCustomer,
    responses((status = 200, body = Results), (status = 404, body = crate::http::error::ErrorBody), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn automation(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<OneCustomer>,
) -> Result<Response, ApiError> {
    caller.require(CREATE_ROLE)?;
    let project = path_project(&key)?;
    let r = recipient(
        body.email,
        Channel::Automation,
        body.display_name.as_deref(),
    )?;
    Ok(ingest(
        &state,
        &caller,
        &headers,
        format!("POST /projects/{key}/automation/customers"),
        project,
        vec![r],
        true,
    )
    .await?)
}

/// The REST API created a customer (channel `api`).
#[utoipa::path(post, path = "/api/v1/customers", tag = "decisions",
    request_body = ApiCustomer,
    responses((status = 200, body = Results), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn api_customer(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ApiCustomer>,
) -> Result<Response, ApiError> {
    caller.require(CREATE_ROLE)?;
    let project = ProjectKey::parse(&body.project).map_err(|m| ApiError::invalid("project", m))?;
    let r = recipient(body.email, Channel::Api, body.display_name.as_deref())?;
    match ingest(
        &state,
        &caller,
        &headers,
        "POST /customers".into(),
        project,
        vec![r],
        true,
    )
    .await
    {
        Err(StoreError::NotFound("project")) => Err(ApiError::invalid(
            "project",
            format!("no project with key `{}`", body.project),
        )),
        other => Ok(other?),
    }
}

/// Support resends the invitation to a member (channel `resend`): 202 when queued, 409
/// when blocked (the blocked attempt is recorded too), 404 when not a member.
#[utoipa::path(post, path = "/api/v1/projects/{key}/customers/{email}/resend", tag = "decisions",
    params(("key" = String, Path, description = "Project key", pattern = "^[A-Z][A-Z0-9_]{1,15}$"), ("email" = String, Path, description = "Customer address")),
    responses((status = 202, body = Outcome), (status = 409, body = Outcome), (status = 404, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn resend(
    State(state): State<AppState>,
    caller: Caller,
    Path((key, email)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Role::Support)?;
    let project = path_project(&key)?;
    let address = EmailAddress::parse(&email).map_err(|_| {
        ApiError::NotFound(format!(
            "customer {} in {key}",
            crate::model::truncate(&email, 80)
        ))
    })?;
    let idempotency = idempotency_key(
        &headers,
        &caller,
        &format!("POST /projects/{key}/customers/{address}/resend"),
        "",
    )?;
    match state.resend(project, address.clone(), idempotency).await? {
        ResendOutcome::NotMember => Err(ApiError::NotFound(format!(
            "customer {address} in project {key}"
        ))),
        ResendOutcome::Recorded(outcome) => {
            let status = if outcome.decision == crate::model::Verdict::Send {
                StatusCode::ACCEPTED
            } else {
                StatusCode::CONFLICT
            };
            Ok((status, Json(outcome)).into_response())
        }
    }
}
