//! `/healthz`, `/metrics` and the OpenAPI document: the endpoints that need no token.

use crate::http::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// 200 when the database answers.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200), (status = 503)))]
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    if !state.config.metrics {
        return crate::http::error::ApiError::NotFound("metrics (turned off)".into())
            .into_response();
    }
    let queue = match state
        .store
        .queue_gauges(crate::metrics::QUEUE_STATUSES)
        .await
    {
        Ok(queue) => queue,
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    match state.metrics.render(&queue) {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => crate::http::error::ApiError::Internal(e.to_string()).into_response(),
    }
}
