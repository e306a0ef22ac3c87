//! Webhook subscriptions over HTTP (SPEC §13): subscribe, list, delete, delivery log.
//! Admins only; the secret is in the answer that creates it and nowhere after.

use super::read::{limit, query_map};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::{Caller, JsonBody};
use crate::model::Role;
use crate::store::{Page, WebhookDelivery, WebhookRecord};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// Body of a subscription.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    /// `http://` or `https://`, at most 2,048 bytes, not link-local.
    pub url: String,
    /// Event names (`decision.skipped`, `message.sent`, `message.deferred`,
    /// `message.bounced`, `message.failed`, `address.suppressed`,
    /// `address.unsuppressed`, `complaint.received`, `bounce_rate.crossed`) or `*`.
    pub events: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Subscribes a URL to events (201); the answer holds the signing secret, shown once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks",
    request_body = NewWebhookBody,
    responses((status = 201, body = WebhookRecord), (status = 422, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<NewWebhookBody>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let record = state
        .create_webhook(body.url, body.events, body.description, caller.name())
        .await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// Lists subscriptions, oldest first; secrets are never shown.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 500), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<WebhookRecord>)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<WebhookRecord>>, ApiError> {
    caller.require(Role::Admin)?;
    let q = query_map(raw)?;
    let limit = limit(&q, 50, 500)?;
    let cursor = q.get("cursor").filter(|c| !c.is_empty()).cloned();
    Ok(Json(state.store.webhooks(limit, cursor).await?))
}

/// Deletes a subscription (200 `{id, deleted: true}`; 404 when unknown).
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path)),
    responses((status = 200, body = serde_json::Value), (status = 404, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Role::Admin)?;
    state.delete_webhook(id.clone(), caller.name()).await?;
    Ok(Json(serde_json::json!({"id": id, "deleted": true})))
}

/// The tries of a subscription's messages, newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 500), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page<WebhookDelivery>), (status = 404, body = crate::http::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Page<WebhookDelivery>>, ApiError> {
    caller.require(Role::Admin)?;
    let q = query_map(raw)?;
    let limit = limit(&q, 50, 500)?;
    let cursor = match q.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::invalid("cursor", "not a cursor from a previous page"))?,
        ),
        None => None,
    };
    Ok(Json(
        state.store.webhook_deliveries(id, limit, cursor).await?,
    ))
}
