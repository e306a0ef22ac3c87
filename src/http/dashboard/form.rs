//! Posted forms: the body (`application/x-www-form-urlencoded`, or
//! `multipart/form-data` for the CSV upload) parsed into fields, after the session and
//! its CSRF token were checked. A handler that takes [`Posted`] cannot run for a forged
//! form: a missing or wrong token is a 403 page before the handler starts.

use super::error::PageError;
use super::session::User;
use crate::http::AppState;
use crate::http::extract::{constant_time_eq, media_type};
use axum::extract::{FromRequest, FromRequestParts, Request};
use std::collections::HashMap;

/// Largest form body: a CSV import of many suppressions fits.
pub const FORM_LIMIT: usize = 10 << 20;

/// The fields of a form. Text fields keep what the user typed (for re-showing it).
#[derive(Clone, Debug, Default)]
pub struct Fields {
    /// Text fields; a repeated name keeps its last value.
    pub text: HashMap<String, String>,
    /// Uploaded files by field name (multipart only).
    pub files: HashMap<String, Vec<u8>>,
}

impl Fields {
    /// The field's value as typed, or "".
    pub fn get(&self, name: &str) -> &str {
        self.text.get(name).map(String::as_str).unwrap_or("")
    }

    /// The trimmed value, `None` when empty.
    pub fn opt(&self, name: &str) -> Option<&str> {
        Some(self.get(name).trim()).filter(|v| !v.is_empty())
    }

    /// A checkbox: present and not "off"/"false".
    pub fn checked(&self, name: &str) -> bool {
        self.text
            .get(name)
            .is_some_and(|v| !matches!(v.as_str(), "" | "off" | "false" | "0"))
    }
}

/// A form posted by a logged-in user with a valid CSRF token.
pub struct Posted {
    pub user: User,
    pub form: Fields,
}

impl FromRequest<AppState> for Posted {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let (mut parts, body) = req.into_parts();
        let user = User::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
            PageError::BadRequest("The form is larger than 10 MiB, or it was cut off.".into())
        })?;
        let form = parse_body(
            media_type(&parts.headers).as_deref(),
            content_type(&parts.headers),
            &bytes,
        )?;
        let token = form.get("csrf");
        if token.is_empty() || !constant_time_eq(token.as_bytes(), user.csrf.as_bytes()) {
            tracing::warn!(user = ?user.name, path = ?parts.uri.path(), "form refused: missing or wrong CSRF token");
            let back = same_site_referer(&parts.headers).unwrap_or_else(|| "/".to_owned());
            return Err(PageError::BadCsrf { back });
        }
        Ok(Posted { user, form })
    }
}

/// The path (and query) of `Referer` when it is a page of this site (its host is the
/// request's `Host`), for a link back to the form's page.
fn same_site_referer(headers: &axum::http::HeaderMap) -> Option<String> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let referer = header(axum::http::header::REFERER)?;
    let host = header(axum::http::header::HOST)?;
    let rest = referer
        .strip_prefix("http://")
        .or_else(|| referer.strip_prefix("https://"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !authority.eq_ignore_ascii_case(host) {
        return None;
    }
    let path = if path.is_empty() { "/" } else { path };
    Some(super::session::safe_path(path, "/"))
}

fn content_type(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Parses a form body of either encoding.
pub fn parse_body(
    media: Option<&str>,
    content_type: &str,
    bytes: &[u8],
) -> Result<Fields, PageError> {
    match media {
        Some("multipart/form-data") => {
            let boundary = content_type
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
                .filter(|b| !b.is_empty() && b.len() <= 200)
                .ok_or_else(|| {
                    PageError::BadRequest("The upload has no multipart boundary.".into())
                })?;
            parse_multipart(bytes, &boundary).ok_or_else(|| {
                PageError::BadRequest(
                    "The upload could not be read (a broken multipart body).".into(),
                )
            })
        }
        _ => {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
                .map_err(|_| PageError::BadRequest("The form could not be read.".into()))?;
            Ok(Fields {
                text: pairs.into_iter().collect(),
                files: HashMap::new(),
            })
        }
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// A small RFC 7578 reader: parts separated by `--boundary`, each with headers, a blank
/// line and its content. Only `Content-Disposition` (name, filename) is read.
fn parse_multipart(body: &[u8], boundary: &str) -> Option<Fields> {
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let mut fields = Fields::default();
    let mut pos = find(body, delimiter.as_bytes(), 0)? + delimiter.len();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Some(fields);
        }
        if body.get(pos..pos + 2) != Some(b"\r\n") {
            return None;
        }
        pos += 2;
        let headers_end = find(body, b"\r\n\r\n", pos)?;
        let headers = std::str::from_utf8(&body[pos..headers_end]).ok()?;
        let content_start = headers_end + 4;
        let content_end = find(body, next_delimiter.as_bytes(), content_start)?;
        let content = &body[content_start..content_end];
        let disposition = headers.split("\r\n").find_map(|line| {
            line.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
                .map(|(_, v)| v)
        })?;
        let param = |name: &str| {
            disposition
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        };
        if let Some(name) = param("name") {
            if param("filename").is_some() {
                fields.files.insert(name, content.to_vec());
            } else {
                fields
                    .text
                    .insert(name, String::from_utf8_lossy(content).into_owned());
            }
        }
        pos = content_end + next_delimiter.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_with_a_file_and_fields() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.csv\"\r\nContent-Type: text/csv\r\n\r\nemail,reason\r\na@b.example,\r\n\r\n--XyZ--\r\n";
        let fields = parse_body(
            Some("multipart/form-data"),
            "multipart/form-data; boundary=XyZ",
            body,
        )
        .expect("parses");
        assert_eq!(fields.get("csrf"), "tok");
        assert_eq!(
            fields.files.get("file").map(Vec::as_slice),
            Some(&b"email,reason\r\na@b.example,\r\n"[..])
        );
    }

    #[test]
    fn broken_multipart_is_a_bad_request() {
        let r = parse_body(
            Some("multipart/form-data"),
            "multipart/form-data; boundary=XyZ",
            b"--XyZ\r\nno end",
        );
        assert!(matches!(r, Err(PageError::BadRequest(_))));
    }

    #[test]
    fn urlencoded_keeps_what_was_typed() {
        let fields = parse_body(
            Some("application/x-www-form-urlencoded"),
            "",
            b"email=+a%40b.example+&invite=on",
        )
        .expect("parses");
        assert_eq!(fields.get("email"), " a@b.example ");
        assert_eq!(fields.opt("email"), Some("a@b.example"));
        assert!(fields.checked("invite"));
        assert!(!fields.checked("other"));
    }
}
