//! Extractors that turn a request into proven values or our error shape: the caller
//! (bearer token with a role), JSON bodies with our limits, raw bodies, the
//! `Idempotency-Key` header.

use super::AppState;
use super::error::ApiError;
use crate::model::Role;
use crate::store::{IdempotencyKey, Principal};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header, request::Parts};
use serde::de::DeserializeOwned;
use sha2::Digest as _;

/// JSON bodies up to 1 MiB (SPEC §5).
pub const JSON_LIMIT: usize = 1 << 20;
/// Raw messages up to 10 MiB (SPEC §5).
pub const RAW_LIMIT: usize = 10 << 20;

/// The authenticated caller of an API request, and its stable id (a token's id, never
/// its name: two tokens may share a name).
#[derive(Clone, Debug)]
pub struct Caller(pub Principal, String);

impl Caller {
    /// Fails with 403 unless the caller's role allows `role`.
    pub fn require(&self, role: Role) -> Result<&Principal, ApiError> {
        if self.0.role.allows(role) {
            Ok(&self.0)
        } else {
            Err(ApiError::Forbidden(role.as_str()))
        }
    }

    /// The name written to the audit log.
    pub fn name(&self) -> String {
        self.0.name.clone()
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        if let Some(admin) = &state.config.admin_token
            && constant_time_eq(admin.as_bytes(), token.as_bytes())
        {
            return Ok(Caller(
                Principal {
                    name: "admin-token".into(),
                    role: Role::Admin,
                },
                "admin-token".into(),
            ));
        }
        if token.len() > 200 {
            return Err(ApiError::Unauthorized);
        }
        match state.store.token_by_secret(token).await? {
            Some(t) => Ok(Caller(
                Principal {
                    name: format!("token:{}", t.name.unwrap_or_else(|| t.id.clone())),
                    role: t.role,
                },
                format!("token-id:{}", t.id),
            )),
            None => Err(ApiError::Unauthorized),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares secrets without leaking where they differ through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The media type of a request, lowercased, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Reads a body up to `limit` bytes; 413 beyond.
pub async fn read_body(
    body: Body,
    limit: usize,
    limit_name: &'static str,
) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // to_bytes reports both "too large" and transport errors; only the first is 413.
        if has_source::<super::serve::BodyTimeout>(&e) {
            ApiError::RequestTimeout(super::serve::BodyTimeout.to_string())
        } else if std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util_limited::LengthLimitError>())
            || e.to_string().contains("length limit")
        {
            ApiError::TooLarge(limit_name)
        } else {
            ApiError::Malformed(format!("could not read the body: {e}"))
        }
    })
}

/// Whether `T` is anywhere in `e`'s chain of causes.
fn has_source<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<T>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Re-exported name of http-body-util's error, so the check above reads plainly.
mod http_body_util_limited {
    pub use http_body_util::LengthLimitError;
}

/// Parses JSON into `T`, in two steps so each error gets its status: anything that is
/// not one well-formed JSON value (bad syntax, trailing bytes, nesting deeper than 128)
/// is 400; a well-formed value of the wrong shape (wrong types, unknown or missing
/// fields) is 422 naming the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Malformed(format!("the body is not valid JSON: {e}")))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = strip_position(&e.into_inner().to_string());
        // serde reports a missing field at its parent's path; name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_owned(),
            (_, Some(name)) => format!("{path}.{name}"),
            (".", None) => "body".to_owned(),
            (_, None) => path,
        };
        ApiError::invalid(field, message)
    })
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// A JSON body (`application/json`, up to 1 MiB) parsed into `T` with our errors.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &AppState) -> Result<Self, ApiError> {
        match media_type(req.headers()).as_deref() {
            Some("application/json") => {}
            Some(other) if other.ends_with("+json") => {}
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "send Content-Type: application/json (got {})",
                    other.unwrap_or("none")
                )));
            }
        }
        let bytes = read_body(req.into_body(), JSON_LIMIT, "1 MiB").await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The `Idempotency-Key` header, scoped to the caller's id, with a fingerprint of the
/// endpoint and `request` (the request's content in a canonical form), so the same key
/// with another request is refused (SPEC §15).
pub fn idempotency_key(
    headers: &HeaderMap,
    caller: &Caller,
    endpoint: &str,
    request: &str,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )
        })?;
    let mut digest = sha2::Sha256::new();
    digest.update(endpoint.as_bytes());
    digest.update([0]);
    digest.update(request.as_bytes());
    Ok(Some(IdempotencyKey {
        scope: caller.1.clone(),
        key: key.to_owned(),
        fingerprint: hex::encode(digest.finalize()),
    }))
}
