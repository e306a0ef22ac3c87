//! The one mapping from errors to HTTP answers: `{"error": {"code", "message"}}` with
//! the status of SPEC §5. Internal causes are logged here, once, and never sent.

use crate::model::FieldError;
use crate::store::StoreError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not well-formed (bad JSON, bad CSV encoding, …).
    #[error("{0}")]
    Malformed(String),
    /// 401: no token, or a token we do not know.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 403: the token's role may not do this.
    #[error("this needs the {0} role")]
    Forbidden(&'static str),
    /// 404: the named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// 405: the path exists, the method does not.
    #[error("method not allowed here")]
    MethodNotAllowed,
    /// 409: conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than the limit.
    #[error("the body is larger than {0}")]
    TooLarge(&'static str),
    /// 415: a media type this endpoint does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but not valid; names the field.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// Why.
        message: String,
    },
    /// 422 with a code of its own (e.g. `not_a_report`); names the field.
    #[error("{field}: {message}")]
    Refused {
        /// The snake_case code.
        code: &'static str,
        /// The field at fault.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// 408: the request body did not arrive in time (SPEC §14).
    #[error("{0}")]
    RequestTimeout(String),
    /// 422: an `Idempotency-Key` repeated with another body or by another caller
    /// (SPEC §15).
    #[error(
        "this Idempotency-Key was already used for another request; use a new key for a new request"
    )]
    IdempotencyKeyReused,
    /// 500: our fault; the cause is logged, not sent.
    #[error("internal error")]
    Internal(String),
    /// 503: shutting down.
    #[error("the service is unavailable")]
    Unavailable,
    /// 503: the database cannot be reached now (SPEC §10); the cause is logged.
    #[error("the database is unavailable; try again shortly")]
    DatabaseUnavailable(String),
}

impl ApiError {
    /// A 422 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid { .. } | ApiError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable | ApiError::DatabaseUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Malformed(_) => "malformed_body",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "body_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Invalid { .. } => "validation_failed",
            ApiError::Refused { code, .. } => code,
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable => "unavailable",
            ApiError::DatabaseUnavailable(_) => "database_unavailable",
        }
    }

    /// The field at fault, for 422s.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid { field, .. } => Some(field),
            ApiError::Refused { field, .. } => Some(field),
            ApiError::IdempotencyKeyReused => Some("Idempotency-Key"),
            _ => None,
        }
    }

    /// The error for a rejection that was answered as plain text (an extractor's, e.g.
    /// a path segment that is not UTF-8), keeping its status and its sentence.
    pub fn from_rejection(status: StatusCode, text: String) -> Self {
        let text = if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("the request was refused")
                .to_owned()
        } else {
            crate::model::truncate(&text, 300).to_string()
        };
        match status {
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
            StatusCode::NOT_FOUND => ApiError::NotFound(text),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::CONFLICT => ApiError::Conflict(text),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge("the limit"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::invalid("request", text),
            StatusCode::REQUEST_TIMEOUT => ApiError::RequestTimeout(text),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable,
            s if s.is_server_error() => ApiError::Internal(text),
            _ => ApiError::Malformed(text),
        }
    }
}

impl From<crate::app::ImportError> for ApiError {
    fn from(e: crate::app::ImportError) -> Self {
        match e {
            crate::app::ImportError::NotUtf8 => ApiError::Malformed(e.to_string()),
            crate::app::ImportError::Line { line, message } => ApiError::Invalid {
                field: format!("line {line}"),
                message,
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what.to_owned()),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Invalid { field, message }
                if crate::store::idempotency::is_reuse(&field, &message) =>
            {
                ApiError::IdempotencyKeyReused
            }
            StoreError::Invalid { field, message } => ApiError::Invalid { field, message },
            StoreError::Refused {
                code,
                field,
                message,
            } => ApiError::Refused {
                code,
                field,
                message,
            },
            StoreError::WriterGone => ApiError::Unavailable,
            StoreError::Unavailable(cause) => ApiError::DatabaseUnavailable(cause),
            e @ (StoreError::Database(_) | StoreError::Corrupt(_)) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

/// The error JSON of SPEC §5.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// `{"code", "message", "field"?}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!(%cause, "internal error"),
            ApiError::DatabaseUnavailable(cause) => {
                tracing::warn!(%cause, "the database is unavailable")
            }
            _ => {}
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                field: self.field().map(str::to_owned),
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::DatabaseUnavailable(_) = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        if let ApiError::TooLarge(_) | ApiError::RequestTimeout(_) = self {
            // The rest of the body is not read, so the connection cannot carry another
            // request: say so, rather than let a keep-alive client find out.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_status_and_code() {
        let cases = [
            (ApiError::Malformed("x".into()), 400, "malformed_body"),
            (ApiError::Unauthorized, 401, "unauthorized"),
            (ApiError::Forbidden("admin"), 403, "forbidden"),
            (ApiError::NotFound("project".into()), 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (ApiError::Conflict("x".into()), 409, "conflict"),
            (ApiError::TooLarge("1 MiB"), 413, "body_too_large"),
            (
                ApiError::UnsupportedMediaType("x".into()),
                415,
                "unsupported_media_type",
            ),
            (ApiError::invalid("emails", "x"), 422, "validation_failed"),
            (ApiError::RequestTimeout("x".into()), 408, "request_timeout"),
            (
                ApiError::IdempotencyKeyReused,
                422,
                "idempotency_key_reused",
            ),
            (ApiError::Internal("boom".into()), 500, "internal"),
            (ApiError::Unavailable, 503, "unavailable"),
            (
                ApiError::DatabaseUnavailable("down".into()),
                503,
                "database_unavailable",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status().as_u16(), status);
            assert_eq!(error.code(), code);
        }
    }

    #[test]
    fn internal_causes_are_not_sent() {
        assert_eq!(
            ApiError::Internal("disk on fire".into()).to_string(),
            "internal error"
        );
    }
}
