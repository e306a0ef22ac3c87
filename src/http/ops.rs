//! What an operator sees of each request (SPEC §14 "Logs" and "Secrets"): one access
//! line at `info` with a request id, the `X-Request-Id` header, the API's safety
//! headers, every API rejection in the error JSON of §5, and `/readyz`.

use super::AppState;
use super::error::ApiError;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The request id header, taken from the request or made, and returned.
pub const REQUEST_ID: &str = "x-request-id";

/// A request's id, in the request's extensions for handlers that want it.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// An id from the client is kept when it is short and plain (it is logged), else made.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string())
}

/// The outermost layer: request id in, access line and headers out.
pub async fn access(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let id = request_id(&request);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let api = request.uri().path().starts_with("/api/");
    let mut request = request;
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if api {
        response = as_error_json(response).await;
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    tracing::info!(
        target: "mailtrail::access",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        request_id = %id,
        "request"
    );
    response
}

/// An API error answer that is not our JSON (an extractor's plain-text rejection, e.g.
/// a path that is not UTF-8) becomes the error JSON of SPEC §5 with the same status.
async fn as_error_json(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Rejection texts are short; anything longer is cut, never buffered whole.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let mut answer = ApiError::from_rejection(status, text).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// `GET /readyz`: 200 only when the database answers and the transport started; the
/// body says why not otherwise.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness: the database does not answer");
        return not_ready("the database does not answer");
    }
    match state.readiness.transport_state() {
        Some(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Some(Err(reason)) => not_ready(&format!("the transport did not start: {reason}")),
        None => not_ready("the transport has not started yet"),
    }
}

fn not_ready(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from(format!("not ready: {reason}\n")),
    )
        .into_response()
}
